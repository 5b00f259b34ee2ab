//! Verifier behaviour, token by token. Tokens are built with ring in `test_support`.

use std::path::Path;

use base64::Engine as _;
use serde_json::{json, Value};
use tempfile::TempDir;

use super::*;
use crate::auth::jws::B64URL;
use crate::auth::test_support::{
    self, signed, signing_input, token, TestKey, DEV_CERT_PATH, DEV_ISSUER,
};
use crate::auth::{extract_bearer, ScopeSet, ScopeTable, TokenCache, TokenUse};
use crate::compile::config::jwt::{JwtIssuerConfig, SharedSecret};

const NOW: u64 = 1_700_000_000;
const SECRET_32: &str = "0123456789abcdef0123456789abcdef";

fn issuer(iss: &str) -> JwtIssuerConfig {
    JwtIssuerConfig {
        name: None,
        issuer: iss.into(),
        certificate: None,
        public_key: None,
        jwks: None,
        audience: vec![],
        shared_secret: None,
        api_key: false,
    }
}

fn issuer_with_secret(iss: &str) -> JwtIssuerConfig {
    JwtIssuerConfig {
        shared_secret: Some(SharedSecret::new(SECRET_32)),
        ..issuer(iss)
    }
}

fn dev_issuer() -> JwtIssuerConfig {
    JwtIssuerConfig {
        certificate: Some(DEV_CERT_PATH.into()),
        ..issuer(DEV_ISSUER)
    }
}

fn verifier_with(issuers: Vec<JwtIssuerConfig>, base: &Path) -> Verifier {
    let cfg = JwtConfig {
        issuers,
        ..JwtConfig::default()
    };
    Verifier::from_config(&cfg, base).unwrap()
}

fn dev_verifier() -> Verifier {
    verifier_with(vec![dev_issuer()], Path::new("/"))
}

fn claims() -> Value {
    json!({"iss": DEV_ISSUER, "sub": "dev", "exp": NOW + 600})
}

fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

fn rs256(payload: &Value) -> String {
    signed(&TestKey::dev_rsa(), Alg::RS256, None, payload)
}

/// A JWKS file with the given JWKs in a fresh directory; returns the directory.
fn jwks_dir(jwks: &[String]) -> TempDir {
    let dir = TempDir::new().unwrap();
    std::fs::write(
        dir.path().join("keys.json"),
        format!("{{\"keys\":[{}]}}", jwks.join(",")),
    )
    .unwrap();
    dir
}

fn jwks_issuer(iss: &str) -> JwtIssuerConfig {
    JwtIssuerConfig {
        jwks: Some("keys.json".into()),
        ..issuer(iss)
    }
}

// --- accepted tokens --------------------------------------------------------------------------

#[test]
fn valid_rs256_rs384_rs512_ps256_tokens_are_accepted() {
    let v = dev_verifier();
    let key = TestKey::dev_rsa();
    for alg in [Alg::RS256, Alg::RS384, Alg::RS512, Alg::PS256] {
        let t = signed(&key, alg, None, &claims());
        let c = v
            .verify(t.as_bytes(), NOW)
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(c.issuer.index(), 0);
        assert_eq!(c.expires_at, NOW + 600);
        assert_eq!(c.subject.as_deref(), Some("dev"));
        assert_eq!(c.key_type, KeyType::Production);
    }
}

#[test]
fn valid_es256_and_es384_tokens_are_accepted() {
    let p256 = TestKey::generate_p256();
    let p384 = TestKey::generate_p384();
    let dir = jwks_dir(&[p256.jwk(Some("p256"), None), p384.jwk(Some("p384"), None)]);
    let v = verifier_with(vec![jwks_issuer(DEV_ISSUER)], dir.path());
    let t = signed(&p256, Alg::ES256, Some("p256"), &claims());
    assert!(v.verify(t.as_bytes(), NOW).is_ok());
    let t = signed(&p384, Alg::ES384, Some("p384"), &claims());
    assert!(v.verify(t.as_bytes(), NOW).is_ok());
}

#[test]
fn public_key_pem_in_spki_and_pkcs1_form_verify_rs256() {
    let spki = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-only/jwt-dev-only.pub.pem"
    );
    let pkcs1 = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/auth/testdata/dev-only-rsa.pkcs1.pub.pem"
    );
    for path in [spki, pkcs1] {
        let v = verifier_with(
            vec![JwtIssuerConfig {
                public_key: Some(path.into()),
                ..issuer(DEV_ISSUER)
            }],
            Path::new("/"),
        );
        assert!(v.verify(rs256(&claims()).as_bytes(), NOW).is_ok(), "{path}");
    }
}

#[test]
fn ec_certificate_verifies_es256() {
    let cert = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/auth/testdata/dev-only-p256.cert.pem"
    );
    let v = verifier_with(
        vec![JwtIssuerConfig {
            certificate: Some(cert.into()),
            ..issuer(DEV_ISSUER)
        }],
        Path::new("/"),
    );
    let key =
        TestKey::p256_from_pkcs8_pem(include_bytes!("../testdata/dev-only-p256.pkcs8.key.pem"));
    let t = signed(&key, Alg::ES256, None, &claims());
    assert!(v.verify(t.as_bytes(), NOW).is_ok());
}

