//! Mutual TLS between clients and the gateway (BEHAVIOUR.md 5), with certificates generated
//! here and real handshakes on loopback: `x-wso2-mutual-ssl: mandatory | optional`,
//! `tls.client_ca`, an apictl project's `Client-certificates/`, plain HTTP to a mandatory API.

use crate::support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use shardgate::auth::{mint_token, MintOptions};
use shardgate::cli::Driver;
use shardgate::compile::snapshot::{LoadOptions, Snapshot};
use shardgate::control::server::Server;
use support::Backend;

const ISSUER: &str = "https://localhost/dev-only";
const DEV_CERT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/dev-only/jwt-dev-only.cert.pem"
);

/// A client certificate with its key.
struct ClientIdentity {
    pem: String,
    der: CertificateDer<'static>,
    key: Vec<u8>,
}

struct Ca {
    pem: String,
    key: KeyPair,
    cert: rcgen::Certificate,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        key,
        cert,
    }
}

fn client_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params
}

fn issued_by(ca: &Ca, name: &str) -> ClientIdentity {
    let key = KeyPair::generate().unwrap();
    let cert = client_params(name)
        .signed_by(&key, &ca.cert, &ca.key)
        .unwrap();
    ClientIdentity {
        pem: cert.pem(),
        der: cert.der().clone(),
        key: key.serialize_der(),
    }
}

fn self_signed(name: &str) -> ClientIdentity {
    let key = KeyPair::generate().unwrap();
    let cert = client_params(name).self_signed(&key).unwrap();
    ClientIdentity {
        pem: cert.pem(),
        der: cert.der().clone(),
        key: key.serialize_der(),
    }
}

fn token() -> String {
    let key = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-only/jwt-dev-only.key.pem"
    ))
    .unwrap();
    mint_token(&key, &MintOptions::new(ISSUER)).unwrap()
}

/// A gateway on 127.0.0.1 (HTTP and HTTPS) over the files written in `dir`.
struct MtlsGateway {
    server: Option<Server>,
    http: SocketAddr,
    https: SocketAddr,
    /// The generated server certificate, for the clients' trust store.
    server_cert: CertificateDer<'static>,
    _dir: tempfile::TempDir,
}

impl MtlsGateway {
    /// `files`: (relative path, content) under a fresh directory whose `apis/` holds the APIs;
    /// `gateway_yaml` is appended to the listeners, the dev issuer and `apis: [apis/*]`.
    fn start(files: &[(&str, &str)], gateway_yaml: &str) -> MtlsGateway {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let config = format!(
            "listeners:\n  http: [\"127.0.0.1:0\"]\n  https: [\"127.0.0.1:0\"]\nadmin: null\nworkers: 1\napis: [\"apis/*\"]\njwt:\n  issuers:\n    - issuer: {ISSUER}\n      certificate: {DEV_CERT}\n{gateway_yaml}"
        );
        let config_path = dir.path().join("gateway.yaml");
        std::fs::write(&config_path, config).unwrap();
        let snapshot = Snapshot::load(&LoadOptions {
            config: Some(config_path),
            apis: vec![],
            resolve_hosts: true,
        })
        .unwrap_or_else(|e| panic!("test configuration is invalid:\n{e}"));
        let server_cert = snapshot
            .tls
            .server
            .self_signed()
            .expect("a generated server certificate")
            .der
            .clone();
        let server = Server::start(snapshot, Driver::Auto).expect("start gateway");
        MtlsGateway {
            http: server.http_addrs[0],
            https: server.https_addrs[0],
            server: Some(server),
            server_cert,
            _dir: dir,
        }
    }

