//! Development tokens for `shardgate token`: RS256 with an RSA private key, ES256/ES384 with an
//! EC P-256/P-384 key. For quick starts and tests only; production tokens come from an IdP.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};
use serde_json::{Map, Value};
use thiserror::Error;

use super::claims::KeyType;
use super::der::{self, oid};
use super::jws::{Alg, B64URL};
use super::pem::{self, PemError};

/// What to put in a minted token.
#[derive(Debug, Clone, PartialEq)]
pub struct MintOptions {
    /// `iss` (`--issuer`).
    pub issuer: String,
    /// `sub`; default `dev` (an extra `sub` claim overrides it).
    pub subject: String,
    /// `keytype` (`--keytype`); default PRODUCTION.
    pub key_type: KeyType,
    /// Lifetime in seconds (`--ttl`, see `parse_ttl`); default 3600.
    pub ttl_secs: u64,
    /// `iat`; `None` = the system clock now.
    pub issued_at: Option<u64>,
    /// `kid` header (`--kid`).
    pub kid: Option<String>,
    /// `aud` (`--aud`, repeatable): one value is written as a string, several as an array.
    pub audience: Vec<String>,
    /// Extra claims (`--claim k=v`, see `parse_claim`).
    pub extra_claims: Vec<(String, Value)>,
}

impl MintOptions {
    /// Defaults for everything but the issuer.
    pub fn new(issuer: impl Into<String>) -> Self {
        MintOptions {
            issuer: issuer.into(),
            subject: "dev".into(),
            key_type: KeyType::Production,
            ttl_secs: 3600,
            issued_at: None,
            kid: None,
            audience: Vec::new(),
            extra_claims: Vec::new(),
        }
    }
}

/// Why no token was minted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MintError {
    #[error("key: {0}")]
    Pem(#[from] PemError),
    #[error(
        "key: PEM '{0}' is not a supported private key (give an RSA or EC P-256/P-384 key as \
         'PRIVATE KEY', 'RSA PRIVATE KEY' or 'EC PRIVATE KEY')"
    )]
    UnsupportedKey(String),
    #[error("key: rejected: {0}")]
    KeyRejected(String),
    #[error(
        "invalid ttl '{0}': expected seconds or a number with s, m, h or d (e.g. 90s, 30m, 1h)"
    )]
    Ttl(String),
    #[error("invalid claim '{0}': expected name=value")]
    Claim(String),
    #[error("claim '{0}' is set by {1}, not --claim")]
    ReservedClaim(String, &'static str),
    #[error("claim '{0}' is given twice")]
    DuplicateClaim(String),
    #[error("signing failed")]
    Signing,
    #[error("system clock is before 1970")]
    Clock,
}

/// Parses a lifetime: plain seconds (`3600`) or a number with `s`, `m`, `h` or `d`.
pub fn parse_ttl(text: &str) -> Result<u64, MintError> {
    let bad = || MintError::Ttl(text.to_owned());
    let trimmed = text.trim();
    let (digits, unit) = match trimmed.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&trimmed[..i], c.to_ascii_lowercase()),
        _ => (trimmed, 's'),
    };
    let multiplier = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let value: u64 = digits.parse().map_err(|_| bad())?;
    match value.checked_mul(multiplier) {
        Some(0) | None => Err(bad()),
        Some(secs) => Ok(secs),
    }
}

/// Parses `name=value`. The value becomes a JSON number or boolean when it parses as one,
/// otherwise a string (`--claim scope=read` -> `"read"`, `--claim admin=true` -> `true`).
pub fn parse_claim(arg: &str) -> Result<(String, Value), MintError> {
    let Some((name, raw)) = arg.split_once('=') else {
        return Err(MintError::Claim(arg.to_owned()));
    };
    if name.is_empty() {
        return Err(MintError::Claim(arg.to_owned()));
    }
    let value = match serde_json::from_str::<Value>(raw) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(raw.to_owned()),
    };
    Ok((name.to_owned(), value))
}

