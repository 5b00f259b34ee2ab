//! Test-only key material and token builders. Tokens are signed with ring directly, never with
//! `mint_token`, so verifier tests do not depend on the minting code they may be checking.

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::Value;

use super::jws::{Alg, B64URL};

pub const DEV_PRIVATE_KEY_PEM: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/dev-only/jwt-dev-only.key.pem"
));
pub const DEV_CERT_PEM: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/dev-only/jwt-dev-only.cert.pem"
));
pub const DEV_PUBLIC_KEY_PEM: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/dev-only/jwt-dev-only.pub.pem"
));
/// Absolute path of the dev certificate, for configs.
pub const DEV_CERT_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/dev-only/jwt-dev-only.cert.pem"
);
/// The issuer the dev key pair goes with (config/dev-only/README.md).
pub const DEV_ISSUER: &str = "https://localhost/dev-only";

/// The dev RSA key pair, parsed by ring from its PKCS#8 PEM.
pub fn dev_rsa_key_pair() -> RsaKeyPair {
    let block = super::pem::parse(DEV_PRIVATE_KEY_PEM).expect("dev key PEM");
    RsaKeyPair::from_pkcs8(&block.der).expect("dev key")
}

/// A JWK (JSON text) of the dev RSA public key.
pub fn dev_rsa_jwk(kid: Option<&str>, alg: Option<&str>) -> String {
    let pair = dev_rsa_key_pair();
    let public: signature::RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
    let mut jwk = serde_json::json!({
        "kty": "RSA",
        "n": B64URL.encode(&public.n),
        "e": B64URL.encode(&public.e),
    });
    add_kid_alg(&mut jwk, kid, alg);
    jwk.to_string()
}

fn add_kid_alg(jwk: &mut Value, kid: Option<&str>, alg: Option<&str>) {
    if let Some(kid) = kid {
        jwk["kid"] = kid.into();
    }
    if let Some(alg) = alg {
        jwk["alg"] = alg.into();
    }
}

/// A signing key for building test tokens.
pub enum TestKey {
    Rsa(RsaKeyPair),
    P256(EcdsaKeyPair),
    P384(EcdsaKeyPair),
    Secret(Vec<u8>),
}

impl TestKey {
    pub fn dev_rsa() -> Self {
        TestKey::Rsa(dev_rsa_key_pair())
    }

    pub fn generate_p256() -> Self {
        TestKey::P256(generate_ec(&signature::ECDSA_P256_SHA256_FIXED_SIGNING))
    }

    pub fn generate_p384() -> Self {
        TestKey::P384(generate_ec(&signature::ECDSA_P384_SHA384_FIXED_SIGNING))
    }

    /// A P-256 key from a PKCS#8 PEM file.
    pub fn p256_from_pkcs8_pem(pem_text: &[u8]) -> Self {
        let der = super::pem::parse(pem_text).expect("PEM").der;
        let rng = SystemRandom::new();
        TestKey::P256(
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
                .expect("P-256 PKCS#8 key"),
        )
    }

    /// The uncompressed public point of an EC key.
    pub fn public_point(&self) -> Vec<u8> {
        match self {
            TestKey::P256(pair) | TestKey::P384(pair) => pair.public_key().as_ref().to_vec(),
            _ => panic!("not an EC key"),
        }
    }

    /// A JWK (JSON text) of an EC key's public half.
    pub fn jwk(&self, kid: Option<&str>, alg: Option<&str>) -> String {
        let (crv, len) = match self {
            TestKey::P256(_) => ("P-256", 32),
            TestKey::P384(_) => ("P-384", 48),
            _ => panic!("not an EC key"),
        };
        let point = self.public_point();
        let mut jwk = serde_json::json!({
            "kty": "EC",
            "crv": crv,
            "x": B64URL.encode(&point[1..1 + len]),
            "y": B64URL.encode(&point[1 + len..]),
        });
        add_kid_alg(&mut jwk, kid, alg);
        jwk.to_string()
    }

    /// Signs `message` as `alg` would (panics when the key cannot do `alg`).
    pub fn sign(&self, alg: Alg, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match (self, alg) {
            (TestKey::Rsa(pair), _) => {
                let encoding: &'static dyn signature::RsaEncoding = match alg {
                    Alg::RS256 => &signature::RSA_PKCS1_SHA256,
                    Alg::RS384 => &signature::RSA_PKCS1_SHA384,
                    Alg::RS512 => &signature::RSA_PKCS1_SHA512,
                    Alg::PS256 => &signature::RSA_PSS_SHA256,
                    other => panic!("RSA cannot sign {other:?}"),
                };
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(encoding, &rng, message, &mut sig).expect("sign");
                sig
            }
            (TestKey::P256(pair), Alg::ES256) | (TestKey::P384(pair), Alg::ES384) => {
                pair.sign(&rng, message).expect("sign").as_ref().to_vec()
            }
            (TestKey::Secret(secret), _) => {
                let algorithm = match alg {
                    Alg::HS256 => ring::hmac::HMAC_SHA256,
                    Alg::HS384 => ring::hmac::HMAC_SHA384,
                    Alg::HS512 => ring::hmac::HMAC_SHA512,
                    other => panic!("a secret cannot sign {other:?}"),
                };
                let key = ring::hmac::Key::new(algorithm, secret);
                ring::hmac::sign(&key, message).as_ref().to_vec()
            }
            (_, other) => panic!("key cannot sign {other:?}"),
        }
    }
}

fn generate_ec(alg: &'static signature::EcdsaSigningAlgorithm) -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("generate");
    EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("parse generated key")
}

/// `b64(header).b64(payload)` from JSON texts, unpadded.
pub fn signing_input(header: &str, payload: &str) -> String {
    format!("{}.{}", B64URL.encode(header), B64URL.encode(payload))
}

/// A compact JWS: `header` and `payload` are JSON texts, signed by `key` as `alg`.
pub fn token(key: &TestKey, alg: Alg, header: &str, payload: &str) -> String {
    let input = signing_input(header, payload);
    let sig = key.sign(alg, input.as_bytes());
    format!("{input}.{}", B64URL.encode(sig))
}

/// A token with header `{"alg":..,"typ":"JWT"[,"kid":..]}` and the given claims.
pub fn signed(key: &TestKey, alg: Alg, kid: Option<&str>, claims: &Value) -> String {
    let mut header = serde_json::json!({"alg": alg.name(), "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    token(key, alg, &header.to_string(), &claims.to_string())
}
