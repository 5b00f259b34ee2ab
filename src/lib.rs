//! shardgate: a thread-per-core io_uring API gateway for OpenAPI definitions carrying the
//! WSO2 `x-wso2-*` endpoint extensions. The library holds everything; `main.rs` is the CLI.

pub mod access_log;
pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod cors;
pub mod demo;
pub mod error;
pub mod h2;
pub mod http;
pub mod ids;
pub mod log;
pub mod memory;
pub mod metrics;
pub mod proxy;
pub mod ratelimit;
pub mod route;
pub mod server;
pub mod shard;
pub mod signals;
pub mod snapshot;
pub mod tls;
pub mod upstream;
pub mod watch;
