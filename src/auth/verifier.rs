//! Token validation against the configured issuers. `Verifier` is built once per config
//! snapshot (all key files read there) and shared read-only by every shard.
//!
//! Order of checks: segments -> header (`alg`) -> payload (`iss`) -> issuer -> key(s) ->
//! signature -> `exp` -> `nbf` -> `aud` -> `keytype`. The payload is decoded before the signature
//! is checked only to find the issuer; no claim is trusted before the signature verifies.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

use super::claims::{Claims, IssuerId, KeyType};
use super::error::{AuthConfigError, AuthError};
use super::jws::{self, Alg};
use super::keys::{self, VerifyKey};
use super::policy::{ScopeTable, TokenUse};
use crate::compile::config::jwt::{JwtConfig, SECTION};

/// Most keys one issuer may have. A token without `kid` is tried against each of its issuer's
/// keys that fit its `alg`, so this bounds the signature checks one forged token can cost.
pub const MAX_KEYS_PER_ISSUER: usize = 16;

/// Source of `Verifier::generation`.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// Validates tokens. Immutable, `Send + Sync`: build once, share behind an `Arc`.
///
/// Decisions: `exp` is required (a token without one would be valid forever; CC's
/// `JWTValidator.createJWTValidationInfoFromJWT` dereferences it, so CC cannot accept one
/// either); expired means `now >= exp + skew` (RFC 7519 4.1.4; the cache uses the same bound);
/// `iat` is not checked; not yet valid means `nbf > now + skew`.
pub struct Verifier {
    issuers: Vec<Issuer>,
    by_iss: HashMap<String, IssuerId>,
    clock_skew_secs: u64,
    generation: u64,
    /// The scopes routes require; a token's `scope` claim is kept as bits of this table.
    scopes: ScopeTable,
}

impl std::fmt::Debug for Verifier {
    /// Issuer names and key counts only: never key material or secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let issuers: Vec<(&str, usize)> = self
            .issuers
            .iter()
            .map(|i| (i.name.as_str(), i.keys.len()))
            .collect();
        f.debug_struct("Verifier")
            .field("issuers", &issuers)
            .field("clock_skew_secs", &self.clock_skew_secs)
            .field("generation", &self.generation)
            .field("scopes", &self.scopes.len())
            .finish()
    }
}

struct Issuer {
    iss: String,
    name: String,
    audience: Vec<String>,
    keys: Vec<VerifyKey>,
    /// Signs API keys, not bearer tokens (`api_key: true`).
    token_use: TokenUse,
}

impl Verifier {
    /// Validates `cfg` and loads every issuer's keys, resolving relative paths against
    /// `base_dir`. Errors name the field, e.g. `jwt.issuers[0].certificate: cannot read ...`.
    pub fn from_config(cfg: &JwtConfig, base_dir: &Path) -> Result<Verifier, AuthConfigError> {
        cfg.validate()?;
        let mut issuers = Vec::with_capacity(cfg.issuers.len());
        let mut by_iss = HashMap::with_capacity(cfg.issuers.len());
        for (i, entry) in cfg.issuers.iter().enumerate() {
            let field = |name: &str| format!("{SECTION}.issuers[{i}].{name}");
            let fail = |name: &str, problem: String| AuthConfigError::Key {
                field: field(name),
                problem,
            };
            let mut keys = Vec::new();
            if let Some(path) = &entry.certificate {
                let pem =
                    keys::read_file(&base_dir.join(path)).map_err(|p| fail("certificate", p))?;
                keys.push(
                    keys::key_from_certificate_pem(&pem).map_err(|p| fail("certificate", p))?,
                );
            }
            if let Some(path) = &entry.public_key {
                let pem =
                    keys::read_file(&base_dir.join(path)).map_err(|p| fail("public_key", p))?;
                keys.push(keys::key_from_public_key_pem(&pem).map_err(|p| fail("public_key", p))?);
            }
            if let Some(path) = &entry.jwks {
                let json = keys::read_file(&base_dir.join(path)).map_err(|p| fail("jwks", p))?;
                keys.extend(keys::keys_from_jwks(&json).map_err(|p| fail("jwks", p))?);
            }
            if let Some(secret) = &entry.shared_secret {
                keys.push(keys::key_from_secret(secret.as_bytes()));
            }
            if keys.len() > MAX_KEYS_PER_ISSUER {
                return Err(AuthConfigError::Key {
                    field: format!("{SECTION}.issuers[{i}]"),
                    problem: format!(
                        "{} keys; at most {MAX_KEYS_PER_ISSUER} per issuer are supported",
                        keys.len()
                    ),
                });
            }
            let id = IssuerId(u32::try_from(i).map_err(|_| AuthConfigError::Key {
                field: format!("{SECTION}.issuers"),
                problem: "too many issuers".into(),
            })?);
            by_iss.insert(entry.issuer.clone(), id);
            issuers.push(Issuer {
                iss: entry.issuer.clone(),
                name: entry.display_name().to_owned(),
                audience: entry.audience.clone(),
                keys,
                token_use: if entry.api_key {
                    TokenUse::ApiKey
                } else {
                    TokenUse::Bearer
                },
            });
        }
        Ok(Verifier {
            issuers,
            by_iss,
            clock_skew_secs: cfg.clock_skew_secs,
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
            scopes: ScopeTable::new(),
        })
    }

