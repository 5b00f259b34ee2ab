//! Choosing the server certificate from the client's SNI name: each configured certificate
//! answers for the DNS names of its subjectAltName extension (its subject CN only when it has
//! no such extension); exact names beat `*.` wildcards; no SNI or no match gets the first
//! certificate. Reads certificates with the DER reader JWT keys use; never allocates per
//! handshake.

use std::sync::Arc;

use crate::auth::der::{
    DerError, DerReader, TAG_CONTEXT_0, TAG_INTEGER, TAG_OCTET_STRING, TAG_OID, TAG_SEQUENCE,
};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The configured certificates in order; the first is the default.
#[derive(Debug)]
pub(crate) struct SniCertificates {
    entries: Vec<NamedCertificate>,
}

/// A certificate chain with its key and the names SNI selects it by.
#[derive(Debug)]
pub(crate) struct NamedCertificate {
    /// DNS names the certificate is valid for, as written in it (`*.example.com` included).
    pub(crate) names: Vec<String>,
    pub(crate) key: Arc<CertifiedKey>,
}

impl SniCertificates {
    /// `certificates` must not be empty: the first one is the default.
    pub(crate) fn new(certificates: Vec<NamedCertificate>) -> Self {
        debug_assert!(!certificates.is_empty());
        Self {
            entries: certificates,
        }
    }

    /// Index of the certificate for `server_name`: the first with that exact name, else the
    /// first with a wildcard covering it, else 0.
    pub(crate) fn select(&self, server_name: Option<&str>) -> usize {
        let Some(name) = server_name else {
            return 0;
        };
        let exact = self.entries.iter().position(|e| {
            e.names
                .iter()
                .any(|n| !n.starts_with("*.") && n.eq_ignore_ascii_case(name))
        });
        exact
            .or_else(|| {
                self.entries
                    .iter()
                    .position(|e| e.names.iter().any(|n| wildcard_matches(n, name)))
            })
            .unwrap_or(0)
    }
}

impl ResolvesServerCert for SniCertificates {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let index = self.select(client_hello.server_name());
        self.entries.get(index).map(|e| Arc::clone(&e.key))
    }
}

/// Whether `pattern` is `*.<suffix>` and `name` is one label followed by `.<suffix>`
/// (RFC 6125 6.4.3: the wildcard covers exactly one whole left-most label).
fn wildcard_matches(pattern: &str, name: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix('*') else {
        return false;
    };
    // `suffix` is `.example.com`; the name must be longer by a non-empty label without dots.
    if !suffix.starts_with('.') || name.len() <= suffix.len() {
        return false;
    }
    let (label, rest) = name.split_at(name.len() - suffix.len());
    rest.eq_ignore_ascii_case(suffix) && !label.contains('.')
}

/// Why a certificate's names could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MalformedCertificate;

impl From<DerError> for MalformedCertificate {
    fn from(_: DerError) -> Self {
        MalformedCertificate
    }
}

impl std::fmt::Display for MalformedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("malformed X.509 certificate (DER)")
    }
}

/// The DNS names a certificate is valid for: the dNSName entries of its subjectAltName
/// extension when it has one, else its subject common names.
pub(crate) fn certificate_dns_names(cert: &[u8]) -> Result<Vec<String>, MalformedCertificate> {
    let mut outer = DerReader::new(cert);
    let certificate = outer.read(TAG_SEQUENCE)?;
    let mut certificate = DerReader::new(certificate);
    let mut tbs = DerReader::new(certificate.read(TAG_SEQUENCE)?);
    tbs.read_optional(TAG_CONTEXT_0)?;
    tbs.read(TAG_INTEGER)?; // serialNumber
    tbs.read(TAG_SEQUENCE)?; // signature
    tbs.read(TAG_SEQUENCE)?; // issuer
    tbs.read(TAG_SEQUENCE)?; // validity
    let subject = tbs.read(TAG_SEQUENCE)?;
    tbs.read(TAG_SEQUENCE)?; // subjectPublicKeyInfo
    tbs.read_optional(TAG_ISSUER_UID)?;
    tbs.read_optional(TAG_SUBJECT_UID)?;
    if let Some(extensions) = tbs.read_optional(TAG_EXTENSIONS)? {
        if let Some(san) = subject_alt_name(extensions)? {
            return dns_names(san);
        }
    }
    common_names(subject)
}

/// The value of the subjectAltName extension (a `GeneralNames` SEQUENCE), if present.
fn subject_alt_name(extensions: &[u8]) -> Result<Option<&[u8]>, MalformedCertificate> {
    let mut list = DerReader::new(DerReader::new(extensions).read(TAG_SEQUENCE)?);
    while !list.is_empty() {
        let mut extension = DerReader::new(list.read(TAG_SEQUENCE)?);
        let oid = extension.read(TAG_OID)?;
        extension.read_optional(TAG_BOOLEAN)?; // critical
        let value = extension.read(TAG_OCTET_STRING)?;
        if oid == OID_SUBJECT_ALT_NAME {
            return Ok(Some(DerReader::new(value).read(TAG_SEQUENCE)?));
        }
    }
    Ok(None)
}

