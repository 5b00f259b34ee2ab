//! The HTTPS listeners' side: the rustls server configuration built once from `tls:` in
//! `gateway.yaml` (or a self-signed certificate generated at start), shared by every shard,
//! and `accept`, the time-bounded handshake of one client connection.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::{AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::ServerSessionMemoryCache;
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};

use super::client_auth::{fingerprint, ClientAuth};
use super::handshake::{self, FirstBytes};
use super::sni::{certificate_dns_names, NamedCertificate, SniCertificates};
use super::stream::{HandshakeInfo, ServerTlsStream, TlsStream};
use super::{
    files, provider, HandshakeError, TlsConfigError, ALPN_H2, ALPN_HTTP11, PROTOCOL_VERSIONS,
};
use crate::compile::config::gateway;
use crate::error::{GatewayError, RenderOptions};

/// TLS 1.2 sessions remembered for session-ID resumption (clients without ticket support),
/// shared by all shards. A few hundred bytes each.
const SESSION_CACHE_ENTRIES: usize = 4096;

/// Names of the certificate generated when none is configured.
const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// What the HTTPS listeners present and accept. Cheap to clone (one `Arc`); build it once and
/// give every shard a clone, so that session resumption works whichever shard the kernel hands
/// the next connection to.
#[derive(Clone, Debug)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    self_signed: Option<Arc<SelfSignedCertificate>>,
    answer_plain_http: bool,
    /// Judges client certificates after the handshake; `None`: none are asked for.
    client_auth: Option<Arc<ClientAuth>>,
    /// SHA-256 of the APIs' own client certificates this was built with (a reload that
    /// changes them needs a new configuration).
    pinned: Arc<[[u8; 32]]>,
}

/// The certificate generated at start when none is configured.
#[derive(Debug)]
pub struct SelfSignedCertificate {
    /// SHA-256 of the DER certificate, upper-case hex pairs joined by `:` (as
    /// `openssl x509 -fingerprint -sha256` prints it), for the start-up log.
    pub fingerprint_sha256: String,
    pub der: CertificateDer<'static>,
}

impl ServerTls {
    /// Loads every configured certificate chain and key (the first pair is the default), or
    /// generates a self-signed certificate when none is configured. TLS 1.2 and 1.3, ALPN
    /// `http/1.1`, session resumption by tickets and by session ID.
    pub fn from_config(cfg: &gateway::ServerTls) -> Result<ServerTls, TlsConfigError> {
        Self::with_client_certificates(cfg, &[])
    }

    /// [`ServerTls::from_config`], also trusting `pinned` (DER) as client certificates: the
    /// certificates of APIs that bring their own (apictl `Client-certificates/`). Clients
    /// are asked for a certificate when `tls.client_ca` is set or `pinned` is not empty.
    pub fn with_client_certificates(
        cfg: &gateway::ServerTls,
        pinned: &[Vec<u8>],
    ) -> Result<ServerTls, TlsConfigError> {
        let provider = provider();
        let ca = match &cfg.client_ca {
            Some(path) => files::certificates("tls.client_ca", path)?,
            None => Vec::new(),
        };
        let client_auth = ClientAuth::new(&provider, ca, pinned)?.map(Arc::new);
        let (certificates, self_signed) = if cfg.certificates.is_empty() {
            let (certified, generated) = generate_self_signed(&provider)?;
            (vec![certified], Some(Arc::new(generated)))
        } else {
            let loaded = cfg
                .certificates
                .iter()
                .enumerate()
                .map(|(i, pair)| load_pair(&provider, i, pair))
                .collect::<Result<Vec<_>, _>>()?;
            (loaded, None)
        };
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(PROTOCOL_VERSIONS)
            .map_err(|e| TlsConfigError::new("tls", e.to_string()))?;
        let builder = match &client_auth {
            Some(auth) => builder.with_client_cert_verifier(Arc::clone(auth) as _),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(SniCertificates::new(certificates)));
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        config.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| TlsConfigError::new("tls", format!("cannot create a ticketer: {e}")))?;
        Ok(ServerTls {
            config: Arc::new(config),
            self_signed,
            answer_plain_http: true,
            client_auth,
            pinned: pinned.iter().map(|der| fingerprint(der)).collect(),
        })
    }

    /// Offers ALPN `h2` before `http/1.1` (`http2.enabled`), or `http/1.1` alone.
    pub fn offer_h2(mut self, offer: bool) -> Self {
        let mut config = (*self.config).clone();
        config.alpn_protocols = if offer {
            vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()]
        } else {
            vec![ALPN_HTTP11.to_vec()]
        };
        self.config = Arc::new(config);
        self
    }

    /// Whether plain HTTP sent to the TLS port is answered with a `400` saying so before the
    /// connection is closed (the default), or just closed.
    pub fn with_plain_http_answer(mut self, answer: bool) -> Self {
        self.answer_plain_http = answer;
        self
    }

    /// Whether clients are asked for a certificate.
    pub fn asks_for_client_certificates(&self) -> bool {
        self.client_auth.is_some()
    }

    /// The APIs' own client certificates this was built with (SHA-256 of each).
    pub fn pinned_client_certificates(&self) -> &[[u8; 32]] {
        &self.pinned
    }

    /// The certificate generated at start, when none was configured.
    pub fn self_signed(&self) -> Option<&SelfSignedCertificate> {
        self.self_signed.as_deref()
    }

    /// The rustls configuration (for tests and for callers that run their own acceptor).
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// Runs the TLS handshake of an accepted connection within `timeout`. Plain HTTP is
    /// detected from the first bytes and reported as `PlainHttp` (after a `400` answer
    /// unless turned off); the connection is closed on every error.
    pub async fn accept(
        &self,
        mut tcp: TcpStream,
        timeout: Duration,
    ) -> Result<ServerTlsStream, HandshakeError> {
        let fd = tcp.as_raw_fd();
        let handshake = async {
            let mut conn = ServerConnection::new(Arc::clone(&self.config))?;
            match handshake::complete(&mut tcp, &mut conn, FirstBytes::DetectPlainHttp).await {
                Ok(()) => Ok(conn),
                Err(HandshakeError::PlainHttp) => {
                    if self.answer_plain_http {
                        answer_plain_http(&mut tcp).await;
                    }
                    Err(HandshakeError::PlainHttp)
                }
                Err(e) => Err(e),
            }
        };
        let conn = match monoio::time::timeout(timeout, handshake).await {
            Ok(result) => result?,
            Err(_) => return Err(HandshakeError::TimedOut),
        };
        let mut info = HandshakeInfo::of(&conn);
        // Once per connection (resumed ones included: their certificate comes from the
        // session), so that requests only compare fingerprints.
        info.client_certificate = self.client_auth.as_ref().and_then(|auth| {
            conn.peer_certificates()
                .and_then(|chain| auth.check(chain, UnixTime::now()))
        });
        Ok(TlsStream::new(
            monoio_rustls::ServerTlsStream::new(tcp, conn),
            fd,
            info,
        ))
    }
}