    /// One HTTPS GET with `Connection: close`, presenting `identity` when given; returns the
    /// status and the body.
    fn get(
        &self,
        path: &str,
        identity: Option<&ClientIdentity>,
        headers: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.server_cert.clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let config = match identity {
            Some(identity) => builder
                .with_client_auth_cert(
                    vec![identity.der.clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key.clone())),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        let conn = rustls::ClientConnection::new(
            Arc::new(config),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let tcp = TcpStream::connect(self.https).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        tls.write_all(request.as_bytes()).unwrap();
        let mut raw = Vec::new();
        let _ = tls.read_to_end(&mut raw);
        parse(&raw)
    }

    /// The same request over plain HTTP.
    fn get_plain(&self, path: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let mut client = support::Client::connect(self.http);
        let response = client.request("GET", path, headers, b"");
        (
            response.status,
            serde_json::from_slice(&response.body).unwrap_or_default(),
        )
    }
}

impl Drop for MtlsGateway {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

fn parse(raw: &[u8]) -> (u16, serde_json::Value) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or_default())
}

fn api(base: &str, backend: &Backend, extra: &str) -> String {
    format!(
        "openapi: 3.0.1\ninfo: {{title: mtls, version: '1'}}\nx-wso2-basePath: {base}\nx-wso2-production-endpoints: {{urls: ['{}']}}\n{extra}paths: {{/pet/findByStatus: {{get: {{}}}}}}\n",
        backend.url("")
    )
}

fn client_ca_yaml(dir: &Path, ca: &Ca) -> String {
    let path = dir.join("client-ca.pem");
    std::fs::write(&path, &ca.pem).unwrap();
    format!("tls:\n  client_ca: {}\n", path.display())
}

#[test]
fn mandatory_mutual_tls_refuses_requests_without_a_verified_certificate() {
    let backend = Backend::echo("b");
    let ca = ca("client CA");
    let valid = issued_by(&ca, "client");
    let stranger = issued_by(&self::ca("another CA"), "stranger");
    let ca_dir = tempfile::tempdir().unwrap();
    let gateway = MtlsGateway::start(
        &[(
            "apis/mtls.yaml",
            &api("/mtls", &backend, "x-wso2-mutual-ssl: mandatory\n"),
        )],
        &client_ca_yaml(ca_dir.path(), &ca),
    );
    let bearer = format!("Bearer {}", token());
    let auth = [("Authorization", bearer.as_str())];
    let path = "/mtls/pet/findByStatus";

    let (status, body) = gateway.get(path, None, &auth);
    assert_eq!(status, 401);
    assert_eq!(body["code"], "900901");
    assert_eq!(body["error_message"], "Invalid Credentials");

    let (status, body) = gateway.get(path, Some(&valid), &auth);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["backend"], "b");

    // Application security stays mandatory: the certificate alone is not enough.
    assert_eq!(gateway.get(path, Some(&valid), &[]).0, 401);
    // An untrusted certificate does not fail the handshake; the request is refused.
    assert_eq!(gateway.get(path, Some(&stranger), &auth).0, 401);
    // Plain HTTP carries no certificate at all.
    let (status, body) = gateway.get_plain(path, &auth);
    assert_eq!(status, 401);
    assert_eq!(body["code"], "900901");
    assert_eq!(backend.request_count(), 1);
}

#[test]
fn optional_mutual_tls_leaves_the_decision_to_application_security() {
    let backend = Backend::echo("b");
    let ca = ca("client CA");
    let valid = issued_by(&ca, "client");
    let stranger = self_signed("stranger");
    let ca_dir = tempfile::tempdir().unwrap();
    let gateway = MtlsGateway::start(
        &[(
            "apis/mtls.yaml",
            &api("/opt", &backend, "x-wso2-mutual-ssl: optional\n"),
        )],
        &client_ca_yaml(ca_dir.path(), &ca),
    );
    let bearer = format!("Bearer {}", token());
    let auth = [("Authorization", bearer.as_str())];
    let path = "/opt/pet/findByStatus";
    assert_eq!(gateway.get(path, None, &auth).0, 200);
    assert_eq!(gateway.get(path, Some(&valid), &auth).0, 200);
    assert_eq!(gateway.get(path, Some(&stranger), &auth).0, 200);
    assert_eq!(gateway.get(path, Some(&valid), &[]).0, 401);
    assert_eq!(gateway.get_plain(path, &auth).0, 200);
}

#[test]
fn mandatory_mutual_tls_with_optional_application_security_needs_only_the_certificate() {
    let backend = Backend::echo("b");
    let ca = ca("client CA");
    let valid = issued_by(&ca, "client");
    let ca_dir = tempfile::tempdir().unwrap();
    let extra = "x-wso2-mutual-ssl: mandatory\nx-wso2-application-security:\n  security-types: [oauth2]\n  optional: true\n";
    let gateway = MtlsGateway::start(
        &[("apis/mtls.yaml", &api("/only", &backend, extra))],
        &client_ca_yaml(ca_dir.path(), &ca),
    );
    let path = "/only/pet/findByStatus";
    assert_eq!(gateway.get(path, Some(&valid), &[]).0, 200);
    let bearer = format!("Bearer {}", token());
    assert_eq!(
        gateway.get(path, None, &[("Authorization", &bearer)]).0,
        401
    );
}

