//! The `https://` upstream side: the rustls client configuration built once from
//! `upstream.tls` in `gateway.yaml` (trust roots, optional client certificate, verification
//! switched off only when configured), shared by every shard, and `connect`, the handshake
//! of one upstream connection.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use monoio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};

use super::handshake::{self, FirstBytes};
use super::stream::{ClientTlsStream, HandshakeInfo, TlsStream};
use super::{
    files, provider, HandshakeError, TlsConfigError, ALPN_H2, ALPN_HTTP11, PROTOCOL_VERSIONS,
};
use crate::compile::config::gateway;

/// Upstream servers whose sessions are remembered for resumption (TLS 1.3 tickets, TLS 1.2
/// tickets or session IDs), shared by all shards.
const RESUMPTION_SERVERS: usize = 1024;

/// How the gateway talks TLS to upstreams. Cheap to clone (one `Arc`); build it once and give
/// every shard a clone, so that a session one shard made can be resumed by another.
#[derive(Clone, Debug)]
pub struct UpstreamTls {
    config: Arc<ClientConfig>,
    /// The same, asking for ALPN `h2` only: HTTP/2 upstreams (`x-wso2-http2-backend-enabled`).
    h2_config: Arc<ClientConfig>,
    verifies_certificates: bool,
}

impl UpstreamTls {
    /// Trust roots are the webpki (Mozilla) roots, or only the CAs of `ca_file`;
    /// `insecure_skip_verify` replaces verification by `NoVerification` (and `ca_file` is
    /// then unused). TLS 1.2 and 1.3, ALPN `http/1.1`, session resumption on.
    pub fn from_config(cfg: &gateway::UpstreamTls) -> Result<UpstreamTls, TlsConfigError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(PROTOCOL_VERSIONS)
            .map_err(|e| TlsConfigError::new("upstream.tls", e.to_string()))?;
        let builder = if cfg.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification::new(&provider)))
        } else {
            builder.with_root_certificates(trust_roots(cfg)?)
        };
        let mut config = match (&cfg.client_certificate, &cfg.client_key) {
            (Some(chain), Some(key)) => {
                let certified = files::certified_key(
                    &provider,
                    "upstream.tls.client_certificate",
                    chain,
                    "upstream.tls.client_key",
                    key,
                )?;
                builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err(TlsConfigError::new(
                    "upstream.tls.client_key",
                    "required when client_certificate is set",
                ))
            }
            (None, Some(_)) => {
                return Err(TlsConfigError::new(
                    "upstream.tls.client_certificate",
                    "required when client_key is set",
                ))
            }
        };
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        config.resumption = Resumption::in_memory_sessions(RESUMPTION_SERVERS);
        let mut h2_config = config.clone();
        h2_config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(UpstreamTls {
            h2_config: Arc::new(h2_config),
            config: Arc::new(config),
            verifies_certificates: !cfg.insecure_skip_verify,
        })
    }

    /// `false` when `insecure_skip_verify` is set (worth a warning at start).
    pub fn verifies_certificates(&self) -> bool {
        self.verifies_certificates
    }

    /// The rustls configuration (for tests and for callers that run their own connector).
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// Runs the TLS handshake on a connected socket. `server_name` is the endpoint's host: a
    /// DNS name is sent as SNI and verified against the certificate's DNS names; an IP
    /// literal (`10.0.0.1`, `::1` or `[::1]`) sends no SNI and is verified against its IP
    /// addresses. Not time-bounded: the caller's deadline for the attempt covers it.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        server_name: &str,
    ) -> Result<ClientTlsStream, HandshakeError> {
        self.connect_with(&self.config, tcp, server_name).await
    }

    /// [`UpstreamTls::connect`] asking for ALPN `h2`; check `info().alpn_h2` on the result
    /// (a server that does not choose it speaks HTTP/1.1 only).
    pub async fn connect_h2(
        &self,
        tcp: TcpStream,
        server_name: &str,
    ) -> Result<ClientTlsStream, HandshakeError> {
        self.connect_with(&self.h2_config, tcp, server_name).await
    }

    async fn connect_with(
        &self,
        config: &Arc<ClientConfig>,
        mut tcp: TcpStream,
        server_name: &str,
    ) -> Result<ClientTlsStream, HandshakeError> {
        let name = tls_server_name(server_name)?;
        let fd = tcp.as_raw_fd();
        let mut conn = ClientConnection::new(Arc::clone(config), name)?;
        handshake::complete(&mut tcp, &mut conn, FirstBytes::Tls).await?;
        let info = HandshakeInfo::of(&conn);
        Ok(TlsStream::new(
            monoio_rustls::ClientTlsStream::new(tcp, conn),
            fd,
            info,
        ))
    }
}

/// The TLS name of a URL host: IP literals (bracketed or not) first, else a DNS name.
fn tls_server_name(host: &str) -> Result<ServerName<'static>, HandshakeError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(ServerName::from(ip));
    }
    ServerName::try_from(bare.to_owned())
        .map_err(|_| HandshakeError::InvalidServerName(host.to_owned()))
}

/// The CAs of `ca_file`, or the webpki roots.
fn trust_roots(cfg: &gateway::UpstreamTls) -> Result<RootCertStore, TlsConfigError> {
    let Some(path) = &cfg.ca_file else {
        return Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let mut roots = RootCertStore::empty();
    for (i, cert) in files::certificates("upstream.tls.ca_file", path)?
        .into_iter()
        .enumerate()
    {
        roots.add(cert).map_err(|e| {
            TlsConfigError::new(
                "upstream.tls.ca_file",
                format!(
                    "certificate {} of '{}' is not a usable CA: {e}",
                    i + 1,
                    path.display()
                ),
            )
        })?;
    }
    Ok(roots)
}

/// Accepts any server certificate: chain, name and validity dates are not checked. For test
/// backends only (`upstream.tls.insecure_skip_verify`), never a default. The handshake
/// signatures are still verified with the provider's algorithms, so the server must hold
/// the private key of the certificate it presents.
#[derive(Debug)]
struct NoVerification {
    algorithms: WebPkiSupportedAlgorithms,
}

impl NoVerification {
    fn new(provider: &CryptoProvider) -> Self {
        Self {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_become_ip_server_names_and_hosts_dns_names() {
        for host in ["127.0.0.1", "::1", "[::1]"] {
            assert!(
                matches!(tls_server_name(host), Ok(ServerName::IpAddress(_))),
                "{host}"
            );
        }
        assert!(matches!(
            tls_server_name("api.example.com"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            tls_server_name("bad host"),
            Err(HandshakeError::InvalidServerName(_))
        ));
    }
}