/// Claims with their own option; `--claim` may not set them.
const RESERVED: [(&str, &str); 5] = [
    ("iss", "--issuer"),
    ("iat", "the clock"),
    ("exp", "--ttl"),
    ("keytype", "--keytype"),
    ("aud", "--aud"),
];

/// A signing key read from PEM.
enum SigningKey {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair, Alg),
}

/// Mints a compact JWS signed with `key_pem`: RS256 for RSA keys (PKCS#8 or PKCS#1), ES256 for
/// P-256 and ES384 for P-384 keys (PKCS#8 or SEC1).
pub fn mint_token(key_pem: &[u8], opts: &MintOptions) -> Result<String, MintError> {
    let rng = SystemRandom::new();
    let key = signing_key(key_pem, &rng)?;
    let alg = match &key {
        SigningKey::Rsa(_) => Alg::RS256,
        SigningKey::Ec(_, alg) => *alg,
    };

    let mut header = Map::new();
    header.insert("alg".into(), alg.name().into());
    header.insert("typ".into(), "JWT".into());
    if let Some(kid) = &opts.kid {
        header.insert("kid".into(), kid.as_str().into());
    }

    let iat = match opts.issued_at {
        Some(iat) => iat,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| MintError::Clock)?
            .as_secs(),
    };
    let mut claims = Map::new();
    claims.insert("iss".into(), opts.issuer.as_str().into());
    claims.insert("sub".into(), opts.subject.as_str().into());
    claims.insert("iat".into(), iat.into());
    claims.insert("exp".into(), iat.saturating_add(opts.ttl_secs).into());
    claims.insert("keytype".into(), opts.key_type.as_str().into());
    match opts.audience.as_slice() {
        [] => {}
        [one] => {
            claims.insert("aud".into(), one.as_str().into());
        }
        many => {
            claims.insert("aud".into(), many.into());
        }
    }
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in &opts.extra_claims {
        if let Some((_, option)) = RESERVED.iter().find(|(r, _)| r == name) {
            return Err(MintError::ReservedClaim(name.clone(), option));
        }
        if seen.contains(&name.as_str()) {
            return Err(MintError::DuplicateClaim(name.clone()));
        }
        seen.push(name);
        claims.insert(name.clone(), value.clone());
    }

    let signing_input = format!(
        "{}.{}",
        B64URL.encode(Value::Object(header).to_string()),
        B64URL.encode(Value::Object(claims).to_string())
    );
    let signature = match &key {
        SigningKey::Rsa(pair) => {
            let mut sig = vec![0; pair.public().modulus_len()];
            pair.sign(
                &signature::RSA_PKCS1_SHA256,
                &rng,
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| MintError::Signing)?;
            sig
        }
        SigningKey::Ec(pair, _) => pair
            .sign(&rng, signing_input.as_bytes())
            .map_err(|_| MintError::Signing)?
            .as_ref()
            .to_vec(),
    };
    Ok(format!("{signing_input}.{}", B64URL.encode(signature)))
}

