//! A minimal DER reader: just enough ASN.1 to take the SubjectPublicKeyInfo out of an X.509
//! certificate, the RSA modulus and exponent out of a PKCS#1 `RSAPublicKey`, the curve and point
//! out of an EC SPKI, and the scalar out of a SEC1 `ECPrivateKey`. Reads only; never allocates;
//! rejects indefinite lengths, non-minimal lengths and trailing bytes.

use thiserror::Error;

/// Why a DER structure was rejected. Messages are short because callers prefix the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DerError {
    #[error("truncated DER")]
    Truncated,
    #[error("malformed DER length")]
    BadLength,
    #[error("unexpected DER tag 0x{found:02x} (expected 0x{expected:02x})")]
    UnexpectedTag { expected: u8, found: u8 },
    #[error("unexpected bytes after DER structure")]
    TrailingBytes,
    #[error("malformed DER INTEGER")]
    BadInteger,
    #[error("BIT STRING with unused bits")]
    BadBitString,
    #[error("multi-byte DER tags are not supported")]
    LongTag,
}

pub const TAG_INTEGER: u8 = 0x02;
pub const TAG_BIT_STRING: u8 = 0x03;
pub const TAG_OCTET_STRING: u8 = 0x04;
pub const TAG_OID: u8 = 0x06;
pub const TAG_SEQUENCE: u8 = 0x30;
/// `[0]` constructed, context-specific (explicit tagging, as for the certificate version).
pub const TAG_CONTEXT_0: u8 = 0xa0;
/// `[1]` constructed, context-specific.
pub const TAG_CONTEXT_1: u8 = 0xa1;

/// OID contents (without tag and length) of the algorithms and curves this module knows.
pub mod oid {
    /// rsaEncryption, 1.2.840.113549.1.1.1
    pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// id-ecPublicKey, 1.2.840.10045.2.1
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// prime256v1 / P-256, 1.2.840.10045.3.1.7
    pub const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    /// secp384r1 / P-384, 1.3.132.0.34
    pub const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
}

/// A cursor over DER bytes: each read consumes one tag-length-value.
#[derive(Debug, Clone, Copy)]
pub struct DerReader<'a> {
    rest: &'a [u8],
}

impl<'a> DerReader<'a> {
    /// Reads from `input`; the caller checks `finish` when every element should be consumed.
    pub fn new(input: &'a [u8]) -> Self {
        DerReader { rest: input }
    }

    /// True when nothing is left.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The tag of the next element, if any.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Fails unless every byte has been read.
    pub fn finish(&self) -> Result<(), DerError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DerError::TrailingBytes)
        }
    }

    /// Reads the next element of any tag; returns the tag, the contents and the whole TLV.
    pub fn read_any(&mut self) -> Result<(u8, &'a [u8], &'a [u8]), DerError> {
        let input = self.rest;
        let (&tag, after_tag) = input.split_first().ok_or(DerError::Truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(DerError::LongTag);
        }
        let (&first, after_len) = after_tag.split_first().ok_or(DerError::Truncated)?;
        let (len, after_len) = if first < 0x80 {
            (usize::from(first), after_len)
        } else {
            let count = usize::from(first & 0x7f);
            // 0x80 is BER's indefinite length; more than 4 length bytes cannot be a key.
            if count == 0 || count > 4 || after_len.len() < count {
                return Err(if after_len.len() < count {
                    DerError::Truncated
                } else {
                    DerError::BadLength
                });
            }
            let (len_bytes, after) = after_len.split_at(count);
            if len_bytes[0] == 0 {
                return Err(DerError::BadLength); // non-minimal: leading zero length byte
            }
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            if len < 0x80 {
                return Err(DerError::BadLength); // non-minimal: fits the short form
            }
            (len, after)
        };
        if after_len.len() < len {
            return Err(DerError::Truncated);
        }
        let (contents, rest) = after_len.split_at(len);
        let header_len = input.len() - after_len.len();
        let whole = &input[..header_len + len];
        self.rest = rest;
        Ok((tag, contents, whole))
    }

    /// Reads the next element, which must have tag `expected`; returns its contents.
    pub fn read(&mut self, expected: u8) -> Result<&'a [u8], DerError> {
        self.read_tlv(expected).map(|(contents, _)| contents)
    }

    /// Like `read`, also returning the whole encoded element (tag and length included).
    pub fn read_tlv(&mut self, expected: u8) -> Result<(&'a [u8], &'a [u8]), DerError> {
        let found = self.peek_tag().ok_or(DerError::Truncated)?;
        if found != expected {
            return Err(DerError::UnexpectedTag { expected, found });
        }
        let (_, contents, whole) = self.read_any()?;
        Ok((contents, whole))
    }

    /// Reads an element only if its tag is `tag`.
    pub fn read_optional(&mut self, tag: u8) -> Result<Option<&'a [u8]>, DerError> {
        if self.peek_tag() == Some(tag) {
            self.read(tag).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Reads a non-negative INTEGER and returns its big-endian magnitude without leading zeros.
    pub fn read_unsigned_integer(&mut self) -> Result<&'a [u8], DerError> {
        let bytes = self.read(TAG_INTEGER)?;
        match bytes {
            [] => Err(DerError::BadInteger),
            [first, ..] if first & 0x80 != 0 => Err(DerError::BadInteger), // negative
            [0, second, ..] if second & 0x80 == 0 => Err(DerError::BadInteger), // non-minimal
            [0, rest @ ..] if !rest.is_empty() => Ok(rest),
            _ => Ok(bytes),
        }
    }

    /// Reads a BIT STRING whose bit count is a multiple of 8 and returns its bytes.
    pub fn read_bit_string_bytes(&mut self) -> Result<&'a [u8], DerError> {
        match self.read(TAG_BIT_STRING)? {
            [0, bytes @ ..] => Ok(bytes),
            _ => Err(DerError::BadBitString),
        }
    }
}