#[test]
fn padded_segments_are_accepted() {
    // Header and payload chosen so every segment needs padding; the issuer signed the padded
    // text, which is what the signature covers (RFC 7515 5.2: the segments as received).
    let header = r#"{"alg": "RS256"}"#; // 16 bytes: encodes with "=="
    let payload = with(claims(), json!({"pad": "x"})).to_string();
    let pad = |s: &str| base64::engine::general_purpose::URL_SAFE.encode(s);
    let (h, p) = (pad(header), pad(&payload));
    let input = format!("{h}.{p}");
    let sig = TestKey::dev_rsa().sign(Alg::RS256, input.as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE.encode(sig);
    assert!(h.ends_with("=="), "fixture must exercise header padding");
    assert!(sig.ends_with("=="), "a 256-byte signature always pads");
    let t = format!("{input}.{sig}");
    assert!(dev_verifier().verify(t.as_bytes(), NOW).is_ok());
    // And the unpadded signature of the same input is fine too.
    let unpadded_sig = sig.trim_end_matches('=');
    let t = format!("{input}.{unpadded_sig}");
    assert!(dev_verifier().verify(t.as_bytes(), NOW).is_ok());
}

// --- time ---------------------------------------------------------------------------------------

#[test]
fn expired_token_is_rejected() {
    let t = rs256(&with(claims(), json!({"exp": NOW - 100})));
    assert_eq!(
        dev_verifier().verify(t.as_bytes(), NOW),
        Err(AuthError::Expired)
    );
}

#[test]
fn token_expired_within_the_skew_is_accepted() {
    let v = dev_verifier();
    let t = rs256(&with(claims(), json!({"exp": NOW})));
    assert!(v.verify(t.as_bytes(), NOW).is_ok());
    assert!(v.verify(t.as_bytes(), NOW + 4).is_ok());
    assert_eq!(v.verify(t.as_bytes(), NOW + 5), Err(AuthError::Expired));
}

#[test]
fn zero_skew_rejects_at_exp() {
    let cfg = JwtConfig {
        issuers: vec![dev_issuer()],
        clock_skew_secs: 0,
        ..JwtConfig::default()
    };
    let v = Verifier::from_config(&cfg, Path::new("/")).unwrap();
    let t = rs256(&with(claims(), json!({"exp": NOW})));
    assert!(v.verify(t.as_bytes(), NOW - 1).is_ok());
    assert_eq!(v.verify(t.as_bytes(), NOW), Err(AuthError::Expired));
}

#[test]
fn token_without_exp_is_rejected() {
    let mut payload = claims();
    payload.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        dev_verifier().verify(rs256(&payload).as_bytes(), NOW),
        Err(AuthError::MissingExpiry)
    );
}

#[test]
fn fractional_exp_is_truncated_and_invalid_exp_is_malformed() {
    let v = dev_verifier();
    let t = rs256(&with(claims(), json!({"exp": (NOW + 10) as f64 + 0.75})));
    assert_eq!(v.verify(t.as_bytes(), NOW).unwrap().expires_at, NOW + 10);
    for exp in [json!(-1), json!("1700000600"), json!(true), json!(-0.5)] {
        let t = rs256(&with(claims(), json!({ "exp": exp })));
        assert!(
            matches!(v.verify(t.as_bytes(), NOW), Err(AuthError::Malformed(_))),
            "{exp}"
        );
    }
}

#[test]
fn nbf_in_the_future_is_rejected() {
    let t = rs256(&with(claims(), json!({"nbf": NOW + 60})));
    assert_eq!(
        dev_verifier().verify(t.as_bytes(), NOW),
        Err(AuthError::NotYetValid)
    );
}

#[test]
fn nbf_within_the_skew_or_past_is_accepted() {
    let v = dev_verifier();
    for nbf in [NOW + 5, NOW, NOW - 1000] {
        let t = rs256(&with(claims(), json!({ "nbf": nbf })));
        assert!(v.verify(t.as_bytes(), NOW).is_ok(), "{nbf}");
    }
    let t = rs256(&with(claims(), json!({"nbf": NOW + 6})));
    assert_eq!(v.verify(t.as_bytes(), NOW), Err(AuthError::NotYetValid));
}

// --- signatures ---------------------------------------------------------------------------------

#[test]
fn one_flipped_bit_in_the_signature_is_a_bad_signature() {
    let t = rs256(&claims());
    let (input, sig) = t.rsplit_once('.').unwrap();
    let mut raw = B64URL.decode(sig).unwrap();
    for byte in [0, raw.len() / 2, raw.len() - 1] {
        raw[byte] ^= 0x01;
        let forged = format!("{input}.{}", B64URL.encode(&raw));
        assert_eq!(
            dev_verifier().verify(forged.as_bytes(), NOW),
            Err(AuthError::BadSignature)
        );
        raw[byte] ^= 0x01;
    }
}

