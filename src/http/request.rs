//! Request heads from clients: limits while the head arrives (`HeadScan`), strict parsing into a
//! reusable [`RequestHead`] of buffer offsets, and every validation that keeps a request from
//! meaning one thing to us and another to the upstream. Any error means: answer
//! [`RequestError::status`] and close the connection.

use std::mem::MaybeUninit;

use super::head::{find_byte, find_head_end, first_line, line_len};
use super::header::{
    apply_connection, collect_headers, diagnose_field_lines, is_tchar, list_elements,
    parse_framing, HeaderError,
};
use super::{HeadLimits, Header, HeaderKind, Method, Parsed, PathError, Span, Version};

/// How the request body is framed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RequestBody {
    /// No body: neither `Content-Length` nor `Transfer-Encoding` (RFC 9112 §6.3 rule 7).
    #[default]
    None,
    /// Exactly this many bytes follow the head (`Content-Length: 0` is `Length(0)`).
    Length(u64),
    /// A chunked body follows; stream it through [`super::ChunkedDecoder`].
    Chunked,
}

/// A parsed request head. Reuse one per connection: `parse_request` overwrites every field and
/// reuses the header vector's allocation. After `Partial` or an error its contents are
/// meaningless. Spans index the buffer given to `parse_request`.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    /// The method token as received (the only record of an `Other` method's name).
    pub method_span: Span,
    /// The request-target as received.
    pub target: Span,
    /// The path: origin-form target up to `?`; for an absolute-form target, the part after the
    /// authority (never empty, always starting with `/`).
    pub path: Span,
    /// After the first `?` (`Some` and empty for a bare `?`), or `None` without `?`.
    pub query: Option<Span>,
    pub version: Version,
    /// Bytes of the head, leading empty lines and the blank line included: the body (or the
    /// next pipelined request) starts at `buf[head_len..]`.
    pub head_len: usize,
    pub headers: Vec<Header>,
    pub body: RequestBody,
    /// The client allows the connection to stay open after the response: HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request (RFC 9110 §10.1.1 says to ignore it on
    /// HTTP/1.0). The gateway answers `100 Continue` itself before reading a body; without a
    /// body there is nothing to wait for. Any other expectation is refused with `417`
    /// ([`RequestError::UnsupportedExpectation`]); `Expect` itself is never forwarded.
    pub expect_continue: bool,
    /// The `Host` value (validated). `None` only for an HTTP/1.0 request without one.
    pub host: Option<Span>,
    /// A WebSocket opening handshake (RFC 6455 §4.1): an HTTP/1.1 `GET` without a body,
    /// `Connection: upgrade` and `Upgrade: websocket`. Any other upgrade (`h2c`, ...) is not
    /// performed: its headers are dropped and the request is forwarded as a plain one.
    pub upgrade_websocket: bool,
}

impl Default for RequestHead {
    fn default() -> Self {
        RequestHead {
            method: Method::Get,
            method_span: Span::default(),
            target: Span::default(),
            path: Span::default(),
            query: None,
            version: Version::default(),
            head_len: 0,
            headers: Vec::new(),
            body: RequestBody::None,
            keep_alive: false,
            expect_continue: false,
            upgrade_websocket: false,
            host: None,
        }
    }
}

impl RequestHead {
    /// A head with room for `headers` header lines before its vector grows. A long-lived
    /// connection's head grows at most to the limit once and then stays that size.
    pub fn with_header_capacity(headers: usize) -> RequestHead {
        RequestHead {
            headers: Vec::with_capacity(headers),
            ..RequestHead::default()
        }
    }

    /// A head whose header vector is already sized for `limits`, so that no request allocates.
    pub fn with_limits(limits: &HeadLimits) -> RequestHead {
        RequestHead {
            headers: Vec::with_capacity(limits.max_headers.min(HeadLimits::MAX_HEADERS_CAP)),
            ..RequestHead::default()
        }
    }

    /// The first header of `kind`, if any.
    pub fn header(&self, kind: HeaderKind) -> Option<&Header> {
        self.headers.iter().find(|h| h.kind == kind)
    }

    /// Whether a field name contains `_`. CGI and WSGI origins map `_` and `-` to the same
    /// variable name, so `X_Forwarded_Host` would pass for the gateway's `X-Forwarded-Host`.
    pub fn has_underscored_field(&self, buf: &[u8]) -> bool {
        self.headers
            .iter()
            .any(|h| h.name.slice(buf).contains(&b'_'))
    }

    /// Marks every field whose name contains `_` as not to be forwarded (nginx's default);
    /// the gateway itself still sees them (a token header so named still authenticates).
    pub fn drop_underscored_fields(&mut self, buf: &[u8]) {
        for header in &mut self.headers {
            if header.name.slice(buf).contains(&b'_') {
                header.hop_by_hop = true;
            }
        }
    }
}

/// Why a request head was refused. Each maps to one status; the connection is then closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.reason())]
pub enum RequestError {
    /// The head exceeds `max_head` (431), also while still arriving.
    HeadTooLarge,
    /// The request line exceeds `max_request_line` (414), also while still arriving.
    RequestLineTooLong,
    /// More than `max_headers` field lines (431).
    TooManyHeaders,
    /// A well-formed `HTTP/x.y` other than 1.0 and 1.1 (505).
    UnsupportedVersion,
    MalformedVersion,
    /// `PRI * HTTP/2.0`: HTTP/2 with prior knowledge, which this listener does not speak.
    Http2Preface,
    /// A request line without version: HTTP/0.9.
    Http09,
    InvalidMethod,
    MalformedRequestLine,
    InvalidTarget,
    FragmentInTarget,
    /// `OPTIONS *`: asterisk-form addresses the server, and the gateway only proxies.
    AsteriskForm,
    /// `host:port` or an otherwise unrecognised target: we are not a forward proxy.
    AuthorityForm,
    /// CONNECT tunnels are a forward proxy's business.
    ConnectNotSupported,
    /// Absolute-form with a scheme other than http(s), a bad authority, or no path.
    InvalidAbsoluteForm,
    /// Absolute-form whose authority differs from the `Host` field.
    AbsoluteFormHostMismatch,
    MissingHost,
    MultipleHost,
    InvalidHost,
    /// A field line or framing fault (see [`HeaderError`]).
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// httparse refused the head for a reason not diagnosed more precisely.
    Malformed,
    /// An `Expect` member other than `100-continue` (417).
    UnsupportedExpectation,
    /// A field name with `_` while `http.underscores_in_headers` is `reject`.
    UnderscoreInFieldName,
    /// The path cannot be normalised (see [`super::normalize_path`]).
    #[error(transparent)]
    Path(#[from] PathError),
}

impl RequestError {
    /// The status to answer with before closing the connection.
    ///
    /// 505 only for a version we can read but do not speak (RFC 9110 §15.6.6); a version token
    /// that is not `HTTP/DIGIT.DIGIT`, HTTP/0.9 and the HTTP/2 preface are not HTTP/1 version
    /// negotiations at all, so they get 400.
    pub const fn status(self) -> u16 {
        match self {
            RequestError::HeadTooLarge | RequestError::TooManyHeaders => 431,
            RequestError::RequestLineTooLong => 414,
            RequestError::UnsupportedExpectation => 417,
            RequestError::UnsupportedVersion => 505,
            _ => 400,
        }
    }

