//! Verification keys: loading them from certificates, public keys, JWKS files and shared
//! secrets, and checking one signature with one key. A key is bound to its type: RSA keys verify
//! only RS*/PS*, EC keys only the ES* of their curve, and secrets only HS* — so a public key can
//! never be used as an HMAC secret.

use std::io;
use std::path::Path;

use ring::{hmac, signature};
use serde_json::{Map, Value};

use super::der::{self, oid};
use super::jws::{Alg, B64URL};
use super::pem;
use base64::Engine as _;

/// Smallest RSA modulus accepted, in bits (ring's verification minimum).
const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (ring's verification maximum).
const MAX_RSA_BITS: usize = 8192;

/// An elliptic curve this gateway verifies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Curve {
    P256,
    P384,
}

impl Curve {
    /// Bytes of one coordinate.
    fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }
}

/// The key itself.
pub(crate) enum KeyMaterial {
    /// RSA modulus and exponent, big-endian without leading zeros.
    Rsa(signature::RsaPublicKeyComponents<Box<[u8]>>),
    /// An uncompressed EC point (0x04 || x || y).
    Ec { curve: Curve, point: Box<[u8]> },
    /// A shared secret, ready for each HMAC size (boxed: the keys are large).
    Hmac(Box<HmacKeys>),
}

/// One secret prepared for HS256, HS384 and HS512.
pub(crate) struct HmacKeys {
    secret_len: usize,
    hs256: hmac::Key,
    hs384: hmac::Key,
    hs512: hmac::Key,
}

/// One key an issuer signs with.
pub(crate) struct VerifyKey {
    /// JWKS `kid`; `None` for certificates, public keys, secrets and kid-less JWKS entries.
    pub kid: Option<String>,
    /// JWKS `alg`: when set, the only algorithm this key may verify.
    pub alg: Option<Alg>,
    pub material: KeyMaterial,
}

impl VerifyKey {
    fn new(material: KeyMaterial) -> Self {
        VerifyKey {
            kid: None,
            alg: None,
            material,
        }
    }

    /// True when this key may verify `alg` (key type, curve, JWKS `alg`, HMAC key length).
    pub fn supports(&self, alg: Alg) -> bool {
        if self.alg.is_some_and(|only| only != alg) {
            return false;
        }
        match (&self.material, alg) {
            (KeyMaterial::Rsa(_), Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256) => true,
            (KeyMaterial::Ec { curve, .. }, Alg::ES256) => *curve == Curve::P256,
            (KeyMaterial::Ec { curve, .. }, Alg::ES384) => *curve == Curve::P384,
            // RFC 7518 3.2: the key must be at least as long as the hash output.
            (KeyMaterial::Hmac(keys), Alg::HS256) => keys.secret_len >= 32,
            (KeyMaterial::Hmac(keys), Alg::HS384) => keys.secret_len >= 48,
            (KeyMaterial::Hmac(keys), Alg::HS512) => keys.secret_len >= 64,
            _ => false,
        }
    }

    /// Checks `signature` over `message`. `false` also when the key does not support `alg`.
    pub fn verify(&self, alg: Alg, message: &[u8], sig: &[u8]) -> bool {
        if !self.supports(alg) {
            return false;
        }
        match &self.material {
            KeyMaterial::Rsa(components) => {
                let params = match alg {
                    Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    _ => return false,
                };
                components.verify(params, message, sig).is_ok()
            }
            KeyMaterial::Ec { curve, point } => {
                let alg: &dyn signature::VerificationAlgorithm = match curve {
                    Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
                    Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
                };
                signature::UnparsedPublicKey::new(alg, point)
                    .verify(message, sig)
                    .is_ok()
            }
            KeyMaterial::Hmac(keys) => {
                let key = match alg {
                    Alg::HS256 => &keys.hs256,
                    Alg::HS384 => &keys.hs384,
                    Alg::HS512 => &keys.hs512,
                    _ => return false,
                };
                hmac::verify(key, message, sig).is_ok()
            }
        }
    }
}

/// A key could not be loaded; the caller adds the field path.
pub(crate) type LoadResult<T> = Result<T, String>;