/// An apictl project whose api.yaml makes mutual TLS mandatory (application security
/// optional, as `oauth_basic_auth_api_key_mandatory` is absent) and brings its own client
/// certificate in `Client-certificates/`.
#[test]
fn project_client_certificates_are_matched_exactly_and_only_for_their_api() {
    let backend = Backend::echo("b");
    let pinned = self_signed("pinned client");
    let ca = ca("client CA");
    let ca_signed = issued_by(&ca, "ca client");
    let ca_dir = tempfile::tempdir().unwrap();
    let api_yaml = "type: api\nversion: v4.0.0\ndata:\n  name: MutualSSLMandatory\n  context: /project\n  version: 1.0.5\n  securityScheme:\n    - oauth2\n    - mutualssl\n    - mutualssl_mandatory\n";
    let definition = format!(
        "swagger: '2.0'\ninfo: {{title: MutualSSLMandatory, version: 1.0.5}}\nx-wso2-production-endpoints: {{urls: ['{}']}}\npaths: {{/pet/findByStatus: {{get: {{}}}}}}\n",
        backend.url("")
    );
    let gateway = MtlsGateway::start(
        &[
            ("apis/project/api.yaml", api_yaml),
            ("apis/project/Definitions/swagger.yaml", &definition),
            (
                "apis/project/Client-certificates/client_certificates.yaml",
                "type: client_certificates\nversion: v4.0.0\ndata: []\n",
            ),
            ("apis/project/Client-certificates/pinned.crt", &pinned.pem),
            (
                "apis/ca.yaml",
                &api("/ca", &backend, "x-wso2-mutual-ssl: mandatory\nx-wso2-application-security: {security-types: [oauth2], optional: true}\n"),
            ),
        ],
        &client_ca_yaml(ca_dir.path(), &ca),
    );
    let project = "/project/1.0.5/pet/findByStatus";
    let (status, body) = gateway.get(project, Some(&pinned), &[]);
    assert_eq!(status, 200, "{body}");
    // Chaining to tls.client_ca is not enough for an API with its own certificates...
    assert_eq!(gateway.get(project, Some(&ca_signed), &[]).0, 401);
    assert_eq!(gateway.get(project, None, &[]).0, 401);
    // ...and an API's own certificate is not accepted by another API.
    assert_eq!(
        gateway.get("/ca/pet/findByStatus", Some(&pinned), &[]).0,
        401
    );
    assert_eq!(
        gateway.get("/ca/pet/findByStatus", Some(&ca_signed), &[]).0,
        200
    );
}

#[test]
fn http2_streams_see_the_certificate_of_their_connection() {
    use base64::Engine;
    let backend = Backend::echo("b");
    let ca = ca("client CA");
    let valid = issued_by(&ca, "client");
    let dir = tempfile::tempdir().unwrap();
    let gateway = MtlsGateway::start(
        &[(
            "apis/mtls.yaml",
            &api("/mtls", &backend, "x-wso2-mutual-ssl: mandatory\n"),
        )],
        &client_ca_yaml(dir.path(), &ca),
    );
    let cert = dir.path().join("client.pem");
    let key = dir.path().join("client.key");
    std::fs::write(&cert, &valid.pem).unwrap();
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(&valid.key);
    std::fs::write(
        &key,
        format!("-----BEGIN PRIVATE KEY-----\n{key_b64}\n-----END PRIVATE KEY-----\n"),
    )
    .unwrap();
    let url = format!(
        "https://127.0.0.1:{}/mtls/pet/findByStatus",
        gateway.https.port()
    );
    let bearer = format!("Authorization: Bearer {}", token());
    let curl = |with_cert: bool| {
        let mut command = std::process::Command::new("curl");
        command.args([
            "-sSk",
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ]);
        command.args(["-H", &bearer]);
        if with_cert {
            command.arg("--cert").arg(&cert).arg("--key").arg(&key);
        }
        let out = command
            .arg(&url)
            .output()
            .expect("curl (installed by .ci/run)");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(curl(true), "2 200");
    assert_eq!(curl(false), "2 401");
    assert_eq!(backend.request_count(), 1);
}
