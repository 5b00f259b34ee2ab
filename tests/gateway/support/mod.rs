//! Real parts for integration tests, by concern: mock backends (`backend`, `hostile`), a
//! raw-socket client (`client`), a gateway in this process (`gateway`) or as a child process
//! (`process`), and /proc readings (`hostile`). No network mocks.

#![allow(dead_code, unused_imports)]

mod backend;
mod client;
mod gateway;
pub mod hostile;
mod process;

pub use backend::*;
pub use client::*;
pub use gateway::*;
pub use process::*;