/// Reads a file, phrasing the failure as `cannot read '<path>': <reason>`.
pub(crate) fn read_file(path: &Path) -> LoadResult<Vec<u8>> {
    std::fs::read(path)
        .map_err(|err| format!("cannot read '{}': {}", path.display(), io_reason(&err)))
}

/// The OS error text without Rust's " (os error N)" suffix.
fn io_reason(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(end) => text[..end].to_owned(),
        None => text,
    }
}

/// The key of a PEM X.509 certificate (RSA or EC P-256/P-384). Only the key is used: the
/// certificate's validity dates and chain are not checked (it is a key container, as in CC).
pub(crate) fn key_from_certificate_pem(pem_text: &[u8]) -> LoadResult<VerifyKey> {
    let block = pem::parse(pem_text).map_err(|e| e.to_string())?;
    if block.label != "CERTIFICATE" {
        return Err(format!(
            "expected a PEM 'CERTIFICATE', found '{}'{}",
            block.label,
            hint_for_label(&block.label)
        ));
    }
    let spki = der::certificate_spki(&block.der)
        .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
    key_from_spki(spki).map(VerifyKey::new)
}

/// The key of a PEM public key: SubjectPublicKeyInfo ("PUBLIC KEY", RSA or EC) or PKCS#1
/// ("RSA PUBLIC KEY").
pub(crate) fn key_from_public_key_pem(pem_text: &[u8]) -> LoadResult<VerifyKey> {
    let block = pem::parse(pem_text).map_err(|e| e.to_string())?;
    let material = match block.label.as_str() {
        "PUBLIC KEY" => key_from_spki(&block.der)?,
        "RSA PUBLIC KEY" => {
            let (n, e) = der::parse_rsa_public_key(&block.der)
                .map_err(|e| format!("not a valid PKCS#1 RSA public key: {e}"))?;
            rsa_key(n, e)?
        }
        other => {
            return Err(format!(
                "expected a PEM 'PUBLIC KEY' or 'RSA PUBLIC KEY', found '{other}'{}",
                hint_for_label(other)
            ))
        }
    };
    Ok(VerifyKey::new(material))
}

fn hint_for_label(label: &str) -> &'static str {
    if label.contains("PRIVATE KEY") {
        " (a private key: give the public key or certificate, never the private key)"
    } else if label == "CERTIFICATE" {
        " (use the 'certificate' field for certificates)"
    } else if label.contains("PUBLIC KEY") {
        " (use the 'public_key' field for public keys)"
    } else {
        ""
    }
}

/// The key of a DER SubjectPublicKeyInfo.
fn key_from_spki(spki: &[u8]) -> LoadResult<KeyMaterial> {
    let spki =
        der::parse_spki(spki).map_err(|e| format!("not a valid SubjectPublicKeyInfo: {e}"))?;
    if spki.algorithm == oid::RSA_ENCRYPTION {
        let (n, e) = der::parse_rsa_public_key(spki.public_key)
            .map_err(|e| format!("not a valid RSA public key: {e}"))?;
        rsa_key(n, e)
    } else if spki.algorithm == oid::EC_PUBLIC_KEY {
        let curve = match spki.curve {
            Some(c) if c == oid::P256 => Curve::P256,
            Some(c) if c == oid::P384 => Curve::P384,
            _ => return Err("unsupported EC curve (only P-256 and P-384)".into()),
        };
        ec_key(curve, spki.public_key)
    } else {
        Err("unsupported key algorithm (only RSA and EC P-256/P-384)".into())
    }
}

/// Checks RSA parameters ring will accept, so a bad key fails at load rather than as a
/// `BadSignature` on every request.
fn rsa_key(n: &[u8], e: &[u8]) -> LoadResult<KeyMaterial> {
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    let bits = match n.first() {
        Some(&top) => n.len() * 8 - top.leading_zeros() as usize,
        None => 0,
    };
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
        ));
    }
    if bits > MAX_RSA_BITS {
        return Err(format!(
            "RSA key has {bits} bits; at most {MAX_RSA_BITS} are supported"
        ));
    }
    // ring: odd, at least 3, at most 2^33 - 1.
    let exponent_ok = !e.is_empty()
        && e.len() <= 5
        && e.last().is_some_and(|&low| low & 1 == 1)
        && (e.len() > 1 || e[0] >= 3)
        && (e.len() < 5 || e[0] <= 1);
    if !exponent_ok {
        return Err("unsupported RSA public exponent".into());
    }
    Ok(KeyMaterial::Rsa(signature::RsaPublicKeyComponents {
        n: n.into(),
        e: e.into(),
    }))
}

