//! The two ways TLS can fail: a configuration that cannot be turned into a rustls config
//! (start-up or reload), and a handshake that did not complete (one connection).

use std::io;
use std::path::Path;

use thiserror::Error;

use crate::compile::config::{ConfigError, FieldPath};

/// A TLS setting that cannot be used: which `gateway.yaml` field, and what is wrong with the
/// file it names, e.g. `tls.certificates[1].private_key: cannot read 'x.pem': No such file`.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{field}: {message}")]
pub struct TlsConfigError {
    /// Dotted field path in `gateway.yaml`.
    pub field: String,
    pub message: String,
}

impl TlsConfigError {
    pub(crate) fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// The same problem as a configuration error of `config_file` (for `ConfigErrors`).
    pub fn into_config_error(self, config_file: &Path) -> ConfigError {
        ConfigError::new(config_file, &FieldPath::parse(&self.field), self.message)
    }
}

/// Why a TLS handshake did not complete. The caller counts these per kind; none of them is
/// worth more than a debug log line per connection.
#[derive(Debug, Error)]
pub enum HandshakeError {
    /// The client sent plain HTTP to the TLS port (its first byte is an ASCII letter, which no
    /// TLS record starts with).
    #[error("plain HTTP sent to the TLS port")]
    PlainHttp,
    /// The handshake did not finish within its time bound.
    #[error("TLS handshake timed out")]
    TimedOut,
    /// The peer closed or reset the connection before the handshake finished (load balancer
    /// TCP probes, port scanners, clients that gave up).
    #[error("connection closed during the TLS handshake")]
    Closed,
    /// The upstream host cannot be used as a TLS server name.
    #[error("'{0}' is not a valid TLS server name")]
    InvalidServerName(String),
    /// The TLS protocol failed: untrusted or mismatching certificate, no common version,
    /// cipher suite or protocol, a client certificate missing, garbage bytes, ...
    #[error("TLS handshake failed: {0}")]
    Tls(#[from] rustls::Error),
    /// The socket failed otherwise.
    #[error("I/O error during the TLS handshake: {0}")]
    Io(#[from] io::Error),
}

impl HandshakeError {
    /// A short stable label for metrics (`plain_http`, `timeout`, `closed`, `tls`, `io`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            HandshakeError::PlainHttp => "plain_http",
            HandshakeError::TimedOut => "timeout",
            HandshakeError::Closed => "closed",
            HandshakeError::InvalidServerName(_) | HandshakeError::Tls(_) => "tls",
            HandshakeError::Io(_) => "io",
        }
    }
}
