//! The `jwt:` section of the gateway config: which token issuers are trusted and with which
//! keys. Plain data plus structural validation; reading key files and checking key material
//! belongs to `auth::Verifier::from_config`.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};
use thiserror::Error;

/// Prefix of every field path in error messages, the section's key in `gateway.yaml`.
pub const SECTION: &str = "jwt";

/// Default number of validated tokens each shard remembers.
pub const DEFAULT_CACHE_ENTRIES: usize = 10_000;
/// Default leeway, in seconds, for `exp` and `nbf` (Choreo Connect's value).
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 5;
/// Largest accepted `clock_skew_secs`: a larger skew keeps expired tokens alive too long.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;
/// Largest accepted `cache_entries` per shard.
pub const MAX_CACHE_ENTRIES: usize = 1 << 24;
/// Shortest accepted `shared_secret`, in bytes (RFC 7518 3.2: at least the HS256 hash size).
pub const MIN_SHARED_SECRET_LEN: usize = 32;

/// JWT validation settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// Trusted issuers; a token whose `iss` matches none of them is rejected. Default: none.
    pub issuers: Vec<JwtIssuerConfig>,
    /// Forward the token header to the upstream. Default `false`: it is removed.
    pub keep_token_header: bool,
    /// Validated tokens remembered per shard, so a repeated token costs a hash and a compare
    /// instead of a signature check. `0` disables the cache. Default 10000.
    pub cache_entries: usize,
    /// Leeway in seconds when checking `exp` and `nbf`. Default 5, at most 300.
    pub clock_skew_secs: u64,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            issuers: Vec::new(),
            keep_token_header: false,
            cache_entries: DEFAULT_CACHE_ENTRIES,
            clock_skew_secs: DEFAULT_CLOCK_SKEW_SECS,
        }
    }
}

/// One trusted issuer and its keys. At least one key source is required; when several are
/// given, all their keys are trusted for this issuer (e.g. an old certificate plus a JWKS
/// during a key rotation). Relative paths are resolved against the base directory given to
/// `auth::Verifier::from_config` (normally the config file's directory).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtIssuerConfig {
    /// Display name for logs and metrics. Default: the `issuer` value.
    #[serde(default)]
    pub name: Option<String>,
    /// Must equal the token's `iss` claim exactly.
    pub issuer: String,
    /// X.509 certificate (PEM) whose public key (RSA, or EC P-256/P-384) signs tokens.
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// Public key (PEM): SubjectPublicKeyInfo "PUBLIC KEY" or PKCS#1 "RSA PUBLIC KEY".
    #[serde(default)]
    pub public_key: Option<PathBuf>,
    /// JWKS file (JSON `{"keys":[...]}`), RSA and EC keys; the token's `kid` picks the key.
    #[serde(default)]
    pub jwks: Option<PathBuf>,
    /// Accepted audiences: one string or a list. Empty: `aud` is not checked. Otherwise the
    /// token's `aud` (string or array) must contain at least one of them.
    #[serde(default, deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
    /// HMAC secret (UTF-8 bytes, at least 32). The only way HS256/HS384/HS512 tokens are ever
    /// accepted, and only for this issuer.
    #[serde(default)]
    pub shared_secret: Option<SharedSecret>,
    /// This issuer signs API keys (Choreo Connect's JWT-format keys): its tokens are accepted
    /// in API-key headers and query parameters, and never as `Bearer` tokens, so a key that
    /// travels in URLs and logs does not double as an access token. Default `false`: its
    /// tokens are `Bearer` tokens only.
    #[serde(default)]
    pub api_key: bool,
}

impl JwtIssuerConfig {
    /// The name used in logs: `name`, else `issuer`.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.issuer)
    }

    /// True when at least one key source is configured.
    pub fn has_key_source(&self) -> bool {
        self.certificate.is_some()
            || self.public_key.is_some()
            || self.jwks.is_some()
            || self.shared_secret.is_some()
    }
}

/// An HMAC secret. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SharedSecret(String);

impl SharedSecret {
    /// Wraps a secret (config files normally provide it through serde).
    pub fn new(secret: impl Into<String>) -> Self {
        SharedSecret(secret.into())
    }

