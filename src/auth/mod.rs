//! JWT authentication: `Bearer` extraction, compact-JWS validation against the configured
//! issuers' keys, a per-shard cache of validated tokens, and dev-token minting. Pure library
//! code: no I/O after `Verifier::from_config`, never blocks, renders no HTTP responses (it
//! hands the renderer Choreo Connect's code, message and description).
//!
//! Request path: the route's `AccessPolicy` names the credentials it accepts -> `extract_bearer`
//! (or an API key as it is) -> `TokenCache::authorize` (a hit costs one hash and one byte
//! comparison; a miss runs `Verifier::verify_as` and remembers the result) -> environment and
//! scope check against the cached `Claims`.

mod api_key;
mod bearer;
mod cache;
mod claims;
pub(crate) mod der;
mod error;
mod jws;
mod keys;
mod mint;
mod pem;
mod policy;
mod verifier;

#[cfg(test)]
mod test_support;

pub use api_key::{find_query_param, remove_query_param};
pub use bearer::{check_b64token, extract_bearer};
pub use cache::TokenCache;
pub use claims::{Claims, IssuerId, KeyType};
pub use error::{AuthConfigError, AuthError, FailureReason, WWW_AUTHENTICATE};
pub use jws::Alg;
pub use mint::{mint_token, parse_claim, parse_ttl, MintError, MintOptions};
pub use policy::{
    AccessPolicy, Alternative, ClientCertificate, Credential, MutualTlsPolicy, ScopeSet,
    ScopeTable, TokenUse,
};
pub use verifier::{Verifier, MAX_KEYS_PER_ISSUER};
