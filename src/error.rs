//! Every way a request can end without an upstream response, and its HTTP answer: status,
//! JSON body and headers. This is the only place error responses are rendered.

use std::fmt;

use crate::auth::{AuthError, FailureReason, KeyType, WWW_AUTHENTICATE};
use crate::http::{current_http_date, push_decimal};
use crate::route::MethodSet;

/// A request the gateway answers itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayError {
    /// Malformed or ambiguous request (smuggling defences included); the reason is for logs
    /// and the description.
    BadRequest(&'static str),
    /// The request head did not arrive in time.
    RequestTimeout,
    /// The body is larger than `limits.max_body_bytes`.
    PayloadTooLarge,
    /// The request line is longer than `limits.max_request_line_bytes`.
    UriTooLong,
    /// The head is larger than `limits.max_request_head_bytes` or has too many headers.
    HeaderFieldsTooLarge,
    /// No API or no resource for the path.
    NotFound,
    /// The resource exists but not with this method.
    MethodNotAllowed(MethodSet),
    /// HTTP version other than 1.0/1.1.
    VersionNotSupported,
    /// An `Expect` member other than `100-continue`.
    ExpectationFailed,
    /// Missing or invalid token.
    Unauthorized(AuthError),
    /// A valid token for an environment the resource has no endpoints in.
    NoEndpointForKeyType(KeyType),
    /// A valid credential without the scopes the resource requires (403, CC's 900910). The
    /// description names the request path, given to `render_for_path`.
    InsufficientScope,
    /// Every endpoint of the group failed before answering (102503).
    UpstreamUnavailable,
    /// The upstream exchange took longer than the route timeout (102504).
    UpstreamTimeout,
    /// The upstream answered with something that is not HTTP (102502).
    BadUpstreamResponse,
    /// A circuit breaker limit was reached; the upstream was not called (102505).
    UpstreamOverflow,
    /// The route's throttling tier admitted all it may in this window (429, WSO2's
    /// 900800); `Retry-After` says when the window ends.
    RateLimited { retry_after_secs: u32 },
}

