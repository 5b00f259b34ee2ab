//! The data path's own HTTP/1.1 codec: heads parsed into offsets of a reused buffer, body
//! framing, and head rewriting. Pure byte work: no I/O, no allocation per request.

pub mod method;

pub use method::Method;