    /// The secret's bytes, the HMAC key.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

/// A `jwt:` section that is structurally invalid; `field` is the full path, e.g.
/// `jwt.issuers[1].issuer`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {problem}")]
pub struct JwtConfigError {
    /// Field path, starting with `jwt`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl JwtConfig {
    /// Checks what can be checked without reading files: issuer values present and unique,
    /// a key source per issuer, secret length, and the cache and skew bounds.
    pub fn validate(&self) -> Result<(), JwtConfigError> {
        let err = |field: String, problem: String| Err(JwtConfigError { field, problem });
        if self.clock_skew_secs > MAX_CLOCK_SKEW_SECS {
            return err(
                format!("{SECTION}.clock_skew_secs"),
                format!(
                    "{} is larger than the maximum {MAX_CLOCK_SKEW_SECS}",
                    self.clock_skew_secs
                ),
            );
        }
        if self.cache_entries > MAX_CACHE_ENTRIES {
            return err(
                format!("{SECTION}.cache_entries"),
                format!(
                    "{} is larger than the maximum {MAX_CACHE_ENTRIES}",
                    self.cache_entries
                ),
            );
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, issuer) in self.issuers.iter().enumerate() {
            let field = |name: &str| format!("{SECTION}.issuers[{i}].{name}");
            if issuer.issuer.trim().is_empty() {
                return err(field("issuer"), "must not be empty".into());
            }
            if let Some(first) = seen.insert(&issuer.issuer, i) {
                return err(
                    field("issuer"),
                    format!(
                        "'{}' is already configured as {SECTION}.issuers[{first}]; \
                         give one entry several key sources instead",
                        issuer.issuer
                    ),
                );
            }
            if !issuer.has_key_source() {
                return err(
                    format!("{SECTION}.issuers[{i}]"),
                    "no key source: set at least one of certificate, public_key, jwks, \
                     shared_secret"
                        .into(),
                );
            }
            if let Some(secret) = &issuer.shared_secret {
                if secret.as_bytes().len() < MIN_SHARED_SECRET_LEN {
                    return err(
                        field("shared_secret"),
                        format!(
                            "is {} bytes; at least {MIN_SHARED_SECRET_LEN} are required",
                            secret.as_bytes().len()
                        ),
                    );
                }
            }
            if let Some(j) = issuer.audience.iter().position(|a| a.is_empty()) {
                return err(format!("{}[{j}]", field("audience")), "is empty".into());
            }
        }
        Ok(())
    }
}

/// Accepts `audience: api` as well as `audience: [api, web]`.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<JwtConfig, serde_yaml::Error> {
        serde_yaml::from_str(yaml)
    }

    fn issuer(iss: &str) -> JwtIssuerConfig {
        JwtIssuerConfig {
            name: None,
            issuer: iss.into(),
            certificate: Some("cert.pem".into()),
            public_key: None,
            jwks: None,
            audience: vec![],
            shared_secret: None,
            api_key: false,
        }
    }

    #[test]
    fn empty_section_gets_the_documented_defaults() {
        let cfg = parse("{}").unwrap();
        assert_eq!(cfg, JwtConfig::default());
        assert_eq!(cfg.cache_entries, 10_000);
        assert_eq!(cfg.clock_skew_secs, 5);
        assert!(!cfg.keep_token_header);
        cfg.validate().unwrap();
    }

    #[test]
    fn full_issuer_entry_parses() {
        let cfg = parse(
            "
issuers:
  - name: dev
    issuer: https://localhost/dev-only
    certificate: dev-only/jwt-dev-only.cert.pem
    jwks: keys.json
    audience: [api, web]
    shared_secret: 0123456789abcdef0123456789abcdef
keep_token_header: true
cache_entries: 5
clock_skew_secs: 0
",
        )
        .unwrap();
        let issuer = &cfg.issuers[0];
        assert_eq!(issuer.display_name(), "dev");
        assert_eq!(issuer.audience, vec!["api", "web"]);
        assert_eq!(
            issuer.shared_secret.as_ref().unwrap().as_bytes(),
            b"0123456789abcdef0123456789abcdef"
        );
        assert!(cfg.keep_token_header);
        cfg.validate().unwrap();
    }

    #[test]
    fn a_single_audience_string_is_a_one_element_list() {
        let cfg = parse("issuers: [{issuer: a, jwks: k.json, audience: api}]").unwrap();
        assert_eq!(cfg.issuers[0].audience, vec!["api"]);
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let err = parse("issuers: [{issuer: a, jwks: k.json, audiences: [x]}]").unwrap_err();
        assert!(err.to_string().contains("audiences"), "{err}");
        let err = parse("cache_size: 3").unwrap_err();
        assert!(err.to_string().contains("cache_size"), "{err}");
    }

    #[test]
    fn issuer_without_key_source_names_the_entry() {
        let cfg = parse("issuers: [{issuer: a}]").unwrap();
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.field, "jwt.issuers[0]");
        assert!(err.problem.contains("no key source"), "{err}");
    }

    #[test]
    fn duplicate_issuer_names_the_later_entry_and_the_first() {
        let cfg = JwtConfig {
            issuers: vec![issuer("a"), issuer("b"), issuer("a")],
            ..JwtConfig::default()
        };
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.field, "jwt.issuers[2].issuer");
        assert!(err.problem.contains("jwt.issuers[0]"), "{err}");
    }

    #[test]
    fn empty_issuer_value_is_rejected() {
        let cfg = JwtConfig {
            issuers: vec![issuer(" ")],
            ..JwtConfig::default()
        };
        assert_eq!(cfg.validate().unwrap_err().field, "jwt.issuers[0].issuer");
    }

    #[test]
    fn short_shared_secret_is_rejected() {
        let mut entry = issuer("a");
        entry.shared_secret = Some(SharedSecret::new("short"));
        let cfg = JwtConfig {
            issuers: vec![entry],
            ..JwtConfig::default()
        };
        let err = cfg.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "jwt.issuers[0].shared_secret: is 5 bytes; at least 32 are required"
        );
    }

    #[test]
    fn empty_audience_entry_is_rejected() {
        let mut entry = issuer("a");
        entry.audience = vec!["x".into(), String::new()];
        let cfg = JwtConfig {
            issuers: vec![entry],
            ..JwtConfig::default()
        };
        assert_eq!(
            cfg.validate().unwrap_err().field,
            "jwt.issuers[0].audience[1]"
        );
    }

    #[test]
    fn excessive_skew_and_cache_size_are_rejected() {
        let skew = JwtConfig {
            clock_skew_secs: 301,
            ..JwtConfig::default()
        };
        assert_eq!(skew.validate().unwrap_err().field, "jwt.clock_skew_secs");
        let cache = JwtConfig {
            cache_entries: MAX_CACHE_ENTRIES + 1,
            ..JwtConfig::default()
        };
        assert_eq!(cache.validate().unwrap_err().field, "jwt.cache_entries");
    }

    #[test]
    fn debug_output_never_shows_the_shared_secret() {
        let mut entry = issuer("a");
        entry.shared_secret = Some(SharedSecret::new("super-secret-value-0123456789abcdef"));
        let shown = format!("{entry:?}");
        assert!(!shown.contains("super-secret"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