impl GatewayError {
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::BadRequest(_) => 400,
            GatewayError::Unauthorized(_) | GatewayError::NoEndpointForKeyType(_) => 401,
            GatewayError::InsufficientScope => 403,
            GatewayError::NotFound => 404,
            GatewayError::MethodNotAllowed(_) => 405,
            GatewayError::RequestTimeout => 408,
            GatewayError::PayloadTooLarge => 413,
            GatewayError::UriTooLong => 414,
            GatewayError::ExpectationFailed => 417,
            GatewayError::RateLimited { .. } => 429,
            GatewayError::HeaderFieldsTooLarge => 431,
            GatewayError::BadUpstreamResponse => 502,
            GatewayError::UpstreamUnavailable | GatewayError::UpstreamOverflow => 503,
            GatewayError::UpstreamTimeout => 504,
            GatewayError::VersionNotSupported => 505,
        }
    }

    /// Whether the client connection must be closed after the answer: the request stream can
    /// no longer be trusted to be in sync.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            GatewayError::BadRequest(_)
                | GatewayError::RequestTimeout
                | GatewayError::PayloadTooLarge
                | GatewayError::UriTooLong
                | GatewayError::HeaderFieldsTooLarge
                | GatewayError::VersionNotSupported
                | GatewayError::ExpectationFailed
        )
    }

    fn reason(&self) -> &'static str {
        reason_phrase(self.status())
    }

    /// Why a 401 or 403 was sent, for the auth failure counters and the debug log.
    pub fn failure_reason(&self) -> Option<FailureReason> {
        match self {
            GatewayError::Unauthorized(e) => Some(e.reason()),
            GatewayError::NoEndpointForKeyType(_) => Some(FailureReason::NoEndpointForKeyType),
            GatewayError::InsufficientScope => Some(FailureReason::MissingScope),
            _ => None,
        }
    }

    /// `(code, message, description)` of the JSON body.
    fn body_fields(&self) -> (&'static str, &'static str, &'static str) {
        match self {
            GatewayError::NotFound => (
                "404",
                "Not Found",
                "The requested resource is not available.",
            ),
            GatewayError::MethodNotAllowed(_) => (
                "405",
                "Method Not Allowed",
                "The requested method is not defined for this resource.",
            ),
            GatewayError::BadRequest(reason) => ("400", "Bad Request", reason),
            GatewayError::RequestTimeout => (
                "408",
                "Request Timeout",
                "The request head did not arrive in time.",
            ),
            GatewayError::PayloadTooLarge => (
                "413",
                "Payload Too Large",
                "The request body is larger than allowed.",
            ),
            GatewayError::UriTooLong => (
                "414",
                "URI Too Long",
                "The request line is longer than allowed.",
            ),
            GatewayError::ExpectationFailed => (
                "417",
                "Expectation Failed",
                "Only the 100-continue expectation is supported.",
            ),
            GatewayError::HeaderFieldsTooLarge => (
                "431",
                "Request Header Fields Too Large",
                "The request head is larger than allowed or has too many header fields.",
            ),
            GatewayError::VersionNotSupported => (
                "505",
                "HTTP Version Not Supported",
                "Only HTTP/1.0 and HTTP/1.1 are supported.",
            ),
            GatewayError::UpstreamUnavailable => (
                "102503",
                "Upstream connection failed",
                "None of the endpoints of this resource could be reached.",
            ),
            GatewayError::UpstreamTimeout => (
                "102504",
                "Upstream connection timeout",
                "The endpoint did not answer within the route timeout.",
            ),
            GatewayError::BadUpstreamResponse => (
                "102502",
                "Bad upstream response",
                "The endpoint sent a response that is not valid HTTP/1.1.",
            ),
            GatewayError::UpstreamOverflow => (
                "102505",
                "Upstream overflow",
                "The endpoint's circuit breaker limit was reached; the request was not sent.",
            ),
            GatewayError::RateLimited { .. } => (
                "900800",
                "Message throttled out",
                "You have exceeded your quota",
            ),
            GatewayError::Unauthorized(e) => (e.code(), e.message(), e.description()),
            GatewayError::NoEndpointForKeyType(k) => (
                "900901",
                "Invalid Credentials",
                k.missing_environment_description(),
            ),
            GatewayError::InsufficientScope => (
                "900910",
                "The access token does not allow you to access the requested resource",
                "User is NOT authorized to access the Resource. Scope validation failed.",
            ),
        }
    }

    /// Appends the whole response (head and body) to `out`.
    pub fn render(&self, out: &mut Vec<u8>, options: &RenderOptions<'_>) {
        self.render_for_path(out, options, b"");
    }

    /// [`GatewayError::render`] for a request to `path` (the path as routed), which the 403
    /// scope answer names as Choreo Connect does.
    pub fn render_for_path(&self, out: &mut Vec<u8>, options: &RenderOptions<'_>, path: &[u8]) {
        if *self == GatewayError::InsufficientScope {
            return self.render_scope_failure(out, options, path);
        }
        let mut body = [0u8; 512];
        let body_len = self.write_body(&mut body);
        let body = &body[..body_len];
        let status = self.status();
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, u64::from(status));
        out.push(b' ');
        out.extend_from_slice(self.reason().as_bytes());
        out.extend_from_slice(b"\r\ndate: ");
        out.extend_from_slice(&current_http_date());
        out.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
        push_decimal(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
        match self {
            GatewayError::MethodNotAllowed(allowed) => {
                out.extend_from_slice(b"allow: ");
                allowed.write_allow(out);
                out.extend_from_slice(b"\r\n");
            }
            GatewayError::Unauthorized(_) | GatewayError::NoEndpointForKeyType(_) => {
                out.extend_from_slice(b"www-authenticate: ");
                out.extend_from_slice(WWW_AUTHENTICATE.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            GatewayError::RateLimited { retry_after_secs } => {
                out.extend_from_slice(b"retry-after: ");
                push_decimal(out, u64::from(*retry_after_secs));
                out.extend_from_slice(b"\r\n");
            }
            _ => {}
        }
        out.extend_from_slice(options.extra_headers);
        if options.close || self.closes_connection() {
            out.extend_from_slice(b"connection: close\r\n");
        } else if options.http10_keep_alive {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !options.head_request {
            out.extend_from_slice(body);
        }
    }

    /// The 403: its description holds the request path, which may be as long as a request
    /// line, so the body is written straight into `out` instead of the fixed buffer.
    fn render_scope_failure(&self, out: &mut Vec<u8>, options: &RenderOptions<'_>, path: &[u8]) {
        const BEFORE: &[u8] = b"{\"error_message\":\"The access token does not allow you to access the requested resource\",\"code\":\"900910\",\"error_description\":\"User is NOT authorized to access the Resource: ";
        const AFTER: &[u8] = b". Scope validation failed.\"}";
        let body_len =
            BEFORE.len() + path.iter().map(|&b| json_path_len(b)).sum::<usize>() + AFTER.len();
        out.extend_from_slice(
            b"HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: ",
        );
        push_decimal(out, body_len as u64);
        // RFC 6750 3.1: a valid token lacking scope is `insufficient_scope`.
        out.extend_from_slice(
            b"\r\nwww-authenticate: Bearer realm=\"shardgate\", error=\"insufficient_scope\"\r\n",
        );
        out.extend_from_slice(options.extra_headers);
        if options.close {
            out.extend_from_slice(b"connection: close\r\n");
        } else if options.http10_keep_alive {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if options.head_request {
            return;
        }
        out.extend_from_slice(BEFORE);
        for &b in path {
            push_json_path_byte(out, b);
        }
        out.extend_from_slice(AFTER);
    }

    /// The JSON body into `buf`; returns its length. The texts are ours and short, so a fixed
    /// buffer holds them; nothing here allocates.
    fn write_body(&self, buf: &mut [u8; 512]) -> usize {
        let (code, message, description) = self.body_fields();
        let mut w = SliceWriter { buf, len: 0 };
        match self {
            GatewayError::Unauthorized(_)
            | GatewayError::NoEndpointForKeyType(_)
            | GatewayError::InsufficientScope => {
                // Choreo Connect's field names and order for authentication failures.
                w.push(b"{\"error_message\":");
                w.json_string(message);
                w.push(b",\"code\":");
                w.json_string(code);
                w.push(b",\"error_description\":");
                w.json_string(description);
            }
            _ => {
                w.push(b"{\"code\":");
                w.json_string(code);
                w.push(b",\"message\":");
                w.json_string(message);
                w.push(b",\"description\":");
                w.json_string(description);
            }
        }
        w.push(b"}");
        w.len
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (code, message, description) = self.body_fields();
        write!(f, "{} {code} {message}: {description}", self.status())
    }
}

/// How an error response fits the exchange it ends.
#[derive(Clone, Copy, Debug, Default)]
pub struct RenderOptions<'a> {
    /// Close the connection after this response (adds `connection: close`).
    pub close: bool,
    /// The client is HTTP/1.0 and asked for keep-alive (adds `connection: keep-alive`).
    pub http10_keep_alive: bool,
    /// The request was HEAD: the head says how long the body would be, but none is sent.
    pub head_request: bool,
    /// Pre-rendered header lines (CORS), each ending in CRLF.
    pub extra_headers: &'a [u8],
}

struct SliceWriter<'b> {
    buf: &'b mut [u8; 512],
    len: usize,
}

impl SliceWriter<'_> {
    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn json_string(&mut self, text: &str) {
        self.push(b"\"");
        for &b in text.as_bytes() {
            match b {
                b'"' => self.push(b"\\\""),
                b'\\' => self.push(b"\\\\"),
                0..=0x1f => self.push(b" "),
                _ => self.push(&[b]),
            }
        }
        self.push(b"\"");
    }
}

