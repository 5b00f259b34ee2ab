//! PEM (RFC 7468) decoding of the first block in a file: its label and DER bytes. Our own
//! because the keys we read include PKCS#1 "RSA PUBLIC KEY", which rustls' PEM reader skips.
//! Encrypted PEM (RFC 1421 headers) is refused rather than misread.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use thiserror::Error;

/// One decoded PEM block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemBlock {
    /// The label between `BEGIN ` and the dashes, e.g. `PUBLIC KEY`.
    pub label: String,
    /// The base64-decoded contents.
    pub der: Vec<u8>,
}

/// Why a PEM file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PemError {
    #[error("no PEM block ('-----BEGIN ...-----') found")]
    NoBlock,
    #[error("PEM block '{0}' has no matching END line")]
    Unterminated(String),
    #[error("PEM block '{0}' is encrypted; give an unencrypted key")]
    Encrypted(String),
    #[error("PEM block '{0}' is not valid base64")]
    BadBase64(String),
}

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";
const DASHES: &str = "-----";

/// Decodes the first PEM block of `text` (text before it, such as OpenSSL's "Bag Attributes",
/// is ignored).
pub fn parse(text: &[u8]) -> Result<PemBlock, PemError> {
    let text = String::from_utf8_lossy(text);
    let mut lines = text.lines().map(str::trim);
    let label = loop {
        let line = lines.next().ok_or(PemError::NoBlock)?;
        if let Some(label) = line
            .strip_prefix(BEGIN)
            .and_then(|rest| rest.strip_suffix(DASHES))
        {
            break label.to_owned();
        }
    };
    let mut body = String::new();
    let mut ended = false;
    for line in lines.by_ref() {
        if let Some(end_label) = line
            .strip_prefix(END)
            .and_then(|rest| rest.strip_suffix(DASHES))
        {
            if end_label != label {
                return Err(PemError::Unterminated(label));
            }
            ended = true;
            break;
        }
        if line.contains(':') {
            // RFC 1421 headers, e.g. "Proc-Type: 4,ENCRYPTED" / "DEK-Info: ...".
            return Err(PemError::Encrypted(label));
        }
        body.push_str(line);
    }
    if !ended {
        return Err(PemError::Unterminated(label));
    }
    if label == "ENCRYPTED PRIVATE KEY" {
        return Err(PemError::Encrypted(label));
    }
    let der = STANDARD
        .decode(body.as_bytes())
        .map_err(|_| PemError::BadBase64(label.clone()))?;
    Ok(PemBlock { label, der })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_block_is_decoded_with_its_label() {
        let text =
            b"junk before\n-----BEGIN PUBLIC KEY-----\nAAEC\nAw==\n-----END PUBLIC KEY-----\n";
        let block = parse(text).unwrap();
        assert_eq!(block.label, "PUBLIC KEY");
        assert_eq!(block.der, vec![0, 1, 2, 3]);
    }

    #[test]
    fn crlf_line_endings_are_accepted() {
        let text = b"-----BEGIN RSA PUBLIC KEY-----\r\nAAEC\r\n-----END RSA PUBLIC KEY-----\r\n";
        assert_eq!(parse(text).unwrap().der, vec![0, 1, 2]);
    }

    #[test]
    fn text_without_a_block_is_rejected() {
        assert_eq!(parse(b"{\"keys\":[]}"), Err(PemError::NoBlock));
        assert_eq!(parse(b""), Err(PemError::NoBlock));
    }

    #[test]
    fn missing_or_mismatched_end_is_rejected() {
        assert!(matches!(
            parse(b"-----BEGIN CERTIFICATE-----\nAAEC\n"),
            Err(PemError::Unterminated(_))
        ));
        assert!(matches!(
            parse(b"-----BEGIN CERTIFICATE-----\nAAEC\n-----END PUBLIC KEY-----\n"),
            Err(PemError::Unterminated(_))
        ));
    }

    #[test]
    fn encrypted_keys_are_refused() {
        let legacy = b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAEC\n-----END RSA PRIVATE KEY-----\n";
        assert!(matches!(parse(legacy), Err(PemError::Encrypted(_))));
        let pkcs8 =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAEC\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(matches!(parse(pkcs8), Err(PemError::Encrypted(_))));
    }

    #[test]
    fn invalid_base64_is_rejected() {
        let text = b"-----BEGIN PUBLIC KEY-----\nA*EC\n-----END PUBLIC KEY-----\n";
        assert!(matches!(parse(text), Err(PemError::BadBase64(_))));
    }
}
