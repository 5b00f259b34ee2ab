//! Response heads from upstreams: strict parsing into a reusable [`ResponseHead`], and the body
//! framing decision of RFC 9112 §6.3 given the request method and status. Any error means: the
//! client gets 502 and the upstream connection is closed.

use std::mem::MaybeUninit;

use super::head::{find_head_end, first_line, line_len};
use super::header::{
    apply_connection, collect_headers, diagnose_field_lines, is_field_value_byte, parse_framing,
    HeaderError,
};
use super::{HeadLimits, Header, HeaderKind, Parsed, Span, Version};

/// How the response body is delimited on the upstream connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body: response to HEAD, or status 1xx, 204, 304 (whatever the headers say).
    #[default]
    None,
    Length(u64),
    Chunked,
    /// No framing headers: the body runs until the upstream closes the connection.
    UntilClose,
}

/// A parsed response head. Reuse one per upstream connection; after `Partial` or an error its
/// contents are meaningless. Spans index the buffer given to `parse_response`.
#[derive(Debug, Clone, Default)]
pub struct ResponseHead {
    pub version: Version,
    /// 100..=599; 101 only when `upgrade_requested` was set.
    pub status: u16,
    /// Set by the caller before parsing: the request asked for a WebSocket upgrade, so a
    /// `101 Switching Protocols` is the final answer rather than a protocol error.
    pub upgrade_requested: bool,
    /// The reason phrase as received (may be empty).
    pub reason: Span,
    pub head_len: usize,
    pub headers: Vec<Header>,
    pub body: ResponseBody,
    /// The validated `Content-Length`, also where `body` is `None` (a HEAD or 304 response
    /// announcing a length): `write_client_head` renders it once.
    pub content_length: Option<u64>,
    /// `Transfer-Encoding: chunked` was declared (again also where `body` is `None`).
    pub chunked: bool,
    /// The upstream connection may be reused after this response: HTTP/1.1 without
    /// `Connection: close` (HTTP/1.0 only with `Connection: keep-alive`), and the body is not
    /// delimited by the close.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// A head with room for `headers` header lines before its vector grows. A long-lived
    /// connection's head grows at most to the limit once and then stays that size.
    pub fn with_header_capacity(headers: usize) -> ResponseHead {
        ResponseHead {
            headers: Vec::with_capacity(headers),
            ..ResponseHead::default()
        }
    }

    /// A head whose header vector is already sized for `limits`, so that no response allocates.
    pub fn with_limits(limits: &HeadLimits) -> ResponseHead {
        ResponseHead {
            headers: Vec::with_capacity(limits.max_headers.min(HeadLimits::MAX_HEADERS_CAP)),
            ..ResponseHead::default()
        }
    }

    /// A 1xx interim response (100, 102, 103): forward it (to HTTP/1.1 clients only, RFC 9110
    /// §15.2) and parse the next head from `buf[head_len..]`.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// `101 Switching Protocols` to a requested upgrade: the connection becomes a tunnel.
    pub fn is_switching_protocols(&self) -> bool {
        self.status == 101
    }

    /// The first header of `kind`, if any.
    pub fn header(&self, kind: HeaderKind) -> Option<&Header> {
        self.headers.iter().find(|h| h.kind == kind)
    }
}

/// Why an upstream response head was refused. Always answered with 502 to the client, and the
/// upstream connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.reason())]
pub enum ResponseError {
    HeadTooLarge,
    TooManyHeaders,
    MalformedStatusLine,
    UnsupportedVersion,
    /// A status outside 100..=599.
    InvalidStatus,
    /// 101 to a request that did not ask for an upgrade: the upstream is broken.
    SwitchingProtocols,
    #[error(transparent)]
    Header(#[from] HeaderError),
    Malformed,
}

impl ResponseError {
    /// The status the client gets.
    pub const fn status(self) -> u16 {
        502
    }

    /// Short static text for logs.
    pub const fn reason(self) -> &'static str {
        match self {
            ResponseError::HeadTooLarge => "response head too large",
            ResponseError::TooManyHeaders => "too many response header fields",
            ResponseError::MalformedStatusLine => "malformed status line",
            ResponseError::UnsupportedVersion => "response HTTP version not supported",
            ResponseError::InvalidStatus => "status code out of range",
            ResponseError::SwitchingProtocols => "unsolicited 101 Switching Protocols",
            ResponseError::Header(fault) => fault.reason(),
            ResponseError::Malformed => "malformed response head",
        }
    }
}

const HEADER_SLOTS: usize = HeadLimits::MAX_HEADERS_CAP;

/// Length of `HTTP/1.1 200 ` (httparse allows exactly one space on each side of the status).
const STATUS_LINE_BEFORE_REASON: usize = 13;

