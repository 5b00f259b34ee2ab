//! Real handshakes on 127.0.0.1: the gateway's server and client sides against each other and
//! against independent rustls peers (through `monoio-rustls` directly), with certificates
//! made by rcgen at test time (plus the PKCS#1 and SEC1 fixtures in `testdata/`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use monoio::buf::{IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncReadRentExt, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, Tls12Resumption};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, DigitallySignedStruct, HandshakeKind, ProtocolVersion, RootCertStore,
    ServerConfig, SupportedProtocolVersion,
};

use super::*;
use crate::compile::config::gateway::{self, CertificateFiles};
use crate::tls::stream::ClientTlsStream;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
const TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// Runs `future` on the driver production picks: io_uring where the kernel has it, else
/// epoll.
fn run<F: std::future::Future>(future: F) -> F::Output {
    match monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("test runtime")
    {
        monoio::FusionRuntime::Uring(mut rt) => rt.block_on(future),
        monoio::FusionRuntime::Legacy(mut rt) => rt.block_on(future),
    }
}

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/tls/testdata")
        .join(name)
}

/// A throwaway CA and the files of the certificates it signs, in a temporary directory.
struct TestPki {
    dir: tempfile::TempDir,
    ca_key: rcgen::KeyPair,
    ca: rcgen::Certificate,
}

impl TestPki {
    fn new() -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "shardgate test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        Self {
            dir: tempfile::tempdir().unwrap(),
            ca_key,
            ca,
        }
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn ca_file(&self) -> PathBuf {
        self.write("ca.pem", &self.ca.pem())
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        roots
    }

    /// A certificate for `names` signed by the CA, and its PKCS#8 key, as files `<stem>.*`.
    fn leaf(&self, stem: &str, names: &[&str]) -> CertificateFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        CertificateFiles {
            certificate_chain: self.write(&format!("{stem}.cert.pem"), &cert.pem()),
            private_key: self.write(&format!("{stem}.key.pem"), &key.serialize_pem()),
        }
    }

    fn server_tls(&self, certificates: Vec<CertificateFiles>) -> ServerTls {
        ServerTls::from_config(&gateway::ServerTls {
            certificates,
            ..Default::default()
        })
        .unwrap()
    }

    fn upstream_tls(&self) -> UpstreamTls {
        UpstreamTls::from_config(&gateway::UpstreamTls {
            ca_file: Some(self.ca_file()),
            ..Default::default()
        })
        .unwrap()
    }
}

fn der_of(files: &CertificateFiles) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(&files.certificate_chain).unwrap()
}

fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

async fn accept_one(
    listener: &TcpListener,
    tls: &ServerTls,
) -> Result<ServerTlsStream, HandshakeError> {
    let (tcp, _) = listener.accept().await.unwrap();
    tls.accept(tcp, HANDSHAKE_TIMEOUT).await
}

/// An independent client: rustls through `monoio-rustls`, not this module's handshake.
fn client_config(
    roots: RootCertStore,
    versions: &'static [&'static SupportedProtocolVersion],
) -> ClientConfig {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

async fn independent_connect(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
    name: &str,
) -> Result<monoio_rustls::ClientTlsStream<TcpStream>, monoio_rustls::TlsError> {
    let tcp = TcpStream::connect_addr(addr).await.unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    monoio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await
}

async fn gateway_connect(
    upstream: &UpstreamTls,
    addr: SocketAddr,
    name: &str,
) -> Result<ClientTlsStream, HandshakeError> {
    let tcp = TcpStream::connect_addr(addr).await.unwrap();
    upstream.connect(tcp, name).await
}

/// Accepts any certificate (signatures still checked) and remembers each end-entity
/// certificate it was shown, to see which one the server picked.
#[derive(Debug, Default)]
struct RecordingVerifier {
    seen: Mutex<Vec<CertificateDer<'static>>>,
}

impl RecordingVerifier {
    fn last(&self) -> CertificateDer<'static> {
        self.seen.lock().unwrap().last().unwrap().clone()
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.seen
            .lock()
            .unwrap()
            .push(end_entity.clone().into_owned());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn recording_client(verifier: &Arc<RecordingVerifier>) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::clone(verifier) as Arc<dyn ServerCertVerifier>)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The certificate the server presents to a client asking for `name` (an IP: no SNI).
async fn served_certificate(
    listener: &TcpListener,
    addr: SocketAddr,
    server: &ServerTls,
    name: &str,
) -> CertificateDer<'static> {
    let verifier = Arc::new(RecordingVerifier::default());
    let config = recording_client(&verifier);
    let (accepted, connected) = monoio::join!(
        accept_one(listener, server),
        independent_connect(&config, addr, name)
    );
    accepted.unwrap();
    connected.unwrap();
    verifier.last()
}

