//! Configuration as plain data and its validation: the gateway file, the API definitions and
//! the WSO2 extensions in them. Nothing here runs on the data path; `snapshot` compiles it.

pub mod apictl;
pub mod cors;
pub mod document;
pub mod endpoint;
pub mod error;
pub mod failure;
pub mod gateway;
pub mod http2;
pub mod jwt;
pub mod locate;
pub mod openapi;
pub mod security;
pub mod sources;
pub mod url;

pub use error::{ConfigError, ConfigErrors, ConfigWarning, FieldPath};