/// Bytes a path byte takes inside a JSON string: quotes and backslashes escaped, anything
/// that is not printable ASCII percent-encoded (so the body stays valid UTF-8 JSON).
fn json_path_len(b: u8) -> usize {
    match b {
        b'"' | b'\\' => 2,
        0x21..=0x7e => 1,
        _ => 3,
    }
}

fn push_json_path_byte(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    match b {
        b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
        0x21..=0x7e => out.push(b),
        _ => out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]),
    }
}

/// The standard reason phrase of the statuses the gateway produces itself.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;

    fn render(error: GatewayError, options: RenderOptions<'_>) -> (String, serde_json::Value) {
        let mut out = Vec::new();
        error.render(&mut out, &options);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        let json = if options.head_request {
            assert!(body.is_empty());
            serde_json::Value::Null
        } else {
            assert_eq!(body.len(), length, "content-length matches the body");
            serde_json::from_str(body).unwrap()
        };
        (head.to_owned(), json)
    }

    #[test]
    fn not_found_has_the_spec_body() {
        let (head, json) = render(GatewayError::NotFound, RenderOptions::default());
        assert!(
            head.starts_with("HTTP/1.1 404 Not Found\r\ndate: "),
            "{head}"
        );
        assert!(
            head.contains(" GMT\r\ncontent-type: application/json\r\n"),
            "{head}"
        );
        assert_eq!(
            json,
            serde_json::json!({"code":"404","message":"Not Found","description":"The requested resource is not available."})
        );
        assert!(!head.contains("connection:"));
    }

    #[test]
    fn upstream_errors_carry_their_codes() {
        for (error, status, code, message) in [
            (
                GatewayError::BadUpstreamResponse,
                502,
                "102502",
                "Bad upstream response",
            ),
            (
                GatewayError::UpstreamUnavailable,
                503,
                "102503",
                "Upstream connection failed",
            ),
            (
                GatewayError::UpstreamTimeout,
                504,
                "102504",
                "Upstream connection timeout",
            ),
            (
                GatewayError::UpstreamOverflow,
                503,
                "102505",
                "Upstream overflow",
            ),
        ] {
            let (head, json) = render(error, RenderOptions::default());
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
            assert_eq!(json["code"], code);
            assert_eq!(json["message"], message);
            assert!(json["description"].as_str().is_some_and(|d| !d.is_empty()));
        }
    }

    #[test]
    fn throttled_requests_get_429_with_retry_after_and_the_wso2_body() {
        let (head, json) = render(
            GatewayError::RateLimited {
                retry_after_secs: 17,
            },
            RenderOptions::default(),
        );
        assert!(
            head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nretry-after: 17"), "{head}");
        assert!(
            !head.contains("connection:"),
            "a throttled client may keep its connection"
        );
        assert_eq!(
            json,
            serde_json::json!({"code":"900800","message":"Message throttled out","description":"You have exceeded your quota"})
        );
    }

    #[test]
    fn method_not_allowed_lists_the_allowed_methods() {
        let mut allowed = MethodSet::default();
        allowed.insert(Method::Get);
        allowed.insert(Method::Post);
        let (head, json) = render(
            GatewayError::MethodNotAllowed(allowed),
            RenderOptions::default(),
        );
        assert!(head.contains("\r\nallow: GET, POST"), "{head}");
        assert_eq!(json["code"], "405");
    }

    #[test]
    fn auth_failures_use_choreo_connect_fields_and_www_authenticate() {
        let (head, json) = render(
            GatewayError::Unauthorized(AuthError::Missing),
            RenderOptions::default(),
        );
        assert!(head.starts_with("HTTP/1.1 401 Unauthorized"), "{head}");
        assert!(
            head.contains("www-authenticate: Bearer realm=\"shardgate\", error=\"invalid_token\""),
            "{head}"
        );
        assert_eq!(json["error_message"], "Invalid Credentials");
        assert_eq!(json["code"], "900901");
        let (_, json) = render(
            GatewayError::NoEndpointForKeyType(KeyType::Sandbox),
            RenderOptions::default(),
        );
        assert_eq!(
            json["error_description"],
            "Sandbox key offered to an API with no sandbox endpoint. Make sure you have provided the correct security credentials"
        );
    }

    #[test]
    fn scope_failure_is_the_cc_403_naming_the_path() {
        let mut out = Vec::new();
        GatewayError::InsufficientScope.render_for_path(
            &mut out,
            &RenderOptions::default(),
            b"/scopes/v2/pet/findByStatus",
        );
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{head}");
        assert!(
            head.contains(
                "\r\nwww-authenticate: Bearer realm=\"shardgate\", error=\"insufficient_scope\""
            ),
            "{head}"
        );
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert_eq!(
            body,
            r#"{"error_message":"The access token does not allow you to access the requested resource","code":"900910","error_description":"User is NOT authorized to access the Resource: /scopes/v2/pet/findByStatus. Scope validation failed."}"#
        );
    }

    #[test]
    fn scope_failure_body_stays_valid_json_for_any_path_bytes() {
        let long = format!("/{}", "a".repeat(9000));
        for path in [&b"/a\"b\\c"[..], b"/caf\xc3\xa9 x", long.as_bytes()] {
            let mut out = Vec::new();
            let options = RenderOptions {
                close: true,
                ..RenderOptions::default()
            };
            GatewayError::InsufficientScope.render_for_path(&mut out, &options, path);
            let text = String::from_utf8(out).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.ends_with("connection: close"), "{head}");
            assert!(head.contains(&format!("content-length: {}", body.len())));
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(json["code"], "900910");
        }
    }

    #[test]
    fn client_errors_close_the_connection() {
        for error in [
            GatewayError::BadRequest("x"),
            GatewayError::RequestTimeout,
            GatewayError::PayloadTooLarge,
            GatewayError::UriTooLong,
            GatewayError::HeaderFieldsTooLarge,
            GatewayError::ExpectationFailed,
        ] {
            let (head, _) = render(error, RenderOptions::default());
            assert!(head.ends_with("connection: close"), "{error:?}: {head}");
        }
    }

    #[test]
    fn head_requests_get_no_body_and_http10_keep_alive_is_echoed() {
        let options = RenderOptions {
            head_request: true,
            http10_keep_alive: true,
            ..RenderOptions::default()
        };
        let (head, _) = render(GatewayError::NotFound, options);
        assert!(head.ends_with("connection: keep-alive"), "{head}");
    }

    #[test]
    fn every_error_carries_one_date() {
        let (head, json) = render(GatewayError::ExpectationFailed, RenderOptions::default());
        assert!(
            head.starts_with("HTTP/1.1 417 Expectation Failed\r\n"),
            "{head}"
        );
        assert_eq!(json["code"], "417");
        let dates: Vec<&str> = head
            .lines()
            .filter_map(|l| l.strip_prefix("date: "))
            .collect();
        assert_eq!(dates.len(), 1, "{head}");
        assert_eq!(dates[0].len(), crate::http::HTTP_DATE_LEN);
        assert!(dates[0].ends_with(" GMT"));
    }

    #[test]
    fn extra_headers_are_included() {
        let options = RenderOptions {
            extra_headers: b"access-control-allow-origin: *\r\n",
            ..RenderOptions::default()
        };
        let (head, _) = render(GatewayError::NotFound, options);
        assert!(
            head.contains("\r\naccess-control-allow-origin: *"),
            "{head}"
        );
    }
}