// ----- server certificates -----

#[test]
fn sni_selects_the_certificate_by_name_and_the_first_by_default() {
    let pki = TestPki::new();
    let a = pki.leaf("a", &["a.test"]);
    let b = pki.leaf("b", &["b.test", "*.b.test"]);
    let server = pki.server_tls(vec![a.clone(), b.clone()]);
    let (a, b) = (der_of(&a), der_of(&b));
    run(async {
        let (listener, addr) = listener();
        for (name, expected, why) in [
            ("a.test", &a, "exact name of the first"),
            ("b.test", &b, "exact name of the second"),
            ("B.Test", &b, "names compare case-insensitively"),
            ("api.b.test", &b, "wildcard of the second"),
            ("unknown.test", &a, "no match: the first"),
            ("127.0.0.1", &a, "no SNI (IP literal): the first"),
        ] {
            let served = served_certificate(&listener, addr, &server, name).await;
            assert_eq!(&served, expected, "{name}: {why}");
        }
    });
}

#[test]
fn pkcs1_rsa_and_sec1_ec_keys_load_and_sign_handshakes() {
    let rsa = CertificateFiles {
        certificate_chain: testdata("dev-only-rsa.cert.pem"),
        private_key: testdata("dev-only-rsa.pkcs1.key.pem"),
    };
    let ec = CertificateFiles {
        certificate_chain: testdata("dev-only-p256.cert.pem"),
        private_key: testdata("dev-only-p256.sec1.key.pem"),
    };
    let server = ServerTls::from_config(&gateway::ServerTls {
        certificates: vec![rsa.clone(), ec.clone()],
        ..Default::default()
    })
    .unwrap();
    run(async {
        let (listener, addr) = listener();
        // The recording verifier still checks the handshake signature with the certificate's
        // key, so success proves the loaded private key signs for it.
        let served = served_certificate(&listener, addr, &server, "rsa.test").await;
        assert_eq!(served, der_of(&rsa));
        let served = served_certificate(&listener, addr, &server, "ec.test").await;
        assert_eq!(served, der_of(&ec));
    });
}

#[test]
fn self_signed_certificate_is_generated_and_trusted_by_its_fingerprinted_der() {
    let server = ServerTls::from_config(&gateway::ServerTls::default()).unwrap();
    let generated = server.self_signed().expect("no certificates configured");
    let fingerprint = &generated.fingerprint_sha256;
    assert_eq!(fingerprint.len(), 32 * 3 - 1, "{fingerprint}");
    assert!(
        fingerprint.split(':').all(|pair| pair.len() == 2
            && pair
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))),
        "openssl prints upper-case hex pairs joined by ':': {fingerprint}"
    );
    assert_eq!(
        *fingerprint,
        server::fingerprint_sha256(&generated.der),
        "the fingerprint is the one of the served certificate"
    );
    let mut roots = RootCertStore::empty();
    roots.add(generated.der.clone()).unwrap();
    let config = Arc::new(client_config(roots, PROTOCOL_VERSIONS));
    run(async {
        let (listener, addr) = listener();
        for name in ["localhost", "127.0.0.1", "::1"] {
            let (accepted, connected) = monoio::join!(
                accept_one(&listener, &server),
                independent_connect(&config, addr, name)
            );
            accepted.unwrap();
            connected.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        }
    });
}

#[test]
fn fingerprint_is_sha256_as_openssl_prints_it() {
    // SHA-256 of the empty input.
    assert_eq!(
        server::fingerprint_sha256(b""),
        "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55"
    );
}

// ----- versions, ALPN, resumption -----

