//! Incremental HTTP/1.x response reader.
//!
//! The head is parsed with `httparse` once it is complete in the read buffer; the body is
//! only counted, never stored: Content-Length, chunked (with extensions and trailers),
//! close-delimited, and no body at all for HEAD, 1xx, 204 and 304 (RFC 9112 section 6.3).
//! Interim 1xx responses (other than 101) are skipped.

use std::fmt;
use std::mem::MaybeUninit;

/// Headers beyond this count make the response a protocol error.
const MAX_HEADERS: usize = 96;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The server closed the connection before sending a byte of the response.
    ClosedBeforeResponse,
    /// The connection ended in the middle of a response.
    Incomplete,
    /// The response is not valid HTTP/1.x.
    Malformed(&'static str),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::ClosedBeforeResponse => f.write_str("connection closed before the response"),
            HttpError::Incomplete => f.write_str("connection closed in the middle of the response"),
            HttpError::Malformed(why) => write!(f, "malformed response: {why}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size; `digits` counts digits seen.
    Size {
        size: u64,
        digits: u8,
    },
    /// Skipping a chunk extension up to the line end.
    Ext {
        size: u64,
    },
    /// Saw CR after the size line; LF must follow.
    SizeLf {
        size: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerEndLf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

/// Reads one response. Feed it every read; it tells when the response is complete.
#[derive(Debug, Clone)]
pub struct ResponseReader {
    state: State,
    head_only: bool,
    /// Status of the final response (0 until the head is parsed).
    pub status: u16,
    /// Whether the connection may be reused after this response.
    pub keep_alive: bool,
    /// The server asked to close (`Connection: close`, HTTP/1.0 without keep-alive, or a
    /// close-delimited body).
    pub server_close: bool,
    /// Body bytes (after chunked decoding: the chunk payloads only).
    pub body_bytes: u64,
    /// Bytes received after the end of the response (a misbehaving server).
    pub extra_bytes: u64,
    seen_any: bool,
}

impl ResponseReader {
    /// `head_only`: the request was HEAD, so the response has no body whatever it says.
    pub fn new(head_only: bool) -> Self {
        ResponseReader {
            state: State::Head,
            head_only,
            status: 0,
            keep_alive: false,
            server_close: false,
            body_bytes: 0,
            extra_bytes: 0,
            seen_any: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes what it can from `buf` (bytes of an incomplete head stay in `buf`, everything
    /// else is drained). Returns `Ok(true)` once the response is complete.
    pub fn feed(&mut self, buf: &mut Vec<u8>) -> Result<bool, HttpError> {
        if !buf.is_empty() {
            self.seen_any = true;
        }
        loop {
            match self.state {
                State::Done => {
                    self.extra_bytes += buf.len() as u64;
                    buf.clear();
                    return Ok(true);
                }
                State::Head => {
                    let Some(head_len) = self.parse_head(buf)? else {
                        return Ok(false);
                    };
                    if self.status == 0 {
                        // An interim 1xx response: drop it and read the next head.
                        buf.drain(..head_len);
                        continue;
                    }
                    let n = self.consume_body(&buf[head_len..])?;
                    let rest = buf.len() - head_len - n;
                    self.extra_bytes += rest as u64;
                    buf.clear();
                    return Ok(self.state == State::Done);
                }
                _ => {
                    let n = self.consume_body(buf)?;
                    self.extra_bytes += (buf.len() - n) as u64;
                    buf.clear();
                    return Ok(self.state == State::Done);
                }
            }
        }
    }

    /// The connection reached EOF. Completes a close-delimited response, or says what broke.
    pub fn eof(&mut self) -> Result<(), HttpError> {
        match self.state {
            State::Done => Ok(()),
            State::UntilClose => {
                self.state = State::Done;
                Ok(())
            }
            State::Head if !self.seen_any => Err(HttpError::ClosedBeforeResponse),
            _ => Err(HttpError::Incomplete),
        }
    }

    /// Parses the head if complete. Sets `status` (left 0 for an interim 1xx) and the body
    /// state; returns the head length.
    fn parse_head(&mut self, buf: &[u8]) -> Result<Option<usize>, HttpError> {
        // Uninitialised header slots: no 3 KiB memset per response.
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            buf,
            &mut headers,
        );
        let head_len = match parsed {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HttpError::Malformed("too many headers"))
            }
            Err(_) => return Err(HttpError::Malformed("invalid status line or header")),
        };
        let status = resp.code.unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            self.status = 0;
            return Ok(Some(head_len));
        }
        let http11 = resp.version == Some(1);
        let mut content_length: Option<u64> = None;
        let mut chunked = false;
        let mut has_te = false;
        let mut conn_close = false;
        let mut conn_keep_alive = false;
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or(HttpError::Malformed("bad Content-Length"))?;
                if content_length.is_some_and(|old| old != v) {
                    return Err(HttpError::Malformed("conflicting Content-Length"));
                }
                content_length = Some(v);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                has_te = true;
                // Only the last coding decides the framing.
                chunked = h
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .map(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"))
                    .unwrap_or(false);
            } else if h.name.eq_ignore_ascii_case("connection") {
                for tok in h.value.split(|&b| b == b',') {
                    let tok = tok.trim_ascii();
                    if tok.eq_ignore_ascii_case(b"close") {
                        conn_close = true;
                    } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                        conn_keep_alive = true;
                    }
                }
            }
        }
        self.status = status;
        self.server_close = conn_close || (!http11 && !conn_keep_alive);
        let no_body = self.head_only || status == 204 || status == 304 || status == 101;
        self.state = if no_body {
            State::Done
        } else if has_te {
            if chunked {
                State::Chunked(Chunk::Size { size: 0, digits: 0 })
            } else {
                State::UntilClose
            }
        } else if let Some(n) = content_length {
            if n == 0 {
                State::Done
            } else {
                State::Length(n)
            }
        } else {
            State::UntilClose
        };
        if self.state == State::UntilClose || status == 101 {
            self.server_close = true;
        }
        self.keep_alive = !self.server_close;
        Ok(Some(head_len))
    }

    /// Consumes body bytes; returns how many belonged to this response.
    fn consume_body(&mut self, data: &[u8]) -> Result<usize, HttpError> {
        match self.state {
            State::Done | State::Head => Ok(0),
            State::UntilClose => {
                self.body_bytes += data.len() as u64;
                Ok(data.len())
            }
            State::Length(left) => {
                let n = left.min(data.len() as u64);
                self.body_bytes += n;
                self.state = if n == left {
                    State::Done
                } else {
                    State::Length(left - n)
                };
                Ok(n as usize)
            }
            State::Chunked(c) => self.consume_chunked(c, data),
        }
    }

    fn consume_chunked(&mut self, mut c: Chunk, data: &[u8]) -> Result<usize, HttpError> {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            c = match c {
                Chunk::Size { size, digits } => match hex(b) {
                    Some(d) => {
                        if digits >= 15 {
                            return Err(HttpError::Malformed("chunk size too large"));
                        }
                        Chunk::Size {
                            size: size * 16 + d,
                            digits: digits + 1,
                        }
                    }
                    None if digits == 0 => return Err(HttpError::Malformed("bad chunk size")),
                    None => match b {
                        b';' | b' ' | b'\t' => Chunk::Ext { size },
                        b'\r' => Chunk::SizeLf { size },
                        b'\n' => after_size(size),
                        _ => return Err(HttpError::Malformed("bad chunk size")),
                    },
                },
                Chunk::Ext { size } => match b {
                    b'\r' => Chunk::SizeLf { size },
                    b'\n' => after_size(size),
                    _ => Chunk::Ext { size },
                },
                Chunk::SizeLf { size } => match b {
                    b'\n' => after_size(size),
                    _ => return Err(HttpError::Malformed("bad chunk size line")),
                },
                Chunk::Data(left) => {
                    let n = left.min((data.len() - i) as u64);
                    self.body_bytes += n;
                    i += n as usize;
                    c = if n == left {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left - n)
                    };
                    continue;
                }
                Chunk::DataCr => match b {
                    b'\r' => Chunk::DataLf,
                    b'\n' => Chunk::Size { size: 0, digits: 0 },
                    _ => return Err(HttpError::Malformed("chunk data longer than its size")),
                },
                Chunk::DataLf => match b {
                    b'\n' => Chunk::Size { size: 0, digits: 0 },
                    _ => return Err(HttpError::Malformed("bad chunk end")),
                },
                Chunk::TrailerStart => match b {
                    b'\r' => Chunk::TrailerEndLf,
                    b'\n' => {
                        self.state = State::Done;
                        return Ok(i + 1);
                    }
                    _ => Chunk::TrailerLine,
                },
                Chunk::TrailerLine => match b {
                    b'\n' => Chunk::TrailerStart,
                    _ => Chunk::TrailerLine,
                },
                Chunk::TrailerEndLf => match b {
                    b'\n' => {
                        self.state = State::Done;
                        return Ok(i + 1);
                    }
                    _ => return Err(HttpError::Malformed("bad end of chunked body")),
                },
            };
            i += 1;
        }
        self.state = State::Chunked(c);
        Ok(i)
    }
}