fn strip_leading_zeros(mut bytes: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

/// Checks the point's encoding (uncompressed, right size). Whether it lies on the curve is
/// checked by ring at each verification.
fn ec_key(curve: Curve, point: &[u8]) -> LoadResult<KeyMaterial> {
    if point.len() != 1 + 2 * curve.coordinate_len() || point[0] != 0x04 {
        return Err(format!(
            "{} public key is not an uncompressed point",
            curve.name()
        ));
    }
    Ok(KeyMaterial::Ec {
        curve,
        point: point.into(),
    })
}

/// An HMAC key for HS256/384/512.
pub(crate) fn key_from_secret(secret: &[u8]) -> VerifyKey {
    VerifyKey::new(KeyMaterial::Hmac(Box::new(HmacKeys {
        secret_len: secret.len(),
        hs256: hmac::Key::new(hmac::HMAC_SHA256, secret),
        hs384: hmac::Key::new(hmac::HMAC_SHA384, secret),
        hs512: hmac::Key::new(hmac::HMAC_SHA512, secret),
    })))
}

/// JWK members that only private keys have; a JWKS holding them is a leaked private key.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

/// The signing keys of a JWKS document (RFC 7517). Keys with `"use"` other than `"sig"` are
/// skipped; everything else must be a usable RSA or EC P-256/P-384 public key, otherwise the
/// whole file is refused with the key's position and `kid` named. Duplicate `kid`s are refused.
pub(crate) fn keys_from_jwks(json: &[u8]) -> LoadResult<Vec<VerifyKey>> {
    let doc: Value = serde_json::from_slice(json).map_err(|e| format!("not valid JSON: {e}"))?;
    let entries = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("not a JWKS: no \"keys\" array")?;
    let mut keys: Vec<VerifyKey> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let Some(jwk) = entry.as_object() else {
            return Err(format!("keys[{i}]: not a JSON object"));
        };
        let kid = match jwk.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(format!("keys[{i}]: 'kid' is not a string")),
        };
        let at = match &kid {
            Some(kid) => format!("keys[{i}] (kid '{kid}')"),
            None => format!("keys[{i}]"),
        };
        match jwk.get("use") {
            None => {}
            Some(Value::String(u)) if u == "sig" => {}
            Some(Value::String(_)) => continue, // an encryption key: not for signatures
            Some(_) => return Err(format!("{at}: 'use' is not a string")),
        }
        let key = key_from_jwk(jwk).map_err(|problem| format!("{at}: {problem}"))?;
        if let Some(kid) = &kid {
            if keys.iter().any(|k| k.kid.as_ref() == Some(kid)) {
                return Err(format!("{at}: duplicate kid"));
            }
        }
        keys.push(VerifyKey { kid, ..key });
    }
    if keys.is_empty() {
        return Err("JWKS has no signing keys".into());
    }
    Ok(keys)
}

fn key_from_jwk(jwk: &Map<String, Value>) -> LoadResult<VerifyKey> {
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
        return Err(format!(
            "has private key member '{member}'; give the public JWKS only"
        ));
    }
    let kty = string_member(jwk, "kty")?;
    let material = match kty {
        "RSA" => rsa_key(&b64_member(jwk, "n")?, &b64_member(jwk, "e")?)?,
        "EC" => {
            let curve = match string_member(jwk, "crv")? {
                "P-256" => Curve::P256,
                "P-384" => Curve::P384,
                other => return Err(format!("unsupported crv '{other}' (only P-256 and P-384)")),
            };
            let x = b64_member(jwk, "x")?;
            let y = b64_member(jwk, "y")?;
            let len = curve.coordinate_len();
            if x.len() != len || y.len() != len {
                return Err(format!(
                    "'x' and 'y' must be {len} bytes for {}",
                    curve.name()
                ));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            ec_key(curve, &point)?
        }
        "oct" => {
            return Err(
                "unsupported kty 'oct' (HMAC secrets are configured with shared_secret)".into(),
            )
        }
        other => return Err(format!("unsupported kty '{other}'")),
    };
    let alg = match jwk.get("alg") {
        None => None,
        Some(Value::String(name)) => match Alg::from_name(name) {
            Some(alg) if !alg.is_hmac() => Some(alg),
            _ => return Err(format!("unsupported alg '{name}'")),
        },
        Some(_) => return Err("'alg' is not a string".into()),
    };
    let key = VerifyKey {
        kid: None,
        alg,
        material,
    };
    if let Some(alg) = alg {
        if !key.supports(alg) {
            return Err(format!("alg '{}' does not fit a {kty} key", alg.name()));
        }
    }
    Ok(key)
}

