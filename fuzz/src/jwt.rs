//! `jwt`: `extract_bearer`, `Verifier::verify` and `TokenCache::verify` on arbitrary tokens.
//!
//! The verifier trusts two issuers: the dev certificate in `config/dev-only/` (RS256 and the
//! other RSA algorithms; the fuzzer cannot forge those), and a fuzz-only HMAC issuer whose
//! secret this harness knows, so that it can sign fuzzer-chosen headers and claims and reach
//! the checks that run after the signature (`exp`, `nbf`, `aud`, `keytype`).
//!
//! Input: `flags, now (u32 LE), step1, step2, step3`, then `raw 0x00 header 0x00 payload`:
//! - `raw` is an `Authorization` value: `extract_bearer`, then `verify` on what it returns,
//!   and `verify` on `raw` itself as a token;
//! - `header` and `payload` are JSON texts the harness encodes and signs with the fuzz HMAC
//!   key (`flags` bits 0-1 pick HS256/384/512); flag bit 2 appends `=` padding to the signature.
//!
//! Invariants:
//! - nothing panics;
//! - `verify` accepts a token only when its header and payload are UTF-8 JSON objects (RFC 7515
//!   §5.2, RFC 7519 §7.2) and its signature independently checks out (ring, over the token's
//!   own `header.payload` bytes) with the dev RSA key or the fuzz HMAC key, and the claims
//!   returned match the payload (`iss` of the issuer, `exp`, unexpired at `now`);
//! - a `TokenCache` (capacity from `flags` bits 4-5, 0..=3) gives exactly `Verifier::verify`'s
//!   answer for a sequence of lookups of both tokens at non-decreasing times.

use std::path::Path;
use std::sync::OnceLock;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::{hmac, signature};
use shardgate::auth::{extract_bearer, Claims, TokenCache, Verifier};
use shardgate::compile::config::jwt::{JwtConfig, JwtIssuerConfig, SharedSecret};

use crate::{show, Input};

pub const DEV_ISSUER: &str = "https://localhost/dev-only";
pub const FUZZ_ISSUER: &str = "https://fuzz.invalid/hmac";
/// 64 bytes, so HS512 is allowed too. Known to this harness only.
pub const FUZZ_SECRET: &str = "fuzz-only-hmac-secret-0123456789-0123456789-0123456789-abcdefghi";

struct Fixture {
    verifier: Verifier,
    /// PKCS#1 RSAPublicKey of the dev key, for the independent check.
    dev_rsa: Vec<u8>,
}

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let cfg = JwtConfig {
            issuers: vec![
                JwtIssuerConfig {
                    name: Some("dev-only".into()),
                    issuer: DEV_ISSUER.into(),
                    certificate: Some("config/dev-only/jwt-dev-only.cert.pem".into()),
                    public_key: None,
                    jwks: None,
                    audience: Vec::new(),
                    shared_secret: None,
                    api_key: false,
                },
                JwtIssuerConfig {
                    name: Some("fuzz-hmac".into()),
                    issuer: FUZZ_ISSUER.into(),
                    certificate: None,
                    public_key: None,
                    jwks: None,
                    audience: vec!["fuzz-aud".into(), "other-aud".into()],
                    shared_secret: Some(SharedSecret::new(FUZZ_SECRET)),
                    api_key: false,
                },
            ],
            ..JwtConfig::default()
        };
        let verifier = Verifier::from_config(&cfg, repo_root()).expect("dev verifier");
        let pem = std::fs::read_to_string(repo_root().join("config/dev-only/jwt-dev-only.pub.pem"))
            .expect("dev public key");
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let spki = STANDARD.decode(b64).expect("PEM base64");
        // SubjectPublicKeyInfo of an RSA 2048 key: a fixed 24-byte prefix, then RSAPublicKey.
        const RSA2048_SPKI_PREFIX: [u8; 24] = [
            0x30, 0x82, 0x01, 0x22, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
            0x01, 0x01, 0x01, 0x05, 0x00, 0x03, 0x82, 0x01, 0x0f, 0x00,
        ];
        assert_eq!(spki[..24], RSA2048_SPKI_PREFIX, "dev key is not RSA 2048");
        Fixture {
            verifier,
            dev_rsa: spki[24..].to_vec(),
        }
    })
}