/// Parses and validates the response head at the start of `buf` into `head`.
///
/// `request_was_head`: the request was HEAD, so there is no body whatever the headers say.
/// Limits: `max_head` and `max_headers` apply (`max_request_line` does not). The upstream is
/// trusted not to trickle bytes, so a partial head is simply re-parsed; use
/// [`super::find_head_end`] first if that matters.
pub fn parse_response(
    buf: &[u8],
    request_was_head: bool,
    limits: &HeadLimits,
    head: &mut ResponseHead,
) -> Result<Parsed, ResponseError> {
    let Some(head_len) = find_head_end(buf, 0)? else {
        if buf.len() >= limits.max_head {
            return Err(ResponseError::HeadTooLarge);
        }
        return Ok(Parsed::Partial);
    };
    if head_len > limits.max_head || head_len > u32::MAX as usize {
        return Err(ResponseError::HeadTooLarge);
    }
    let bytes = &buf[..head_len];

    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); HEADER_SLOTS];
    let mut response = httparse::Response::new(&mut []);
    let slots = &mut slots[..limits.max_headers.min(HEADER_SLOTS)];
    // Strict: httparse can be told to tolerate obs-fold, spaces before colons and invalid lines
    // in responses, and a proxy must do none of that.
    let mut config = httparse::ParserConfig::default();
    config
        .allow_spaces_after_header_name_in_responses(false)
        .allow_obsolete_multiline_headers_in_responses(false)
        .allow_multiple_spaces_in_response_status_delimiters(false)
        .allow_space_before_first_header_name(false)
        .ignore_invalid_headers_in_responses(false);
    match config.parse_response_with_uninit_headers(&mut response, bytes, slots) {
        Ok(httparse::Status::Complete(len)) if len == head_len => {}
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooManyHeaders),
        _ => return Err(diagnose_response_head(bytes)),
    }
    let (Some(minor), Some(status)) = (response.version, response.code) else {
        return Err(ResponseError::Malformed);
    };

    head.head_len = head_len;
    head.version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(ResponseError::UnsupportedVersion),
    };
    head.status = match status {
        101 if !head.upgrade_requested => return Err(ResponseError::SwitchingProtocols),
        100..=599 => status,
        _ => return Err(ResponseError::InvalidStatus),
    };
    let (line_start, lf) = first_line(bytes);
    let Some(lf) = lf else {
        return Err(ResponseError::Malformed);
    };
    // httparse keeps the reason only when it is ASCII; the span keeps it whatever it is.
    let line_end = line_start + line_len(bytes, line_start, lf);
    let reason_start = (line_start + STATUS_LINE_BEFORE_REASON).min(line_end);
    head.reason = Span::new(reason_start, line_end);

    collect_headers(bytes, response.headers, &mut head.headers);
    let framing = parse_framing(bytes, &head.headers, head.version)?;
    head.content_length = framing.content_length;
    head.chunked = framing.chunked;
    // RFC 9112 §6.3 in order: no body for HEAD, 1xx, 204, 304; then chunked, length, close.
    head.body = if request_was_head || matches!(head.status, 100..=199 | 204 | 304) {
        ResponseBody::None
    } else if framing.chunked {
        ResponseBody::Chunked
    } else if let Some(length) = framing.content_length {
        ResponseBody::Length(length)
    } else {
        ResponseBody::UntilClose
    };
    let connection = apply_connection(bytes, &mut head.headers);
    let persistent = match head.version {
        Version::Http11 => !connection.close,
        Version::Http10 => connection.keep_alive && !connection.close,
    };
    head.keep_alive = persistent && head.body != ResponseBody::UntilClose;
    Ok(Parsed::Complete)
}

/// Names the first fault in a complete head that httparse refused.
fn diagnose_response_head(head: &[u8]) -> ResponseError {
    let (start, lf) = first_line(head);
    let Some(lf) = lf else {
        return ResponseError::Malformed;
    };
    if let Some(fault) = diagnose_status_line(&head[start..start + line_len(head, start, lf)]) {
        return fault;
    }
    match diagnose_field_lines(&head[lf + 1..]) {
        Some(fault) => ResponseError::Header(fault),
        None => ResponseError::Malformed,
    }
}