fn signing_key(key_pem: &[u8], rng: &SystemRandom) -> Result<SigningKey, MintError> {
    let block = pem::parse(key_pem)?;
    let rejected = |e: ring::error::KeyRejected| MintError::KeyRejected(e.to_string());
    match block.label.as_str() {
        "PRIVATE KEY" => {
            // PKCS#8: PrivateKeyInfo { version, AlgorithmIdentifier { oid, params }, key }.
            let (algorithm, curve) = pkcs8_algorithm(&block.der)
                .ok_or_else(|| MintError::KeyRejected("not a valid PKCS#8 key".into()))?;
            if algorithm == oid::RSA_ENCRYPTION {
                RsaKeyPair::from_pkcs8(&block.der)
                    .map(SigningKey::Rsa)
                    .map_err(rejected)
            } else if algorithm == oid::EC_PUBLIC_KEY {
                let (ring_alg, alg) = ec_signing_alg(curve)?;
                EcdsaKeyPair::from_pkcs8(ring_alg, &block.der, rng)
                    .map(|pair| SigningKey::Ec(pair, alg))
                    .map_err(rejected)
            } else {
                Err(MintError::UnsupportedKey(block.label))
            }
        }
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&block.der)
            .map(SigningKey::Rsa)
            .map_err(rejected),
        "EC PRIVATE KEY" => {
            let sec1 = der::parse_sec1_private_key(&block.der)
                .map_err(|e| MintError::KeyRejected(format!("not a valid SEC1 key: {e}")))?;
            let (ring_alg, alg) = ec_signing_alg(sec1.curve)?;
            let public = sec1.public_key.ok_or_else(|| {
                MintError::KeyRejected(
                    "SEC1 key without its public key; convert it with `openssl pkcs8 -topk8 \
                     -nocrypt`"
                        .into(),
                )
            })?;
            EcdsaKeyPair::from_private_key_and_public_key(ring_alg, sec1.private_key, public, rng)
                .map(|pair| SigningKey::Ec(pair, alg))
                .map_err(rejected)
        }
        _ => Err(MintError::UnsupportedKey(block.label)),
    }
}

fn pkcs8_algorithm(der_bytes: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let mut info = der::DerReader::new(der::read_single(der_bytes, der::TAG_SEQUENCE).ok()?);
    info.read(der::TAG_INTEGER).ok()?;
    let mut alg_id = der::DerReader::new(info.read(der::TAG_SEQUENCE).ok()?);
    let algorithm = alg_id.read(der::TAG_OID).ok()?;
    let curve = alg_id.read_optional(der::TAG_OID).ok()?;
    Some((algorithm, curve))
}