#[test]
fn tls12_only_and_tls13_only_clients_complete_with_alpn_http11() {
    let pki = TestPki::new();
    let server = pki.server_tls(vec![pki.leaf("a", &["a.test"])]);
    run(async {
        let (listener, addr) = listener();
        for (versions, expected) in [
            (TLS12_ONLY, ProtocolVersion::TLSv1_2),
            (TLS13_ONLY, ProtocolVersion::TLSv1_3),
        ] {
            let config = Arc::new(client_config(pki.roots(), versions));
            let (accepted, connected) = monoio::join!(
                accept_one(&listener, &server),
                independent_connect(&config, addr, "a.test")
            );
            let accepted = accepted.unwrap();
            let connected = connected.unwrap();
            assert_eq!(accepted.info().version, expected);
            assert_eq!(accepted.info().kind, HandshakeKind::Full);
            assert!(accepted.info().alpn_http11);
            assert_eq!(connected.alpn_protocol().as_deref(), Some(&b"http/1.1"[..]));
        }
    });
}

#[test]
fn clients_without_alpn_are_served_and_clients_offering_only_h2_are_refused() {
    let pki = TestPki::new();
    let server = pki.server_tls(vec![pki.leaf("a", &["a.test"])]);
    run(async {
        let (listener, addr) = listener();
        let mut no_alpn = client_config(pki.roots(), PROTOCOL_VERSIONS);
        no_alpn.alpn_protocols.clear();
        let no_alpn = Arc::new(no_alpn);
        let (accepted, connected) = monoio::join!(
            accept_one(&listener, &server),
            independent_connect(&no_alpn, addr, "a.test")
        );
        assert!(!accepted.unwrap().info().alpn_http11);
        connected.unwrap();

        let mut h2_only = client_config(pki.roots(), PROTOCOL_VERSIONS);
        h2_only.alpn_protocols = vec![b"h2".to_vec()];
        let h2_only = Arc::new(h2_only);
        let (accepted, connected) = monoio::join!(
            accept_one(&listener, &server),
            independent_connect(&h2_only, addr, "a.test")
        );
        assert!(matches!(
            accepted,
            Err(HandshakeError::Tls(rustls::Error::NoApplicationProtocol))
        ));
        assert!(connected.is_err());
    });
}

/// Server writes a byte after the handshake and the client reads it, so that TLS 1.3
/// tickets (sent after the handshake) have reached the client before it reconnects.
async fn exchange_one_byte<S: AsyncReadRent, C: AsyncWriteRent>(server: &mut C, client: &mut S) {
    let (written, _) = server.write_all(b"!".to_vec()).await;
    written.unwrap();
    let (read, buf) = client.read(Vec::with_capacity(16)).await;
    assert_eq!(read.unwrap(), 1);
    assert_eq!(buf, b"!");
}

#[test]
fn second_connection_resumes_the_session_with_tls13_tickets() {
    let pki = TestPki::new();
    let server = pki.server_tls(vec![pki.leaf("a", &["a.test"])]);
    let upstream = pki.upstream_tls();
    run(async {
        let (listener, addr) = listener();
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let (accepted, connected) = monoio::join!(
                accept_one(&listener, &server),
                gateway_connect(&upstream, addr, "a.test")
            );
            let (mut accepted, mut connected) = (accepted.unwrap(), connected.unwrap());
            exchange_one_byte(&mut accepted, &mut connected).await;
            assert_eq!(accepted.info().version, ProtocolVersion::TLSv1_3);
            kinds.push((accepted.info().kind, connected.info().kind));
        }
        assert_eq!(
            kinds,
            [
                (HandshakeKind::Full, HandshakeKind::Full),
                (HandshakeKind::Resumed, HandshakeKind::Resumed)
            ]
        );
    });
}

#[test]
fn tls12_resumes_by_ticket_and_by_session_id() {
    let pki = TestPki::new();
    let server = pki.server_tls(vec![pki.leaf("a", &["a.test"])]);
    run(async {
        let (listener, addr) = listener();
        for (tls12_resumption, what) in [
            (Tls12Resumption::SessionIdOrTickets, "ticket"),
            (Tls12Resumption::SessionIdOnly, "session ID (server cache)"),
        ] {
            let mut config = client_config(pki.roots(), TLS12_ONLY);
            config.resumption =
                Resumption::in_memory_sessions(8).tls12_resumption(tls12_resumption);
            let config = Arc::new(config);
            let mut kinds = Vec::new();
            for _ in 0..2 {
                let (accepted, connected) = monoio::join!(
                    accept_one(&listener, &server),
                    independent_connect(&config, addr, "a.test")
                );
                connected.unwrap();
                let accepted = accepted.unwrap();
                assert_eq!(accepted.info().version, ProtocolVersion::TLSv1_2);
                kinds.push(accepted.info().kind);
            }
            assert_eq!(
                kinds,
                [HandshakeKind::Full, HandshakeKind::Resumed],
                "{what}"
            );
        }
    });
}

