//! The data plane: what runs on the shards, per connection and per request. A shard
//! (`shard`) accepts connections and runs the HTTP/1.1 request lifecycle (`proxy`), HTTP/2
//! streams through the same lifecycle (`h2`), and WebSocket tunnels, against the compiled
//! snapshot it reads from `shared`.
//!
//! It never blocks (no file or stderr I/O, no DNS, no lock on the request path), never
//! allocates per request once warm, and never imports the control plane (`crate::control`):
//! what it needs from it (the current snapshot, the drain flag) arrives through `shared`.
//! The building blocks it uses (`http`, `route`, `upstream`, `auth`, `tls`, `ratelimit`,
//! `metrics`) are shared libraries at the crate root.

pub(crate) mod h2;
pub(crate) mod memory;
pub mod proxy;
pub(crate) mod shard;
pub mod shared;