fn dns_names(general_names: &[u8]) -> Result<Vec<String>, MalformedCertificate> {
    let mut names = Vec::new();
    let mut list = DerReader::new(general_names);
    while !list.is_empty() {
        let (tag, value, _) = list.read_any()?;
        if tag == TAG_DNS_NAME {
            if let Ok(name) = std::str::from_utf8(value) {
                names.push(name.to_owned());
            }
        }
    }
    Ok(names)
}

fn common_names(subject: &[u8]) -> Result<Vec<String>, MalformedCertificate> {
    let mut names = Vec::new();
    let mut rdns = DerReader::new(subject);
    while !rdns.is_empty() {
        let mut attributes = DerReader::new(rdns.read(TAG_SET)?);
        while !attributes.is_empty() {
            let mut attribute = DerReader::new(attributes.read(TAG_SEQUENCE)?);
            let oid = attribute.read(TAG_OID)?;
            let (tag, value, _) = attribute.read_any()?;
            let is_text = matches!(tag, TAG_UTF8_STRING | TAG_PRINTABLE_STRING | TAG_IA5_STRING);
            if oid == OID_COMMON_NAME && is_text {
                if let Ok(name) = std::str::from_utf8(value) {
                    names.push(name.to_owned());
                }
            }
        }
    }
    Ok(names)
}

const TAG_BOOLEAN: u8 = 0x01;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_PRINTABLE_STRING: u8 = 0x13;
const TAG_IA5_STRING: u8 = 0x16;
const TAG_SET: u8 = 0x31;
/// `[1] IMPLICIT UniqueIdentifier`.
const TAG_ISSUER_UID: u8 = 0x81;
/// `[2] IMPLICIT UniqueIdentifier`.
const TAG_SUBJECT_UID: u8 = 0x82;
/// `[3] EXPLICIT Extensions`.
const TAG_EXTENSIONS: u8 = 0xa3;
/// `GeneralName` `dNSName [2] IA5String`.
const TAG_DNS_NAME: u8 = 0x82;
/// 2.5.29.17
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
/// 2.5.4.3
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(sans: &[&str], cn: Option<&str>) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn subject_alt_names_are_read_and_ip_addresses_skipped() {
        let der = generated(
            &["a.test", "*.wild.test", "127.0.0.1"],
            Some("ignored.test"),
        );
        assert_eq!(
            certificate_dns_names(&der).unwrap(),
            ["a.test", "*.wild.test"],
            "the CN is not used when a subjectAltName extension exists"
        );
    }

    #[test]
    fn common_name_is_the_fallback_without_subject_alt_names() {
        let der = generated(&[], Some("cn-only.test"));
        assert_eq!(certificate_dns_names(&der).unwrap(), ["cn-only.test"]);
    }

    #[test]
    fn truncated_certificate_is_malformed() {
        let der = generated(&["a.test"], None);
        assert_eq!(
            certificate_dns_names(&der[..der.len() / 2]),
            Err(MalformedCertificate)
        );
        assert_eq!(certificate_dns_names(&[]), Err(MalformedCertificate));
    }

    #[test]
    fn wildcard_covers_exactly_one_label() {
        assert!(wildcard_matches("*.example.com", "api.example.com"));
        assert!(wildcard_matches("*.example.com", "API.Example.COM"));
        assert!(!wildcard_matches("*.example.com", "example.com"));
        assert!(!wildcard_matches("*.example.com", ".example.com"));
        assert!(!wildcard_matches("*.example.com", "a.b.example.com"));
        assert!(!wildcard_matches("*.example.com", "api.example.org"));
        assert!(!wildcard_matches("api.example.com", "api.example.com"));
        assert!(!wildcard_matches("f*.example.com", "foo.example.com"));
    }

    fn selector(names: &[&[&str]]) -> SniCertificates {
        let key = rcgen::KeyPair::generate().unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let signing = provider
            .key_provider
            .load_private_key(rustls::pki_types::PrivateKeyDer::Pkcs8(
                key.serialize_der().into(),
            ))
            .unwrap();
        let certified = Arc::new(CertifiedKey::new(Vec::new(), signing));
        SniCertificates::new(
            names
                .iter()
                .map(|n| NamedCertificate {
                    names: n.iter().map(|s| s.to_string()).collect(),
                    key: Arc::clone(&certified),
                })
                .collect(),
        )
    }

    #[test]
    fn exact_name_beats_an_earlier_wildcard_and_unknown_gets_the_first() {
        let sni = selector(&[&["default.test"], &["*.example.com"], &["api.example.com"]]);
        assert_eq!(sni.select(Some("api.example.com")), 2);
        assert_eq!(sni.select(Some("API.EXAMPLE.COM")), 2);
        assert_eq!(sni.select(Some("www.example.com")), 1);
        assert_eq!(sni.select(Some("default.test")), 0);
        assert_eq!(sni.select(Some("unknown.test")), 0);
        assert_eq!(sni.select(None), 0);
    }
}