    /// Installs the scopes the snapshot's routes require (before the verifier is shared).
    pub fn with_scopes(mut self, scopes: ScopeTable) -> Self {
        self.scopes = scopes;
        self
    }

    /// How tokens of an issuer are presented (`api_key: true` issuers sign API keys).
    pub fn token_use(&self, id: IssuerId) -> Option<TokenUse> {
        self.issuers.get(id.index()).map(|i| i.token_use)
    }

    /// Number of configured issuers (start-up refuses secured APIs when this is 0).
    pub fn issuer_count(&self) -> usize {
        self.issuers.len()
    }

    /// The display name of an issuer (its `name`, else its `issuer`), for logs and metrics.
    pub fn issuer_name(&self, id: IssuerId) -> &str {
        self.issuers
            .get(id.index())
            .map_or("?", |i| i.name.as_str())
    }

    /// The `iss` value of an issuer.
    pub fn issuer_iss(&self, id: IssuerId) -> &str {
        self.issuers.get(id.index()).map_or("?", |i| i.iss.as_str())
    }

    /// Leeway applied to `exp` and `nbf`.
    pub fn clock_skew_secs(&self) -> u64 {
        self.clock_skew_secs
    }

    /// Unique per `Verifier` built in this process; lets a `TokenCache` notice a reload.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Validates a compact JWS presented as a `Bearer` token at time `now_unix` (seconds
    /// since the epoch).
    pub fn verify(&self, token: &[u8], now_unix: u64) -> Result<Claims, AuthError> {
        self.verify_as(token, now_unix, TokenUse::Bearer)
    }

