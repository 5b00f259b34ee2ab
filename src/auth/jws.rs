//! Compact JWS syntax (RFC 7515 3.1, 7.1): three base64url segments, the protected header and
//! the JWS algorithm names. Decodes; verifies nothing.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::AuthError;

/// base64url that accepts segments with or without `=` padding (BEHAVIOUR.md 5) and rejects
/// non-canonical trailing bits, so one token has exactly one encoding per segment.
pub(crate) const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A JWS `alg` this gateway knows. `none` is deliberately not representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256.
    PS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// HMAC with SHA-256 (only with an issuer's `shared_secret`).
    HS256,
    /// HMAC with SHA-384 (only with an issuer's `shared_secret`).
    HS384,
    /// HMAC with SHA-512 (only with an issuer's `shared_secret`).
    HS512,
}

impl Alg {
    /// Parses an `alg` value; names are case-sensitive (RFC 7515 4.1.1).
    pub fn from_name(name: &str) -> Option<Alg> {
        Some(match name {
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            "HS256" => Alg::HS256,
            "HS384" => Alg::HS384,
            "HS512" => Alg::HS512,
            _ => return None,
        })
    }

    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
        }
    }

    /// True for the HMAC algorithms.
    pub fn is_hmac(self) -> bool {
        matches!(self, Alg::HS256 | Alg::HS384 | Alg::HS512)
    }
}

/// The three segments of a compact JWS, still encoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CompactJws<'a> {
    /// `header "." payload`, exactly as sent: what the signature covers.
    pub signing_input: &'a [u8],
    pub header: &'a [u8],
    pub payload: &'a [u8],
    pub signature: &'a [u8],
}

/// Splits a token into its three segments; fails on any other count, on an empty header or
/// payload, and on bytes outside base64url (and `=`).
pub(crate) fn split(token: &[u8]) -> Result<CompactJws<'_>, AuthError> {
    if !token
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'.'))
    {
        return Err(AuthError::Malformed(
            "token has characters outside base64url",
        ));
    }
    let mut dots = token
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'.')
        .map(|(i, _)| i);
    let (Some(first), Some(second), None) = (dots.next(), dots.next(), dots.next()) else {
        return Err(AuthError::Malformed(
            "token is not three dot-separated segments",
        ));
    };
    let header = &token[..first];
    let payload = &token[first + 1..second];
    if header.is_empty() || payload.is_empty() {
        return Err(AuthError::Malformed("empty header or payload segment"));
    }
    Ok(CompactJws {
        signing_input: &token[..second],
        header,
        payload,
        signature: &token[second + 1..],
    })
}

/// Decodes one segment.
pub(crate) fn decode(segment: &[u8], what: &'static str) -> Result<Vec<u8>, AuthError> {
    B64URL
        .decode(segment)
        .map_err(|_| AuthError::Malformed(what))
}

/// The protected header fields this gateway reads. Others (`typ`, `cty`, `x5t`...) are
/// ignored; `jku`, `jwk`, `x5u` and `x5c` in particular are never trusted as key sources.
#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    /// Any `crit` means an extension we do not implement must be understood: reject.
    #[serde(default)]
    pub crit: Option<IgnoredAny>,
}

/// Decodes and parses the header segment. Duplicate members are rejected (serde refuses a
/// repeated known field), which closes parser-differential tricks with two `alg`s.
pub(crate) fn parse_header(segment: &[u8]) -> Result<Header, AuthError> {
    let json = decode(segment, "header is not base64url")?;
    let not_header = AuthError::Malformed("header is not a JSON object with a string alg");
    let json = utf8(&json).ok_or(not_header)?;
    if !is_json_object(json.as_bytes()) {
        return Err(not_header);
    }
    let header: Header = serde_json::from_str(json).map_err(|_| not_header)?;
    if header.crit.is_some() {
        return Err(AuthError::Malformed(
            "crit header extensions are not supported",
        ));
    }
    Ok(header)
}

/// A decoded header or payload as text: RFC 7515 §5.2 and RFC 7519 §7.2 require UTF-8, and
/// serde_json checks UTF-8 only in the members it decodes, not in those it skips.
pub(crate) fn utf8(json: &[u8]) -> Option<&str> {
    std::str::from_utf8(json).ok()
}