/// Reads exactly one element with tag `tag` covering all of `input`; returns its contents.
pub fn read_single(input: &[u8], tag: u8) -> Result<&[u8], DerError> {
    let mut reader = DerReader::new(input);
    let contents = reader.read(tag)?;
    reader.finish()?;
    Ok(contents)
}

/// The parts of a SubjectPublicKeyInfo (RFC 5280 4.1.2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spki<'a> {
    /// OID contents of `algorithm.algorithm`.
    pub algorithm: &'a [u8],
    /// OID contents of the named-curve parameter, when the parameter is an OID.
    pub curve: Option<&'a [u8]>,
    /// The `subjectPublicKey` bytes (PKCS#1 `RSAPublicKey` DER, or an EC point).
    pub public_key: &'a [u8],
}

/// Parses a DER SubjectPublicKeyInfo (the whole SEQUENCE).
pub fn parse_spki(spki: &[u8]) -> Result<Spki<'_>, DerError> {
    let mut seq = DerReader::new(read_single(spki, TAG_SEQUENCE)?);
    let mut alg_id = DerReader::new(seq.read(TAG_SEQUENCE)?);
    let algorithm = alg_id.read(TAG_OID)?;
    // Parameters: NULL for RSA, a named-curve OID for EC; anything else is kept opaque.
    let curve = if alg_id.peek_tag() == Some(TAG_OID) {
        Some(alg_id.read(TAG_OID)?)
    } else {
        if !alg_id.is_empty() {
            alg_id.read_any()?;
        }
        None
    };
    alg_id.finish()?;
    let public_key = seq.read_bit_string_bytes()?;
    seq.finish()?;
    Ok(Spki {
        algorithm,
        curve,
        public_key,
    })
}

/// Returns the whole DER SubjectPublicKeyInfo of an X.509 certificate (RFC 5280 4.1).
/// Only locates it: the signature, validity and extensions are not examined.
pub fn certificate_spki(cert: &[u8]) -> Result<&[u8], DerError> {
    let mut certificate = DerReader::new(read_single(cert, TAG_SEQUENCE)?);
    let mut tbs = DerReader::new(certificate.read(TAG_SEQUENCE)?);
    tbs.read_optional(TAG_CONTEXT_0)?; // version
    tbs.read(TAG_INTEGER)?; // serialNumber
    tbs.read(TAG_SEQUENCE)?; // signature AlgorithmIdentifier
    tbs.read(TAG_SEQUENCE)?; // issuer
    tbs.read(TAG_SEQUENCE)?; // validity
    tbs.read(TAG_SEQUENCE)?; // subject
    let (_, spki) = tbs.read_tlv(TAG_SEQUENCE)?;
    certificate.read(TAG_SEQUENCE)?; // signatureAlgorithm
    certificate.read_bit_string_bytes()?; // signatureValue
    certificate.finish()?;
    Ok(spki)
}

