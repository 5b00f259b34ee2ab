//! Client certificates on the HTTPS listeners. Every client is asked for one (never required:
//! a plain API must stay reachable without); the handshake proves the client holds the key of
//! whatever it presents, and the certificate is then judged once per connection: it chains to
//! `tls.client_ca`, or it is exactly one of some API's own certificates (an apictl project's
//! `Client-certificates/`, as Choreo Connect matches them). A certificate that is neither
//! does not fail the handshake; the connection just has no verified certificate, so an API
//! with optional mutual TLS still answers it and a mandatory one says 401 (as Choreo Connect).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use super::TlsConfigError;
use crate::auth::der::{DerReader, TAG_CONTEXT_0, TAG_INTEGER, TAG_SEQUENCE};
use crate::auth::ClientCertificate;

const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;

/// What client certificates the listeners trust.
#[derive(Debug)]
pub struct ClientAuth {
    /// `tls.client_ca`: chains are verified against it (webpki, client-auth usage).
    ca: Option<Arc<dyn ClientCertVerifier>>,
    pinned: Vec<PinnedCertificate>,
    /// The distinguished names offered in the CertificateRequest, so a client with several
    /// certificates picks a fitting one.
    hints: Vec<DistinguishedName>,
    provider: Arc<CryptoProvider>,
}

#[derive(Debug)]
struct PinnedCertificate {
    fingerprint: [u8; 32],
    /// Validity in seconds since the epoch.
    not_before: u64,
    not_after: u64,
}

