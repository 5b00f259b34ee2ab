//! What a validated token tells the gateway: which issuer, which environment, until when,
//! with which scopes.

use std::sync::Arc;

use super::policy::ScopeSet;

/// Index of an issuer in the `Verifier` that validated the token (its position in
/// `jwt.issuers`). Meaningful only with that `Verifier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IssuerId(pub(crate) u32);

impl IssuerId {
    /// Position in `jwt.issuers`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Which environment's endpoints a token may use, from the `keytype` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyType {
    /// `keytype` absent or `PRODUCTION` (any case).
    #[default]
    Production,
    /// `keytype` `SANDBOX` (any case).
    Sandbox,
}

impl KeyType {
    /// Parses a `keytype` claim value, ignoring ASCII case; `None` for anything else.
    pub fn from_claim(value: &str) -> Option<KeyType> {
        if value.eq_ignore_ascii_case("PRODUCTION") {
            Some(KeyType::Production)
        } else if value.eq_ignore_ascii_case("SANDBOX") {
            Some(KeyType::Sandbox)
        } else {
            None
        }
    }

    /// The claim value as minted: `PRODUCTION` or `SANDBOX`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Production => "PRODUCTION",
            KeyType::Sandbox => "SANDBOX",
        }
    }

    /// Choreo Connect's `error_description` (code 900901) when the API has no endpoint for this
    /// environment (`AuthFilter.updateClusterHeaderAndCheckEnv`; BEHAVIOUR.md 2).
    pub fn missing_environment_description(self) -> &'static str {
        match self {
            KeyType::Production => {
                "Production key offered to an API with no production endpoint. \
                 Make sure you have provided the correct security credentials"
            }
            KeyType::Sandbox => {
                "Sandbox key offered to an API with no sandbox endpoint. \
                 Make sure you have provided the correct security credentials"
            }
        }
    }
}

/// The validated facts of a token. Cheap to clone (the subject is shared, not copied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The issuer whose key verified the signature.
    pub issuer: IssuerId,
    /// Environment selected by `keytype`.
    pub key_type: KeyType,
    /// The `exp` claim, seconds since the Unix epoch.
    pub expires_at: u64,
    /// The `sub` claim, when present (for access logs).
    pub subject: Option<Arc<str>>,
    /// The scopes of the `scope` claim that some route requires (read once, when the token
    /// is verified, so a cached token is never parsed again).
    pub scopes: ScopeSet,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keytype_claim_is_case_insensitive() {
        assert_eq!(KeyType::from_claim("SANDBOX"), Some(KeyType::Sandbox));
        assert_eq!(KeyType::from_claim("sandbox"), Some(KeyType::Sandbox));
        assert_eq!(KeyType::from_claim("Production"), Some(KeyType::Production));
        assert_eq!(KeyType::from_claim("prod"), None);
        assert_eq!(KeyType::from_claim(""), None);
        assert_eq!(KeyType::default(), KeyType::Production);
    }

    #[test]
    fn missing_environment_descriptions_match_the_spec() {
        assert_eq!(
            KeyType::Sandbox.missing_environment_description(),
            "Sandbox key offered to an API with no sandbox endpoint. Make sure you have \
             provided the correct security credentials"
        );
        assert!(KeyType::Production
            .missing_environment_description()
            .starts_with("Production key offered to an API with no production endpoint. "));
    }
}