fn string_member<'a>(jwk: &'a Map<String, Value>, name: &str) -> LoadResult<&'a str> {
    match jwk.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("'{name}' is not a string")),
        None => Err(format!("missing '{name}'")),
    }
}

fn b64_member(jwk: &Map<String, Value>, name: &str) -> LoadResult<Vec<u8>> {
    B64URL
        .decode(string_member(jwk, name)?)
        .map_err(|_| format!("'{name}' is not base64url"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::{self, TestKey};

    const DEV_CERT: &[u8] = test_support::DEV_CERT_PEM;
    const DEV_SPKI: &[u8] = test_support::DEV_PUBLIC_KEY_PEM;
    const DEV_PKCS1_PUB: &[u8] = include_bytes!("testdata/dev-only-rsa.pkcs1.pub.pem");
    const EC_CERT: &[u8] = include_bytes!("testdata/dev-only-p256.cert.pem");
    const P384_SPKI: &[u8] = include_bytes!("testdata/dev-only-p384.pub.pem");
    const RSA_1024: &[u8] = include_bytes!("testdata/rsa1024.pub.pem");
    const SECP256K1: &[u8] = include_bytes!("testdata/secp256k1.pub.pem");

    fn rsa_components(key: &VerifyKey) -> (&[u8], &[u8]) {
        match &key.material {
            KeyMaterial::Rsa(c) => (&c.n, &c.e),
            _ => panic!("not an RSA key"),
        }
    }

    #[test]
    fn certificate_public_key_and_pkcs1_give_the_same_rsa_key_as_the_private_key() {
        let from_cert = key_from_certificate_pem(DEV_CERT).unwrap();
        let from_spki = key_from_public_key_pem(DEV_SPKI).unwrap();
        let from_pkcs1 = key_from_public_key_pem(DEV_PKCS1_PUB).unwrap();
        // Independent reference: ring's own parse of the dev private key.
        let pair = test_support::dev_rsa_key_pair();
        let expected: signature::RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
        for key in [&from_cert, &from_spki, &from_pkcs1] {
            let (n, e) = rsa_components(key);
            assert_eq!(n, expected.n.as_slice());
            assert_eq!(e, expected.e.as_slice());
        }
    }

    #[test]
    fn rsa_key_verifies_rs_and_ps_but_never_es_or_hs() {
        let key = key_from_certificate_pem(DEV_CERT).unwrap();
        for alg in [Alg::RS256, Alg::RS384, Alg::RS512, Alg::PS256] {
            assert!(key.supports(alg), "{alg:?}");
        }
        for alg in [Alg::ES256, Alg::ES384, Alg::HS256, Alg::HS384, Alg::HS512] {
            assert!(!key.supports(alg), "{alg:?}");
        }
    }

    #[test]
    fn signatures_from_the_dev_private_key_verify_with_the_certificate() {
        let key = key_from_certificate_pem(DEV_CERT).unwrap();
        let signer = TestKey::dev_rsa();
        for alg in [Alg::RS256, Alg::RS384, Alg::RS512, Alg::PS256] {
            let sig = signer.sign(alg, b"message");
            assert!(key.verify(alg, b"message", &sig), "{alg:?}");
            assert!(!key.verify(alg, b"messagf", &sig), "{alg:?}");
        }
        // RS256 signature offered as RS384: wrong hash, rejected.
        let sig = signer.sign(Alg::RS256, b"message");
        assert!(!key.verify(Alg::RS384, b"message", &sig));
    }

    #[test]
    fn ec_certificate_gives_a_p256_key_for_es256_only() {
        let key = key_from_certificate_pem(EC_CERT).unwrap();
        assert!(matches!(
            key.material,
            KeyMaterial::Ec {
                curve: Curve::P256,
                ..
            }
        ));
        assert!(key.supports(Alg::ES256));
        assert!(!key.supports(Alg::ES384));
        assert!(!key.supports(Alg::RS256));
        assert!(!key.supports(Alg::HS256));
    }

    #[test]
    fn p384_public_key_is_for_es384_only() {
        let key = key_from_public_key_pem(P384_SPKI).unwrap();
        assert!(key.supports(Alg::ES384));
        assert!(!key.supports(Alg::ES256));
    }

    #[test]
    fn ec_signatures_verify_and_bit_flips_do_not() {
        let signer = TestKey::generate_p256();
        let key = VerifyKey::new(ec_key(Curve::P256, &signer.public_point()).unwrap());
        let mut sig = signer.sign(Alg::ES256, b"message");
        assert!(key.verify(Alg::ES256, b"message", &sig));
        sig[10] ^= 1;
        assert!(!key.verify(Alg::ES256, b"message", &sig));
    }

    #[test]
    fn short_rsa_keys_are_refused_at_load() {
        let err = key_from_public_key_pem(RSA_1024).err().unwrap();
        assert_eq!(err, "RSA key has 1024 bits; at least 2048 are required");
    }

    #[test]
    fn unsupported_curves_are_refused_at_load() {
        let err = key_from_public_key_pem(SECP256K1).err().unwrap();
        assert!(err.contains("unsupported EC curve"), "{err}");
    }

    #[test]
    fn wrong_pem_kinds_are_refused_with_a_hint() {
        let err = key_from_certificate_pem(DEV_SPKI).err().unwrap();
        assert!(
            err.contains("found 'PUBLIC KEY'") && err.contains("public_key"),
            "{err}"
        );
        let err = key_from_public_key_pem(DEV_CERT).err().unwrap();
        assert!(
            err.contains("found 'CERTIFICATE'") && err.contains("certificate"),
            "{err}"
        );
        let err = key_from_public_key_pem(test_support::DEV_PRIVATE_KEY_PEM)
            .err()
            .unwrap();
        assert!(err.contains("never the private key"), "{err}");
        let err = key_from_public_key_pem(b"not pem").err().unwrap();
        assert!(err.contains("no PEM block"), "{err}");
    }

    #[test]
    fn rsa_exponent_rules_follow_ring() {
        let n = [0xffu8; 256];
        assert!(rsa_key(&n, &[1, 0, 1]).is_ok());
        assert!(rsa_key(&n, &[3]).is_ok());
        assert!(
            rsa_key(&n, &[0, 0, 3]).is_ok(),
            "leading zeros are stripped"
        );
        assert!(rsa_key(&n, &[1]).is_err());
        assert!(rsa_key(&n, &[4]).is_err(), "even");
        assert!(rsa_key(&n, &[]).is_err());
        assert!(rsa_key(&n, &[1, 0, 0, 0, 1]).is_ok(), "2^32 + 1");
        assert!(rsa_key(&n, &[2, 0, 0, 0, 1]).is_err(), "above 2^33 - 1");
        assert!(rsa_key(&[0xff; 1025], &[3]).is_err(), "8200 bits");
    }

    #[test]
    fn hmac_key_length_limits_the_algorithms() {
        let key = key_from_secret(&[7; 32]);
        assert!(key.supports(Alg::HS256));
        assert!(!key.supports(Alg::HS384));
        assert!(!key.supports(Alg::HS512));
        assert!(!key.supports(Alg::RS256));
        let long = key_from_secret(&[7; 64]);
        assert!(long.supports(Alg::HS512));
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA512, &[7; 64]), b"m");
        assert!(long.verify(Alg::HS512, b"m", tag.as_ref()));
        assert!(!long.verify(Alg::HS256, b"m", tag.as_ref()));
    }

    fn jwks(keys: &str) -> LoadResult<Vec<VerifyKey>> {
        keys_from_jwks(format!("{{\"keys\":[{keys}]}}").as_bytes())
    }

    #[test]
    fn jwks_rsa_and_ec_keys_load_with_kid_and_alg() {
        let p256 = TestKey::generate_p256();
        let doc = format!(
            "{},{}",
            test_support::dev_rsa_jwk(Some("rsa-1"), Some("RS256")),
            p256.jwk(Some("ec-1"), None)
        );
        let keys = jwks(&doc).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].kid.as_deref(), Some("rsa-1"));
        assert_eq!(keys[0].alg, Some(Alg::RS256));
        assert!(!keys[0].supports(Alg::PS256), "alg pins the key to RS256");
        assert!(keys[1].supports(Alg::ES256));
        let (n, _) = rsa_components(&keys[0]);
        let cert = key_from_certificate_pem(DEV_CERT).unwrap();
        assert_eq!(n, rsa_components(&cert).0);
    }

    #[test]
    fn jwks_encryption_keys_are_skipped() {
        let doc = format!(
            "{},{}",
            test_support::dev_rsa_jwk(Some("enc"), None).replace('{', "{\"use\":\"enc\","),
            test_support::dev_rsa_jwk(Some("sig"), None).replace('{', "{\"use\":\"sig\",")
        );
        let keys = jwks(&doc).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("sig"));
    }

    #[test]
    fn jwks_errors_name_the_key_position_and_kid() {
        let ok = test_support::dev_rsa_jwk(Some("a"), None);
        let err = jwks(&format!("{ok},{ok},{{\"kty\":\"oct\",\"kid\":\"abc\"}}"))
            .err()
            .unwrap();
        assert_eq!(err, "keys[1] (kid 'a'): duplicate kid");
        let other = test_support::dev_rsa_jwk(Some("b"), None);
        let err = jwks(&format!("{ok},{other},{{\"kty\":\"oct\",\"kid\":\"abc\"}}"))
            .err()
            .unwrap();
        assert!(
            err.starts_with("keys[2] (kid 'abc'): unsupported kty 'oct'"),
            "{err}"
        );
        let err = jwks(r#"{"kty":"OKP","crv":"Ed25519","x":"AA"}"#)
            .err()
            .unwrap();
        assert_eq!(err, "keys[0]: unsupported kty 'OKP'");
    }

    #[test]
    fn jwks_refuses_private_keys_bad_members_and_empty_sets() {
        let private = test_support::dev_rsa_jwk(None, None).replace('{', "{\"d\":\"AQAB\",");
        assert!(jwks(&private)
            .err()
            .unwrap()
            .contains("private key member 'd'"));
        let err = jwks(r#"{"kty":"RSA","n":"!!","e":"AQAB"}"#).err().unwrap();
        assert!(err.contains("'n' is not base64url"), "{err}");
        let err = jwks(r#"{"kty":"EC","crv":"P-256","x":"AQAB","y":"AQAB"}"#)
            .err()
            .unwrap();
        assert!(err.contains("32 bytes"), "{err}");
        let err = jwks(r#"{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}"#)
            .err()
            .unwrap();
        assert!(err.contains("unsupported crv 'P-521'"), "{err}");
        let rsa_es = test_support::dev_rsa_jwk(None, Some("ES256"));
        assert!(jwks(&rsa_es).err().unwrap().contains("does not fit"));
        let rsa_hs = test_support::dev_rsa_jwk(None, Some("HS256"));
        assert!(jwks(&rsa_hs)
            .err()
            .unwrap()
            .contains("unsupported alg 'HS256'"));
        assert_eq!(jwks("").err().unwrap(), "JWKS has no signing keys");
        assert!(keys_from_jwks(b"{}")
            .err()
            .unwrap()
            .contains("no \"keys\" array"));
        assert!(keys_from_jwks(b"[")
            .err()
            .unwrap()
            .contains("not valid JSON"));
    }

    #[test]
    fn unreadable_file_reports_path_and_os_reason() {
        let err = read_file(Path::new("/nonexistent/x.pem")).err().unwrap();
        assert_eq!(
            err,
            "cannot read '/nonexistent/x.pem': No such file or directory"
        );
    }
}