/// Checks `HTTP/1.x SP 3DIGIT [SP reason]` as httparse reads it.
fn diagnose_status_line(line: &[u8]) -> Option<ResponseError> {
    let (version, rest) = match line.iter().position(|&b| b == b' ') {
        Some(space) => (&line[..space], &line[space + 1..]),
        None => (line, &[][..]),
    };
    match version {
        b"HTTP/1.0" | b"HTTP/1.1" => {}
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Some(ResponseError::UnsupportedVersion)
        }
        _ => return Some(ResponseError::MalformedStatusLine),
    }
    match rest {
        [a, b, c] | [a, b, c, b' ', ..]
            if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() =>
        {
            if rest[3.min(rest.len())..]
                .iter()
                .all(|&byte| is_field_value_byte(byte))
            {
                None
            } else {
                Some(ResponseError::MalformedStatusLine)
            }
        }
        _ => Some(ResponseError::MalformedStatusLine),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8], request_was_head: bool) -> Result<(Parsed, ResponseHead), ResponseError> {
        let mut head = ResponseHead::default();
        parse_response(buf, request_was_head, &HeadLimits::default(), &mut head)
            .map(|parsed| (parsed, head))
    }

    fn complete(buf: &[u8]) -> ResponseHead {
        complete_for(buf, false)
    }

    fn complete_for(buf: &[u8], request_was_head: bool) -> ResponseHead {
        match parse(buf, request_was_head) {
            Ok((Parsed::Complete, head)) => head,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn rejected(buf: &[u8]) -> ResponseError {
        match parse(buf, false) {
            Err(fault) => fault,
            Ok((parsed, _)) => panic!("{:?} accepted: {parsed:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn content_length_response_is_reusable() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello";
        let head = complete(buf);
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.status, 200);
        assert_eq!(head.reason.slice(buf), b"OK");
        assert_eq!(head.head_len, buf.len() - 5);
        assert_eq!(head.body, ResponseBody::Length(5));
        assert_eq!(head.content_length, Some(5));
        assert!(!head.chunked);
        assert!(head.keep_alive);
        assert_eq!(head.headers.len(), 2);
        assert!(!head.is_interim());
    }

    #[test]
    fn chunked_response_has_a_chunked_body() {
        let head = complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(head.body, ResponseBody::Chunked);
        assert!(head.chunked);
        assert!(head.keep_alive);
    }

    #[test]
    fn response_without_length_is_until_close_and_not_reusable() {
        let head = complete(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
        assert_eq!(head.body, ResponseBody::UntilClose);
        assert!(!head.keep_alive);
    }

    #[test]
    fn response_to_head_has_no_body_but_keeps_its_declared_framing() {
        let head = complete_for(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", true);
        assert_eq!(head.body, ResponseBody::None);
        assert_eq!(head.content_length, Some(1234));
        assert!(head.keep_alive);
        let head = complete_for(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
        );
        assert_eq!(head.body, ResponseBody::None);
        assert!(head.chunked);
        // Without any framing header a HEAD response still ends at its head.
        let head = complete_for(b"HTTP/1.1 200 OK\r\n\r\n", true);
        assert_eq!(head.body, ResponseBody::None);
        assert!(head.keep_alive);
    }

    #[test]
    fn no_content_and_not_modified_have_no_body() {
        for buf in [
            &b"HTTP/1.1 204 No Content\r\n\r\n"[..],
            b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            let head = complete(buf);
            assert_eq!(
                head.body,
                ResponseBody::None,
                "{}",
                String::from_utf8_lossy(buf)
            );
            assert!(head.keep_alive);
        }
    }

    #[test]
    fn interim_responses_are_complete_heads_followed_by_the_final_one() {
        let buf = b"HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 102 Processing\r\n\r\n\
HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
        let limits = HeadLimits::default();
        let mut head = ResponseHead::with_limits(&limits);
        let mut offset = 0;
        let mut statuses = Vec::new();
        loop {
            let rest = &buf[offset..];
            assert_eq!(
                parse_response(rest, false, &limits, &mut head),
                Ok(Parsed::Complete)
            );
            statuses.push(head.status);
            offset += head.head_len;
            if !head.is_interim() {
                break;
            }
            assert_eq!(head.body, ResponseBody::None);
        }
        assert_eq!(statuses, [100, 102, 103, 201]);
        assert_eq!(head.body, ResponseBody::Length(0));
        assert_eq!(offset, buf.len());
    }

    #[test]
    fn rejects_switching_protocols() {
        assert_eq!(
            rejected(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"),
            ResponseError::SwitchingProtocols
        );
    }

    #[test]
    fn rejects_status_codes_out_of_range() {
        assert_eq!(
            rejected(b"HTTP/1.1 099 X\r\n\r\n"),
            ResponseError::InvalidStatus
        );
        assert_eq!(
            rejected(b"HTTP/1.1 600 X\r\n\r\n"),
            ResponseError::InvalidStatus
        );
        assert_eq!(complete(b"HTTP/1.1 599 X\r\n\r\n").status, 599);
    }

    #[test]
    fn http10_response_is_reusable_only_with_keep_alive_and_a_length() {
        assert!(!complete(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n").keep_alive);
        let head =
            complete(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n");
        assert_eq!(head.version, Version::Http10);
        assert!(head.keep_alive);
        assert!(!complete(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn connection_close_makes_the_upstream_connection_unusable() {
        let head = complete(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        assert!(!head.keep_alive);
        assert!(head.headers[0].hop_by_hop);
    }

    #[test]
    fn reason_phrase_is_kept_as_received() {
        let buf = b"HTTP/1.1 404 Nicht gefunden \xc3\xa4\r\n\r\n";
        assert_eq!(complete(buf).reason.slice(buf), b"Nicht gefunden \xc3\xa4");
        let buf = b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n";
        assert!(complete(buf).reason.is_empty());
        let buf = b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n";
        let head = complete(buf);
        assert!(head.reason.is_empty());
        assert_eq!(head.reason.start as usize, 12);
    }

    #[test]
    fn rejects_transfer_encoding_with_content_length_in_responses() {
        assert_eq!(
            rejected(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
            ResponseError::Header(HeaderError::ContentLengthWithTransferEncoding)
        );
    }

    #[test]
    fn rejects_invalid_and_differing_content_lengths_in_responses() {
        assert_eq!(
            rejected(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
            ResponseError::Header(HeaderError::InvalidContentLength)
        );
        assert_eq!(
            rejected(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            ResponseError::Header(HeaderError::ConflictingContentLength)
        );
    }

    #[test]
    fn rejects_non_chunked_transfer_codings_in_responses() {
        assert_eq!(
            rejected(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            ResponseError::Header(HeaderError::UnsupportedTransferCoding)
        );
        assert_eq!(
            rejected(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            ResponseError::Header(HeaderError::ChunkedNotFinal)
        );
        assert_eq!(
            rejected(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ResponseError::Header(HeaderError::TransferEncodingInHttp10)
        );
    }

    #[test]
    fn rejects_lenient_field_syntax_in_responses() {
        let cases: [(&[u8], HeaderError); 6] = [
            (
                b"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\n\r\n",
                HeaderError::ObsFold,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n",
                HeaderError::SpaceBeforeColon,
            ),
            (
                b"HTTP/1.1 200 OK\nContent-Length: 1\n\n",
                HeaderError::BareLf,
            ),
            (b"HTTP/1.1 200 OK\r\nX-A: 1\r2\r\n\r\n", HeaderError::BareCr),
            (
                b"HTTP/1.1 200 OK\r\nX-A: \x00\r\n\r\n",
                HeaderError::InvalidValueByte,
            ),
            (b"HTTP/1.1 200 OK\r\n: x\r\n\r\n", HeaderError::EmptyName),
        ];
        for (buf, fault) in cases {
            assert_eq!(
                rejected(buf),
                ResponseError::Header(fault),
                "{}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn rejects_malformed_status_lines() {
        for buf in [
            &b"HTTP/1.1 20 OK\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1  200 OK\r\n\r\n",
            b"HTTP/1.1 200 O\x01K\r\n\r\n",
            b"http/1.1 200 OK\r\n\r\n",
            b"ICY 200 OK\r\n\r\n",
            b"HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                rejected(buf),
                ResponseError::MalformedStatusLine,
                "{}",
                String::from_utf8_lossy(buf)
            );
        }
        assert_eq!(
            rejected(b"HTTP/2.0 200 OK\r\n\r\n"),
            ResponseError::UnsupportedVersion
        );
    }

    #[test]
    fn every_proper_prefix_of_a_response_is_partial() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
        for len in 0..buf.len() {
            assert_eq!(
                parse(&buf[..len], false).map(|(p, _)| p),
                Ok(Parsed::Partial),
                "prefix {len}"
            );
        }
    }

    #[test]
    fn response_head_limits_are_enforced() {
        let limits = HeadLimits {
            max_head: 40,
            max_request_line: 8,
            max_headers: 1,
        };
        let mut head = ResponseHead::default();
        // 38 bytes; the status line is longer than max_request_line, which does not apply.
        let ok = b"HTTP/1.1 200 A-longer-reason\r\nA: 1\r\n\r\n";
        assert_eq!(
            parse_response(ok, false, &limits, &mut head),
            Ok(Parsed::Complete)
        );
        assert_eq!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n",
                false,
                &limits,
                &mut head
            ),
            Err(ResponseError::TooManyHeaders)
        );
        assert_eq!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nA: 12345678901234567890\r\n\r\n",
                false,
                &limits,
                &mut head
            ),
            Err(ResponseError::HeadTooLarge)
        );
        assert_eq!(
            parse_response(&[b'x'; 40], false, &limits, &mut head),
            Err(ResponseError::HeadTooLarge)
        );
    }

    #[test]
    fn every_response_error_is_a_502() {
        for fault in [
            ResponseError::HeadTooLarge,
            ResponseError::SwitchingProtocols,
            ResponseError::Header(HeaderError::BareLf),
            ResponseError::Malformed,
        ] {
            assert_eq!(fault.status(), 502);
        }
    }
}