// ----- failed handshakes -----

/// Reads until the peer closes (or fails); returns what arrived.
async fn read_to_end<S: AsyncReadRent>(stream: &mut S) -> Vec<u8> {
    let mut all = Vec::new();
    loop {
        let (read, buf) = stream.read(Vec::with_capacity(4096)).await;
        match read {
            Ok(0) | Err(_) => return all,
            Ok(_) => all.extend_from_slice(&buf),
        }
    }
}

async fn send_then_read_to_end(addr: SocketAddr, bytes: &'static [u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect_addr(addr).await.unwrap();
    let (written, _) = tcp.write_all(bytes).await;
    written.unwrap();
    read_to_end(&mut tcp).await
}

#[test]
fn plain_http_to_the_tls_port_is_detected_and_answered_with_400() {
    let pki = TestPki::new();
    let server = pki.server_tls(vec![pki.leaf("a", &["a.test"])]);
    run(async {
        let (listener, addr) = listener();
        let (accepted, answer) = monoio::join!(
            accept_one(&listener, &server),
            send_then_read_to_end(addr, b"GET /pets HTTP/1.1\r\nhost: a.test\r\n\r\n")
        );
        assert!(matches!(accepted, Err(HandshakeError::PlainHttp)));
        assert_eq!(accepted.unwrap_err().metric_label(), "plain_http");
        let answer = String::from_utf8(answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert!(
            head.contains("\r\ncontent-type: application/json"),
            "{head}"
        );
        assert_eq!(
            body,
            r#"{"code":"400","message":"Bad Request","description":"This port speaks HTTPS."}"#
        );

        let quiet = server.clone().with_plain_http_answer(false);
        let (accepted, answer) = monoio::join!(
            accept_one(&listener, &quiet),
            send_then_read_to_end(addr, b"POST / HTTP/1.1\r\n")
        );
        assert!(matches!(accepted, Err(HandshakeError::PlainHttp)));
        assert!(answer.is_empty(), "closed without an answer");
    });
}

#[test]
fn garbage_silence_and_early_close_are_told_apart() {
    let pki = TestPki::new();
    let server = pki.server_tls(vec![pki.leaf("a", &["a.test"])]);
    run(async {
        let (listener, addr) = listener();
        let (accepted, _) = monoio::join!(
            accept_one(&listener, &server),
            send_then_read_to_end(addr, b"\x00\x01\x02\x03\x04\x05\x06\x07")
        );
        assert!(
            matches!(accepted, Err(HandshakeError::Tls(_))),
            "{accepted:?}"
        );

        let silent = async {
            let tcp = TcpStream::connect_addr(addr).await.unwrap();
            monoio::time::sleep(Duration::from_millis(500)).await;
            drop(tcp);
        };
        let timed = async {
            let (tcp, _) = listener.accept().await.unwrap();
            server.accept(tcp, Duration::from_millis(100)).await
        };
        let (accepted, ()) = monoio::join!(timed, silent);
        assert!(
            matches!(accepted, Err(HandshakeError::TimedOut)),
            "{accepted:?}"
        );

        let hang_up = async {
            drop(TcpStream::connect_addr(addr).await.unwrap());
        };
        let (accepted, ()) = monoio::join!(accept_one(&listener, &server), hang_up);
        assert!(
            matches!(accepted, Err(HandshakeError::Closed)),
            "{accepted:?}"
        );
    });
}

// ----- upstream verification -----

#[test]
fn upstream_with_an_untrusted_certificate_fails_and_succeeds_with_the_ca_file_or_insecure() {
    let pki = TestPki::new();
    let server = pki.server_tls(vec![pki.leaf("api", &["api.test", "127.0.0.1"])]);
    let webpki_roots = UpstreamTls::from_config(&gateway::UpstreamTls::default()).unwrap();
    let with_ca = pki.upstream_tls();
    let insecure = UpstreamTls::from_config(&gateway::UpstreamTls {
        insecure_skip_verify: true,
        ..Default::default()
    })
    .unwrap();
    assert!(webpki_roots.verifies_certificates() && with_ca.verifies_certificates());
    assert!(!insecure.verifies_certificates());
    run(async {
        let (listener, addr) = listener();
        let (_, connected) = monoio::join!(
            accept_one(&listener, &server),
            gateway_connect(&webpki_roots, addr, "api.test")
        );
        assert!(
            matches!(
                connected,
                Err(HandshakeError::Tls(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::UnknownIssuer
                )))
            ),
            "{connected:?}"
        );

        for (upstream, name) in [
            (&with_ca, "api.test"),
            (&with_ca, "127.0.0.1"),
            (&insecure, "api.test"),
            (&insecure, "wrong.name"),
        ] {
            let (accepted, connected) = monoio::join!(
                accept_one(&listener, &server),
                gateway_connect(upstream, addr, name)
            );
            accepted.unwrap();
            let connected = connected.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(connected.info().alpn_http11);
        }

        let (_, connected) = monoio::join!(
            accept_one(&listener, &server),
            gateway_connect(&with_ca, addr, "wrong.name")
        );
        assert!(
            matches!(
                connected,
                Err(HandshakeError::Tls(rustls::Error::InvalidCertificate(_)))
            ),
            "a trusted certificate for another name is refused: {connected:?}"
        );
    });
}