fn ec_signing_alg(
    curve: Option<&[u8]>,
) -> Result<(&'static signature::EcdsaSigningAlgorithm, Alg), MintError> {
    match curve {
        Some(c) if c == oid::P256 => Ok((&signature::ECDSA_P256_SHA256_FIXED_SIGNING, Alg::ES256)),
        Some(c) if c == oid::P384 => Ok((&signature::ECDSA_P384_SHA384_FIXED_SIGNING, Alg::ES384)),
        _ => Err(MintError::KeyRejected(
            "unsupported EC curve (only P-256 and P-384)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::{self, DEV_CERT_PATH, DEV_ISSUER};
    use crate::auth::{AuthError, Verifier};
    use crate::compile::config::jwt::{JwtConfig, JwtIssuerConfig};
    use std::path::Path;

    const PKCS1_KEY: &[u8] = include_bytes!("testdata/dev-only-rsa.pkcs1.key.pem");
    const P256_PKCS8: &[u8] = include_bytes!("testdata/dev-only-p256.pkcs8.key.pem");
    const P256_SEC1: &[u8] = include_bytes!("testdata/dev-only-p256.sec1.key.pem");
    const P256_SPKI: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/auth/testdata/dev-only-p256.pub.pem"
    );
    const P384_PKCS8: &[u8] = include_bytes!("testdata/dev-only-p384.pkcs8.key.pem");
    const P384_SPKI: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/auth/testdata/dev-only-p384.pub.pem"
    );
    const NOW: u64 = 1_700_000_000;

    fn verifier(certificate: Option<&str>, public_key: Option<&str>) -> Verifier {
        let cfg = JwtConfig {
            issuers: vec![JwtIssuerConfig {
                name: None,
                issuer: DEV_ISSUER.into(),
                certificate: certificate.map(Into::into),
                public_key: public_key.map(Into::into),
                jwks: None,
                audience: vec!["api".into()],
                shared_secret: None,
                api_key: false,
            }],
            ..JwtConfig::default()
        };
        Verifier::from_config(&cfg, Path::new("/")).unwrap()
    }

    fn opts() -> MintOptions {
        MintOptions {
            issued_at: Some(NOW),
            audience: vec!["api".into()],
            ..MintOptions::new(DEV_ISSUER)
        }
    }

    fn header_and_claims(token: &str) -> (Value, Value) {
        let mut parts = token.split('.');
        let mut next = || -> Value {
            serde_json::from_slice(&B64URL.decode(parts.next().unwrap()).unwrap()).unwrap()
        };
        (next(), next())
    }

    #[test]
    fn rsa_pkcs8_round_trip_verifies_with_the_dev_certificate() {
        let token = mint_token(test_support::DEV_PRIVATE_KEY_PEM, &opts()).unwrap();
        let claims = verifier(Some(DEV_CERT_PATH), None)
            .verify(token.as_bytes(), NOW + 10)
            .unwrap();
        assert_eq!(claims.expires_at, NOW + 3600);
        assert_eq!(claims.key_type, KeyType::Production);
        assert_eq!(claims.subject.as_deref(), Some("dev"));
        let (header, _) = header_and_claims(&token);
        assert_eq!(header["alg"], "RS256");
    }

    #[test]
    fn rsa_pkcs1_round_trip_verifies() {
        let token = mint_token(PKCS1_KEY, &opts()).unwrap();
        verifier(Some(DEV_CERT_PATH), None)
            .verify(token.as_bytes(), NOW)
            .unwrap();
    }

    #[test]
    fn ec_p256_pkcs8_and_sec1_round_trip_as_es256() {
        let v = verifier(None, Some(P256_SPKI));
        for key in [P256_PKCS8, P256_SEC1] {
            let token = mint_token(key, &opts()).unwrap();
            assert_eq!(header_and_claims(&token).0["alg"], "ES256");
            v.verify(token.as_bytes(), NOW).unwrap();
        }
    }

    #[test]
    fn ec_p384_round_trips_as_es384() {
        let token = mint_token(P384_PKCS8, &opts()).unwrap();
        assert_eq!(header_and_claims(&token).0["alg"], "ES384");
        verifier(None, Some(P384_SPKI))
            .verify(token.as_bytes(), NOW)
            .unwrap();
    }

    #[test]
    fn minted_claims_carry_options_and_extras() {
        let options = MintOptions {
            key_type: KeyType::Sandbox,
            ttl_secs: 90,
            kid: Some("dev-1".into()),
            audience: vec!["api".into(), "b".into()],
            extra_claims: vec![
                parse_claim("sub=alice").unwrap(),
                parse_claim("admin=true").unwrap(),
                parse_claim("level=3").unwrap(),
                parse_claim("scope=read write").unwrap(),
            ],
            ..opts()
        };
        let token = mint_token(test_support::DEV_PRIVATE_KEY_PEM, &options).unwrap();
        let (header, claims) = header_and_claims(&token);
        assert_eq!(header["kid"], "dev-1");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(claims["iss"], DEV_ISSUER);
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["iat"], NOW);
        assert_eq!(claims["exp"], NOW + 90);
        assert_eq!(claims["keytype"], "SANDBOX");
        assert_eq!(claims["aud"], serde_json::json!(["api", "b"]));
        assert_eq!(claims["admin"], true);
        assert_eq!(claims["level"], 3);
        assert_eq!(claims["scope"], "read write");
        let verified = verifier(Some(DEV_CERT_PATH), None)
            .verify(token.as_bytes(), NOW)
            .unwrap();
        assert_eq!(verified.key_type, KeyType::Sandbox);
        assert_eq!(verified.subject.as_deref(), Some("alice"));
    }

    #[test]
    fn minted_token_expires_after_its_ttl() {
        let token = mint_token(
            test_support::DEV_PRIVATE_KEY_PEM,
            &MintOptions {
                ttl_secs: 60,
                ..opts()
            },
        )
        .unwrap();
        let v = verifier(Some(DEV_CERT_PATH), None);
        assert!(
            v.verify(token.as_bytes(), NOW + 60).is_ok(),
            "within the 5 s skew"
        );
        assert_eq!(
            v.verify(token.as_bytes(), NOW + 65),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn reserved_and_duplicate_extra_claims_are_refused() {
        let with = |claims: Vec<(String, Value)>| {
            mint_token(
                test_support::DEV_PRIVATE_KEY_PEM,
                &MintOptions {
                    extra_claims: claims,
                    ..opts()
                },
            )
        };
        assert_eq!(
            with(vec![parse_claim("exp=1").unwrap()]),
            Err(MintError::ReservedClaim("exp".into(), "--ttl"))
        );
        assert!(matches!(
            with(vec![parse_claim("iss=x").unwrap()]),
            Err(MintError::ReservedClaim(..))
        ));
        assert_eq!(
            with(vec![
                parse_claim("a=1").unwrap(),
                parse_claim("a=2").unwrap()
            ]),
            Err(MintError::DuplicateClaim("a".into()))
        );
    }

    #[test]
    fn public_keys_and_garbage_are_not_signing_keys() {
        assert!(matches!(
            mint_token(test_support::DEV_CERT_PEM, &opts()),
            Err(MintError::UnsupportedKey(label)) if label == "CERTIFICATE"
        ));
        assert!(matches!(
            mint_token(b"nothing", &opts()),
            Err(MintError::Pem(PemError::NoBlock))
        ));
    }

    #[test]
    fn ed25519_pkcs8_keys_are_not_supported() {
        let rng = SystemRandom::new();
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pem_text = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        assert!(matches!(
            mint_token(pem_text.as_bytes(), &opts()),
            Err(MintError::UnsupportedKey(label)) if label == "PRIVATE KEY"
        ));
    }

    #[test]
    fn claim_values_parse_as_numbers_and_bools_else_strings() {
        assert_eq!(parse_claim("n=42").unwrap(), ("n".into(), Value::from(42)));
        assert_eq!(parse_claim("f=1.5").unwrap().1, Value::from(1.5));
        assert_eq!(parse_claim("b=false").unwrap().1, Value::Bool(false));
        assert_eq!(parse_claim("s=hello").unwrap().1, Value::from("hello"));
        assert_eq!(
            parse_claim("q=\"quoted\"").unwrap().1,
            Value::from("\"quoted\"")
        );
        assert_eq!(parse_claim("nul=null").unwrap().1, Value::from("null"));
        assert_eq!(parse_claim("arr=[1]").unwrap().1, Value::from("[1]"));
        assert_eq!(parse_claim("e=").unwrap().1, Value::from(""));
        assert_eq!(
            parse_claim("kv=a=b").unwrap(),
            ("kv".into(), Value::from("a=b"))
        );
        assert!(matches!(parse_claim("novalue"), Err(MintError::Claim(_))));
        assert!(matches!(parse_claim("=v"), Err(MintError::Claim(_))));
    }

    #[test]
    fn ttl_accepts_seconds_and_units() {
        assert_eq!(parse_ttl("3600").unwrap(), 3600);
        assert_eq!(parse_ttl("90s").unwrap(), 90);
        assert_eq!(parse_ttl("30m").unwrap(), 1800);
        assert_eq!(parse_ttl("1h").unwrap(), 3600);
        assert_eq!(parse_ttl("2d").unwrap(), 172_800);
        assert_eq!(parse_ttl("1H").unwrap(), 3600);
        assert_eq!(parse_ttl(" 5m ").unwrap(), 300);
    }

    #[test]
    fn ttl_rejects_zero_garbage_and_overflow() {
        for bad in [
            "",
            "h",
            "0",
            "0s",
            "-1",
            "1.5h",
            "1w",
            "1hh",
            "h1",
            "1 h",
            "99999999999999999999",
            "999999999999999999d",
        ] {
            assert!(matches!(parse_ttl(bad), Err(MintError::Ttl(_))), "{bad:?}");
        }
    }
}