impl ClientAuth {
    /// `ca`: the `tls.client_ca` bundle, if configured; `pinned`: every API's own
    /// certificates (DER). `None` when there is nothing to verify against.
    pub(crate) fn new(
        provider: &Arc<CryptoProvider>,
        ca: Vec<CertificateDer<'static>>,
        pinned: &[Vec<u8>],
    ) -> Result<Option<ClientAuth>, TlsConfigError> {
        if ca.is_empty() && pinned.is_empty() {
            return Ok(None);
        }
        let mut hints = Vec::new();
        let ca = if ca.is_empty() {
            None
        } else {
            let mut roots = RootCertStore::empty();
            for (i, cert) in ca.into_iter().enumerate() {
                roots.add(cert).map_err(|e| {
                    TlsConfigError::new(
                        "tls.client_ca",
                        format!("certificate {} is not a usable CA: {e}", i + 1),
                    )
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| TlsConfigError::new("tls.client_ca", e.to_string()))?;
            hints.extend_from_slice(verifier.root_hint_subjects());
            Some(verifier)
        };
        let mut pinned_certificates = Vec::with_capacity(pinned.len());
        for der in pinned {
            let parsed = parse_certificate(der).ok_or_else(|| {
                TlsConfigError::new(
                    "Client-certificates",
                    "a client certificate of an API is not a valid X.509 certificate",
                )
            })?;
            hints.push(DistinguishedName::from(parsed.subject.to_vec()));
            pinned_certificates.push(PinnedCertificate {
                fingerprint: fingerprint(der),
                not_before: parsed.not_before,
                not_after: parsed.not_after,
            });
        }
        hints.dedup_by(|a, b| a.as_ref() == b.as_ref());
        Ok(Some(ClientAuth {
            ca,
            pinned: pinned_certificates,
            hints,
            provider: Arc::clone(provider),
        }))
    }

    /// Judges the certificate chain a client presented (end-entity first) at `now`.
    pub fn check(&self, chain: &[CertificateDer<'_>], now: UnixTime) -> Option<ClientCertificate> {
        let (end_entity, intermediates) = chain.split_first()?;
        let fingerprint = fingerprint(end_entity);
        let chains_to_client_ca = self.ca.as_ref().is_some_and(|ca| {
            ca.verify_client_cert(end_entity, intermediates, now)
                .is_ok()
        });
        let secs = now.as_secs();
        let pinned = self
            .pinned
            .iter()
            .any(|p| p.fingerprint == fingerprint && p.not_before <= secs && secs <= p.not_after);
        (chains_to_client_ca || pinned).then_some(ClientCertificate {
            fingerprint,
            chains_to_client_ca,
        })
    }
}

/// The handshake side: ask every client, require none, accept whatever chain is presented
/// (judged by `check` afterwards), but always verify the client's signature with the
/// certificate's key, so nobody presents a certificate they do not hold the key of.
impl ClientCertVerifier for ClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// SHA-256 of a DER certificate.
pub(crate) fn fingerprint(der: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

struct ParsedCertificate<'a> {
    /// The subject Name, as encoded (outer SEQUENCE included).
    subject: &'a [u8],
    not_before: u64,
    not_after: u64,
}

/// The subject and validity of a certificate (RFC 5280 4.1).
fn parse_certificate(der: &[u8]) -> Option<ParsedCertificate<'_>> {
    let certificate = DerReader::new(der).read(TAG_SEQUENCE).ok()?;
    let mut tbs = DerReader::new(DerReader::new(certificate).read(TAG_SEQUENCE).ok()?);
    tbs.read_optional(TAG_CONTEXT_0).ok()?;
    tbs.read(TAG_INTEGER).ok()?; // serialNumber
    tbs.read(TAG_SEQUENCE).ok()?; // signature
    tbs.read(TAG_SEQUENCE).ok()?; // issuer
    let mut validity = DerReader::new(tbs.read(TAG_SEQUENCE).ok()?);
    let not_before = read_time(&mut validity)?;
    let not_after = read_time(&mut validity)?;
    let (_, subject) = tbs.read_tlv(TAG_SEQUENCE).ok()?;
    Some(ParsedCertificate {
        subject,
        not_before,
        not_after,
    })
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`), as
/// RFC 5280 4.1.2.5 allows them, in seconds since the epoch.
fn read_time(reader: &mut DerReader<'_>) -> Option<u64> {
    let (tag, text, _) = reader.read_any().ok()?;
    let (year, rest) = match (tag, text.len()) {
        (TAG_UTC_TIME, 13) => {
            let yy = digits(&text[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        (TAG_GENERALIZED_TIME, 15) => (digits(&text[..4])?, &text[4..]),
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let month = digits(&rest[0..2])?;
    let day = digits(&rest[2..4])?;
    let (hour, minute, second) = (
        digits(&rest[4..6])?,
        digits(&rest[6..8])?,
        digits(&rest[8..10])?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second.min(60))
}

fn digits(text: &[u8]) -> Option<u64> {
    text.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm); `None`
/// before 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = y / 400;
    let yoe = y % 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_times_are_read_in_both_encodings() {
        let utc = [TAG_UTC_TIME, 13]
            .iter()
            .chain(b"240229123456Z")
            .copied()
            .collect::<Vec<_>>();
        assert_eq!(read_time(&mut DerReader::new(&utc)), Some(1_709_210_096));
        let generalized = [TAG_GENERALIZED_TIME, 15]
            .iter()
            .chain(b"20500101000000Z")
            .copied()
            .collect::<Vec<_>>();
        assert_eq!(
            read_time(&mut DerReader::new(&generalized)),
            Some(2_524_608_000)
        );
        let local = [TAG_UTC_TIME, 13]
            .iter()
            .chain(b"240229123456+")
            .copied()
            .collect::<Vec<_>>();
        assert_eq!(read_time(&mut DerReader::new(&local)), None);
    }

    #[test]
    fn subject_and_validity_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["client".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 2);
        params.not_after = rcgen::date_time_ymd(2030, 3, 4);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let parsed = parse_certificate(cert.der()).unwrap();
        assert_eq!(parsed.not_before, 1_577_923_200);
        assert_eq!(parsed.not_after, 1_898_812_800);
        assert_eq!(parsed.subject[0], TAG_SEQUENCE);
    }

    #[test]
    fn pinned_certificates_are_accepted_only_within_their_validity() {
        let mut params = rcgen::CertificateParams::new(vec!["client".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let provider = super::super::provider();
        let auth = ClientAuth::new(&provider, Vec::new(), &[cert.der().to_vec()])
            .unwrap()
            .unwrap();
        let chain = [cert.der().clone()];
        let inside = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_700_000_000));
        let after = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_900_000_000));
        let accepted = auth.check(&chain, inside).unwrap();
        assert_eq!(accepted.fingerprint, fingerprint(cert.der()));
        assert!(!accepted.chains_to_client_ca);
        assert_eq!(auth.check(&chain, after), None);
        assert_eq!(auth.check(&[], inside), None);
    }
}
