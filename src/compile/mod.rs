//! Configuration to snapshot: the gateway file and API definitions read and validated
//! (`config`: plain data, every error with file, field and line), then compiled once per
//! load into the immutable `snapshot` every shard reads (dense ids, the router, endpoint
//! groups mapped to process-lifetime upstream ids).
//!
//! It runs on the control thread at start and on reload, never on a shard, and never
//! touches running state except to intern upstreams in the process-wide table.

pub mod config;
pub mod snapshot;