    /// Validates a compact JWS presented as `token_use`: only issuers for that use can have
    /// signed it (an API key is no bearer token, and the other way round).
    pub fn verify_as(
        &self,
        token: &[u8],
        now_unix: u64,
        token_use: TokenUse,
    ) -> Result<Claims, AuthError> {
        super::check_b64token(token)?;
        let parts = jws::split(token)?;
        let header = jws::parse_header(parts.header)?;
        let alg = Alg::from_name(&header.alg).ok_or(AuthError::UnsupportedAlgorithm)?;
        let payload_json = jws::decode(parts.payload, "payload is not base64url")?;
        let not_claims = AuthError::Malformed("payload is not a JSON object of valid claims");
        let payload_json = jws::utf8(&payload_json).ok_or(not_claims)?;
        if !jws::is_json_object(payload_json.as_bytes()) {
            return Err(not_claims);
        }
        let payload: Payload = serde_json::from_str(payload_json).map_err(|_| not_claims)?;
        let id = payload
            .iss
            .as_deref()
            .and_then(|iss| self.by_iss.get(iss))
            .copied()
            .ok_or(AuthError::UnknownIssuer)?;
        let issuer = &self.issuers[id.index()];
        if issuer.token_use != token_use {
            return Err(AuthError::UnknownIssuer);
        }
        let signature = jws::decode(parts.signature, "signature is not base64url")?;
        issuer.verify_signature(alg, header.kid.as_deref(), parts.signing_input, &signature)?;

        // Signature verified: the claims are the issuer's.
        let expires_at = payload.exp.ok_or(AuthError::MissingExpiry)?;
        if now_unix >= expires_at.saturating_add(self.clock_skew_secs) {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = payload.nbf {
            if nbf > now_unix.saturating_add(self.clock_skew_secs) {
                return Err(AuthError::NotYetValid);
            }
        }
        if !issuer.audience.is_empty() {
            let accepted = payload
                .aud
                .as_ref()
                .is_some_and(|aud| aud.iter().any(|a| issuer.audience.iter().any(|c| c == a)));
            if !accepted {
                return Err(AuthError::AudienceMismatch);
            }
        }
        let key_type = match payload.keytype.as_deref() {
            None => KeyType::Production,
            Some(value) => KeyType::from_claim(value).ok_or(AuthError::InvalidKeyType)?,
        };
        let scopes = match &payload.scope {
            None => Default::default(),
            Some(ScopeClaim::Spaced(text)) => self.scopes.granted(text.split(' ')),
            Some(ScopeClaim::List(list)) => self.scopes.granted(list.iter().map(String::as_str)),
        };
        Ok(Claims {
            issuer: id,
            key_type,
            expires_at,
            subject: payload.sub.map(Arc::from),
            scopes,
        })
    }
}

impl Issuer {
    /// Key selection: a `kid` picks the keys with that `kid`; when none has it, the issuer's
    /// kid-less keys (certificate, public key, secret) are used, since many IdPs stamp a `kid`
    /// on tokens whose key the operator configured as a certificate. Without a `kid`, every key
    /// is a candidate. Candidates that do not fit `alg` are skipped; the rest are tried in config
    /// order (at most `MAX_KEYS_PER_ISSUER`).
    fn verify_signature(
        &self,
        alg: Alg,
        kid: Option<&str>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), AuthError> {
        let kid_matches = kid.is_some() && self.keys.iter().any(|k| k.kid.as_deref() == kid);
        let mut candidates = 0usize;
        let mut fitting = 0usize;
        for key in self.keys.iter().filter(|k| match kid {
            None => true,
            Some(_) if kid_matches => k.kid.as_deref() == kid,
            Some(_) => k.kid.is_none(),
        }) {
            candidates += 1;
            if !key.supports(alg) {
                continue;
            }
            fitting += 1;
            if key.verify(alg, message, signature) {
                return Ok(());
            }
        }
        Err(if candidates == 0 {
            AuthError::UnknownKey
        } else if fitting == 0 {
            AuthError::UnsupportedAlgorithm
        } else {
            AuthError::BadSignature
        })
    }
}

/// The registered claims read from the payload. Unknown claims are ignored; a repeated known
/// claim or a claim of the wrong JSON type makes the token malformed.
#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    exp: Option<u64>,
    #[serde(default, deserialize_with = "numeric_date")]
    nbf: Option<u64>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    keytype: Option<String>,
    #[serde(default)]
    scope: Option<ScopeClaim>,
}

/// `scope`: space-separated (RFC 8693 4.2, what WSO2 issues) or an array of strings (what
/// some identity providers issue).
#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeClaim {
    Spaced(String),
    List(Vec<String>),
}

/// `aud`: one string or an array of strings (RFC 7519 4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn iter(&self) -> impl Iterator<Item = &str> {
        let slice = match self {
            Audience::One(one) => std::slice::from_ref(one),
            Audience::Many(many) => many.as_slice(),
        };
        slice.iter().map(String::as_str)
    }
}

/// NumericDate (RFC 7519 2): seconds, possibly fractional (truncated); negative is invalid.
fn numeric_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if let Some(secs) = number.as_u64() {
        return Ok(Some(secs));
    }
    match number.as_f64() {
        // `as` saturates at u64::MAX for huge values.
        Some(secs) if secs.is_finite() && secs >= 0.0 => Ok(Some(secs as u64)),
        _ => Err(serde::de::Error::custom(
            "NumericDate must be a non-negative number",
        )),
    }
}

#[cfg(test)]
mod tests;
