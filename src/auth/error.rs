//! Authentication failures (per request) and key-loading failures (at start-up or reload).
//!
//! Every request failure is answered as Choreo Connect's enforcer answers an invalid token:
//! HTTP 401, code `900901`, message `Invalid Credentials`, and an `error_description` taken from
//! the enforcer (wso2/product-microgateway, `enforcer-parent/enforcer/src/main/java/org/wso2/
//! choreo/connect/enforcer/`): `constants/APISecurityConstants.java` builds it as
//! `<exception message> + ". " + API_AUTH_INVALID_CREDENTIALS_DESCRIPTION`
//! (`getFailureMessageDetailDescription`), and `util/FilterUtils.java`
//! (`setUnauthenticatedErrorToContext`) uses the bare description when no token was offered.

use thiserror::Error;

use crate::compile::config::jwt::JwtConfigError;

/// `WWW-Authenticate` value for every 401 this module causes (BEHAVIOUR.md 5).
pub const WWW_AUTHENTICATE: &str = "Bearer realm=\"shardgate\", error=\"invalid_token\"";

/// CC `APISecurityConstants.API_AUTH_INVALID_CREDENTIALS`.
const INVALID_CREDENTIALS_CODE: &str = "900901";
/// CC `APISecurityConstants.API_AUTH_INVALID_CREDENTIALS_MESSAGE`.
const INVALID_CREDENTIALS_MESSAGE: &str = "Invalid Credentials";

/// CC `API_AUTH_INVALID_CREDENTIALS_DESCRIPTION`, alone: what `FilterUtils.
/// setUnauthenticatedErrorToContext` sends when no authenticator could even start (no token).
const DESCRIPTION_NO_TOKEN: &str = "Make sure you have provided the correct security credentials";
/// `JWTAuthenticator` when the token cannot be parsed: "Not a JWT token. Failed to decode the
/// token header" + ". " + the invalid-credentials description.
const DESCRIPTION_NOT_A_JWT: &str = "Not a JWT token. Failed to decode the token header. \
     Make sure you have provided the correct security credentials";
/// `JWTAuthenticator` when `JWTValidator` reports code 900901 (unknown issuer, bad signature,
/// unsupported algorithm, expired): the message is `getAuthenticationFailureMessage(900901)`.
/// Also used for the checks CC lacks or words no differently (kid, nbf, aud, missing exp).
const DESCRIPTION_INVALID: &str =
    "Invalid Credentials. Make sure you have provided the correct security credentials";
/// `AuthFilter.updateClusterHeaderAndCheckEnv` for a `keytype` that is neither PRODUCTION nor
/// SANDBOX. CC's message is "Invalid key type." so CC renders a double full stop; we keep one.
const DESCRIPTION_INVALID_KEY_TYPE: &str =
    "Invalid key type. Make sure you have provided the correct security credentials";

/// Why a request's token was not accepted. All map to 401 / `900901`; they differ in the
/// description and in what the access log should say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AuthError {
    /// No token: header absent, empty, or not a `Bearer` credential.
    #[error("no bearer token")]
    Missing,
    /// Not a well-formed compact JWS/JWT (the reason is for logs only).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` is `none`, unknown, HS* for an issuer without a shared secret, or does not fit the
    /// issuer's keys (e.g. ES256 for an RSA key).
    #[error("unsupported algorithm for this issuer")]
    UnsupportedAlgorithm,
    /// `iss` absent or not a configured issuer.
    #[error("unknown issuer")]
    UnknownIssuer,
    /// The token's `kid` names no key of its issuer.
    #[error("no key of the issuer matches the token's kid")]
    UnknownKey,
    /// The signature does not verify with any candidate key.
    #[error("bad signature")]
    BadSignature,
    /// No `exp` claim: a token that never expires is refused.
    #[error("exp claim is missing")]
    MissingExpiry,
    /// `exp` has passed (beyond the clock skew).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the clock skew).
    #[error("token not yet valid")]
    NotYetValid,
    /// The issuer requires an audience and `aud` contains none of them.
    #[error("audience mismatch")]
    AudienceMismatch,
    /// `keytype` is present but neither PRODUCTION nor SANDBOX (any case).
    #[error("invalid keytype claim")]
    InvalidKeyType,
    /// The API makes mutual TLS mandatory and the connection has no verified client
    /// certificate (none offered, or a plain HTTP connection).
    #[error("no verified client certificate")]
    NoClientCertificate,
    /// A verified client certificate that is not one this API accepts (another API's own
    /// certificate, or one not chaining to `tls.client_ca` where the API has none of its own).
    #[error("client certificate not accepted by this API")]
    ClientCertificateNotAccepted,
}