    /// Short static text for logs and error bodies.
    pub const fn reason(self) -> &'static str {
        match self {
            RequestError::HeadTooLarge => "request head too large",
            RequestError::RequestLineTooLong => "request line too long",
            RequestError::TooManyHeaders => "too many header fields",
            RequestError::UnsupportedVersion => "HTTP version not supported",
            RequestError::MalformedVersion => "malformed HTTP version",
            RequestError::Http2Preface => "HTTP/2 prior-knowledge preface",
            RequestError::Http09 => "request line without HTTP version (HTTP/0.9)",
            RequestError::InvalidMethod => "invalid method token",
            RequestError::MalformedRequestLine => "malformed request line",
            RequestError::InvalidTarget => "invalid byte in request target",
            RequestError::FragmentInTarget => "fragment in request target",
            RequestError::AsteriskForm => "asterisk-form request target",
            RequestError::AuthorityForm => "authority-form or unrecognised request target",
            RequestError::ConnectNotSupported => "CONNECT not supported",
            RequestError::InvalidAbsoluteForm => "unsupported absolute-form request target",
            RequestError::AbsoluteFormHostMismatch => "Host differs from absolute-form authority",
            RequestError::MissingHost => "missing Host",
            RequestError::MultipleHost => "more than one Host",
            RequestError::InvalidHost => "invalid Host",
            RequestError::Header(fault) => fault.reason(),
            RequestError::Malformed => "malformed request head",
            RequestError::UnsupportedExpectation => "expectation other than 100-continue",
            RequestError::UnderscoreInFieldName => "underscore in a header field name",
            RequestError::Path(fault) => fault.reason(),
        }
    }
}

/// Incremental watch over a request head that is still arriving. Call [`HeadScan::poll`] after
/// every read with the whole unconsumed buffer: each byte is examined once (a slowloris client
/// costs O(n), not O(n²)), line endings are checked as bytes arrive, the size limits apply
/// before the head is complete, and the request line is checked as soon as it is there (an
/// HTTP/0.9 client, which never sends a blank line, is refused at once rather than at the read
/// timeout). Every verdict is the one [`parse_request`] gives on the same bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeadScan {
    /// Prefix of the buffer already searched.
    scanned: usize,
    /// Where the request line starts once a non-empty byte has arrived.
    request_line_start: Option<usize>,
    /// The request line is complete and was checked.
    request_line_checked: bool,
}

impl HeadScan {
    /// `Ok(Some(head_len))` once a complete head is in `buf[..head_len]`: parse it with
    /// [`parse_request`], which applies every rule, and the scan starts over for the next head.
    /// `Ok(None)`: read more.
    pub fn poll(&mut self, buf: &[u8], limits: &HeadLimits) -> Result<Option<usize>, RequestError> {
        let from = self.scanned.min(buf.len());
        if let Some(end) = find_head_end(buf, from)? {
            *self = HeadScan::default();
            return Ok(Some(end));
        }
        if self.request_line_start.is_none() {
            self.request_line_start = buf[from..]
                .iter()
                .position(|&b| b != b'\r' && b != b'\n')
                .map(|offset| from + offset);
        }
        if let (Some(start), false) = (self.request_line_start, self.request_line_checked) {
            let search_from = from.max(start);
            let lf = find_byte(&buf[search_from..], b'\n').map(|offset| search_from + offset);
            check_partial_request_line(buf, start, lf, limits)?;
            self.request_line_checked = lf.is_some();
        }
        if buf.len() >= limits.max_head {
            return Err(RequestError::HeadTooLarge);
        }
        self.scanned = buf.len();
        Ok(None)
    }
}

/// The request line of a head that is not complete yet: its length while it arrives, then
/// (once its LF is there) its syntax, so that what can be refused early is. Its line ending was
/// already checked by [`find_head_end`].
fn check_partial_request_line(
    buf: &[u8],
    start: usize,
    lf: Option<usize>,
    limits: &HeadLimits,
) -> Result<(), RequestError> {
    let Some(lf) = lf else {
        // A trailing CR may be the first half of the line's CRLF.
        let seen = buf.len() - start - usize::from(buf.ends_with(b"\r"));
        if seen > limits.max_request_line {
            return Err(RequestError::RequestLineTooLong);
        }
        return Ok(());
    };
    check_request_line_len(buf, start, lf, limits)?;
    match diagnose_request_line(&buf[start..start + line_len(buf, start, lf)]) {
        Some(fault) => Err(fault),
        None => Ok(()),
    }
}

fn check_request_line_len(
    buf: &[u8],
    start: usize,
    lf: usize,
    limits: &HeadLimits,
) -> Result<(), RequestError> {
    if line_len(buf, start, lf) > limits.max_request_line {
        return Err(RequestError::RequestLineTooLong);
    }
    Ok(())
}

/// Header slots handed to httparse, on the stack.
const HEADER_SLOTS: usize = HeadLimits::MAX_HEADERS_CAP;

/// Parses and validates the request head at the start of `buf` into `head`.
///
/// `buf` may hold more than the head (body bytes, pipelined requests); only `buf[..head_len]`
/// is read. Works on a partial head too (limits and request line are checked, `Partial` is
/// returned), but a caller that reads in small pieces should wait for [`HeadScan`] instead of
/// calling this after every read.
pub fn parse_request(
    buf: &[u8],
    limits: &HeadLimits,
    head: &mut RequestHead,
) -> Result<Parsed, RequestError> {
    let Some(head_len) = find_head_end(buf, 0)? else {
        let (start, lf) = first_line(buf);
        if start < buf.len() {
            check_partial_request_line(buf, start, lf, limits)?;
        }
        if buf.len() >= limits.max_head {
            return Err(RequestError::HeadTooLarge);
        }
        return Ok(Parsed::Partial);
    };
    parse_scanned_request(buf, head_len, limits, head)
}

/// [`parse_request`] for a head whose end a [`HeadScan`] (or [`find_head_end`]) already found
/// at `head_len`: the line endings are not scanned a second time.
pub fn parse_scanned_request(
    buf: &[u8],
    head_len: usize,
    limits: &HeadLimits,
    head: &mut RequestHead,
) -> Result<Parsed, RequestError> {
    debug_assert_eq!(find_head_end(buf, 0), Ok(Some(head_len)));
    // Spans are u32: a head larger than that is refused whatever the configured limit.
    if head_len > limits.max_head || head_len > u32::MAX as usize {
        return Err(RequestError::HeadTooLarge);
    }
    let bytes = &buf[..head_len];
    // The request line's syntax is left to httparse (and diagnosed only if it refuses).
    if let (start, Some(lf)) = first_line(bytes) {
        check_request_line_len(bytes, start, lf, limits)?;
    }

    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); HEADER_SLOTS];
    let mut request = httparse::Request::new(&mut []);
    let slots = &mut slots[..limits.max_headers.min(HEADER_SLOTS)];
    // The defaults are the strict settings (no obs-fold, no space before colon, single spaces
    // in the request line); named here so that nobody relaxes them by accident.
    let mut config = httparse::ParserConfig::default();
    config
        .allow_multiple_spaces_in_request_line_delimiters(false)
        .allow_space_before_first_header_name(false)
        .ignore_invalid_headers_in_requests(false);
    match config.parse_request_with_uninit_headers(&mut request, bytes, slots) {
        Ok(httparse::Status::Complete(len)) if len == head_len => {}
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyHeaders),
        // A complete head that httparse refuses or sizes differently: find out why.
        _ => return Err(diagnose_request_head(bytes)),
    }
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(RequestError::Malformed);
    };

    head.head_len = head_len;
    head.version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(RequestError::UnsupportedVersion),
    };
    head.method_span = Span::of(bytes, method.as_bytes());
    head.method = Method::from_bytes(method.as_bytes());
    head.target = Span::of(bytes, target.as_bytes());
    let target_form = read_target(bytes, head)?;

    collect_headers(bytes, request.headers, &mut head.headers);
    head.host = read_host(bytes, head, target_form)?;
    let framing = parse_framing(bytes, &head.headers, head.version)?;
    head.body = match (framing.chunked, framing.content_length) {
        (true, _) => RequestBody::Chunked,
        (false, Some(length)) => RequestBody::Length(length),
        (false, None) => RequestBody::None,
    };
    let connection = apply_connection(bytes, &mut head.headers);
    head.keep_alive = match head.version {
        Version::Http11 => !connection.close,
        Version::Http10 => connection.keep_alive && !connection.close,
    };
    let mut expect_continue = false;
    for expectation in head
        .headers
        .iter()
        .filter(|h| h.kind == HeaderKind::Expect)
        .flat_map(|h| list_elements(h.value.slice(bytes)))
    {
        if expectation.eq_ignore_ascii_case(b"100-continue") {
            expect_continue = true;
        } else if !expectation.is_empty() {
            // RFC 9110 §10.1.1: an expectation the gateway cannot meet is a 417, never a
            // silent drop (the client would wait for something that never comes).
            return Err(RequestError::UnsupportedExpectation);
        }
    }
    head.expect_continue = head.version == Version::Http11 && expect_continue;
    head.upgrade_websocket = connection.upgrade
        && head.version == Version::Http11
        && head.method == Method::Get
        && head.body == RequestBody::None
        && head
            .headers
            .iter()
            .filter(|h| h.kind == HeaderKind::Upgrade)
            .flat_map(|h| list_elements(h.value.slice(bytes)))
            .any(|protocol| protocol.eq_ignore_ascii_case(b"websocket"));
    Ok(Parsed::Complete)
}

