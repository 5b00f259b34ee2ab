//! (in progress)

pub mod jwt;