impl AuthError {
    /// The JSON `code`: always `900901` (BEHAVIOUR.md 5).
    pub fn code(&self) -> &'static str {
        INVALID_CREDENTIALS_CODE
    }

    /// The JSON `error_message`: always `Invalid Credentials`.
    pub fn message(&self) -> &'static str {
        INVALID_CREDENTIALS_MESSAGE
    }

    /// The JSON `error_description`, as Choreo Connect's enforcer words this case.
    pub fn description(&self) -> &'static str {
        match self {
            // CC's `AuthFilter` reports a failed mandatory mTLS check as no credentials at all.
            AuthError::Missing
            | AuthError::NoClientCertificate
            | AuthError::ClientCertificateNotAccepted => DESCRIPTION_NO_TOKEN,
            AuthError::Malformed(_) => DESCRIPTION_NOT_A_JWT,
            AuthError::InvalidKeyType => DESCRIPTION_INVALID_KEY_TYPE,
            AuthError::UnsupportedAlgorithm
            | AuthError::UnknownIssuer
            | AuthError::UnknownKey
            | AuthError::BadSignature
            | AuthError::MissingExpiry
            | AuthError::Expired
            | AuthError::NotYetValid
            | AuthError::AudienceMismatch => DESCRIPTION_INVALID,
        }
    }

    /// The HTTP status: always 401.
    pub fn http_status(&self) -> u16 {
        401
    }

    /// The metrics label and log word of this failure.
    pub fn reason(&self) -> FailureReason {
        match self {
            AuthError::Missing => FailureReason::Missing,
            AuthError::Malformed(_) => FailureReason::Malformed,
            AuthError::UnsupportedAlgorithm => FailureReason::UnsupportedAlgorithm,
            AuthError::UnknownIssuer => FailureReason::UnknownIssuer,
            AuthError::UnknownKey => FailureReason::UnknownKey,
            AuthError::BadSignature => FailureReason::BadSignature,
            AuthError::MissingExpiry => FailureReason::MissingExpiry,
            AuthError::Expired => FailureReason::Expired,
            AuthError::NotYetValid => FailureReason::NotYetValid,
            AuthError::AudienceMismatch => FailureReason::AudienceMismatch,
            AuthError::InvalidKeyType => FailureReason::InvalidKeyType,
            AuthError::NoClientCertificate => FailureReason::NoClientCertificate,
            AuthError::ClientCertificateNotAccepted => FailureReason::ClientCertificateNotAccepted,
        }
    }
}

/// Why a request was answered 401 or 403: the `reason` label of
/// `shardgate_auth_failures_total` and the word in the debug log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    Missing,
    Malformed,
    UnsupportedAlgorithm,
    UnknownIssuer,
    UnknownKey,
    BadSignature,
    MissingExpiry,
    Expired,
    NotYetValid,
    AudienceMismatch,
    InvalidKeyType,
    NoClientCertificate,
    ClientCertificateNotAccepted,
    /// A valid credential without the scopes the resource requires (403).
    MissingScope,
    /// A valid token for an environment the resource has no endpoint in.
    NoEndpointForKeyType,
}

impl FailureReason {
    /// Every reason, in the order of `index`.
    pub const ALL: [FailureReason; 15] = [
        FailureReason::Missing,
        FailureReason::Malformed,
        FailureReason::UnsupportedAlgorithm,
        FailureReason::UnknownIssuer,
        FailureReason::UnknownKey,
        FailureReason::BadSignature,
        FailureReason::MissingExpiry,
        FailureReason::Expired,
        FailureReason::NotYetValid,
        FailureReason::AudienceMismatch,
        FailureReason::InvalidKeyType,
        FailureReason::NoClientCertificate,
        FailureReason::ClientCertificateNotAccepted,
        FailureReason::MissingScope,
        FailureReason::NoEndpointForKeyType,
    ];

