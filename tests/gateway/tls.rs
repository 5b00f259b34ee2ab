//! TLS on both sides with real handshakes on loopback: the HTTPS listener (self-signed and
//! configured certificates, SNI), plain HTTP sent to it, and https upstreams (CA file,
//! verification failure as an endpoint failure, mutual TLS).

use crate::support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use support::{open_api, Backend, Gateway};

/// A CA and a leaf certificate for `names`, as PEM strings and DER.
struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

fn pki(names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(root: CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// One HTTPS request with `Connection: close`; returns (status, body, peer certificate).
fn https_get(
    addr: SocketAddr,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> (u16, String, CertificateDer<'static>) {
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    let peer = tls.conn.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body, peer)
}

#[test]
fn https_listener_with_a_generated_certificate_proxies_to_plain_upstreams() {
    let backend = Backend::echo("plain");
    let gateway = Gateway::start_tls(&open_api(&[backend.url("")], "load_balance"), "");
    let (snapshot, _) = gateway.server().shared().snapshot();
    let generated = snapshot
        .tls
        .server
        .self_signed()
        .expect("a generated certificate")
        .der
        .clone();
    for _ in 0..3 {
        let (status, body, _) = https_get(
            gateway.https_addr.unwrap(),
            "localhost",
            client_config(generated.clone()),
            "/svc/tls",
        );
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["backend"], "plain");
        assert_eq!(json["headers"]["x-forwarded-proto"], "https");
    }
}

#[test]
fn sni_selects_the_certificate() {
    let backend = Backend::echo("plain");
    let a = pki(&["a.test"]);
    let b = pki(&["b.test", "*.wild.test"]);
    let dir = tempfile::tempdir().unwrap();
    for (name, pki) in [("a", &a), ("b", &b)] {
        std::fs::write(dir.path().join(format!("{name}.crt")), &pki.cert_pem).unwrap();
        std::fs::write(dir.path().join(format!("{name}.key")), &pki.key_pem).unwrap();
    }
    let d = dir.path().display();
    let tls = format!(
        "tls:\n  certificates:\n    - {{certificate_chain: {d}/a.crt, private_key: {d}/a.key}}\n    - {{certificate_chain: {d}/b.crt, private_key: {d}/b.key}}\n"
    );
    let gateway = Gateway::start_tls(&open_api(&[backend.url("")], "load_balance"), &tls);
    let addr = gateway.https_addr.unwrap();
    let (status, _, peer) = https_get(addr, "b.test", client_config(b.ca_der.clone()), "/svc/x");
    assert_eq!((status, peer), (200, b.cert_der.clone()));
    let (_, _, peer) = https_get(
        addr,
        "x.wild.test",
        client_config(b.ca_der.clone()),
        "/svc/x",
    );
    assert_eq!(peer, b.cert_der);
    let (_, _, peer) = https_get(addr, "a.test", client_config(a.ca_der.clone()), "/svc/x");
    assert_eq!(peer, a.cert_der);
}

#[test]
fn plain_http_to_the_tls_port_gets_400_and_a_close() {
    let backend = Backend::echo("plain");
    let gateway = Gateway::start_tls(&open_api(&[backend.url("")], "load_balance"), "");
    let mut tcp = TcpStream::connect(gateway.https_addr.unwrap()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(b"GET /svc/x HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    let _ = tcp.read_to_string(&mut raw);
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("connection: close"), "{raw}");
    assert_eq!(backend.request_count(), 0);
    // The shard is fine afterwards.
    assert_eq!(gateway.client().get("/svc/x").status, 200);
}

/// A TLS backend that answers each request with a JSON echo; optionally requires a client
/// certificate signed by `client_ca`.
fn tls_backend(pki: &Pki, client_ca: Option<CertificateDer<'static>>) -> SocketAddr {
    tls_backend_counted(pki, client_ca).0
}

/// Like `tls_backend`, also counting accepted TCP connections.
fn tls_backend_counted(
    pki: &Pki,
    client_ca: Option<CertificateDer<'static>>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key_der.clone()));
    let config = Arc::new(
        builder
            .with_single_cert(vec![pki.cert_der.clone()], key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::AcqRel);
            let config = Arc::clone(&config);
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                        let body = format!("{{\"backend\":\"tls\",\"path\":\"{path}\"}}");
                        let response = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if tls.write_all(response.as_bytes()).is_err() {
                            return;
                        }
                    }
                    match tls.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[test]
fn https_upstream_verified_with_a_ca_file_and_pooled() {
    let backend_pki = pki(&["localhost"]);
    let (addr, accepted) = tls_backend_counted(&backend_pki, None);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &backend_pki.ca_pem).unwrap();
    let gateway = Gateway::start_with(
        &open_api(
            &[format!("https://localhost:{}/up", addr.port())],
            "load_balance",
        ),
        &format!(
            "upstream:\n  tls:\n    ca_file: {}/ca.pem\n",
            dir.path().display()
        ),
        1,
    );
    let mut client = gateway.client();
    for _ in 0..5 {
        let response = client.get("/svc/over-tls");
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.json()["path"], "/up/over-tls");
    }
    assert_eq!(
        accepted.load(Ordering::Acquire),
        1,
        "five requests over one pooled TLS connection"
    );
}

#[test]
fn untrusted_upstream_certificate_is_an_endpoint_failure_and_fails_over() {
    let backend_pki = pki(&["localhost"]);
    let tls_addr = tls_backend(&backend_pki, None);
    let plain = Backend::echo("plain");
    // No CA configured: the webpki roots do not trust the test CA.
    let gateway = Gateway::start(&open_api(
        &[
            format!("https://localhost:{}", tls_addr.port()),
            plain.url(""),
        ],
        "failover",
    ));
    let mut client = gateway.client();
    for _ in 0..3 {
        let response = client.get("/svc/x");
        assert_eq!(response.status, 200);
        assert_eq!(response.json()["backend"], "plain");
    }
}

#[test]
fn insecure_skip_verify_accepts_any_upstream_certificate() {
    let backend_pki = pki(&["localhost"]);
    let addr = tls_backend(&backend_pki, None);
    let gateway = Gateway::start_with(
        &open_api(
            &[format!("https://localhost:{}", addr.port())],
            "load_balance",
        ),
        "upstream:\n  tls:\n    insecure_skip_verify: true\n",
        1,
    );
    assert_eq!(gateway.client().get("/svc/x").json()["backend"], "tls");
}

#[test]
fn mutual_tls_to_the_upstream() {
    let backend_pki = pki(&["localhost"]);
    let client_pki = pki(&["gateway.client"]);
    let addr = tls_backend(&backend_pki, Some(client_pki.ca_der.clone()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &backend_pki.ca_pem).unwrap();
    std::fs::write(dir.path().join("client.crt"), &client_pki.cert_pem).unwrap();
    std::fs::write(dir.path().join("client.key"), &client_pki.key_pem).unwrap();
    let d = dir.path().display();
    let url = format!("https://localhost:{}", addr.port());
    let with_cert = Gateway::start_with(
        &open_api(std::slice::from_ref(&url), "load_balance"),
        &format!("upstream:\n  tls:\n    ca_file: {d}/ca.pem\n    client_certificate: {d}/client.crt\n    client_key: {d}/client.key\n"),
        1,
    );
    assert_eq!(with_cert.client().get("/svc/m").status, 200);
    let without_cert = Gateway::start_with(
        &open_api(&[url], "load_balance"),
        &format!("upstream:\n  tls:\n    ca_file: {d}/ca.pem\n"),
        1,
    );
    let response = without_cert.client().get("/svc/m");
    assert_eq!(
        response.status, 503,
        "a refused handshake is a failed endpoint"
    );
}

#[test]
fn curl_talks_to_the_https_listener() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("curl not installed; skipped (CI installs it)");
        return;
    }
    let backend = Backend::echo("plain");
    let gateway = Gateway::start_tls(&open_api(&[backend.url("")], "load_balance"), "");
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "10",
            &format!(
                "https://127.0.0.1:{}/svc/curl",
                gateway.https_addr.unwrap().port()
            ),
        ])
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.contains("\"backend\":\"plain\""),
        "{body} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
