//! JWT authentication: `Bearer` extraction and compact-JWS validation against the configured
//! issuers' keys. Pure library code: no I/O after `Verifier::from_config`, never blocks,
//! renders no HTTP responses (it hands the renderer Choreo Connect's code, message and
//! description).
//!
//! Request path: `extract_bearer` -> `Verifier::verify` -> `Claims`.

mod bearer;
mod claims;
mod der;
mod error;
mod jws;
mod keys;
mod pem;
mod verifier;

#[cfg(test)]
mod test_support;

pub use bearer::extract_bearer;
pub use claims::{Claims, IssuerId, KeyType};
pub use error::{AuthConfigError, AuthError, WWW_AUTHENTICATE};
pub use jws::Alg;
pub use verifier::{Verifier, MAX_KEYS_PER_ISSUER};