/// How the request-target was written; absolute-form carries its authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TargetForm {
    Origin,
    Absolute { authority: Span },
}

/// Splits the target into path and query, refusing every form but origin-form and http(s)
/// absolute-form.
///
/// Absolute-form is accepted because RFC 9112 §3.2.2 says a server MUST accept it; it is
/// normalised (the path span skips scheme and authority, so routing and forwarding see
/// origin-form), and [`read_host`] then requires `Host` to name the same authority, as HAProxy
/// and Kestrel do by default: a mismatch is a spoofing attempt more often than a real client.
fn read_target(bytes: &[u8], head: &mut RequestHead) -> Result<TargetForm, RequestError> {
    if head.method == Method::Connect {
        return Err(RequestError::ConnectNotSupported);
    }
    let target = head.target.slice(bytes);
    if target.contains(&b'#') {
        return Err(RequestError::FragmentInTarget);
    }
    let (form, path_start) = match target {
        [b'/', ..] => (TargetForm::Origin, head.target.start as usize),
        b"*" => return Err(RequestError::AsteriskForm),
        _ => {
            let Some(scheme_len) = target.windows(3).position(|w| w == b"://") else {
                return Err(RequestError::AuthorityForm);
            };
            let scheme = &target[..scheme_len];
            if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
                return Err(RequestError::InvalidAbsoluteForm);
            }
            let rest = &target[scheme_len + 3..];
            let authority_len = rest
                .iter()
                .position(|&b| b == b'/' || b == b'?')
                .unwrap_or(rest.len());
            let authority = &rest[..authority_len];
            // No path at all ("http://a" or "http://a?q") would need a synthesised "/"; such
            // targets are not sent by real clients, so they are refused rather than special-cased.
            if !is_valid_authority(authority) || rest.get(authority_len) != Some(&b'/') {
                return Err(RequestError::InvalidAbsoluteForm);
            }
            let authority = Span::of(bytes, authority);
            (TargetForm::Absolute { authority }, authority.end as usize)
        }
    };
    let target_end = head.target.end as usize;
    match bytes[path_start..target_end]
        .iter()
        .position(|&b| b == b'?')
    {
        Some(offset) => {
            head.path = Span::new(path_start, path_start + offset);
            head.query = Some(Span::new(path_start + offset + 1, target_end));
        }
        None => {
            head.path = Span::new(path_start, target_end);
            head.query = None;
        }
    }
    Ok(form)
}

/// RFC 9112 §3.2: exactly one valid `Host` on HTTP/1.1, at most one on HTTP/1.0; with an
/// absolute-form target it must match the target's authority.
fn read_host(
    bytes: &[u8],
    head: &RequestHead,
    form: TargetForm,
) -> Result<Option<Span>, RequestError> {
    let mut hosts = head.headers.iter().filter(|h| h.kind == HeaderKind::Host);
    let host = hosts.next().map(|h| h.value);
    if hosts.next().is_some() {
        return Err(RequestError::MultipleHost);
    }
    match host {
        None if head.version == Version::Http11 => return Err(RequestError::MissingHost),
        Some(host) if !is_valid_authority(host.slice(bytes)) => {
            return Err(RequestError::InvalidHost)
        }
        _ => {}
    }
    match (form, host) {
        (TargetForm::Absolute { authority }, Some(host))
            if !host
                .slice(bytes)
                .eq_ignore_ascii_case(authority.slice(bytes)) =>
        {
            Err(RequestError::AbsoluteFormHostMismatch)
        }
        (TargetForm::Absolute { authority }, None) => Ok(Some(authority)),
        _ => Ok(host),
    }
}

/// `uri-host [ ":" port ]` (RFC 3986): a bracketed IPv6 literal or a non-empty reg-name/IPv4
/// (unreserved, sub-delims, pct-encoded), then an optional port of up to 5 digits. Userinfo,
/// paths, whitespace and the empty host are refused.
fn is_valid_authority(authority: &[u8]) -> bool {
    let (host_ok, port) = if let Some(literal) = authority.strip_prefix(b"[") {
        let Some(close) = literal.iter().position(|&b| b == b']') else {
            return false;
        };
        let address = &literal[..close];
        let ok = !address.is_empty()
            && address
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        match &literal[close + 1..] {
            [] => (ok, None),
            [b':', port @ ..] => (ok, Some(port)),
            _ => return false,
        }
    } else {
        let (host, port) = match authority.iter().position(|&b| b == b':') {
            Some(colon) => (&authority[..colon], Some(&authority[colon + 1..])),
            None => (authority, None),
        };
        let ok = !host.is_empty()
            && host.iter().all(|&b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'-' | b'.'
                            | b'_'
                            | b'~'
                            | b'%'
                            | b'!'
                            | b'$'
                            | b'&'
                            | b'\''
                            | b'('
                            | b')'
                            | b'*'
                            | b'+'
                            | b','
                            | b';'
                            | b'='
                    )
            });
        (ok, port)
    };
    host_ok && port.is_none_or(|p| p.len() <= 5 && p.iter().all(u8::is_ascii_digit))
}

/// Names the first fault in a complete head that httparse refused.
fn diagnose_request_head(head: &[u8]) -> RequestError {
    let (start, lf) = first_line(head);
    let Some(lf) = lf else {
        return RequestError::Malformed;
    };
    if let Some(fault) = diagnose_request_line(&head[start..start + line_len(head, start, lf)]) {
        return fault;
    }
    match diagnose_field_lines(&head[lf + 1..]) {
        Some(fault) => RequestError::Header(fault),
        None => RequestError::Malformed,
    }
}