/// Best effort: `400` in the gateway's JSON error shape, then the write side is shut.
async fn answer_plain_http(tcp: &mut TcpStream) {
    let mut out = Vec::with_capacity(256);
    GatewayError::BadRequest("This port speaks HTTPS.").render(
        &mut out,
        &RenderOptions {
            close: true,
            http10_keep_alive: false,
            head_request: false,
            extra_headers: b"",
        },
    );
    let (result, _) = tcp.write_all(out).await;
    if result.is_ok() {
        let _ = tcp.shutdown().await;
    }
}

/// `tls.certificates[i]`: its chain, key, and the names SNI selects it by.
fn load_pair(
    provider: &CryptoProvider,
    index: usize,
    pair: &gateway::CertificateFiles,
) -> Result<NamedCertificate, TlsConfigError> {
    let chain_field = format!("tls.certificates[{index}].certificate_chain");
    let key_field = format!("tls.certificates[{index}].private_key");
    let certified = files::certified_key(
        provider,
        &chain_field,
        &pair.certificate_chain,
        &key_field,
        &pair.private_key,
    )?;
    let names = certificate_dns_names(&certified.cert[0]).map_err(|e| {
        TlsConfigError::new(
            &chain_field,
            format!("'{}': {e}", pair.certificate_chain.display()),
        )
    })?;
    Ok(NamedCertificate {
        names,
        key: certified,
    })
}

/// A fresh P-256 key and a self-signed certificate for `localhost`, `127.0.0.1` and `::1`.
fn generate_self_signed(
    provider: &CryptoProvider,
) -> Result<(NamedCertificate, SelfSignedCertificate), TlsConfigError> {
    let fail = |e: &dyn std::fmt::Display| {
        TlsConfigError::new(
            "tls.certificates",
            format!("none configured and a self-signed one cannot be generated: {e}"),
        )
    };
    let generated =
        rcgen::generate_simple_self_signed(SELF_SIGNED_NAMES.map(String::from).to_vec())
            .map_err(|e| fail(&e))?;
    let der = generated.cert.der().clone();
    let key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(
            generated.key_pair.serialize_der().into(),
        ))
        .map_err(|e| fail(&e))?;
    let named = NamedCertificate {
        names: vec!["localhost".to_owned()],
        key: Arc::new(CertifiedKey::new(vec![der.clone()], key)),
    };
    let fingerprint_sha256 = fingerprint_sha256(&der);
    Ok((
        named,
        SelfSignedCertificate {
            fingerprint_sha256,
            der,
        },
    ))
}

/// `AB:CD:...`: SHA-256 of `der` as `openssl x509 -fingerprint -sha256` prints it.
pub(crate) fn fingerprint_sha256(der: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = String::with_capacity(digest.as_ref().len() * 3);
    for (i, byte) in digest.as_ref().iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}