/// A server requiring a client certificate: handshake, then one byte.
async fn serve_mutual_tls(
    listener: &TcpListener,
    acceptor: &monoio_rustls::TlsAcceptor,
) -> std::io::Result<()> {
    let (tcp, _) = listener.accept().await?;
    let mut tls = acceptor.accept(tcp).await?;
    let (written, _) = tls.write_all(b"!".to_vec()).await;
    written.map(|_| ())
}

#[test]
fn mutual_tls_server_accepts_our_client_certificate_and_refuses_a_client_without_one() {
    let pki = TestPki::new();
    let server_files = pki.leaf("api", &["api.test"]);
    let client_files = pki.leaf("gateway", &["gateway.client"]);
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(pki.roots()), provider())
        .build()
        .unwrap();
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![der_of(&server_files)],
            PrivateKeyDer::from_pem_file(&server_files.private_key).unwrap(),
        )
        .unwrap();
    let acceptor = monoio_rustls::TlsAcceptor::from(Arc::new(config));
    let with_cert = UpstreamTls::from_config(&gateway::UpstreamTls {
        ca_file: Some(pki.ca_file()),
        client_certificate: Some(client_files.certificate_chain.clone()),
        client_key: Some(client_files.private_key.clone()),
        ..Default::default()
    })
    .unwrap();
    let without_cert = pki.upstream_tls();
    run(async {
        let (listener, addr) = listener();
        let serve = || serve_mutual_tls(&listener, &acceptor);
        let (served, connected) =
            monoio::join!(serve(), gateway_connect(&with_cert, addr, "api.test"));
        served.unwrap();
        let mut connected = connected.unwrap();
        let (read, _) = connected.read(Vec::with_capacity(8)).await;
        assert_eq!(read.unwrap(), 1);

        let (served, connected) =
            monoio::join!(serve(), gateway_connect(&without_cert, addr, "api.test"));
        assert!(served.is_err(), "the server requires a client certificate");
        // TLS 1.3: the client finishes its side before the server checks its certificate;
        // the refusal (alert) arrives with the first read.
        if let Ok(mut connected) = connected {
            let (read, _) = connected.read(Vec::with_capacity(8)).await;
            assert!(read.is_err(), "{read:?}");
        }
    });
}

// ----- data through the streams -----

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

async fn read_exactly<S: AsyncReadRent>(stream: &mut S, len: usize) -> Vec<u8> {
    let buf: SliceMut<Vec<u8>> = Vec::with_capacity(len).slice_mut(0..len);
    let (read, buf) = stream.read_exact(buf).await;
    assert_eq!(read.unwrap(), len);
    buf.into_inner()
}