fn after_size(size: u64) -> Chunk {
    if size == 0 {
        Chunk::TrailerStart
    } else {
        Chunk::Data(size)
    }
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some((b - b'0') as u64),
        b'a'..=b'f' => Some((b - b'a' + 10) as u64),
        b'A'..=b'F' => Some((b - b'A' + 10) as u64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns the reader once done (or after EOF).
    fn read_in_steps(
        input: &[u8],
        step: usize,
        head_only: bool,
    ) -> Result<ResponseReader, HttpError> {
        let mut r = ResponseReader::new(head_only);
        let mut buf = Vec::new();
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            if r.feed(&mut buf)? {
                return Ok(r);
            }
        }
        r.eof()?;
        Ok(r)
    }

    fn all_steps(input: &[u8], head_only: bool) -> ResponseReader {
        let first = read_in_steps(input, input.len().max(1), head_only).unwrap();
        for step in 1..input.len() {
            let r = read_in_steps(input, step, head_only).unwrap();
            assert_eq!(r.status, first.status, "step {step}");
            assert_eq!(r.body_bytes, first.body_bytes, "step {step}");
            assert_eq!(r.keep_alive, first.keep_alive, "step {step}");
        }
        first
    }

    #[test]
    fn content_length() {
        let r = all_steps(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false);
        assert_eq!((r.status, r.body_bytes, r.keep_alive), (200, 5, true));
        assert!(r.is_done());
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let msg = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                    5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\
                    X-Trailer: 1\r\nY: 2\r\n\r\n";
        let r = all_steps(msg, false);
        assert_eq!((r.status, r.body_bytes, r.keep_alive), (200, 31, true));
        assert_eq!(r.extra_bytes, 0);
    }

    #[test]
    fn chunked_without_trailers() {
        let r = all_steps(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            false,
        );
        assert_eq!(r.body_bytes, 3);
    }

    #[test]
    fn close_delimited() {
        let r = all_steps(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", false);
        assert_eq!(
            (r.body_bytes, r.keep_alive, r.server_close),
            (13, false, true)
        );
    }

    #[test]
    fn no_body_cases() {
        for msg in [
            &b"HTTP/1.1 204 No Content\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n",
        ] {
            let r = all_steps(msg, false);
            assert_eq!(r.body_bytes, 0);
            assert!(r.keep_alive);
        }
        // HEAD: Content-Length describes the GET body, none follows.
        let r = all_steps(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", true);
        assert_eq!((r.status, r.body_bytes), (200, 0));
    }

    #[test]
    fn interim_responses_are_skipped() {
        let r = all_steps(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
              HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
            false,
        );
        assert_eq!((r.status, r.body_bytes), (201, 2));
    }

    #[test]
    fn connection_semantics() {
        let r = all_steps(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(!r.keep_alive && r.server_close);
        let r = all_steps(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false);
        assert!(!r.keep_alive);
        let r = all_steps(
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(r.keep_alive);
    }

    #[test]
    fn errors() {
        let mut r = ResponseReader::new(false);
        assert_eq!(r.eof(), Err(HttpError::ClosedBeforeResponse));

        let e = read_in_steps(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            4,
            false,
        );
        assert_eq!(e.unwrap_err(), HttpError::Incomplete);

        let e = read_in_steps(b"HTTP/1.1 200 OK\r\nContent-Le", 4, false);
        assert_eq!(e.unwrap_err(), HttpError::Incomplete);

        let e = read_in_steps(b"garbage\r\n\r\n", 100, false);
        assert!(matches!(e, Err(HttpError::Malformed(_))));

        let e = read_in_steps(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            100,
            false,
        );
        assert!(matches!(e, Err(HttpError::Malformed(_))));

        let e = read_in_steps(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", 100, false);
        assert!(matches!(e, Err(HttpError::Malformed(_))));
    }

    #[test]
    fn extra_bytes_after_the_response_are_counted() {
        let mut r = ResponseReader::new(false);
        let mut buf = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA".to_vec();
        assert!(r.feed(&mut buf).unwrap());
        assert_eq!(r.extra_bytes, 5);
        assert!(buf.is_empty());
    }
}
