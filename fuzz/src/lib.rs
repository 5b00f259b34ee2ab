//! Invariant checks of shardgate's parsers, one module per fuzz target. Each `check` takes the
//! raw fuzzer input, never fails on its own account, and panics (which libFuzzer reports as a
//! crash) when the code under test panics or breaks one of the invariants named in its module.
//!
//! Most inputs start with a few control bytes (limits, split points, flags) followed by the
//! bytes under test; [`Input`] reads them and treats a short input as zeros, so every byte
//! string is a valid input.

pub mod chunked;
pub mod config;
pub mod jwt;
pub mod path;
pub mod request_head;
pub mod response_head;
pub mod router;

use shardgate::http::{HeadLimits, Span};

/// Control bytes at the front of an input, then the payload.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// The next byte, 0 once the input is exhausted.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two bytes as a little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from(self.byte()) | (u16::from(self.byte()) << 8)
    }

    /// The next four bytes as a little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }

    /// Everything not read yet.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// Head limits from three control bytes: the defaults when `custom` is false, else small
/// limits that a fuzzer-sized input can reach, valid as `gateway.yaml` would require (all
/// positive, request line no longer than the head).
pub fn head_limits(custom: bool, a: u8, b: u8, c: u8) -> HeadLimits {
    if !custom {
        return HeadLimits::default();
    }
    let max_head = 1 + usize::from(a) * 8;
    HeadLimits {
        max_head,
        max_request_line: (1 + usize::from(b) * 4).min(max_head),
        max_headers: 1 + usize::from(c % 64),
    }
}

/// Limits large enough for any head a writer produces from a fuzzer-sized input.
pub fn roomy_limits() -> HeadLimits {
    HeadLimits {
        max_head: 1 << 20,
        max_request_line: 1 << 20,
        max_headers: HeadLimits::MAX_HEADERS_CAP,
    }
}

/// Asserts that `span` is a well-formed range inside `buf[..head_len]`.
#[track_caller]
pub fn assert_span(what: &str, span: Span, head_len: usize) {
    assert!(
        span.start <= span.end && span.end as usize <= head_len,
        "{what} span {span:?} outside the head (head_len {head_len})"
    );
}

/// A short printable rendering for assertion messages.
pub fn show(bytes: &[u8]) -> String {
    if bytes.len() > 400 {
        format!(
            "{:?}... ({} bytes)",
            String::from_utf8_lossy(&bytes[..400]),
            bytes.len()
        )
    } else {
        format!("{:?}", String::from_utf8_lossy(bytes))
    }
}