/// Parses a PKCS#1 `RSAPublicKey` (RFC 8017 A.1.1) into (modulus, exponent), big-endian,
/// without leading zeros.
pub fn parse_rsa_public_key(der: &[u8]) -> Result<(&[u8], &[u8]), DerError> {
    let mut seq = DerReader::new(read_single(der, TAG_SEQUENCE)?);
    let n = seq.read_unsigned_integer()?;
    let e = seq.read_unsigned_integer()?;
    seq.finish()?;
    Ok((n, e))
}

/// The parts of a SEC1 `ECPrivateKey` (RFC 5915 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sec1PrivateKey<'a> {
    /// The private scalar, big-endian.
    pub private_key: &'a [u8],
    /// The named-curve OID contents, when present.
    pub curve: Option<&'a [u8]>,
    /// The uncompressed public point, when present.
    pub public_key: Option<&'a [u8]>,
}

/// Parses a SEC1 `ECPrivateKey`.
pub fn parse_sec1_private_key(der: &[u8]) -> Result<Sec1PrivateKey<'_>, DerError> {
    let mut seq = DerReader::new(read_single(der, TAG_SEQUENCE)?);
    if seq.read_unsigned_integer()? != [1] {
        return Err(DerError::BadInteger); // version must be ecPrivkeyVer1
    }
    let private_key = seq.read(TAG_OCTET_STRING)?;
    let curve = match seq.read_optional(TAG_CONTEXT_0)? {
        Some(params) => Some(read_single(params, TAG_OID)?),
        None => None,
    };
    let public_key = match seq.read_optional(TAG_CONTEXT_1)? {
        Some(wrapped) => {
            let mut inner = DerReader::new(wrapped);
            let bytes = inner.read_bit_string_bytes()?;
            inner.finish()?;
            Some(bytes)
        }
        None => None,
    };
    seq.finish()?;
    Ok(Sec1PrivateKey {
        private_key,
        curve,
        public_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::pem;

    const DEV_CERT: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-only/jwt-dev-only.cert.pem"
    ));
    const DEV_SPKI: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-only/jwt-dev-only.pub.pem"
    ));
    const DEV_PKCS1_PUB: &[u8] = include_bytes!("testdata/dev-only-rsa.pkcs1.pub.pem");
    const EC_CERT: &[u8] = include_bytes!("testdata/dev-only-p256.cert.pem");
    const EC_SEC1: &[u8] = include_bytes!("testdata/dev-only-p256.sec1.key.pem");
    const EC_SPKI: &[u8] = include_bytes!("testdata/dev-only-p256.pub.pem");

    fn der_of(pem_text: &[u8], label: &str) -> Vec<u8> {
        let block = pem::parse(pem_text).expect("pem");
        assert_eq!(block.label, label);
        block.der
    }

    #[test]
    fn short_and_long_form_lengths_are_read() {
        let mut short = DerReader::new(&[0x04, 0x02, 0xaa, 0xbb, 0x05, 0x00]);
        assert_eq!(short.read(TAG_OCTET_STRING).unwrap(), &[0xaa, 0xbb]);
        assert_eq!(short.read(0x05).unwrap(), &[] as &[u8]);
        assert!(short.is_empty());

        let mut long = vec![0x04, 0x81, 0x80];
        long.extend(std::iter::repeat_n(7u8, 0x80));
        let mut reader = DerReader::new(&long);
        assert_eq!(reader.read(TAG_OCTET_STRING).unwrap().len(), 0x80);
        reader.finish().unwrap();
    }

    #[test]
    fn non_minimal_indefinite_and_oversized_lengths_are_rejected() {
        // 0x81 0x05: long form for a length that fits the short form.
        assert_eq!(
            DerReader::new(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5]).read_any(),
            Err(DerError::BadLength)
        );
        // 0x82 0x00 0x80: leading zero length byte.
        let mut padded = vec![0x04, 0x82, 0x00, 0x80];
        padded.extend([0u8; 0x80]);
        assert_eq!(DerReader::new(&padded).read_any(), Err(DerError::BadLength));
        // 0x80: BER indefinite length.
        assert_eq!(
            DerReader::new(&[0x30, 0x80, 0, 0]).read_any(),
            Err(DerError::BadLength)
        );
        // Five length bytes.
        assert_eq!(
            DerReader::new(&[0x04, 0x85, 1, 0, 0, 0, 0]).read_any(),
            Err(DerError::BadLength)
        );
    }

    #[test]
    fn truncated_input_is_rejected_at_every_cut() {
        let spki = der_of(DEV_SPKI, "PUBLIC KEY");
        for cut in 0..spki.len() {
            assert!(parse_spki(&spki[..cut]).is_err(), "cut at {cut} accepted");
        }
        // Also a length claiming more than the input holds.
        assert_eq!(
            DerReader::new(&[0x04, 0x82, 0x01, 0x00, 1]).read_any(),
            Err(DerError::Truncated)
        );
    }

    #[test]
    fn trailing_bytes_after_a_structure_are_rejected() {
        let mut spki = der_of(DEV_SPKI, "PUBLIC KEY");
        spki.push(0);
        assert_eq!(parse_spki(&spki), Err(DerError::TrailingBytes));
    }

    #[test]
    fn multi_byte_tags_are_rejected() {
        assert_eq!(
            DerReader::new(&[0x1f, 0x81, 0x01, 0x00]).read_any(),
            Err(DerError::LongTag)
        );
    }

    #[test]
    fn unsigned_integers_strip_the_sign_byte_and_refuse_negatives() {
        fn read(bytes: &[u8]) -> Result<&[u8], DerError> {
            DerReader::new(bytes).read_unsigned_integer()
        }
        assert_eq!(read(&[0x02, 0x01, 0x05]).unwrap(), &[5]);
        assert_eq!(read(&[0x02, 0x02, 0x00, 0x80]).unwrap(), &[0x80]);
        assert_eq!(read(&[0x02, 0x01, 0x00]).unwrap(), &[0]);
        assert_eq!(read(&[0x02, 0x01, 0x80]), Err(DerError::BadInteger));
        assert_eq!(read(&[0x02, 0x02, 0x00, 0x01]), Err(DerError::BadInteger));
        assert_eq!(read(&[0x02, 0x00]), Err(DerError::BadInteger));
    }

    #[test]
    fn certificate_spki_equals_the_openssl_public_key() {
        let cert = der_of(DEV_CERT, "CERTIFICATE");
        let spki = der_of(DEV_SPKI, "PUBLIC KEY");
        assert_eq!(certificate_spki(&cert).unwrap(), spki.as_slice());
    }

    #[test]
    fn rsa_spki_yields_the_pkcs1_key_and_its_modulus() {
        let spki = der_of(DEV_SPKI, "PUBLIC KEY");
        let parsed = parse_spki(&spki).unwrap();
        assert_eq!(parsed.algorithm, oid::RSA_ENCRYPTION);
        assert_eq!(parsed.curve, None);
        let pkcs1 = der_of(DEV_PKCS1_PUB, "RSA PUBLIC KEY");
        assert_eq!(parsed.public_key, pkcs1.as_slice());
        let (n, e) = parse_rsa_public_key(&pkcs1).unwrap();
        assert_eq!(n.len(), 256);
        assert_ne!(n[0], 0);
        assert_eq!(e, &[0x01, 0x00, 0x01]);
    }

    #[test]
    fn ec_certificate_yields_a_p256_point() {
        let cert = der_of(EC_CERT, "CERTIFICATE");
        let spki = parse_spki(certificate_spki(&cert).unwrap()).unwrap();
        assert_eq!(spki.algorithm, oid::EC_PUBLIC_KEY);
        assert_eq!(spki.curve, Some(oid::P256));
        assert_eq!(spki.public_key.len(), 65);
        assert_eq!(spki.public_key[0], 0x04);
        let standalone = der_of(EC_SPKI, "PUBLIC KEY");
        assert_eq!(parse_spki(&standalone).unwrap(), spki);
    }

    #[test]
    fn sec1_private_key_yields_scalar_curve_and_point() {
        let der = der_of(EC_SEC1, "EC PRIVATE KEY");
        let key = parse_sec1_private_key(&der).unwrap();
        assert_eq!(key.private_key.len(), 32);
        assert_eq!(key.curve, Some(oid::P256));
        let spki = der_of(EC_SPKI, "PUBLIC KEY");
        assert_eq!(key.public_key, Some(parse_spki(&spki).unwrap().public_key));
    }

    #[test]
    fn a_public_key_is_not_mistaken_for_a_certificate() {
        let spki = der_of(DEV_SPKI, "PUBLIC KEY");
        assert!(certificate_spki(&spki).is_err());
    }
}