#[test]
fn one_mebibyte_round_trips_through_client_and_upstream_streams_then_close_notify() {
    const LEN: usize = 1 << 20;
    let pki = TestPki::new();
    let server = pki.server_tls(vec![pki.leaf("a", &["a.test"])]);
    let upstream = pki.upstream_tls();
    run(async {
        let (listener, addr) = listener();
        let echo = async {
            let (tcp, _) = listener.accept().await.unwrap();
            let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
            let mut client: ClientStream =
                server.accept(tcp, HANDSHAKE_TIMEOUT).await.unwrap().into();
            assert!(client.is_tls());
            assert_eq!(
                std::os::fd::AsRawFd::as_raw_fd(&client),
                fd,
                "the TCP socket's fd"
            );
            let received = read_exactly(&mut client, LEN).await;
            let (written, _) = client.write_all(received).await;
            written.unwrap();
            client.shutdown().await.unwrap();
        };
        let talk = async {
            let tcp = TcpStream::connect_addr(addr).await.unwrap();
            let mut up: UpstreamStream = upstream.connect(tcp, "a.test").await.unwrap().into();
            assert!(up.tls_info().is_some_and(|i| i.alpn_http11));
            let (written, _) = up.write_all(payload(LEN)).await;
            written.unwrap();
            let echoed = read_exactly(&mut up, LEN).await;
            assert!(echoed == payload(LEN), "1 MiB echoed unchanged");
            let (read, _) = up.read(Vec::with_capacity(16)).await;
            assert_eq!(
                read.unwrap(),
                0,
                "close_notify reads as a clean end of stream"
            );
        };
        monoio::join!(echo, talk);
    });
}

#[test]
fn request_sent_with_the_clients_finished_message_is_not_lost() {
    let pki = TestPki::new();
    let server = pki.server_tls(vec![pki.leaf("a", &["a.test"])]);
    let (listener, addr) = {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        (std_listener, addr)
    };
    let config = Arc::new(client_config(pki.roots(), TLS13_ONLY));
    // A blocking rustls client that queues its request before the handshake ends, so that
    // the request leaves in the same write (and segment) as its Finished message.
    let client = std::thread::spawn(move || {
        use std::io::Read;
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        let name = ServerName::try_from("a.test").unwrap();
        let mut conn = rustls::ClientConnection::new(config, name).unwrap();
        std::io::Write::write_all(&mut conn.writer(), b"GET / HTTP/1.1\r\n\r\n").unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).unwrap();
        }
        while conn.wants_write() {
            conn.write_tls(&mut sock).unwrap();
        }
        let mut answer = [0u8; 1];
        rustls::Stream::new(&mut conn, &mut sock)
            .read_exact(&mut answer)
            .unwrap();
        answer
    });
    run(async move {
        let listener = TcpListener::from_std(listener).unwrap();
        let mut accepted = accept_one(&listener, &server).await.unwrap();
        let request = read_exactly(&mut accepted, 18).await;
        assert_eq!(request, b"GET / HTTP/1.1\r\n\r\n");
        let (written, _) = accepted.write_all(b"!".to_vec()).await;
        written.unwrap();
    });
    assert_eq!(client.join().unwrap(), *b"!");
}

#[test]
fn plain_streams_round_trip_through_the_same_types() {
    run(async {
        let (listener, addr) = listener();
        let echo = async {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut client = ClientStream::from(tcp);
            assert!(client.tls_info().is_none());
            let received = read_exactly(&mut client, 5).await;
            let (written, _) = client.write_all(received).await;
            written.unwrap();
        };
        let talk = async {
            let mut up = UpstreamStream::from(TcpStream::connect_addr(addr).await.unwrap());
            let (written, _) = up.write_all(b"hello".to_vec()).await;
            written.unwrap();
            assert_eq!(read_exactly(&mut up, 5).await, b"hello");
        };
        monoio::join!(echo, talk);
    });
}

#[test]
fn dropping_without_shutdown_reads_as_an_unexpected_eof_on_the_other_side() {
    let pki = TestPki::new();
    let server = pki.server_tls(vec![pki.leaf("a", &["a.test"])]);
    let upstream = pki.upstream_tls();
    run(async {
        let (listener, addr) = listener();
        let (accepted, connected) = monoio::join!(
            accept_one(&listener, &server),
            gateway_connect(&upstream, addr, "a.test")
        );
        let (mut accepted, mut connected) = (accepted.unwrap(), connected.unwrap());
        // Let the client consume the TLS 1.3 tickets first: a socket closed with unread
        // bytes sends a reset instead of a FIN.
        exchange_one_byte(&mut accepted, &mut connected).await;
        drop(connected);
        let (read, _) = accepted.read(Vec::with_capacity(16)).await;
        assert_eq!(
            read.unwrap_err().kind(),
            std::io::ErrorKind::UnexpectedEof,
            "no close_notify: a truncation, not a clean end"
        );
    });
}

