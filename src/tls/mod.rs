//! TLS on both sides of the gateway: the HTTPS listeners' certificates (chosen by SNI, or a
//! self-signed one generated at start) and the client configuration for `https://`
//! upstreams, built once from `gateway.yaml`; time-bounded handshakes that tell plain HTTP on
//! the TLS port apart; and the streams the data path reads and writes. ring is the only
//! crypto provider. Reads files only while building a configuration; never blocks a shard.

mod client;
mod client_auth;
mod error;
mod files;
mod handshake;
mod server;
mod sni;
mod stream;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use client::UpstreamTls;
pub(crate) use client_auth::fingerprint as certificate_sha256;
pub use error::{HandshakeError, TlsConfigError};
pub use server::ServerTls;
pub use stream::{ClientStream, ServerTlsStream, TcpOrTls, UpstreamStream};

/// HTTP/1.1, offered and accepted everywhere.
pub(crate) const ALPN_HTTP11: &[u8] = b"http/1.1";
/// HTTP/2, offered by HTTPS listeners (`http2.enabled`) and asked of HTTP/2 upstreams.
pub(crate) const ALPN_H2: &[u8] = b"h2";

/// TLS 1.3 preferred, TLS 1.2 accepted.
pub(crate) const PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The ring provider, named explicitly (no process-wide default is installed or relied on).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