/// Checks `method SP target SP HTTP/1.x` (without its line ending), accepting exactly what
/// httparse accepts, so that the early check agrees with the full parse.
fn diagnose_request_line(line: &[u8]) -> Option<RequestError> {
    if line == b"PRI * HTTP/2.0" {
        return Some(RequestError::Http2Preface);
    }
    let mut parts = line.splitn(3, |&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Some(RequestError::InvalidMethod);
    }
    let (target, version) = match (parts.next(), parts.next()) {
        (Some(target), Some(version)) if !target.is_empty() => (target, version),
        (Some(target), None) if !target.is_empty() => return Some(RequestError::Http09),
        _ => return Some(RequestError::MalformedRequestLine),
    };
    if !target.iter().all(|&b| b > b' ' && b != 0x7f) || std::str::from_utf8(target).is_err() {
        return Some(RequestError::InvalidTarget);
    }
    match version {
        b"HTTP/1.0" | b"HTTP/1.1" => None,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Some(RequestError::UnsupportedVersion)
        }
        _ if version.contains(&b' ') => Some(RequestError::MalformedRequestLine),
        _ => Some(RequestError::MalformedVersion),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::LengthDecoder;

    fn parse(buf: &[u8]) -> Result<(Parsed, RequestHead), RequestError> {
        let mut head = RequestHead::default();
        parse_request(buf, &HeadLimits::default(), &mut head).map(|parsed| (parsed, head))
    }

    fn complete(buf: &[u8]) -> RequestHead {
        match parse(buf) {
            Ok((Parsed::Complete, head)) => head,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn rejected(buf: &[u8]) -> RequestError {
        match parse(buf) {
            Err(fault) => fault,
            Ok((parsed, _)) => panic!("{:?} accepted: {parsed:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn header_fault(buf: &[u8]) -> HeaderError {
        match rejected(buf) {
            RequestError::Header(fault) => fault,
            other => panic!(
                "{:?}: not a header fault: {other:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }

    /// A request with `fields` (CRLF-terminated lines) after a GET request line and Host.
    fn with_fields(fields: &[u8]) -> Vec<u8> {
        let mut buf = b"POST /upload HTTP/1.1\r\nHost: api.example\r\n".to_vec();
        buf.extend_from_slice(fields);
        buf.extend_from_slice(b"\r\n");
        buf
    }

    #[test]
    fn parses_a_simple_get() {
        let buf = b"GET /pets/1 HTTP/1.1\r\nHost: api.example:8080\r\nAccept: */*\r\n\r\n";
        let head = complete(buf);
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.method_span.slice(buf), b"GET");
        assert_eq!(head.target.slice(buf), b"/pets/1");
        assert_eq!(head.path.slice(buf), b"/pets/1");
        assert_eq!(head.query, None);
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.head_len, buf.len());
        assert_eq!(
            head.host.map(|h| h.slice(buf)),
            Some(&b"api.example:8080"[..])
        );
        assert_eq!(head.body, RequestBody::None);
        assert!(head.keep_alive);
        assert!(!head.expect_continue);
        assert_eq!(head.headers.len(), 2);
        assert_eq!(head.headers[1].name.slice(buf), b"Accept");
        assert_eq!(head.headers[1].value.slice(buf), b"*/*");
        assert_eq!(head.headers[1].kind, HeaderKind::Other);
        assert_eq!(head.header(HeaderKind::Host), Some(&head.headers[0]));
        assert_eq!(head.header(HeaderKind::Authorization), None);
    }

    #[test]
    fn splits_path_and_query_at_the_first_question_mark() {
        let buf = b"GET /find?status=sold&x=a?b HTTP/1.1\r\nHost: h\r\n\r\n";
        let head = complete(buf);
        assert_eq!(head.path.slice(buf), b"/find");
        assert_eq!(
            head.query.map(|q| q.slice(buf)),
            Some(&b"status=sold&x=a?b"[..])
        );
        let buf = b"GET /find? HTTP/1.1\r\nHost: h\r\n\r\n";
        let head = complete(buf);
        assert_eq!(head.path.slice(buf), b"/find");
        assert_eq!(head.query, Some(Span::new(10, 10)));
    }

    #[test]
    fn extension_methods_keep_their_token() {
        let buf = b"PROPFIND /dav HTTP/1.1\r\nHost: h\r\n\r\n";
        let head = complete(buf);
        assert_eq!(head.method, Method::Other);
        assert_eq!(head.method_span.slice(buf), b"PROPFIND");
    }

    #[test]
    fn header_values_are_trimmed_and_may_hold_obs_text() {
        let buf = b"GET / HTTP/1.1\r\nHost:h\r\nX-Name: \t caf\xc3\xa9 \t\r\nX-Empty:\r\n\r\n";
        let head = complete(buf);
        assert_eq!(head.headers[0].value.slice(buf), b"h");
        assert_eq!(head.headers[1].value.slice(buf), b"caf\xc3\xa9");
        assert!(head.headers[2].value.slice(buf).is_empty());
    }

    #[test]
    fn content_length_request_has_a_length_body() {
        let head = complete(&with_fields(b"Content-Length: 12\r\n"));
        assert_eq!(head.body, RequestBody::Length(12));
        let head = complete(&with_fields(b"Content-Length: 0\r\n"));
        assert_eq!(head.body, RequestBody::Length(0));
    }

    #[test]
    fn identical_duplicate_content_lengths_are_accepted_as_one() {
        let head = complete(&with_fields(b"Content-Length: 5\r\nContent-Length: 5\r\n"));
        assert_eq!(head.body, RequestBody::Length(5));
        let head = complete(&with_fields(b"Content-Length: 5, 5\r\n"));
        assert_eq!(head.body, RequestBody::Length(5));
    }

    #[test]
    fn chunked_request_has_a_chunked_body_in_any_case() {
        for value in [&b"chunked"[..], b"Chunked", b"CHUNKED"] {
            let mut fields = b"Transfer-Encoding: ".to_vec();
            fields.extend_from_slice(value);
            fields.extend_from_slice(b"\r\n");
            assert_eq!(complete(&with_fields(&fields)).body, RequestBody::Chunked);
        }
    }

    #[test]
    fn pipelined_request_is_parsed_after_head_len_and_body() {
        let buf = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\
GET /b?x HTTP/1.1\r\nHost: h\r\n\r\n";
        let limits = HeadLimits::default();
        let mut head = RequestHead::with_limits(&limits);
        assert_eq!(parse_request(buf, &limits, &mut head), Ok(Parsed::Complete));
        assert_eq!(head.path.slice(buf), b"/a");
        let RequestBody::Length(length) = head.body else {
            panic!("no length: {:?}", head.body);
        };
        let body_start = head.head_len;
        let scan = LengthDecoder::new(length).scan(&buf[body_start..]);
        assert!(scan.done);
        assert_eq!(&buf[body_start..body_start + scan.consumed], b"hello");

        let next = &buf[body_start + scan.consumed..];
        assert_eq!(
            parse_request(next, &limits, &mut head),
            Ok(Parsed::Complete)
        );
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.path.slice(next), b"/b");
        assert_eq!(head.query.map(|q| q.slice(next)), Some(&b"x"[..]));
        assert_eq!(head.body, RequestBody::None);
        assert_eq!(head.headers.len(), 1);
        assert_eq!(head.head_len, next.len());
    }

    #[test]
    fn pipelined_request_is_parsed_after_a_chunked_body_with_trailers() {
        let buf = b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
4\r\nwiki\r\n0\r\nX-Sum: 1\r\n\r\n\
DELETE /b HTTP/1.1\r\nHost: h\r\n\r\n";
        let limits = HeadLimits::default();
        let mut head = RequestHead::with_limits(&limits);
        assert_eq!(parse_request(buf, &limits, &mut head), Ok(Parsed::Complete));
        assert_eq!(head.body, RequestBody::Chunked);
        let body = &buf[head.head_len..];
        let scan = crate::http::ChunkedDecoder::default().scan(body).unwrap();
        assert!(scan.done);
        assert_eq!(
            &body[..scan.consumed],
            b"4\r\nwiki\r\n0\r\nX-Sum: 1\r\n\r\n"
        );
        let next = &body[scan.consumed..];
        assert_eq!(
            parse_request(next, &limits, &mut head),
            Ok(Parsed::Complete)
        );
        assert_eq!(head.method, Method::Delete);
        assert_eq!(head.path.slice(next), b"/b");
    }

    #[test]
    fn reused_head_does_not_reallocate_headers() {
        let limits = HeadLimits::default();
        let mut head = RequestHead::with_limits(&limits);
        let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..limits.max_headers - 1 {
            buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        let before = (head.headers.as_ptr(), head.headers.capacity());
        assert_eq!(
            parse_request(&buf, &limits, &mut head),
            Ok(Parsed::Complete)
        );
        assert_eq!(head.headers.len(), limits.max_headers);
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", &limits, &mut head),
            Ok(Parsed::Complete)
        );
        assert_eq!(head.headers.len(), 1);
        assert_eq!((head.headers.as_ptr(), head.headers.capacity()), before);
    }

    #[test]
    fn leading_empty_lines_are_skipped_and_counted_in_head_len() {
        let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let head = complete(buf);
        assert_eq!(head.head_len, buf.len());
        assert_eq!(head.method_span.slice(buf), b"GET");
    }

    #[test]
    fn http11_keeps_alive_unless_connection_close() {
        assert!(complete(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").keep_alive);
        assert!(!complete(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(
            !complete(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, Close\r\n\r\n")
                .keep_alive
        );
    }

    #[test]
    fn http10_keeps_alive_only_with_connection_keep_alive() {
        let head = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(head.version, Version::Http10);
        assert_eq!(head.host, None);
        assert!(!head.keep_alive);
        let head = complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nHost: h\r\n\r\n");
        assert!(head.keep_alive);
        assert!(head.host.is_some());
    }

    #[test]
    fn connection_named_headers_are_hop_by_hop() {
        let buf = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: x-secret\r\nX-Secret: 1\r\nX-Other: 2\r\n\r\n";
        let head = complete(buf);
        let flags: Vec<bool> = head.headers.iter().map(|h| h.hop_by_hop).collect();
        assert_eq!(flags, [false, true, true, false]);
    }

    #[test]
    fn expect_continue_is_recognised_on_http11_only() {
        let head = complete(&with_fields(
            b"Content-Length: 3\r\nExpect: 100-Continue\r\n",
        ));
        assert!(head.expect_continue);
        let head =
            complete(b"POST / HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
        assert!(!head.expect_continue);
        let head = complete(&with_fields(b"Expect:\r\n"));
        assert!(!head.expect_continue);
    }

    #[test]
    fn other_expectations_are_refused_with_417() {
        for fields in [
            &b"Expect: something-else\r\n"[..],
            b"Expect: 100-continue, foo\r\n",
            b"Expect: 100-continue\r\nExpect: foo=bar\r\n",
            b"Expect: 100-continue;x=1\r\n",
            b"Expect: 200-ok\r\n",
        ] {
            let fault = rejected(&with_fields(fields));
            assert_eq!(
                fault,
                RequestError::UnsupportedExpectation,
                "{}",
                String::from_utf8_lossy(fields)
            );
            assert_eq!(fault.status(), 417);
        }
        // Also on HTTP/1.0, where 100-continue alone is ignored.
        assert_eq!(
            rejected(b"GET / HTTP/1.0\r\nExpect: foo\r\n\r\n"),
            RequestError::UnsupportedExpectation
        );
    }

    #[test]
    fn underscored_field_names_are_found_and_marked_not_forwarded() {
        let buf =
            b"GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_Host: evil\r\nX-Ok: 1\r\nx_b: 2\r\n\r\n";
        let mut head = complete(buf);
        assert!(head.has_underscored_field(buf));
        head.drop_underscored_fields(buf);
        let flags: Vec<bool> = head.headers.iter().map(|h| h.hop_by_hop).collect();
        assert_eq!(flags, [false, true, false, true]);
        let buf = b"GET /a_b HTTP/1.1\r\nHost: h\r\nX-Ok: a_b\r\n\r\n";
        assert!(!complete(buf).has_underscored_field(buf));
    }

    #[test]
    fn every_proper_prefix_of_a_request_is_partial() {
        let buf = b"POST /a?b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n";
        for len in 0..buf.len() {
            assert_eq!(
                parse(&buf[..len]).map(|(parsed, _)| parsed),
                Ok(Parsed::Partial),
                "prefix {len}"
            );
        }
        assert_eq!(complete(buf).head_len, buf.len());
    }

    #[test]
    fn absolute_form_is_normalised_to_its_path() {
        let buf =
            b"GET http://api.example:8080/pets?limit=2 HTTP/1.1\r\nHost: API.example:8080\r\n\r\n";
        let head = complete(buf);
        assert_eq!(head.path.slice(buf), b"/pets");
        assert_eq!(head.query.map(|q| q.slice(buf)), Some(&b"limit=2"[..]));
        assert_eq!(
            head.target.slice(buf),
            b"http://api.example:8080/pets?limit=2"
        );
        assert_eq!(
            head.host.map(|h| h.slice(buf)),
            Some(&b"API.example:8080"[..])
        );
    }

    #[test]
    fn absolute_form_supplies_the_host_of_an_http10_request() {
        let buf = b"GET HTTPS://api.example/ HTTP/1.0\r\n\r\n";
        let head = complete(buf);
        assert_eq!(head.path.slice(buf), b"/");
        assert_eq!(head.host.map(|h| h.slice(buf)), Some(&b"api.example"[..]));
    }

    #[test]
    fn rejects_absolute_form_whose_host_differs() {
        assert_eq!(
            rejected(b"GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n"),
            RequestError::AbsoluteFormHostMismatch
        );
        assert_eq!(
            rejected(b"GET http://a.example:81/ HTTP/1.1\r\nHost: a.example\r\n\r\n"),
            RequestError::AbsoluteFormHostMismatch
        );
    }

    #[test]
    fn rejects_unsupported_absolute_forms() {
        for target in [
            &b"ftp://a.example/"[..],
            b"http://a.example",
            b"http://a.example?x",
            b"http:///path",
            b"http://user@a.example/",
            b"http://a.example:80x/",
        ] {
            let mut buf = b"GET ".to_vec();
            buf.extend_from_slice(target);
            buf.extend_from_slice(b" HTTP/1.1\r\nHost: a.example\r\n\r\n");
            assert_eq!(
                rejected(&buf),
                RequestError::InvalidAbsoluteForm,
                "{}",
                String::from_utf8_lossy(target)
            );
        }
    }

    #[test]
    fn rejects_asterisk_form() {
        assert_eq!(
            rejected(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"),
            RequestError::AsteriskForm
        );
    }

    #[test]
    fn rejects_connect_and_authority_form() {
        assert_eq!(
            rejected(b"CONNECT api.example:443 HTTP/1.1\r\nHost: api.example:443\r\n\r\n"),
            RequestError::ConnectNotSupported
        );
        assert_eq!(
            rejected(b"CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n"),
            RequestError::ConnectNotSupported
        );
        assert_eq!(
            rejected(b"GET api.example:443 HTTP/1.1\r\nHost: api.example:443\r\n\r\n"),
            RequestError::AuthorityForm
        );
        assert_eq!(
            rejected(b"GET pets HTTP/1.1\r\nHost: h\r\n\r\n"),
            RequestError::AuthorityForm
        );
    }

    #[test]
    fn rejects_fragment_in_target() {
        assert_eq!(
            rejected(b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n"),
            RequestError::FragmentInTarget
        );
    }

    #[test]
    fn rejects_invalid_target_bytes() {
        assert_eq!(
            rejected(b"GET /a\x7fb HTTP/1.1\r\nHost: h\r\n\r\n"),
            RequestError::InvalidTarget
        );
        assert_eq!(
            rejected(b"GET /\xff\xfe HTTP/1.1\r\nHost: h\r\n\r\n"),
            RequestError::InvalidTarget
        );
        assert_eq!(
            rejected(b"GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n"),
            RequestError::InvalidTarget
        );
    }

    #[test]
    fn rejects_missing_host_on_http11() {
        assert_eq!(
            rejected(b"GET / HTTP/1.1\r\n\r\n"),
            RequestError::MissingHost
        );
    }

    #[test]
    fn rejects_several_host_headers() {
        assert_eq!(
            rejected(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
            RequestError::MultipleHost
        );
        assert_eq!(
            rejected(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"),
            RequestError::MultipleHost
        );
    }

    #[test]
    fn accepts_valid_host_forms() {
        for host in [
            &b"a.example"[..],
            b"a.example:8080",
            b"127.0.0.1:1",
            b"[::1]",
            b"[2001:db8::1]:443",
            b"xn--bcher-kva.example",
        ] {
            let mut buf = b"GET / HTTP/1.1\r\nHost: ".to_vec();
            buf.extend_from_slice(host);
            buf.extend_from_slice(b"\r\n\r\n");
            let head = complete(&buf);
            assert_eq!(
                head.host.map(|h| h.slice(&buf).to_vec()),
                Some(host.to_vec())
            );
        }
    }

    #[test]
    fn rejects_invalid_host_values() {
        for host in [
            &b""[..],
            b"a b",
            b"user@a.example",
            b"a.example/path",
            b"a.example:http",
            b"a.example:123456",
            b"[::1",
            b"[]",
            b"[::1]x",
            b":80",
            b"a\"b",
        ] {
            let mut buf = b"GET / HTTP/1.1\r\nHost: ".to_vec();
            buf.extend_from_slice(host);
            buf.extend_from_slice(b"\r\n\r\n");
            assert_eq!(
                rejected(&buf),
                RequestError::InvalidHost,
                "{}",
                String::from_utf8_lossy(host)
            );
        }
    }

    #[test]
    fn rejects_transfer_encoding_with_content_length() {
        assert_eq!(
            header_fault(&with_fields(
                b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"
            )),
            HeaderError::ContentLengthWithTransferEncoding
        );
        assert_eq!(
            header_fault(&with_fields(
                b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"
            )),
            HeaderError::ContentLengthWithTransferEncoding
        );
    }

    #[test]
    fn rejects_duplicate_content_length_with_differing_values() {
        assert_eq!(
            header_fault(&with_fields(b"Content-Length: 3\r\nContent-Length: 4\r\n")),
            HeaderError::ConflictingContentLength
        );
        assert_eq!(
            header_fault(&with_fields(b"Content-Length: 3, 4\r\n")),
            HeaderError::ConflictingContentLength
        );
    }

    #[test]
    fn rejects_invalid_content_length() {
        for value in [
            &b"abc"[..],
            b"-1",
            b"+5",
            b"0x10",
            b"5 5",
            b"1_000",
            b"18446744073709551616",
        ] {
            let mut fields = b"Content-Length: ".to_vec();
            fields.extend_from_slice(value);
            fields.extend_from_slice(b"\r\n");
            assert_eq!(
                header_fault(&with_fields(&fields)),
                HeaderError::InvalidContentLength,
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }

    fn te_fault(value: &[u8]) -> HeaderError {
        let mut fields = b"Transfer-Encoding: ".to_vec();
        fields.extend_from_slice(value);
        fields.extend_from_slice(b"\r\n");
        header_fault(&with_fields(&fields))
    }

    #[test]
    fn rejects_transfer_encoding_whose_final_coding_is_not_chunked() {
        assert_eq!(te_fault(b"gzip"), HeaderError::UnsupportedTransferCoding);
        assert_eq!(
            te_fault(b"identity"),
            HeaderError::UnsupportedTransferCoding
        );
    }

    #[test]
    fn rejects_unknown_transfer_codings() {
        assert_eq!(
            te_fault(b"gzip, chunked"),
            HeaderError::UnsupportedTransferCoding
        );
        assert_eq!(
            te_fault(b"xchunked"),
            HeaderError::UnsupportedTransferCoding
        );
    }

    #[test]
    fn rejects_chunked_not_last() {
        assert_eq!(te_fault(b"chunked, gzip"), HeaderError::ChunkedNotFinal);
    }

    #[test]
    fn rejects_chunked_twice() {
        assert_eq!(te_fault(b"chunked, chunked"), HeaderError::ChunkedTwice);
        assert_eq!(
            header_fault(&with_fields(
                b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
            )),
            HeaderError::ChunkedTwice
        );
    }

    #[test]
    fn rejects_obfuscated_transfer_encoding() {
        for value in [
            &b"chunked;x"[..],
            b"\"chunked\"",
            b"chunk ed",
            b"chunked,",
            b"chunked\xa0",
        ] {
            assert_eq!(
                te_fault(value),
                HeaderError::MalformedTransferEncoding,
                "{}",
                String::from_utf8_lossy(value)
            );
        }
        // Control bytes never reach the coding check: they are refused as field bytes.
        assert_eq!(te_fault(b"chunked\x0b"), HeaderError::InvalidValueByte);
        assert_eq!(te_fault(b"\x0cchunked"), HeaderError::InvalidValueByte);
        // A space before the colon hides the field from lenient parsers.
        assert_eq!(
            header_fault(&with_fields(b"Transfer-Encoding : chunked\r\n")),
            HeaderError::SpaceBeforeColon
        );
    }

    #[test]
    fn rejects_transfer_encoding_on_http10_requests() {
        assert_eq!(
            header_fault(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HeaderError::TransferEncodingInHttp10
        );
    }

    #[test]
    fn rejects_obs_fold() {
        assert_eq!(
            header_fault(&with_fields(b"X-A: 1\r\n folded\r\n")),
            HeaderError::ObsFold
        );
        assert_eq!(
            header_fault(&with_fields(b"Transfer-Encoding:\r\n\tchunked\r\n")),
            HeaderError::ObsFold
        );
        // Whitespace before the first field line is the same fault.
        assert_eq!(
            header_fault(b"GET / HTTP/1.1\r\n Host: h\r\n\r\n"),
            HeaderError::ObsFold
        );
    }

    #[test]
    fn rejects_bare_cr() {
        assert_eq!(
            header_fault(&with_fields(b"X-A: 1\r2\r\n")),
            HeaderError::BareCr
        );
        assert_eq!(
            header_fault(b"GET / HTTP/1.1\rHost: h\r\n\r\n"),
            HeaderError::BareCr
        );
    }

    #[test]
    fn rejects_bare_lf_line_endings() {
        assert_eq!(
            header_fault(b"GET / HTTP/1.1\nHost: h\n\n"),
            HeaderError::BareLf
        );
        assert_eq!(header_fault(&with_fields(b"X-A: 1\n")), HeaderError::BareLf);
        assert_eq!(
            header_fault(b"GET / HTTP/1.1\r\nHost: h\r\n\n"),
            HeaderError::BareLf
        );
        assert_eq!(
            header_fault(b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeaderError::BareLf
        );
    }

    #[test]
    fn rejects_whitespace_between_name_and_colon() {
        assert_eq!(
            header_fault(&with_fields(b"Content-Length : 5\r\n")),
            HeaderError::SpaceBeforeColon
        );
        assert_eq!(
            header_fault(&with_fields(b"X-A\t: 5\r\n")),
            HeaderError::SpaceBeforeColon
        );
    }

    #[test]
    fn rejects_control_bytes_in_names_and_values() {
        assert_eq!(
            header_fault(&with_fields(b"X-\x00A: 1\r\n")),
            HeaderError::InvalidNameByte
        );
        assert_eq!(
            header_fault(&with_fields(b"X-A\x7f: 1\r\n")),
            HeaderError::InvalidNameByte
        );
        assert_eq!(
            header_fault(&with_fields(b"X-\xc3\xa9: 1\r\n")),
            HeaderError::InvalidNameByte
        );
        assert_eq!(
            header_fault(&with_fields(b"X-A: 1\x002\r\n")),
            HeaderError::InvalidValueByte
        );
        assert_eq!(
            header_fault(&with_fields(b"X-A: \x1b[0m\r\n")),
            HeaderError::InvalidValueByte
        );
        assert_eq!(
            header_fault(&with_fields(b"X-A: 1\x7f\r\n")),
            HeaderError::InvalidValueByte
        );
    }

    #[test]
    fn rejects_empty_header_names() {
        assert_eq!(
            header_fault(&with_fields(b": value\r\n")),
            HeaderError::EmptyName
        );
    }

    #[test]
    fn rejects_header_lines_without_colon() {
        assert_eq!(
            header_fault(&with_fields(b"X-A value\r\n")),
            HeaderError::InvalidNameByte
        );
        assert_eq!(
            header_fault(&with_fields(b"X-A\r\n")),
            HeaderError::MissingColon
        );
    }

    #[test]
    fn rejects_invalid_method_tokens() {
        for line in [
            &b"G(T / HTTP/1.1"[..],
            b"G\"T / HTTP/1.1",
            b" GET / HTTP/1.1",
            b"GE\x00T / HTTP/1.1",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            let mut buf = line.to_vec();
            buf.extend_from_slice(b"\r\nHost: h\r\n\r\n");
            assert_eq!(
                rejected(&buf),
                RequestError::InvalidMethod,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn rejects_malformed_request_lines() {
        for line in [
            &b"GET  / HTTP/1.1"[..],
            b"GET / HTTP/1.1 ",
            b"GET / HTTP/1.1 x",
            b"GET",
        ] {
            let mut buf = line.to_vec();
            buf.extend_from_slice(b"\r\nHost: h\r\n\r\n");
            assert_eq!(
                rejected(&buf),
                RequestError::MalformedRequestLine,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn rejects_the_http2_preface() {
        assert_eq!(
            rejected(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            RequestError::Http2Preface
        );
        // Even before the blank line arrives.
        assert_eq!(rejected(b"PRI * HTTP/2.0\r\n"), RequestError::Http2Preface);
    }

    #[test]
    fn rejects_http09_as_soon_as_its_line_arrives() {
        assert_eq!(rejected(b"GET /\r\n"), RequestError::Http09);
        assert_eq!(rejected(b"GET /\r\n\r\n"), RequestError::Http09);
    }

    #[test]
    fn answers_505_for_well_formed_unsupported_versions() {
        for version in [&b"HTTP/2.0"[..], b"HTTP/1.2", b"HTTP/0.9", b"HTTP/3.0"] {
            let mut buf = b"GET / ".to_vec();
            buf.extend_from_slice(version);
            buf.extend_from_slice(b"\r\nHost: h\r\n\r\n");
            let fault = rejected(&buf);
            assert_eq!(fault, RequestError::UnsupportedVersion);
            assert_eq!(fault.status(), 505);
        }
    }

    #[test]
    fn answers_400_for_malformed_versions() {
        for version in [
            &b"http/1.1"[..],
            b"HTTP/1",
            b"HTTP/1.10",
            b"HTTP/11",
            b"HTTP/a.b",
            b"HTTP/1.1\t",
        ] {
            let mut buf = b"GET / ".to_vec();
            buf.extend_from_slice(version);
            buf.extend_from_slice(b"\r\nHost: h\r\n\r\n");
            let fault = rejected(&buf);
            assert_eq!(
                fault,
                RequestError::MalformedVersion,
                "{}",
                String::from_utf8_lossy(version)
            );
            assert_eq!(fault.status(), 400);
        }
    }

    fn small_limits() -> HeadLimits {
        HeadLimits {
            max_head: 64,
            max_request_line: 24,
            max_headers: 2,
        }
    }

    fn parse_with(buf: &[u8], limits: &HeadLimits) -> Result<Parsed, RequestError> {
        parse_request(buf, limits, &mut RequestHead::default())
    }

    #[test]
    fn head_up_to_max_head_is_accepted_and_beyond_is_431() {
        let limits = small_limits();
        let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
        buf.resize(limits.max_head - 4, b'v');
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_with(&buf, &limits), Ok(Parsed::Complete));
        buf.insert(30, b'v');
        let fault = parse_with(&buf, &limits).unwrap_err();
        assert_eq!(fault, RequestError::HeadTooLarge);
        assert_eq!(fault.status(), 431);
    }

    #[test]
    fn partial_head_reaching_max_head_is_431() {
        let limits = small_limits();
        let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
        buf.resize(limits.max_head - 1, b'v');
        assert_eq!(parse_with(&buf, &limits), Ok(Parsed::Partial));
        buf.push(b'v');
        assert_eq!(parse_with(&buf, &limits), Err(RequestError::HeadTooLarge));
    }

    #[test]
    fn request_line_up_to_the_limit_is_accepted_and_beyond_is_414() {
        let limits = small_limits();
        // "GET /" + padding + " HTTP/1.1" is exactly max_request_line bytes.
        let mut line = b"GET /".to_vec();
        line.resize(limits.max_request_line - 9, b'a');
        line.extend_from_slice(b" HTTP/1.1");
        let mut buf = line.clone();
        buf.extend_from_slice(b"\r\nHost: h\r\n\r\n");
        assert_eq!(parse_with(&buf, &limits), Ok(Parsed::Complete));
        buf.insert(5, b'a');
        let fault = parse_with(&buf, &limits).unwrap_err();
        assert_eq!(fault, RequestError::RequestLineTooLong);
        assert_eq!(fault.status(), 414);
    }

    #[test]
    fn partial_request_line_beyond_the_limit_is_414() {
        let limits = small_limits();
        let mut buf = b"GET /".to_vec();
        buf.resize(limits.max_request_line, b'a');
        assert_eq!(parse_with(&buf, &limits), Ok(Parsed::Partial));
        // The line could still end here with its CRLF.
        buf.push(b'\r');
        assert_eq!(parse_with(&buf, &limits), Ok(Parsed::Partial));
        buf.pop();
        buf.push(b'a');
        assert_eq!(
            parse_with(&buf, &limits),
            Err(RequestError::RequestLineTooLong)
        );
    }

    #[test]
    fn more_headers_than_the_limit_is_431() {
        let limits = small_limits();
        let buf = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n\r\n";
        assert_eq!(parse_with(buf, &limits), Ok(Parsed::Complete));
        let buf = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
        let fault = parse_with(buf, &limits).unwrap_err();
        assert_eq!(fault, RequestError::TooManyHeaders);
        assert_eq!(fault.status(), 431);
    }

    #[test]
    fn max_headers_above_the_stack_capacity_is_clamped() {
        let limits = HeadLimits {
            max_headers: 10_000,
            ..HeadLimits::default()
        };
        let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..HeadLimits::MAX_HEADERS_CAP {
            buf.extend_from_slice(format!("Host{i}: v\r\n").as_bytes());
        }
        buf.extend_from_slice(b"Host: h\r\n\r\n");
        assert_eq!(parse_with(&buf, &limits), Err(RequestError::TooManyHeaders));
    }

    /// Feeds `buf` to a HeadScan in pieces of `step` bytes and returns its first verdict.
    fn poll_in_steps(
        buf: &[u8],
        step: usize,
        limits: &HeadLimits,
    ) -> (usize, Result<Option<usize>, RequestError>) {
        let mut scan = HeadScan::default();
        let mut len = 0;
        loop {
            len = (len + step).min(buf.len());
            match scan.poll(&buf[..len], limits) {
                Ok(None) if len < buf.len() => continue,
                verdict => return (len, verdict),
            }
        }
    }

    #[test]
    fn head_scan_finds_the_end_byte_by_byte() {
        let buf = b"\r\nGET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
        let head_len = buf.len() - 3;
        assert_eq!(
            poll_in_steps(buf, 1, &HeadLimits::default()),
            (head_len, Ok(Some(head_len)))
        );
        assert_eq!(complete(buf).head_len, head_len);
    }

    #[test]
    fn head_scan_starts_over_after_a_complete_head() {
        let limits = HeadLimits::default();
        let mut scan = HeadScan::default();
        assert_eq!(
            scan.poll(b"GET / HTTP/1.1\r\nHost: h\r\n", &limits),
            Ok(None)
        );
        assert_eq!(
            scan.poll(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", &limits),
            Ok(Some(27))
        );
        assert_eq!(scan, HeadScan::default());
        assert_eq!(scan.poll(b"GET", &limits), Ok(None));
    }

    #[test]
    fn head_scan_refuses_http09_without_waiting_for_a_blank_line() {
        assert_eq!(
            poll_in_steps(b"GET /\r\n", 1, &HeadLimits::default()),
            (7, Err(RequestError::Http09))
        );
    }

    #[test]
    fn head_scan_refuses_a_slowloris_request_line_at_the_limit() {
        let limits = small_limits();
        let buf = vec![b'a'; 100];
        let mut buf_with_method = b"GET /".to_vec();
        buf_with_method.extend_from_slice(&buf);
        assert_eq!(
            poll_in_steps(&buf_with_method, 1, &limits),
            (
                limits.max_request_line + 1,
                Err(RequestError::RequestLineTooLong)
            )
        );
    }

    #[test]
    fn head_scan_refuses_a_slowloris_header_section_at_max_head() {
        let limits = small_limits();
        let mut buf = b"GET / HTTP/1.1\r\nX: ".to_vec();
        buf.resize(200, b'v');
        assert_eq!(
            poll_in_steps(&buf, 1, &limits),
            (limits.max_head, Err(RequestError::HeadTooLarge))
        );
    }

    /// The incremental scan and a one-shot parse agree on every prefix: both wait, or both
    /// refuse with the same error, or the scan reports the head parse_request then judges.
    #[test]
    fn head_scan_agrees_with_parse_request_on_every_prefix() {
        let limits = small_limits();
        let fixtures: [&[u8]; 8] = [
            b"GET / HTTP/1.1\r\nHost: h\r\n\r\nX",
            b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /\r\n",
            b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\nX: vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv",
            b"GET / HTTP/1.1\nHost: h\n\n",
            b"G@T / HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n",
        ];
        for buf in fixtures {
            let mut scan = HeadScan::default();
            for len in 0..=buf.len() {
                let prefix = &buf[..len];
                let one_shot = parse_with(prefix, &limits);
                let incremental = scan.poll(prefix, &limits);
                match (one_shot, incremental) {
                    (Ok(Parsed::Partial), Ok(None)) => {}
                    (Err(a), Err(b)) if a == b => break,
                    (_, Ok(Some(end))) => {
                        assert_eq!(find_head_end(prefix, 0), Ok(Some(end)));
                        break;
                    }
                    (a, b) => panic!(
                        "{:?} at {len}: parse_request {a:?}, HeadScan {b:?}",
                        String::from_utf8_lossy(buf)
                    ),
                }
            }
        }
    }

    #[test]
    fn status_codes_of_errors() {
        assert_eq!(RequestError::HeadTooLarge.status(), 431);
        assert_eq!(RequestError::TooManyHeaders.status(), 431);
        assert_eq!(RequestError::RequestLineTooLong.status(), 414);
        assert_eq!(RequestError::UnsupportedVersion.status(), 505);
        assert_eq!(RequestError::Http2Preface.status(), 400);
        assert_eq!(RequestError::Header(HeaderError::BareLf).status(), 400);
    }

    #[test]
    fn every_error_has_a_distinct_reason() {
        let header_faults = [
            HeaderError::BareCr,
            HeaderError::BareLf,
            HeaderError::ObsFold,
            HeaderError::SpaceBeforeColon,
            HeaderError::EmptyName,
            HeaderError::InvalidNameByte,
            HeaderError::MissingColon,
            HeaderError::InvalidValueByte,
            HeaderError::ContentLengthWithTransferEncoding,
            HeaderError::ConflictingContentLength,
            HeaderError::InvalidContentLength,
            HeaderError::UnsupportedTransferCoding,
            HeaderError::ChunkedNotFinal,
            HeaderError::ChunkedTwice,
            HeaderError::MalformedTransferEncoding,
            HeaderError::TransferEncodingInHttp10,
        ];
        let mut errors = vec![
            RequestError::HeadTooLarge,
            RequestError::RequestLineTooLong,
            RequestError::TooManyHeaders,
            RequestError::UnsupportedVersion,
            RequestError::MalformedVersion,
            RequestError::Http2Preface,
            RequestError::Http09,
            RequestError::InvalidMethod,
            RequestError::MalformedRequestLine,
            RequestError::InvalidTarget,
            RequestError::FragmentInTarget,
            RequestError::AsteriskForm,
            RequestError::AuthorityForm,
            RequestError::ConnectNotSupported,
            RequestError::InvalidAbsoluteForm,
            RequestError::AbsoluteFormHostMismatch,
            RequestError::MissingHost,
            RequestError::MultipleHost,
            RequestError::InvalidHost,
            RequestError::Malformed,
            RequestError::UnsupportedExpectation,
            RequestError::UnderscoreInFieldName,
        ];
        errors.extend(header_faults.map(RequestError::Header));
        let mut reasons: Vec<&str> = errors.iter().map(|e| e.reason()).collect();
        assert_eq!(errors[0].to_string(), reasons[0]);
        let nested = RequestError::Header(HeaderError::BareLf);
        assert_eq!(nested.to_string(), HeaderError::BareLf.reason());
        assert!(std::error::Error::source(&nested).is_none());
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), errors.len());
    }
}
