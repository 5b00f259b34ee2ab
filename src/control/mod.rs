//! The control plane: starting and stopping the gateway (`server`), signals and reload
//! (`signals`, `watch`), the admin listener and metrics rendering (`admin`), the process
//! logger (`log`), and the control-plane threads that do what a shard must never do: DNS
//! lookups (`dns_refresh`) and giving memory back (`memory`).
//!
//! It owns threads and may block; it talks to the shards only through `data::shared` (publish
//! a snapshot, begin the drain) and the process-wide tables they read (upstream health,
//! addresses, drain flags). The data plane never imports it.

pub mod admin;
pub(crate) mod dns_refresh;
pub mod log;
pub(crate) mod memory;
pub mod server;
pub mod signals;
pub mod watch;