    /// Position in `ALL` (a counter slot).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            FailureReason::Missing => "missing",
            FailureReason::Malformed => "malformed",
            FailureReason::UnsupportedAlgorithm => "unsupported_algorithm",
            FailureReason::UnknownIssuer => "unknown_issuer",
            FailureReason::UnknownKey => "unknown_key",
            FailureReason::BadSignature => "bad_signature",
            FailureReason::MissingExpiry => "missing_expiry",
            FailureReason::Expired => "expired",
            FailureReason::NotYetValid => "not_yet_valid",
            FailureReason::AudienceMismatch => "audience_mismatch",
            FailureReason::InvalidKeyType => "invalid_key_type",
            FailureReason::NoClientCertificate => "no_client_certificate",
            FailureReason::ClientCertificateNotAccepted => "client_certificate_not_accepted",
            FailureReason::MissingScope => "missing_scope",
            FailureReason::NoEndpointForKeyType => "no_endpoint_for_key_type",
        }
    }
}

/// The `jwt:` section could not be turned into a `Verifier`. Displays as `field: problem`,
/// e.g. `jwt.issuers[0].certificate: cannot read 'x.pem': No such file or directory`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthConfigError {
    /// Structurally invalid (see `JwtConfig::validate`).
    #[error(transparent)]
    Invalid(#[from] JwtConfigError),
    /// A key file is unreadable or holds no usable key.
    #[error("{field}: {problem}")]
    Key {
        /// Field path, e.g. `jwt.issuers[0].jwks`.
        field: String,
        /// What is wrong, with the file and key named where relevant.
        problem: String,
    },
}

impl AuthConfigError {
    /// The field path the error is about.
    pub fn field(&self) -> &str {
        match self {
            AuthConfigError::Invalid(err) => &err.field,
            AuthConfigError::Key { field, .. } => field,
        }
    }

    /// What is wrong, without the field path (for `config::ConfigError`'s message).
    pub fn problem(&self) -> &str {
        match self {
            AuthConfigError::Invalid(err) => &err.problem,
            AuthConfigError::Key { problem, .. } => problem,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [AuthError; 13] = [
        AuthError::Missing,
        AuthError::Malformed("x"),
        AuthError::UnsupportedAlgorithm,
        AuthError::UnknownIssuer,
        AuthError::UnknownKey,
        AuthError::BadSignature,
        AuthError::MissingExpiry,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::AudienceMismatch,
        AuthError::InvalidKeyType,
        AuthError::NoClientCertificate,
        AuthError::ClientCertificateNotAccepted,
    ];

    #[test]
    fn every_failure_is_401_900901_invalid_credentials() {
        for err in ALL {
            assert_eq!(err.code(), "900901");
            assert_eq!(err.message(), "Invalid Credentials");
            assert_eq!(err.http_status(), 401);
            assert!(
                err.description()
                    .ends_with("Make sure you have provided the correct security credentials"),
                "{err:?}"
            );
        }
    }

    #[test]
    fn descriptions_match_choreo_connect_per_case() {
        assert_eq!(
            AuthError::Missing.description(),
            "Make sure you have provided the correct security credentials"
        );
        assert_eq!(
            AuthError::Malformed("two segments").description(),
            "Not a JWT token. Failed to decode the token header. Make sure you have provided \
             the correct security credentials"
        );
        for err in [
            AuthError::BadSignature,
            AuthError::Expired,
            AuthError::UnknownIssuer,
        ] {
            assert_eq!(
                err.description(),
                "Invalid Credentials. Make sure you have provided the correct security credentials"
            );
        }
    }

    #[test]
    fn failure_reasons_have_distinct_labels_in_index_order() {
        for (i, reason) in FailureReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        let labels: std::collections::HashSet<_> =
            FailureReason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), FailureReason::ALL.len());
        assert_eq!(AuthError::Expired.reason().label(), "expired");
        assert_eq!(AuthError::BadSignature.reason().label(), "bad_signature");
        assert_eq!(AuthError::UnknownIssuer.reason().label(), "unknown_issuer");
        assert_eq!(
            AuthError::NoClientCertificate.reason().label(),
            "no_client_certificate"
        );
    }

    #[test]
    fn www_authenticate_names_the_realm_and_error() {
        assert_eq!(
            WWW_AUTHENTICATE,
            "Bearer realm=\"shardgate\", error=\"invalid_token\""
        );
    }
}