/// HMAC algorithms by flag bits.
const HMACS: [(&str, hmac::Algorithm); 3] = [
    ("HS256", hmac::HMAC_SHA256),
    ("HS384", hmac::HMAC_SHA384),
    ("HS512", hmac::HMAC_SHA512),
];

/// A compact JWS over `header` and `payload`, signed with the fuzz HMAC key.
pub fn hmac_token(header: &[u8], payload: &[u8], alg: usize, pad: bool) -> Vec<u8> {
    let mut token = URL_SAFE_NO_PAD.encode(header).into_bytes();
    token.push(b'.');
    token.extend_from_slice(URL_SAFE_NO_PAD.encode(payload).as_bytes());
    let key = hmac::Key::new(HMACS[alg % 3].1, FUZZ_SECRET.as_bytes());
    let tag = hmac::sign(&key, &token);
    token.push(b'.');
    let mut sig = URL_SAFE_NO_PAD.encode(tag.as_ref());
    if pad {
        while sig.len() % 4 != 0 {
            sig.push('=');
        }
    }
    token.extend_from_slice(sig.as_bytes());
    token
}

pub fn check(data: &[u8]) {
    let fx = fixture();
    let mut input = Input::new(data);
    let flags = input.byte();
    let now = u64::from(input.u32());
    let steps = [input.byte(), input.byte(), input.byte()];
    let mut parts = input.rest().splitn(3, |&b| b == 0);
    let raw = parts.next().unwrap_or_default();
    let header = parts.next().unwrap_or_default();
    let payload = parts.next().unwrap_or_default();

    if let Ok(token) = extract_bearer(raw) {
        assert!(!token.is_empty() && raw.windows(token.len()).any(|w| w == token));
        check_verify(fx, token, now);
    }
    check_verify(fx, raw, now);
    let signed = hmac_token(header, payload, usize::from(flags & 3), flags & 4 != 0);
    check_verify(fx, &signed, now);

    // The cache answers as the verifier does, at non-decreasing times.
    let mut cache = TokenCache::new(usize::from(flags >> 4 & 3), fx.verifier.clock_skew_secs());
    let tokens: [&[u8]; 2] = [raw, &signed];
    let mut t = now;
    for (i, step) in steps.iter().chain(steps.iter()).enumerate() {
        let token = tokens[(usize::from(*step) + i) % 2];
        let cached = cache.verify(&fx.verifier, token, t);
        let direct = fx.verifier.verify(token, t);
        assert_eq!(cached, direct, "cache disagrees at {t} on {}", show(token));
        // Steps of 0..=127 s, or of up to ~9 h with the high bit.
        t += if step & 0x80 != 0 {
            u64::from(step & 0x7f) * 256
        } else {
            u64::from(*step)
        };
    }
    assert!(cache.len() <= cache.capacity());
}

/// `verify` must accept only what an independent signature check accepts.
fn check_verify(fx: &Fixture, token: &[u8], now: u64) {
    let Ok(claims) = fx.verifier.verify(token, now) else {
        return;
    };
    let why = independently_valid(fx, token).unwrap_or_else(|why| {
        panic!(
            "accepted a token an independent check refuses ({why}): {}",
            show(token)
        )
    });
    check_claims(fx, token, &claims, now, why);
}

/// The members of a JOSE header or claims set this oracle reads. serde_json's `Value` would
/// also refuse escaped lone surrogates in members nobody reads, which the JSON grammar allows.
#[derive(serde::Deserialize)]
struct Members {
    alg: Option<String>,
    iss: Option<String>,
    exp: Option<serde_json::Number>,
}

/// A base64url segment (padding optional) decoded to UTF-8 text and read as a JSON object.
fn segment_json(segment: &str) -> Result<(String, Members), &'static str> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .map_err(|_| "not base64url")?;
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8")?;
    if !text.trim_start().starts_with('{') {
        return Err("not a JSON object");
    }
    let members = serde_json::from_str(&text).map_err(|_| "not JSON")?;
    Ok((text, members))
}

