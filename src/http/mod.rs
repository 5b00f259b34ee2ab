//! The data path's HTTP/1.1 codec: request and response heads parsed into offsets of the read
//! buffer, smuggling-proof framing decisions, streaming body framing (length, chunked) and the
//! head rewriting done when forwarding, path normalisation and trailer filtering. Pure
//! byte-level code: no I/O, no async, no allocation per message once the reused head structs
//! have warmed up (the one outside input is the wall clock, read for `Date`).

mod chunked;
mod date;
mod head;
mod header;
mod length;
pub mod method;
mod path;
mod request;
mod response;
mod rewrite;
mod trailer;

pub use chunked::{ChunkError, ChunkLimits, ChunkedDecoder};
pub use date::{current_http_date, format_http_date, DateCache, HTTP_DATE_LEN};
pub use head::find_head_end;
pub use header::{classify_header, Header, HeaderError, HeaderKind};
pub use length::LengthDecoder;
pub use method::Method;
pub use path::{is_unreserved, normalize_path, Normalized, NormalizedPath, PathError};
pub use request::{
    parse_request, parse_scanned_request, HeadScan, RequestBody, RequestError, RequestHead,
};
pub use response::{parse_response, ResponseBody, ResponseError, ResponseHead};
pub use rewrite::{
    client_head_capacity, push_decimal, upstream_head_capacity, write_client_head, write_client_ip,
    write_upstream_head, ClientHead, UpstreamHead,
};
pub use trailer::{is_forbidden_trailer, TrailerGate};

use std::ops::Range;

/// Byte offsets `start..end` into the buffer a head was parsed from.
///
/// Heads stay in the (reused) read buffer; a span is only meaningful together with that buffer
/// and only until the caller consumes the head from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// A span over `start..end`; both must lie within a head (heads are far below 4 GiB).
    pub(crate) fn new(start: usize, end: usize) -> Span {
        debug_assert!(start <= end && end <= u32::MAX as usize);
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The span of `part`, which must be a sub-slice of `buf` (httparse hands out such slices).
    pub(crate) fn of(buf: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - buf.as_ptr() as usize;
        debug_assert!(start + part.len() <= buf.len());
        Span::new(start, start + part.len())
    }

    /// The bytes this span covers in `buf`, the buffer the head was parsed from.
    pub fn slice<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.range()]
    }

    pub fn range(&self) -> Range<usize> {
        self.start as usize..self.end as usize
    }

    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// The HTTP versions this codec speaks; anything else is refused at parse time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Version {
    Http10,
    #[default]
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// Outcome of a head parse that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The head is complete and valid; the head struct is filled and `head_len` says where the
    /// body (or the next message) starts.
    Complete,
    /// No complete head yet and no limit exceeded: read more and parse again.
    Partial,
}

/// Limits on a head, enforced while it is still arriving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Whole head, request or status line and blank line included (`431` for requests).
    pub max_head: usize,
    /// Request line without its CRLF (`414`). Not applied to status lines.
    pub max_request_line: usize,
    /// Header field lines (`431` for requests). Capped at [`HeadLimits::MAX_HEADERS_CAP`].
    pub max_headers: usize,
}

impl HeadLimits {
    /// Header slots live on the stack during a parse; a larger `max_headers` is clamped to this.
    pub const MAX_HEADERS_CAP: usize = 256;
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_head: 60 * 1024,
            max_request_line: 8 * 1024,
            max_headers: 100,
        }
    }
}

/// Progress of a body decoder over one input slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Bytes of the input that belong to this body; less than the input only when `done`.
    pub consumed: usize,
    /// The body is complete; bytes after `consumed` belong to the next message.
    pub done: bool,
}
