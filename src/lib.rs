//! shardgate: a thread-per-core io_uring API gateway for OpenAPI definitions carrying the
//! WSO2 `x-wso2-*` endpoint extensions. The library holds everything; `main.rs` is the CLI.

pub(crate) mod access_log;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod compile;
pub mod control;
pub(crate) mod cors_policy;
pub mod data;
pub mod demo;
pub(crate) mod error;
pub mod http;
pub mod ids;
pub mod metrics;
pub(crate) mod ratelimit;
pub(crate) mod render;
pub mod route;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod tls;
pub(crate) mod upstream;