#[test]
fn operation_after_a_timed_out_read_fails_instead_of_panicking() {
    let pki = TestPki::new();
    let server = pki.server_tls(vec![pki.leaf("a", &["a.test"])]);
    let upstream = pki.upstream_tls();
    run(async {
        let (listener, addr) = listener();
        let (accepted, connected) = monoio::join!(
            accept_one(&listener, &server),
            gateway_connect(&upstream, addr, "a.test")
        );
        let mut accepted = accepted.unwrap();
        let timed_out = monoio::time::timeout(
            Duration::from_millis(50),
            accepted.read(Vec::with_capacity(16)),
        )
        .await;
        assert!(timed_out.is_err());
        let (read, _) = accepted.read(Vec::with_capacity(16)).await;
        assert!(read.is_err(), "the stream refuses further use");
        let (written, _) = accepted.write(b"x".to_vec()).await;
        assert!(written.is_err());
        drop(connected);
    });
}

// ----- configuration errors -----

fn server_error(certificates: Vec<CertificateFiles>) -> String {
    match ServerTls::from_config(&gateway::ServerTls {
        certificates,
        ..Default::default()
    }) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn server_configuration_errors_name_the_field_and_the_file() {
    let pki = TestPki::new();
    let a = pki.leaf("a", &["a.test"]);
    let b = pki.leaf("b", &["b.test"]);
    let missing = pki.dir.path().join("missing.pem");

    let message = server_error(vec![
        a.clone(),
        CertificateFiles {
            certificate_chain: b.certificate_chain.clone(),
            private_key: missing.clone(),
        },
    ]);
    assert!(
        message.starts_with(&format!(
            "tls.certificates[1].private_key: cannot read '{}': ",
            missing.display()
        )),
        "{message}"
    );

    let message = server_error(vec![CertificateFiles {
        certificate_chain: a.certificate_chain.clone(),
        private_key: a.certificate_chain.clone(),
    }]);
    assert_eq!(
        message,
        format!(
            "tls.certificates[0].private_key: no private key found in '{}'",
            a.certificate_chain.display()
        )
    );

    let message = server_error(vec![CertificateFiles {
        certificate_chain: a.certificate_chain.clone(),
        private_key: b.private_key.clone(),
    }]);
    assert!(
        message.starts_with("tls.certificates[0].private_key: the key in '")
            && message.ends_with(&format!(
                "does not match the certificate in '{}'",
                a.certificate_chain.display()
            )),
        "{message}"
    );

    let message = server_error(vec![CertificateFiles {
        certificate_chain: a.private_key.clone(),
        private_key: a.private_key.clone(),
    }]);
    assert!(
        message.starts_with("tls.certificates[0].certificate_chain: no certificate found in '"),
        "{message}"
    );

    let encrypted = pki.write(
        "encrypted.pem",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let message = server_error(vec![CertificateFiles {
        certificate_chain: a.certificate_chain.clone(),
        private_key: encrypted,
    }]);
    assert!(message.contains("encrypted private key"), "{message}");
}

#[test]
fn upstream_configuration_errors_name_the_field_and_the_file() {
    let pki = TestPki::new();
    let missing = pki.dir.path().join("missing-ca.pem");
    let error = UpstreamTls::from_config(&gateway::UpstreamTls {
        ca_file: Some(missing.clone()),
        ..Default::default()
    })
    .err()
    .unwrap();
    assert_eq!(error.field, "upstream.tls.ca_file");
    assert!(
        error.to_string().starts_with(&format!(
            "upstream.tls.ca_file: cannot read '{}'",
            missing.display()
        )),
        "{error}"
    );
    let config_error = error.into_config_error(Path::new("gateway.yaml"));
    assert!(config_error
        .to_string()
        .starts_with("gateway.yaml: upstream.tls.ca_file: cannot read"));

    let client = pki.leaf("c", &["c.test"]);
    let error = UpstreamTls::from_config(&gateway::UpstreamTls {
        client_certificate: Some(client.certificate_chain.clone()),
        ..Default::default()
    })
    .err()
    .unwrap();
    assert_eq!(error.field, "upstream.tls.client_key");
}
