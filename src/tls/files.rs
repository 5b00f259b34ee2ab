//! Reading PEM files named in `gateway.yaml`: certificate chains, private keys (PKCS#8,
//! PKCS#1 RSA, SEC1 EC) and CA bundles. Every error names the field and the file.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::TlsConfigError;

/// The whole file, or an error naming it.
fn read(field: &str, path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path)
        .map_err(|e| TlsConfigError::new(field, format!("cannot read '{}': {e}", path.display())))
}

fn bad_pem(field: &str, path: &Path, e: pem::Error) -> TlsConfigError {
    TlsConfigError::new(field, format!("'{}' is not valid PEM: {e}", path.display()))
}

/// Every `CERTIFICATE` block of the file, in order; at least one.
pub(crate) fn certificates(
    field: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let bytes = read(field, path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(field, path, e))?;
    if chain.is_empty() {
        return Err(TlsConfigError::new(
            field,
            format!("no certificate found in '{}'", path.display()),
        ));
    }
    Ok(chain)
}

/// The first private key of the file, whatever its PEM label (`PRIVATE KEY`,
/// `RSA PRIVATE KEY`, `EC PRIVATE KEY`).
pub(crate) fn private_key(
    field: &str,
    path: &Path,
) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let bytes = read(field, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound if contains(&bytes, b"ENCRYPTED PRIVATE KEY") => {
            TlsConfigError::new(
                field,
                format!(
                    "'{}' holds an encrypted private key; decrypt it first (openssl pkcs8 -in ... -out ...)",
                    path.display()
                ),
            )
        }
        pem::Error::NoItemsFound => TlsConfigError::new(
            field,
            format!("no private key found in '{}'", path.display()),
        ),
        e => bad_pem(field, path, e),
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A certificate chain with its private key, checked to belong together.
pub(crate) fn certified_key(
    provider: &CryptoProvider,
    chain_field: &str,
    chain_path: &Path,
    key_field: &str,
    key_path: &Path,
) -> Result<Arc<CertifiedKey>, TlsConfigError> {
    let chain = certificates(chain_field, chain_path)?;
    let key_der = private_key(key_field, key_path)?;
    let key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| {
            TlsConfigError::new(
                key_field,
                format!(
                    "unsupported or invalid private key in '{}': {e}",
                    key_path.display()
                ),
            )
        })?;
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        // `Unknown`: the key cannot tell its public half; nothing to compare, rustls would
        // fail the first handshake instead. The ring keys always can.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsConfigError::new(
            key_field,
            format!(
                "the key in '{}' does not match the certificate in '{}'",
                key_path.display(),
                chain_path.display()
            ),
        )),
        Err(e) => Err(TlsConfigError::new(
            chain_field,
            format!(
                "cannot use the certificate in '{}': {e}",
                chain_path.display()
            ),
        )),
    }
}
