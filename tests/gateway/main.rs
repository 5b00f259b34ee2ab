//! The integration suite in one test binary (each former test file is a module): real
//! sockets on loopback, real backends and peers, the gateway in this process or as a child
//! process. One binary links the crate once instead of once per file. Two suites stay
//! binaries of their own because they measure this very process: `hot_path_allocations`
//! (a counting global allocator) and `connection_storm` (the test process's heap and fds).

mod support;

mod admin;
mod backend_faults;
mod cli_check;
mod copied_bodies;
mod cors;
mod deploy_artifacts;
mod differential;
mod endpoints_under_change;
mod failover;
mod failures_that_refuse_nothing;
mod fuzz_regressions;
mod header_hygiene;
mod hostile_clients;
mod http2;
mod http2_upstream;
mod mutual_tls;
mod path_normalisation;
mod proxy_http1;
mod rate_limits;
mod rate_limits_redis;
mod security;
mod smuggling;
mod spliced_bodies;
mod streaming_memory;
mod tls;
mod websocket;