#[test]
fn one_flipped_bit_in_the_payload_is_a_bad_signature() {
    let t = rs256(&claims());
    let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
    let payload = B64URL.decode(&parts[1]).unwrap();
    // Flip the low bit of the 'd' of the subject "dev": still valid JSON, different claims.
    let at = payload
        .windows(11)
        .position(|w| w == br#""sub":"dev""#)
        .unwrap()
        + 7;
    let mut flipped = payload.clone();
    flipped[at] ^= 0x01;
    parts[1] = B64URL.encode(&flipped);
    assert_eq!(
        dev_verifier().verify(parts.join(".").as_bytes(), NOW),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn upgrading_keytype_without_re_signing_is_a_bad_signature() {
    let t = rs256(&claims());
    let sig = t.rsplit_once('.').unwrap().1;
    let header = t.split('.').next().unwrap();
    let sandbox = B64URL.encode(with(claims(), json!({"keytype": "SANDBOX"})).to_string());
    let forged = format!("{header}.{sandbox}.{sig}");
    assert_eq!(
        dev_verifier().verify(forged.as_bytes(), NOW),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn empty_signature_is_a_bad_signature() {
    let t = rs256(&claims());
    let (input, _) = t.rsplit_once('.').unwrap();
    assert_eq!(
        dev_verifier().verify(format!("{input}.").as_bytes(), NOW),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn signature_of_another_key_is_a_bad_signature() {
    let mine = TestKey::generate_p256();
    let theirs = TestKey::generate_p256();
    let dir = jwks_dir(&[mine.jwk(None, None)]);
    let v = verifier_with(vec![jwks_issuer(DEV_ISSUER)], dir.path());
    let t = signed(&theirs, Alg::ES256, None, &claims());
    assert_eq!(v.verify(t.as_bytes(), NOW), Err(AuthError::BadSignature));
}

// --- issuers ------------------------------------------------------------------------------------

#[test]
fn unknown_issuer_is_rejected() {
    let t = rs256(&with(claims(), json!({"iss": "https://evil.example"})));
    assert_eq!(
        dev_verifier().verify(t.as_bytes(), NOW),
        Err(AuthError::UnknownIssuer)
    );
}

#[test]
fn missing_or_null_issuer_is_unknown() {
    let mut payload = claims();
    payload.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        dev_verifier().verify(rs256(&payload).as_bytes(), NOW),
        Err(AuthError::UnknownIssuer)
    );
    let t = rs256(&with(claims(), json!({"iss": null})));
    assert_eq!(
        dev_verifier().verify(t.as_bytes(), NOW),
        Err(AuthError::UnknownIssuer)
    );
}

#[test]
fn issuer_match_is_exact() {
    for iss in [
        "https://localhost/dev-only/",
        "HTTPS://localhost/dev-only",
        " https://localhost/dev-only",
    ] {
        let t = rs256(&with(claims(), json!({ "iss": iss })));
        assert_eq!(
            dev_verifier().verify(t.as_bytes(), NOW),
            Err(AuthError::UnknownIssuer),
            "{iss}"
        );
    }
}

#[test]
fn a_key_of_one_issuer_does_not_verify_tokens_of_another() {
    let key_a = TestKey::generate_p256();
    let key_b = TestKey::generate_p256();
    let dir = TempDir::new().unwrap();
    std::fs::write(
        dir.path().join("a.json"),
        format!("{{\"keys\":[{}]}}", key_a.jwk(None, None)),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.json"),
        format!("{{\"keys\":[{}]}}", key_b.jwk(None, None)),
    )
    .unwrap();
    let v = verifier_with(
        vec![
            JwtIssuerConfig {
                jwks: Some("a.json".into()),
                name: Some("A".into()),
                ..issuer("https://a")
            },
            JwtIssuerConfig {
                jwks: Some("b.json".into()),
                ..issuer("https://b")
            },
        ],
        dir.path(),
    );
    let t = signed(
        &key_b,
        Alg::ES256,
        None,
        &with(claims(), json!({"iss": "https://a"})),
    );
    assert_eq!(v.verify(t.as_bytes(), NOW), Err(AuthError::BadSignature));
    let t = signed(
        &key_b,
        Alg::ES256,
        None,
        &with(claims(), json!({"iss": "https://b"})),
    );
    let c = v.verify(t.as_bytes(), NOW).unwrap();
    assert_eq!(c.issuer.index(), 1);
    assert_eq!(v.issuer_name(c.issuer), "https://b");
    assert_eq!(v.issuer_iss(c.issuer), "https://b");
    assert_eq!(v.issuer_name(IssuerId(0)), "A");
    assert_eq!(v.issuer_count(), 2);
}

// --- algorithms ---------------------------------------------------------------------------------

#[test]
fn alg_none_is_rejected_with_and_without_signature() {
    let v = dev_verifier();
    let payload = claims().to_string();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let input = signing_input(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#), &payload);
        for t in [format!("{input}."), format!("{input}.c2lnbmF0dXJl")] {
            assert_eq!(
                v.verify(t.as_bytes(), NOW),
                Err(AuthError::UnsupportedAlgorithm),
                "{t}"
            );
        }
    }
}

#[test]
fn unknown_algorithms_are_rejected() {
    for alg in ["PS384", "PS512", "ES512", "EdDSA", "RS1", "rs256", ""] {
        let t = token(
            &TestKey::Secret(SECRET_32.into()),
            Alg::HS256,
            &format!(r#"{{"alg":"{alg}"}}"#),
            &claims().to_string(),
        );
        assert_eq!(
            dev_verifier().verify(t.as_bytes(), NOW),
            Err(AuthError::UnsupportedAlgorithm),
            "{alg}"
        );
    }
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_rejected() {
    // The classic confusion attack: the attacker HMACs with the public key's bytes, hoping the
    // verifier feeds its "key" to HMAC. Our RSA keys never verify HS*.
    let v = dev_verifier();
    let spki_pem = test_support::DEV_PUBLIC_KEY_PEM;
    let spki_der = crate::auth::pem::parse(spki_pem).unwrap().der;
    for secret in [
        test_support::DEV_CERT_PEM.to_vec(),
        spki_pem.to_vec(),
        spki_der,
    ] {
        for alg in [Alg::HS256, Alg::HS384, Alg::HS512] {
            let t = signed(&TestKey::Secret(secret.clone()), alg, None, &claims());
            assert_eq!(
                v.verify(t.as_bytes(), NOW),
                Err(AuthError::UnsupportedAlgorithm)
            );
        }
    }
}

#[test]
fn hs256_with_public_key_bytes_fails_even_when_the_issuer_also_has_a_secret() {
    let v = verifier_with(
        vec![JwtIssuerConfig {
            shared_secret: Some(SharedSecret::new(SECRET_32)),
            ..dev_issuer()
        }],
        Path::new("/"),
    );
    let t = signed(
        &TestKey::Secret(test_support::DEV_CERT_PEM.to_vec()),
        Alg::HS256,
        None,
        &claims(),
    );
    assert_eq!(v.verify(t.as_bytes(), NOW), Err(AuthError::BadSignature));
    // Both of its keys still work for their own algorithms.
    let t = signed(
        &TestKey::Secret(SECRET_32.into()),
        Alg::HS256,
        None,
        &claims(),
    );
    assert!(v.verify(t.as_bytes(), NOW).is_ok());
    assert!(v.verify(rs256(&claims()).as_bytes(), NOW).is_ok());
}

#[test]
fn hs256_with_the_configured_shared_secret_is_accepted() {
    let v = verifier_with(
        vec![JwtIssuerConfig {
            shared_secret: Some(SharedSecret::new(SECRET_32)),
            ..issuer(DEV_ISSUER)
        }],
        Path::new("/"),
    );
    let t = signed(
        &TestKey::Secret(SECRET_32.into()),
        Alg::HS256,
        None,
        &claims(),
    );
    assert!(v.verify(t.as_bytes(), NOW).is_ok());
    let wrong = signed(
        &TestKey::Secret(b"0123456789abcdef0123456789abcdeX".to_vec()),
        Alg::HS256,
        None,
        &claims(),
    );
    assert_eq!(
        v.verify(wrong.as_bytes(), NOW),
        Err(AuthError::BadSignature)
    );
    // A 32-byte secret is too short for HS384/HS512 (RFC 7518 3.2).
    let t = signed(
        &TestKey::Secret(SECRET_32.into()),
        Alg::HS512,
        None,
        &claims(),
    );
    assert_eq!(
        v.verify(t.as_bytes(), NOW),
        Err(AuthError::UnsupportedAlgorithm)
    );
    // RSA tokens are not accepted by a secret-only issuer.
    assert_eq!(
        v.verify(rs256(&claims()).as_bytes(), NOW),
        Err(AuthError::UnsupportedAlgorithm)
    );
}

#[test]
fn shared_secret_of_one_issuer_does_not_enable_hs_for_another() {
    let v = verifier_with(
        vec![
            dev_issuer(),
            JwtIssuerConfig {
                shared_secret: Some(SharedSecret::new(SECRET_32)),
                ..issuer("https://internal")
            },
        ],
        Path::new("/"),
    );
    let t = signed(
        &TestKey::Secret(SECRET_32.into()),
        Alg::HS256,
        None,
        &claims(),
    );
    assert_eq!(
        v.verify(t.as_bytes(), NOW),
        Err(AuthError::UnsupportedAlgorithm)
    );
}

#[test]
fn es256_header_with_an_rsa_key_is_rejected() {
    let p256 = TestKey::generate_p256();
    let t = signed(&p256, Alg::ES256, None, &claims());
    assert_eq!(
        dev_verifier().verify(t.as_bytes(), NOW),
        Err(AuthError::UnsupportedAlgorithm)
    );
    // And an RSA signature relabelled as ES256.
    let rsa = rs256(&claims());
    let sig = rsa.rsplit_once('.').unwrap().1;
    let input = signing_input(r#"{"alg":"ES256"}"#, &claims().to_string());
    let t = format!("{input}.{sig}");
    assert_eq!(
        dev_verifier().verify(t.as_bytes(), NOW),
        Err(AuthError::UnsupportedAlgorithm)
    );
}

#[test]
fn es384_header_with_a_p256_key_is_rejected() {
    let p256 = TestKey::generate_p256();
    let p384 = TestKey::generate_p384();
    let dir = jwks_dir(&[p256.jwk(None, None)]);
    let v = verifier_with(vec![jwks_issuer(DEV_ISSUER)], dir.path());
    let t = signed(&p384, Alg::ES384, None, &claims());
    assert_eq!(
        v.verify(t.as_bytes(), NOW),
        Err(AuthError::UnsupportedAlgorithm)
    );
}

#[test]
fn crit_header_is_rejected() {
    let input = signing_input(r#"{"alg":"RS256","crit":["exp"]}"#, &claims().to_string());
    let sig = B64URL.encode(TestKey::dev_rsa().sign(Alg::RS256, input.as_bytes()));
    let t = format!("{input}.{sig}");
    assert!(matches!(
        dev_verifier().verify(t.as_bytes(), NOW),
        Err(AuthError::Malformed(_))
    ));
}

// --- malformed ----------------------------------------------------------------------------------

#[test]
fn garbage_is_malformed() {
    let v = dev_verifier();
    for t in [
        &b"garbage"[..],
        b"",
        b"...",
        b"a.b.c",
        b"eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln",
        b"\x00\x01\x02",
    ] {
        assert!(
            matches!(v.verify(t, NOW), Err(AuthError::Malformed(_))),
            "{t:?}"
        );
    }
}

#[test]
fn two_segments_are_malformed() {
    let t = rs256(&claims());
    let (input, _) = t.rsplit_once('.').unwrap();
    assert!(matches!(
        dev_verifier().verify(input.as_bytes(), NOW),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn four_segments_are_malformed() {
    let t = format!("{}.c2ln", rs256(&claims()));
    assert!(matches!(
        dev_verifier().verify(t.as_bytes(), NOW),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn non_base64_characters_are_malformed() {
    let t = rs256(&claims());
    for (i, bad) in [(3usize, '+'), (5, '/'), (7, '*'), (2, ' ')] {
        let mut s = t.clone();
        s.replace_range(i..i + 1, &bad.to_string());
        assert!(
            matches!(
                dev_verifier().verify(s.as_bytes(), NOW),
                Err(AuthError::Malformed(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn payload_that_is_not_a_claims_object_is_malformed() {
    let key = TestKey::dev_rsa();
    let array_claims = format!(r#"["{DEV_ISSUER}", "dev", {}]"#, NOW + 60);
    for payload in [
        "[]",
        &array_claims,
        "\"x\"",
        "{",
        r#"{"iss":5}"#,
        r#"{"aud":5}"#,
        r#"{"sub":{}}"#,
    ] {
        let t = token(&key, Alg::RS256, r#"{"alg":"RS256"}"#, payload);
        assert!(
            matches!(
                dev_verifier().verify(t.as_bytes(), NOW),
                Err(AuthError::Malformed(_))
            ),
            "{payload}"
        );
    }
}

#[test]
fn duplicate_claims_are_malformed() {
    let payload = format!(
        r#"{{"iss":"https://evil","iss":"{DEV_ISSUER}","exp":{}}}"#,
        NOW + 60
    );
    let t = token(
        &TestKey::dev_rsa(),
        Alg::RS256,
        r#"{"alg":"RS256"}"#,
        &payload,
    );
    assert!(matches!(
        dev_verifier().verify(t.as_bytes(), NOW),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn bearer_extraction_then_verification() {
    let v = dev_verifier();
    let t = rs256(&claims());
    let header = format!("Bearer {t}");
    assert!(v
        .verify(extract_bearer(header.as_bytes()).unwrap(), NOW)
        .is_ok());
    let header = format!("Bearer Bearer {t}");
    assert!(matches!(
        v.verify(extract_bearer(header.as_bytes()).unwrap(), NOW),
        Err(AuthError::Malformed(_))
    ));
    assert_eq!(extract_bearer(b""), Err(AuthError::Missing));
    assert_eq!(
        AuthError::Missing.description(),
        "Make sure you have provided the correct security credentials"
    );
}

// --- audience -----------------------------------------------------------------------------------

fn audience_verifier() -> Verifier {
    verifier_with(
        vec![JwtIssuerConfig {
            audience: vec!["api".into(), "web".into()],
            ..dev_issuer()
        }],
        Path::new("/"),
    )
}

#[test]
fn audience_matches_as_string_or_array_member() {
    let v = audience_verifier();
    for aud in [
        json!("api"),
        json!("web"),
        json!(["other", "web"]),
        json!(["api"]),
    ] {
        let t = rs256(&with(claims(), json!({ "aud": aud })));
        assert!(v.verify(t.as_bytes(), NOW).is_ok(), "{aud}");
    }
}

#[test]
fn audience_mismatch_is_rejected() {
    let v = audience_verifier();
    for aud in [json!("API"), json!("other"), json!([]), json!(["x", "y"])] {
        let t = rs256(&with(claims(), json!({ "aud": aud })));
        assert_eq!(
            v.verify(t.as_bytes(), NOW),
            Err(AuthError::AudienceMismatch),
            "{aud}"
        );
    }
    assert_eq!(
        v.verify(rs256(&claims()).as_bytes(), NOW),
        Err(AuthError::AudienceMismatch),
        "absent"
    );
}

#[test]
fn audience_is_ignored_when_not_configured() {
    let t = rs256(&with(claims(), json!({"aud": "anything"})));
    assert!(dev_verifier().verify(t.as_bytes(), NOW).is_ok());
}

// --- JWKS and kid -------------------------------------------------------------------------------

fn two_key_jwks() -> (TempDir, TestKey) {
    let p256 = TestKey::generate_p256();
    let dir = jwks_dir(&[
        p256.jwk(Some("ec-key"), None),
        test_support::dev_rsa_jwk(Some("rsa-key"), None),
    ]);
    (dir, p256)
}

#[test]
fn jwks_key_is_picked_by_kid() {
    let (dir, p256) = two_key_jwks();
    let v = verifier_with(vec![jwks_issuer(DEV_ISSUER)], dir.path());
    let t = signed(&p256, Alg::ES256, Some("ec-key"), &claims());
    assert!(v.verify(t.as_bytes(), NOW).is_ok());
    let t = signed(&TestKey::dev_rsa(), Alg::RS256, Some("rsa-key"), &claims());
    assert!(v.verify(t.as_bytes(), NOW).is_ok());
}

#[test]
fn unknown_kid_is_rejected() {
    let (dir, p256) = two_key_jwks();
    let v = verifier_with(vec![jwks_issuer(DEV_ISSUER)], dir.path());
    let t = signed(&p256, Alg::ES256, Some("nope"), &claims());
    assert_eq!(v.verify(t.as_bytes(), NOW), Err(AuthError::UnknownKey));
}

#[test]
fn kid_of_a_key_of_the_wrong_type_is_rejected() {
    let (dir, p256) = two_key_jwks();
    let v = verifier_with(vec![jwks_issuer(DEV_ISSUER)], dir.path());
    let t = signed(&p256, Alg::ES256, Some("rsa-key"), &claims());
    assert_eq!(
        v.verify(t.as_bytes(), NOW),
        Err(AuthError::UnsupportedAlgorithm)
    );
}

#[test]
fn kid_of_the_right_type_but_another_key_is_a_bad_signature() {
    let (dir, _) = two_key_jwks();
    let v = verifier_with(vec![jwks_issuer(DEV_ISSUER)], dir.path());
    let other = TestKey::generate_p256();
    let t = signed(&other, Alg::ES256, Some("ec-key"), &claims());
    assert_eq!(v.verify(t.as_bytes(), NOW), Err(AuthError::BadSignature));
}

#[test]
fn token_without_kid_tries_each_fitting_key() {
    let p256_a = TestKey::generate_p256();
    let p256_b = TestKey::generate_p256();
    let dir = jwks_dir(&[
        p256_a.jwk(Some("a"), None),
        test_support::dev_rsa_jwk(Some("r"), None),
        p256_b.jwk(Some("b"), None),
    ]);
    let v = verifier_with(vec![jwks_issuer(DEV_ISSUER)], dir.path());
    for key in [&p256_a, &p256_b] {
        let t = signed(key, Alg::ES256, None, &claims());
        assert!(v.verify(t.as_bytes(), NOW).is_ok());
    }
    assert!(v.verify(rs256(&claims()).as_bytes(), NOW).is_ok());
}

#[test]
fn token_with_kid_falls_back_to_the_certificate_when_no_jwk_has_it() {
    // Many IdPs stamp a kid even when the operator configured their certificate.
    let t = signed(
        &TestKey::dev_rsa(),
        Alg::RS256,
        Some("idp-key-7"),
        &claims(),
    );
    assert!(dev_verifier().verify(t.as_bytes(), NOW).is_ok());
}

#[test]
fn jwk_alg_pins_the_algorithm() {
    let dir = jwks_dir(&[test_support::dev_rsa_jwk(Some("r"), Some("PS256"))]);
    let v = verifier_with(vec![jwks_issuer(DEV_ISSUER)], dir.path());
    let t = signed(&TestKey::dev_rsa(), Alg::RS256, Some("r"), &claims());
    assert_eq!(
        v.verify(t.as_bytes(), NOW),
        Err(AuthError::UnsupportedAlgorithm)
    );
    let t = signed(&TestKey::dev_rsa(), Alg::PS256, Some("r"), &claims());
    assert!(v.verify(t.as_bytes(), NOW).is_ok());
}

#[test]
fn certificate_and_jwks_keys_combine_for_one_issuer() {
    let p256 = TestKey::generate_p256();
    let dir = jwks_dir(&[p256.jwk(Some("new"), None)]);
    let v = verifier_with(
        vec![JwtIssuerConfig {
            jwks: Some("keys.json".into()),
            ..dev_issuer()
        }],
        dir.path(),
    );
    assert!(
        v.verify(rs256(&claims()).as_bytes(), NOW).is_ok(),
        "old certificate"
    );
    let t = signed(&p256, Alg::ES256, Some("new"), &claims());
    assert!(v.verify(t.as_bytes(), NOW).is_ok(), "new JWKS key");
}

// --- keytype ------------------------------------------------------------------------------------

#[test]
fn keytype_selects_the_environment() {
    let v = dev_verifier();
    let cases = [
        (json!("SANDBOX"), KeyType::Sandbox),
        (json!("sandbox"), KeyType::Sandbox),
        (json!("PRODUCTION"), KeyType::Production),
        (json!("production"), KeyType::Production),
        (Value::Null, KeyType::Production),
    ];
    for (keytype, expected) in cases {
        let t = rs256(&with(claims(), json!({ "keytype": keytype })));
        assert_eq!(
            v.verify(t.as_bytes(), NOW).unwrap().key_type,
            expected,
            "{keytype}"
        );
    }
    assert_eq!(
        v.verify(rs256(&claims()).as_bytes(), NOW).unwrap().key_type,
        KeyType::Production,
        "absent"
    );
}

#[test]
fn unknown_keytype_is_rejected() {
    let v = dev_verifier();
    let t = rs256(&with(claims(), json!({"keytype": "STAGING"})));
    assert_eq!(v.verify(t.as_bytes(), NOW), Err(AuthError::InvalidKeyType));
    let t = rs256(&with(claims(), json!({"keytype": 1})));
    assert!(matches!(
        v.verify(t.as_bytes(), NOW),
        Err(AuthError::Malformed(_))
    ));
}

// --- cache with the verifier ----------------------------------------------------------------------

#[test]
fn cached_verification_returns_the_same_claims() {
    let v = dev_verifier();
    let mut cache = TokenCache::new(16, 5);
    let t = rs256(&claims());
    let first = cache.verify(&v, t.as_bytes(), NOW).unwrap();
    assert_eq!(cache.len(), 1);
    let again = cache.verify(&v, t.as_bytes(), NOW + 1).unwrap();
    assert_eq!(first, again);
    assert_eq!(cache.get(t.as_bytes(), NOW + 1), Some(&first));
}

#[test]
fn cache_hit_never_skips_the_expiry_check() {
    let v = dev_verifier();
    let mut cache = TokenCache::new(16, 5);
    let t = rs256(&with(claims(), json!({"exp": NOW + 10})));
    assert!(cache.verify(&v, t.as_bytes(), NOW).is_ok());
    assert!(cache.get(t.as_bytes(), NOW + 14).is_some());
    assert_eq!(cache.get(t.as_bytes(), NOW + 15), None);
    assert_eq!(
        cache.verify(&v, t.as_bytes(), NOW + 15),
        Err(AuthError::Expired)
    );
}

#[test]
fn failed_tokens_are_not_cached() {
    let v = dev_verifier();
    let mut cache = TokenCache::new(16, 5);
    let t = rs256(&with(claims(), json!({"iss": "https://evil"})));
    assert_eq!(
        cache.verify(&v, t.as_bytes(), NOW),
        Err(AuthError::UnknownIssuer)
    );
    assert!(cache.is_empty());
}

#[test]
fn a_new_verifier_empties_the_cache() {
    let old = dev_verifier();
    let mut cache = TokenCache::new(16, 5);
    let t = rs256(&claims());
    cache.verify(&old, t.as_bytes(), NOW).unwrap();
    // Reload: the issuer is gone, so the token must no longer pass, cached or not.
    let new = verifier_with(vec![issuer_with_secret("https://other")], Path::new("/"));
    assert_ne!(old.generation(), new.generation());
    assert_eq!(
        cache.verify(&new, t.as_bytes(), NOW),
        Err(AuthError::UnknownIssuer)
    );
    assert!(cache.is_empty());
}

// --- scopes and API keys ------------------------------------------------------------------------

fn scoped_verifier(issuers: Vec<JwtIssuerConfig>) -> (Verifier, ScopeSet, ScopeSet) {
    let mut table = ScopeTable::new();
    let write = table.require(["write:pets"]);
    let read_write = table.require(["read:pets", "write:pets"]);
    (
        verifier_with(issuers, Path::new("/")).with_scopes(table),
        write,
        read_write,
    )
}

#[test]
fn scope_claim_is_read_as_a_spaced_string_or_an_array() {
    let (v, write, read_write) = scoped_verifier(vec![dev_issuer()]);
    for scope in [
        json!("read:pets  write:pets other"),
        json!(["other", "write:pets", "read:pets"]),
    ] {
        let t = rs256(&with(claims(), json!({ "scope": scope })));
        let c = v.verify(t.as_bytes(), NOW).unwrap();
        assert!(c.scopes.contains_all(&write), "{scope}");
        assert!(c.scopes.contains_all(&read_write), "{scope}");
    }
    let t = rs256(&with(claims(), json!({"scope": "write:pets"})));
    let c = v.verify(t.as_bytes(), NOW).unwrap();
    assert!(c.scopes.contains_all(&write));
    assert!(!c.scopes.contains_all(&read_write));
    let none = v.verify(rs256(&claims()).as_bytes(), NOW).unwrap();
    assert!(!none.scopes.contains_all(&write));
    assert!(none.scopes.contains_all(&ScopeSet::default()));
}

#[test]
fn a_scope_claim_of_another_type_makes_the_token_malformed() {
    let (v, _, _) = scoped_verifier(vec![dev_issuer()]);
    let t = rs256(&with(claims(), json!({"scope": 7})));
    assert!(matches!(
        v.verify(t.as_bytes(), NOW),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn api_key_issuers_sign_api_keys_and_never_bearer_tokens() {
    let v = verifier_with(
        vec![
            JwtIssuerConfig {
                api_key: true,
                ..dev_issuer()
            },
            issuer_with_secret("https://idp"),
        ],
        Path::new("/"),
    );
    let key = rs256(&claims());
    assert!(v.verify_as(key.as_bytes(), NOW, TokenUse::ApiKey).is_ok());
    assert_eq!(
        v.verify_as(key.as_bytes(), NOW, TokenUse::Bearer),
        Err(AuthError::UnknownIssuer)
    );
    let bearer = signed(
        &TestKey::Secret(SECRET_32.into()),
        Alg::HS256,
        None,
        &with(claims(), json!({"iss": "https://idp"})),
    );
    assert!(v.verify(bearer.as_bytes(), NOW).is_ok());
    assert_eq!(
        v.verify_as(bearer.as_bytes(), NOW, TokenUse::ApiKey),
        Err(AuthError::UnknownIssuer)
    );
}

#[test]
fn a_cached_token_is_not_accepted_in_the_other_use() {
    let v = verifier_with(
        vec![JwtIssuerConfig {
            api_key: true,
            ..dev_issuer()
        }],
        Path::new("/"),
    );
    let mut cache = TokenCache::new(16, 5);
    let key = rs256(&claims());
    let none = ScopeSet::default();
    assert!(cache
        .authorize(&v, key.as_bytes(), NOW, TokenUse::ApiKey, &none)
        .is_ok());
    assert_eq!(cache.len(), 1);
    assert_eq!(
        cache.authorize(&v, key.as_bytes(), NOW, TokenUse::Bearer, &none),
        Err(AuthError::UnknownIssuer)
    );
}

#[test]
fn a_cache_hit_answers_the_scope_check_from_the_cached_claims() {
    let (v, write, read_write) = scoped_verifier(vec![dev_issuer()]);
    let mut cache = TokenCache::new(16, 5);
    let t = rs256(&with(claims(), json!({"scope": "write:pets"})));
    let bearer = TokenUse::Bearer;
    assert_eq!(
        cache.authorize(&v, t.as_bytes(), NOW, bearer, &write),
        Ok((KeyType::Production, true))
    );
    assert_eq!(
        cache.authorize(&v, t.as_bytes(), NOW, bearer, &read_write),
        Ok((KeyType::Production, false))
    );
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.get(t.as_bytes(), NOW).unwrap().scopes, {
        let mut expected = ScopeTable::new();
        expected.require(["write:pets"]);
        expected.granted(["write:pets"])
    });
}

// --- configuration errors -----------------------------------------------------------------------

fn config_error(issuers: Vec<JwtIssuerConfig>, base: &Path) -> AuthConfigError {
    let cfg = JwtConfig {
        issuers,
        ..JwtConfig::default()
    };
    match Verifier::from_config(&cfg, base) {
        Ok(_) => panic!("config accepted"),
        Err(err) => err,
    }
}

#[test]
fn missing_certificate_file_names_the_field_and_path() {
    let dir = TempDir::new().unwrap();
    let err = config_error(
        vec![JwtIssuerConfig {
            certificate: Some("x.pem".into()),
            ..issuer("a")
        }],
        dir.path(),
    );
    assert_eq!(err.field(), "jwt.issuers[0].certificate");
    assert_eq!(
        err.to_string(),
        format!(
            "jwt.issuers[0].certificate: cannot read '{}': No such file or directory",
            dir.path().join("x.pem").display()
        )
    );
}

#[test]
fn bad_jwks_key_names_the_field_key_and_kid() {
    let ok = test_support::dev_rsa_jwk(Some("k0"), None);
    let ok1 = TestKey::generate_p256().jwk(Some("k1"), None);
    let dir = jwks_dir(&[
        ok,
        ok1,
        r#"{"kty":"oct","kid":"abc","k":"c2VjcmV0"}"#.into(),
    ]);
    let err = config_error(vec![dev_issuer(), jwks_issuer("b")], dir.path());
    assert_eq!(err.field(), "jwt.issuers[1].jwks");
    assert!(
        err.to_string()
            .starts_with("jwt.issuers[1].jwks: keys[2] (kid 'abc'): has private key member 'k'"),
        "{err}"
    );
    let dir = jwks_dir(&[r#"{"kty":"OKP","kid":"abc"}"#.into()]);
    let err = config_error(vec![jwks_issuer("b")], dir.path());
    assert_eq!(
        err.to_string(),
        "jwt.issuers[0].jwks: keys[0] (kid 'abc'): unsupported kty 'OKP'"
    );
}

#[test]
fn wrong_file_kind_names_the_field() {
    let err = config_error(
        vec![JwtIssuerConfig {
            public_key: Some(DEV_CERT_PATH.into()),
            ..issuer("a")
        }],
        Path::new("/"),
    );
    assert_eq!(err.field(), "jwt.issuers[0].public_key");
    assert!(err.to_string().contains("found 'CERTIFICATE'"), "{err}");
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-only/jwt-dev-only.key.pem"
    );
    let err = config_error(
        vec![JwtIssuerConfig {
            certificate: Some(key.into()),
            ..issuer("a")
        }],
        Path::new("/"),
    );
    assert_eq!(err.field(), "jwt.issuers[0].certificate");
    assert!(err.to_string().contains("never the private key"), "{err}");
}

#[test]
fn structural_errors_come_from_validation() {
    let err = config_error(vec![issuer("a")], Path::new("/"));
    assert!(matches!(err, AuthConfigError::Invalid(_)));
    assert_eq!(err.field(), "jwt.issuers[0]");
    let err = config_error(vec![dev_issuer(), dev_issuer()], Path::new("/"));
    assert_eq!(err.field(), "jwt.issuers[1].issuer");
}

#[test]
fn too_many_keys_for_one_issuer_are_refused() {
    let jwks: Vec<String> = (0..MAX_KEYS_PER_ISSUER)
        .map(|i| test_support::dev_rsa_jwk(Some(&format!("k{i}")), None))
        .collect();
    let dir = jwks_dir(&jwks);
    // 16 JWKS keys alone are fine; one more source makes 17.
    verifier_with(vec![jwks_issuer("a")], dir.path());
    let err = config_error(
        vec![JwtIssuerConfig {
            jwks: Some("keys.json".into()),
            ..dev_issuer()
        }],
        dir.path(),
    );
    assert_eq!(err.field(), "jwt.issuers[0]");
    assert!(err.to_string().contains("17 keys"), "{err}");
}

#[test]
fn empty_config_builds_a_verifier_that_knows_no_issuer() {
    let v = Verifier::from_config(&JwtConfig::default(), Path::new("/")).unwrap();
    assert_eq!(v.issuer_count(), 0);
    assert_eq!(
        v.verify(rs256(&claims()).as_bytes(), NOW),
        Err(AuthError::UnknownIssuer)
    );
}

#[test]
fn debug_output_shows_issuers_but_no_secret() {
    let v = verifier_with(vec![issuer_with_secret("https://internal")], Path::new("/"));
    let shown = format!("{v:?}");
    assert!(shown.contains("https://internal"), "{shown}");
    assert!(!shown.contains(SECRET_32), "{shown}");
}

#[test]
fn verifier_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Verifier>();
    assert_send_sync::<std::sync::Arc<Verifier>>();
}

#[test]
fn relative_paths_resolve_against_the_base_directory() {
    let dir = TempDir::new().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::write(dir.path().join("keys/dev.pem"), test_support::DEV_CERT_PEM).unwrap();
    let v = verifier_with(
        vec![JwtIssuerConfig {
            certificate: Some("keys/dev.pem".into()),
            ..issuer(DEV_ISSUER)
        }],
        dir.path(),
    );
    assert!(v.verify(rs256(&claims()).as_bytes(), NOW).is_ok());
}