/// Which key independently verifies `token`, or why none does.
fn independently_valid(fx: &Fixture, token: &[u8]) -> Result<&'static str, &'static str> {
    let text = std::str::from_utf8(token).map_err(|_| "not UTF-8")?;
    let mut segments = text.split('.');
    let (Some(h), Some(p), Some(s), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err("not three segments");
    };
    let signing_input = &token[..h.len() + 1 + p.len()];
    let signature = URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| "signature is not base64url")?;
    let (_, header) = segment_json(h).map_err(|_| "header is not a UTF-8 JSON object")?;
    segment_json(p).map_err(|_| "payload is not a UTF-8 JSON object")?;
    let alg = header.alg.ok_or("no alg")?;
    let rsa: Option<&'static dyn signature::VerificationAlgorithm> = match alg.as_str() {
        "RS256" => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
        "RS384" => Some(&signature::RSA_PKCS1_2048_8192_SHA384),
        "RS512" => Some(&signature::RSA_PKCS1_2048_8192_SHA512),
        "PS256" => Some(&signature::RSA_PSS_2048_8192_SHA256),
        _ => None,
    };
    if let Some(rsa) = rsa {
        return signature::UnparsedPublicKey::new(rsa, &fx.dev_rsa)
            .verify(signing_input, &signature)
            .map(|()| "dev RSA key")
            .map_err(|_| "RSA signature does not verify");
    }
    let (_, algorithm) = HMACS
        .iter()
        .find(|(name, _)| *name == alg)
        .ok_or("unknown alg")?;
    let key = hmac::Key::new(*algorithm, FUZZ_SECRET.as_bytes());
    hmac::verify(&key, signing_input, &signature)
        .map(|()| "fuzz HMAC key")
        .map_err(|_| "HMAC does not verify")
}

/// The claims of an accepted token are the payload's.
fn check_claims(fx: &Fixture, token: &[u8], claims: &Claims, now: u64, key: &str) {
    let text = std::str::from_utf8(token).expect("checked");
    let (_, payload) = segment_json(text.split('.').nth(1).expect("checked")).expect("checked");
    let iss = payload.iss.as_deref();
    assert_eq!(
        iss,
        Some(fx.verifier.issuer_iss(claims.issuer)),
        "issuer of {}",
        show(token)
    );
    let expected_iss = if key == "dev RSA key" {
        DEV_ISSUER
    } else {
        FUZZ_ISSUER
    };
    assert_eq!(
        iss,
        Some(expected_iss),
        "{key} signed a token of another issuer"
    );
    let exp = payload.exp.expect("accepted without exp");
    // NumericDate: an integer, or a fraction truncated (`as` saturates).
    let exp = exp
        .as_u64()
        .or_else(|| exp.as_f64().map(|f| f as u64))
        .expect("numeric exp");
    assert_eq!(claims.expires_at, exp, "exp of {}", show(token));
    assert!(
        now < claims
            .expires_at
            .saturating_add(fx.verifier.clock_skew_secs()),
        "expired token accepted"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardgate::auth::{mint_token, MintOptions};

    /// The harness is not vacuous: both kinds of valid token reach `Ok`, and the independent
    /// check agrees.
    #[test]
    fn valid_tokens_are_accepted_and_independently_valid() {
        let fx = fixture();
        let hmac = hmac_token(
            br#"{"alg":"HS384"}"#,
            br#"{"iss":"https://fuzz.invalid/hmac","exp":2000,"aud":"fuzz-aud"}"#,
            1,
            true,
        );
        assert!(fx.verifier.verify(&hmac, 1000).is_ok());
        assert_eq!(independently_valid(fx, &hmac), Ok("fuzz HMAC key"));
        check_verify(fx, &hmac, 1000);

        let key = std::fs::read(repo_root().join("config/dev-only/jwt-dev-only.key.pem")).unwrap();
        let mut opts = MintOptions::new(DEV_ISSUER);
        opts.issued_at = Some(1000);
        let rsa = mint_token(&key, &opts).unwrap().into_bytes();
        assert!(fx.verifier.verify(&rsa, 1001).is_ok());
        assert_eq!(independently_valid(fx, &rsa), Ok("dev RSA key"));
        check_verify(fx, &rsa, 1001);

        let mut forged = rsa.clone();
        let last = forged.len() - 2;
        forged[last] ^= 1;
        assert!(fx.verifier.verify(&forged, 1001).is_err());
        assert!(independently_valid(fx, &forged).is_err());
    }
}