/// True when `json` is (at most) a JSON object. serde's derived structs also accept arrays
/// (`["RS256"]` would fill `alg`), which a JOSE header or JWT claims set must never be.
pub(crate) fn is_json_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_segments_split_at_the_dots() {
        let jws = split(b"aGVhZA.cGF5.c2ln").unwrap();
        assert_eq!(jws.header, b"aGVhZA");
        assert_eq!(jws.payload, b"cGF5");
        assert_eq!(jws.signature, b"c2ln");
        assert_eq!(jws.signing_input, b"aGVhZA.cGF5");
    }

    #[test]
    fn empty_signature_segment_is_split_not_rejected_here() {
        assert_eq!(split(b"a.b.").unwrap().signature, b"");
    }

    #[test]
    fn two_and_four_segments_are_malformed() {
        assert!(matches!(split(b"a.b"), Err(AuthError::Malformed(_))));
        assert!(matches!(split(b"a.b.c.d"), Err(AuthError::Malformed(_))));
        assert!(matches!(split(b"a.b.c.d.e"), Err(AuthError::Malformed(_))));
        assert!(matches!(split(b"abc"), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn empty_header_or_payload_is_malformed() {
        assert!(matches!(split(b".b.c"), Err(AuthError::Malformed(_))));
        assert!(matches!(split(b"a..c"), Err(AuthError::Malformed(_))));
        assert!(matches!(split(b""), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn non_base64url_characters_are_malformed() {
        for token in [
            &b"a+b.c.d"[..],
            b"a/b.c.d",
            b"a.b.c d",
            b"a.b.c\n",
            b"a.\xc3\xa9.c",
        ] {
            assert!(
                matches!(split(token), Err(AuthError::Malformed(_))),
                "{token:?}"
            );
        }
    }

    #[test]
    fn segments_decode_with_or_without_padding() {
        assert_eq!(decode(b"YQ", "x").unwrap(), b"a");
        assert_eq!(decode(b"YQ==", "x").unwrap(), b"a");
        assert_eq!(decode(b"YWI", "x").unwrap(), b"ab");
        assert_eq!(decode(b"YWI=", "x").unwrap(), b"ab");
    }

    #[test]
    fn wrong_padding_and_non_canonical_bits_are_rejected() {
        assert!(
            decode(b"YQ=", "x").is_ok(),
            "fewer pad bytes than canonical are indifferent"
        );
        assert!(decode(b"YQ===", "x").is_err());
        assert!(decode(b"YR", "x").is_err(), "non-zero trailing bits");
        assert!(decode(b"Y", "x").is_err());
    }

    #[test]
    fn alg_names_are_case_sensitive_and_none_is_unknown() {
        assert_eq!(Alg::from_name("RS256"), Some(Alg::RS256));
        assert_eq!(Alg::from_name("rs256"), None);
        assert_eq!(Alg::from_name("none"), None);
        assert_eq!(Alg::from_name("None"), None);
        assert_eq!(Alg::from_name("PS512"), None);
        assert_eq!(Alg::from_name("EdDSA"), None);
        for alg in [
            Alg::RS256,
            Alg::RS384,
            Alg::RS512,
            Alg::PS256,
            Alg::ES256,
            Alg::ES384,
            Alg::HS256,
            Alg::HS384,
            Alg::HS512,
        ] {
            assert_eq!(Alg::from_name(alg.name()), Some(alg));
        }
    }

    fn header(json: &str) -> Result<Header, AuthError> {
        parse_header(B64URL.encode(json).as_bytes())
    }

    #[test]
    fn header_gives_alg_and_kid() {
        let h = header(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#).unwrap();
        assert_eq!(h.alg, "RS256");
        assert_eq!(h.kid.as_deref(), Some("k1"));
    }

    #[test]
    fn header_with_duplicate_alg_is_malformed() {
        assert!(matches!(
            header(r#"{"alg":"RS256","alg":"none"}"#),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn header_without_alg_or_not_an_object_is_malformed() {
        for json in [
            r#"{"kid":"a"}"#,
            r#"{"alg":256}"#,
            "[]",
            r#"["RS256"]"#,
            "null",
            "{",
            "",
        ] {
            assert!(
                matches!(header(json), Err(AuthError::Malformed(_))),
                "{json}"
            );
        }
    }

    #[test]
    fn header_with_crit_is_malformed() {
        assert!(matches!(
            header(r#"{"alg":"RS256","crit":["b64"],"b64":false}"#),
            Err(AuthError::Malformed(_))
        ));
    }
}
