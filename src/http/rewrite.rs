//! Writing heads onward: the request head for the upstream and the response head for the
//! client, each with only the necessary edits (hop-by-hop fields, Host, X-Forwarded-*, framing
//! re-rendered from the validated values). One `reserve` per head, then `extend_from_slice`
//! only: nothing allocates when the output vector already has the capacity.

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use super::{current_http_date, HeaderKind, RequestBody, RequestHead, ResponseHead, Version};

/// `Date: ` + an IMF-fixdate + CRLF.
const DATE_LINE: usize = 8 + super::HTTP_DATE_LEN;

/// What the proxy decided about the upstream request; the rest comes from the client's head.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamHead<'a> {
    /// The request-target for the upstream, already joined by the proxy (endpoint base path,
    /// rest of the client's path, query).
    pub target: &'a [u8],
    /// The upstream authority for `Host` (port omitted when default).
    pub host: &'a [u8],
    /// The client's address, appended to `X-Forwarded-For`.
    pub client_ip: &'a [u8],
    /// The scheme the client used (`http` or `https`), for `X-Forwarded-Proto`.
    pub proto: &'a [u8],
    /// A header to remove, case-insensitively (the token header, unless configured to keep it).
    pub drop_header: Option<&'a [u8]>,
    /// A replacement `Authorization` value (endpoint basic auth); the client's is dropped.
    pub authorization: Option<&'a [u8]>,
}

/// What the proxy decided about the client response; the rest comes from the upstream's head.
#[derive(Debug, Clone, Copy)]
pub struct ClientHead<'a> {
    /// The client connection stays open after this response. Must be false when the body is
    /// delimited by the close (`UntilClose` upstream body, or `dechunk`).
    pub keep_alive: bool,
    /// The client's version: an HTTP/1.0 client needs `Connection: keep-alive` to stay open.
    pub client_version: Version,
    /// The caller de-chunks the body for an HTTP/1.0 client: no `Transfer-Encoding` is sent.
    pub dechunk: bool,
    /// Pre-rendered header lines (each ending in CRLF, e.g. CORS), written verbatim last.
    pub extra: &'a [u8],
}

/// Longest text of an IP address (`ffff:...` IPv6 is 39, IPv4-mapped forms 45).
const MAX_IP_TEXT: usize = 45;

/// Upper bound of the bytes `write_upstream_head` adds for these inputs; it reserves this much.
pub fn upstream_head_capacity(head: &RequestHead, f: &UpstreamHead<'_>) -> usize {
    // Every client field line is rewritten no longer than it came plus one space ("Name:v"
    // becomes "Name: v"), and the dropped lines (Host, X-Forwarded-For...) cover the values
    // re-used in the added ones. The constant covers the added names, separators and numbers.
    const ADDED: usize = 192;
    head.method_span.len()
        + f.target.len()
        + head.head_len
        + head.headers.len()
        + f.host.len()
        + f.proto.len()
        + f.authorization.map_or(0, <[u8]>::len)
        + f.client_ip.len()
        + ADDED
}

/// Writes the upstream request head for `head` (parsed from `buf`) into `out`.
///
/// `METHOD target HTTP/1.1`, the client's fields in order minus: hop-by-hop ones (including
/// those `Connection` names), `Host`, `Expect` (the gateway answers `100 Continue` itself),
/// `X-Forwarded-*`, `f.drop_header`, the framing fields, and `Authorization` when replaced. Then
/// `Host`, `X-Forwarded-For` (client's list + client IP), `X-Forwarded-Proto`,
/// `X-Forwarded-Host` (the client's Host), `Authorization` if replaced, and the framing: one
/// `Content-Length` with the validated value, or `Transfer-Encoding: chunked`. HTTP/1.0 clients
/// are forwarded as HTTP/1.1; keep-alive is HTTP/1.1's default, so no `Connection` is sent.
pub fn write_upstream_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &RequestHead,
    f: &UpstreamHead<'_>,
) {
    out.reserve(upstream_head_capacity(head, f));
    out.extend_from_slice(head.method_span.slice(buf));
    out.extend_from_slice(b" ");
    out.extend_from_slice(f.target);
    out.extend_from_slice(b" HTTP/1.1\r\n");

    for header in &head.headers {
        if header.hop_by_hop {
            continue;
        }
        match header.kind {
            HeaderKind::Host
            | HeaderKind::ContentLength
            | HeaderKind::TransferEncoding
            | HeaderKind::Expect
            | HeaderKind::XForwardedFor
            | HeaderKind::XForwardedProto
            | HeaderKind::XForwardedHost => continue,
            HeaderKind::Authorization if f.authorization.is_some() => continue,
            _ => {}
        }
        let name = header.name.slice(buf);
        if f.drop_header
            .is_some_and(|drop| name.eq_ignore_ascii_case(drop))
        {
            continue;
        }
        push_field(out, name, header.value.slice(buf));
    }

    push_field(out, b"Host", f.host);
    out.extend_from_slice(b"X-Forwarded-For: ");
    // The client's list (every field, in order) stays first: each proxy appends its peer.
    for header in &head.headers {
        if header.kind == HeaderKind::XForwardedFor && !header.hop_by_hop {
            let value = header.value.slice(buf);
            if !value.is_empty() {
                out.extend_from_slice(value);
                out.extend_from_slice(b", ");
            }
        }
    }
    out.extend_from_slice(f.client_ip);
    out.extend_from_slice(b"\r\n");
    push_field(out, b"X-Forwarded-Proto", f.proto);
    if let Some(host) = head.host {
        push_field(out, b"X-Forwarded-Host", host.slice(buf));
    }
    if let Some(authorization) = f.authorization {
        push_field(out, b"Authorization", authorization);
    }
    if head.upgrade_websocket {
        // `Connection` and `Upgrade` are hop-by-hop: a proxy that asks for the upgrade says so
        // itself (RFC 9110 §7.8).
        out.extend_from_slice(b"Connection: Upgrade\r\nUpgrade: websocket\r\n");
    }
    match head.body {
        RequestBody::None => {}
        RequestBody::Length(length) => push_content_length(out, length),
        RequestBody::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Upper bound of the bytes `write_client_head` adds for these inputs; it reserves this much.
pub fn client_head_capacity(head: &ResponseHead, f: &ClientHead<'_>) -> usize {
    // Status line and field lines as for the request; the constant covers an added space after
    // a missing reason, the framing line, the Connection line and a Date line.
    const ADDED: usize = 128 + DATE_LINE;
    head.head_len + head.headers.len() + f.extra.len() + ADDED
}

/// Writes the client response head for `head` (parsed from `buf`) into `out`.
///
/// `HTTP/1.1 status reason` (the upstream's reason phrase), the upstream's fields in order minus
/// hop-by-hop ones and the framing fields, then the framing re-rendered from the validated
/// values (none for 1xx and 204; no `Transfer-Encoding` when de-chunking; a HEAD or 304 response
/// keeps the length or coding it announced), `Date` from the shard's clock when a final
/// response has none (RFC 9110 §6.6.1; never on 1xx), `Connection: close` when the client
/// connection ends, `Connection: keep-alive` for a persisting HTTP/1.0 client, and `f.extra`.
pub fn write_client_head(out: &mut Vec<u8>, buf: &[u8], head: &ResponseHead, f: &ClientHead<'_>) {
    out.reserve(client_head_capacity(head, f));
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(head.status));
    out.extend_from_slice(b" ");
    out.extend_from_slice(head.reason.slice(buf));
    out.extend_from_slice(b"\r\n");

    // A 101 keeps the protocol it switches to: `Upgrade` is hop-by-hop, but it is the
    // answer to the client's own `Upgrade`.
    let switching = head.is_switching_protocols();
    for header in &head.headers {
        let keep_upgrade = switching && header.kind == HeaderKind::Upgrade;
        if (header.hop_by_hop && !keep_upgrade)
            || matches!(
                header.kind,
                HeaderKind::ContentLength | HeaderKind::TransferEncoding
            )
        {
            continue;
        }
        push_field(out, header.name.slice(buf), header.value.slice(buf));
    }

    // RFC 9110 §8.6 and RFC 9112 §6.1: 1xx and 204 carry neither framing field.
    let interim_or_no_content = head.is_interim() || switching || head.status == 204;
    if !interim_or_no_content {
        if head.chunked && !f.dechunk {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        } else if let Some(length) = head.content_length {
            push_content_length(out, length);
        }
    }
    if head.status >= 200 && !head.headers.iter().any(|h| h.kind == HeaderKind::Date) {
        push_field(out, b"Date", &current_http_date());
    }
    // An interim response says nothing about the connection; the final one will.
    if switching {
        out.extend_from_slice(b"Connection: Upgrade\r\n");
    } else if !head.is_interim() {
        if !f.keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if f.client_version == Version::Http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(f.extra);
    out.extend_from_slice(b"\r\n");
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_content_length(out: &mut Vec<u8>, length: u64) {
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, length);
    out.extend_from_slice(b"\r\n");
}

/// Appends `value` in decimal without allocating (heads, error responses, client addresses).
pub fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Writes an address as X-Forwarded-For carries it: dotted IPv4 (IPv4-mapped IPv6 from a
/// dual-stack listener included), bare IPv6 text. Rendered once per client connection.
pub fn write_client_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b".");
                }
                push_decimal(out, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            let mut text = StackText::default();
            // Cannot fail: the longest IPv6 text fits the buffer.
            let _ = write!(text, "{v6}");
            out.extend_from_slice(text.as_bytes());
        }
    }
}

/// A fixed buffer to format into without allocating.
struct StackText {
    bytes: [u8; MAX_IP_TEXT],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            bytes: [0; MAX_IP_TEXT],
            len: 0,
        }
    }
}

impl StackText {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.len + text.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn decimal_rendering() {
        for value in [0u64, 7, 10, 404, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, value);
            assert_eq!(out, value.to_string().as_bytes());
        }
    }
    use crate::http::{parse_request, parse_response, HeadLimits, Method, Parsed, ResponseBody};

    fn request(buf: &[u8]) -> RequestHead {
        let mut head = RequestHead::default();
        assert_eq!(
            parse_request(buf, &HeadLimits::default(), &mut head),
            Ok(Parsed::Complete),
            "{}",
            String::from_utf8_lossy(buf)
        );
        head
    }

    fn response(buf: &[u8], request_was_head: bool) -> ResponseHead {
        let mut head = ResponseHead::default();
        assert_eq!(
            parse_response(buf, request_was_head, &HeadLimits::default(), &mut head),
            Ok(Parsed::Complete),
            "{}",
            String::from_utf8_lossy(buf)
        );
        head
    }

    fn upstream_fields() -> UpstreamHead<'static> {
        UpstreamHead {
            target: b"/v2/pet?x=1",
            host: b"backend:8080",
            client_ip: b"203.0.113.7",
            proto: b"https",
            drop_header: None,
            authorization: None,
        }
    }

    fn upstream(buf: &[u8], f: &UpstreamHead<'_>) -> String {
        let mut out = Vec::new();
        write_upstream_head(&mut out, buf, &request(buf), f);
        String::from_utf8(out).expect("fixtures are ASCII")
    }

    fn client_fields() -> ClientHead<'static> {
        ClientHead {
            keep_alive: true,
            client_version: Version::Http11,
            dechunk: false,
            extra: b"",
        }
    }

    /// The client head for `buf`, without the `Date` line the gateway adds (checked to be
    /// there, once, exactly when it should be, with the shape of an IMF-fixdate).
    fn client(buf: &[u8], request_was_head: bool, f: &ClientHead<'_>) -> String {
        let mut out = Vec::new();
        let head = response(buf, request_was_head);
        write_client_head(&mut out, buf, &head, f);
        let text = String::from_utf8(out).expect("fixtures are ASCII");
        let upstream_has_date = head.headers.iter().any(|h| h.kind == HeaderKind::Date);
        let added: Vec<&str> = text
            .split("\r\n")
            .filter(|line| line.to_ascii_lowercase().starts_with("date: "))
            .collect();
        if head.is_interim() || upstream_has_date {
            assert!(
                added.len() == usize::from(upstream_has_date),
                "Date added to {text}"
            );
            return text;
        }
        assert_eq!(added.len(), 1, "{text}");
        assert_eq!(added[0].len(), 6 + crate::http::HTTP_DATE_LEN, "{text}");
        text.replacen(&format!("{}\r\n", added[0]), "", 1)
    }

    #[test]
    fn date_is_added_to_final_responses_without_one_and_never_to_interim_ones() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let mut out = Vec::new();
        write_client_head(&mut out, buf, &response(buf, false), &client_fields());
        let text = String::from_utf8(out).unwrap();
        let date = text
            .lines()
            .find_map(|l| l.strip_prefix("Date: "))
            .unwrap_or_else(|| panic!("no Date in {text}"));
        assert_eq!(date.len(), crate::http::HTTP_DATE_LEN);
        assert!(date.ends_with(" GMT"), "{date}");
        // The upstream's own Date is kept, and no second one added.
        let buf =
            b"HTTP/1.1 200 OK\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 0\r\n\r\n";
        let text = client(buf, false, &client_fields());
        assert_eq!(text.matches("ate: ").count(), 1, "{text}");
        assert!(text.contains("date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"));
        // 1xx: none (client() checks).
        client(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
            false,
            &client_fields(),
        );
    }

    #[test]
    fn upstream_head_drops_hop_by_hop_and_replaces_host_and_forwarding_headers() {
        let buf = b"GET /petstore/v1/pet?x=1 HTTP/1.1\r\n\
Host: gw.example\r\n\
User-Agent: curl/8\r\n\
Connection: keep-alive, X-Hop\r\n\
X-Hop: 1\r\n\
Keep-Alive: timeout=5\r\n\
TE: trailers\r\n\
Trailer: X-T\r\n\
Upgrade: h2c\r\n\
Proxy-Authorization: Basic eA==\r\n\
Proxy-Connection: keep-alive\r\n\
X-Forwarded-For: 10.0.0.1\r\n\
X-Forwarded-Proto: http\r\n\
X-Forwarded-Host: spoofed\r\n\
Accept: */*\r\n\r\n";
        assert_eq!(
            upstream(buf, &upstream_fields()),
            "GET /v2/pet?x=1 HTTP/1.1\r\n\
User-Agent: curl/8\r\n\
Accept: */*\r\n\
Host: backend:8080\r\n\
X-Forwarded-For: 10.0.0.1, 203.0.113.7\r\n\
X-Forwarded-Proto: https\r\n\
X-Forwarded-Host: gw.example\r\n\r\n"
        );
    }

    #[test]
    fn x_forwarded_for_is_added_when_absent_and_joined_in_order_when_repeated() {
        let out = upstream(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", &upstream_fields());
        assert!(
            out.contains("\r\nX-Forwarded-For: 203.0.113.7\r\n"),
            "{out}"
        );
        let out = upstream(
            b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2\r\nX-Forwarded-For:\r\nx-forwarded-for: 3.3.3.3\r\n\r\n",
            &upstream_fields(),
        );
        assert!(
            out.contains("\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 203.0.113.7\r\n"),
            "{out}"
        );
        assert_eq!(out.matches("orwarded-For").count(), 1, "{out}");
    }

    #[test]
    fn client_ip_is_written_as_x_forwarded_for_expects() {
        let cases = [
            (IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)), "0.0.0.0"),
            (
                IpAddr::V4(Ipv4Addr::new(255, 255, 255, 255)),
                "255.255.255.255",
            ),
            (IpAddr::V6(Ipv6Addr::LOCALHOST), "::1"),
            ("2001:db8::1".parse().unwrap(), "2001:db8::1"),
            ("::ffff:192.0.2.1".parse().unwrap(), "192.0.2.1"),
            (
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            ),
        ];
        for (ip, text) in cases {
            let mut out = Vec::new();
            write_client_ip(&mut out, ip);
            assert_eq!(out, text.as_bytes());
        }
    }

    #[test]
    fn token_header_is_dropped_case_insensitively() {
        let buf = b"GET / HTTP/1.1\r\nHost: h\r\nX-API-Token: secret\r\nAccept: */*\r\n\r\n";
        let f = UpstreamHead {
            drop_header: Some(b"x-api-token"),
            ..upstream_fields()
        };
        let out = upstream(buf, &f);
        assert!(!out.contains("secret"), "{out}");
        assert!(out.contains("\r\nAccept: */*\r\n"), "{out}");
    }

    #[test]
    fn authorization_is_replaced_when_configured_and_kept_otherwise() {
        let buf = b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer jwt\r\n\r\n";
        let f = UpstreamHead {
            authorization: Some(b"Basic dXNlcjpwYXNz"),
            ..upstream_fields()
        };
        let out = upstream(buf, &f);
        assert!(!out.contains("jwt"), "{out}");
        assert!(
            out.ends_with("\r\nAuthorization: Basic dXNlcjpwYXNz\r\n\r\n"),
            "{out}"
        );
        let out = upstream(buf, &upstream_fields());
        assert!(out.contains("\r\nAuthorization: Bearer jwt\r\n"), "{out}");
        // The JWT in Authorization itself is removed by naming it as the token header.
        let f = UpstreamHead {
            drop_header: Some(b"authorization"),
            ..upstream_fields()
        };
        assert!(!upstream(buf, &f).contains("jwt"));
    }

    #[test]
    fn expect_is_dropped_and_content_length_is_rendered_once() {
        let buf = b"POST /a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\ncontent-length: 5, 5\r\nContent-Length: 5\r\n\r\n";
        let out = upstream(buf, &upstream_fields());
        assert!(!out.to_ascii_lowercase().contains("expect"), "{out}");
        assert_eq!(
            out.to_ascii_lowercase().matches("content-length").count(),
            1,
            "{out}"
        );
        assert!(out.ends_with("\r\nContent-Length: 5\r\n\r\n"), "{out}");
    }

    #[test]
    fn chunked_request_is_forwarded_as_chunked() {
        let buf = b"POST /a HTTP/1.1\r\nHost: h\r\ntransfer-encoding: Chunked\r\n\r\n";
        let out = upstream(buf, &upstream_fields());
        assert!(
            out.ends_with("\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "{out}"
        );
        assert_eq!(
            out.to_ascii_lowercase()
                .matches("transfer-encoding")
                .count(),
            1
        );
    }

    #[test]
    fn http10_request_is_forwarded_as_http11_without_connection() {
        let buf = b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        let f = UpstreamHead {
            target: b"/old",
            proto: b"http",
            ..upstream_fields()
        };
        assert_eq!(
            upstream(buf, &f),
            "GET /old HTTP/1.1\r\n\
Host: backend:8080\r\n\
X-Forwarded-For: 203.0.113.7\r\n\
X-Forwarded-Proto: http\r\n\r\n"
        );
    }

    #[test]
    fn extension_method_is_forwarded_as_received() {
        let out = upstream(
            b"PROPFIND /dav HTTP/1.1\r\nHost: h\r\n\r\n",
            &upstream_fields(),
        );
        assert!(
            out.starts_with("PROPFIND /v2/pet?x=1 HTTP/1.1\r\n"),
            "{out}"
        );
    }

    #[test]
    fn upstream_head_round_trips_through_parse_request() {
        let buf = b"PUT /petstore/v1/pet HTTP/1.1\r\nHost: gw.example\r\nContent-Type: application/json\r\nX-Forwarded-For: 10.0.0.1\r\nContent-Length: 17\r\nConnection: close\r\n\r\n";
        let f = upstream_fields();
        let mut out = Vec::new();
        write_upstream_head(&mut out, buf, &request(buf), &f);
        let again = request(&out);
        assert_eq!(again.method, Method::Put);
        assert_eq!(again.path.slice(&out), b"/v2/pet");
        assert_eq!(again.query.map(|q| q.slice(&out)), Some(&b"x=1"[..]));
        assert_eq!(again.host.map(|h| h.slice(&out)), Some(f.host));
        assert_eq!(again.body, RequestBody::Length(17));
        assert!(
            again.keep_alive,
            "the upstream connection is meant to be pooled"
        );
        assert_eq!(again.head_len, out.len());
        let names: Vec<&[u8]> = again.headers.iter().map(|h| h.name.slice(&out)).collect();
        assert_eq!(
            names,
            [
                &b"Content-Type"[..],
                b"Host",
                b"X-Forwarded-For",
                b"X-Forwarded-Proto",
                b"X-Forwarded-Host",
                b"Content-Length"
            ]
        );
    }

    /// A head that makes the writer's output grow the most relative to its input: field lines
    /// without a space after the colon, many forwarded-for fields, a long replaced value.
    fn worst_case_request() -> Vec<u8> {
        let mut buf = b"M / HTTP/1.0\r\n".to_vec();
        for i in 0..40 {
            buf.extend_from_slice(format!("A{i}:b\r\n").as_bytes());
            buf.extend_from_slice(b"X-Forwarded-For:1\r\n");
        }
        buf.extend_from_slice(b"Host:h\r\nContent-Length:18446744073709551615\r\n\r\n");
        buf
    }

    #[test]
    fn writing_upstream_head_does_not_allocate_when_capacity_suffices() {
        let fixtures = [
            worst_case_request(),
            b"GET / HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            b"POST / HTTP/1.1\r\nHost:h\r\nTransfer-Encoding:chunked\r\n\r\n".to_vec(),
        ];
        let f = UpstreamHead {
            authorization: Some(b"Basic dXNlcjpwYXNzd29yZA=="),
            client_ip: b"1111:2222:3333:4444:5555:6666:7777:8888",
            ..upstream_fields()
        };
        for buf in fixtures {
            let head = request(&buf);
            let capacity = upstream_head_capacity(&head, &f);
            // Already holding other bytes: the head is appended.
            let mut out = Vec::with_capacity(3 + capacity);
            out.extend_from_slice(b"xyz");
            let before = (out.as_ptr(), out.capacity());
            write_upstream_head(&mut out, &buf, &head, &f);
            assert_eq!((out.as_ptr(), out.capacity()), before, "reallocated");
            assert!(out.len() - 3 <= capacity);
            assert_eq!(request(&out[3..]).head_len, out.len() - 3);
        }
    }

    #[test]
    fn client_head_drops_hop_by_hop_and_rerenders_the_length() {
        let buf = b"HTTP/1.1 200 OK\r\n\
Content-Type: application/json\r\n\
content-length: 2, 2\r\n\
Connection: keep-alive, X-Internal\r\n\
X-Internal: 1\r\n\
Keep-Alive: timeout=5\r\n\
Proxy-Authenticate: Basic\r\n\
Set-Cookie: a=1\r\n\
Set-Cookie: b=2\r\n\r\n";
        assert_eq!(
            client(buf, false, &client_fields()),
            "HTTP/1.1 200 OK\r\n\
Content-Type: application/json\r\n\
Set-Cookie: a=1\r\n\
Set-Cookie: b=2\r\n\
Content-Length: 2\r\n\r\n"
        );
    }

    #[test]
    fn client_head_says_close_when_the_connection_ends() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let f = ClientHead {
            keep_alive: false,
            ..client_fields()
        };
        assert_eq!(
            client(buf, false, &f),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn persisting_http10_client_gets_connection_keep_alive() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let f = ClientHead {
            client_version: Version::Http10,
            ..client_fields()
        };
        assert_eq!(
            client(buf, false, &f),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn chunked_response_is_passed_on_as_chunked_or_dechunked() {
        let buf = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            client(buf, false, &client_fields()),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let f = ClientHead {
            keep_alive: false,
            client_version: Version::Http10,
            dechunk: true,
            extra: b"",
        };
        assert_eq!(
            client(buf, false, &f),
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn until_close_response_gets_no_framing_header() {
        let buf = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n";
        assert_eq!(response(buf, false).body, ResponseBody::UntilClose);
        let f = ClientHead {
            keep_alive: false,
            ..client_fields()
        };
        assert_eq!(
            client(buf, false, &f),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn extra_lines_come_last_verbatim() {
        let buf = b"HTTP/1.1 204 No Content\r\n\r\n";
        let f = ClientHead {
            extra: b"Access-Control-Allow-Origin: *\r\nVary: Origin\r\n",
            ..client_fields()
        };
        assert_eq!(
            client(buf, false, &f),
            "HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Origin: *\r\nVary: Origin\r\n\r\n"
        );
    }

    #[test]
    fn interim_response_carries_no_framing_and_no_connection() {
        let buf = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n";
        let f = ClientHead {
            keep_alive: false,
            ..client_fields()
        };
        assert_eq!(
            client(buf, false, &f),
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        );
    }

    #[test]
    fn no_content_response_loses_a_stray_content_length() {
        let buf = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            client(buf, false, &client_fields()),
            "HTTP/1.1 204 No Content\r\n\r\n"
        );
    }

    #[test]
    fn head_and_not_modified_responses_keep_their_announced_length() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
        assert_eq!(
            client(buf, true, &client_fields()),
            "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
        );
        let buf = b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 99\r\n\r\n";
        assert_eq!(
            client(buf, false, &client_fields()),
            "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 99\r\n\r\n"
        );
    }

    #[test]
    fn reason_phrase_is_kept_and_a_missing_one_stays_empty() {
        let buf = b"HTTP/1.0 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n";
        assert!(client(buf, false, &client_fields()).starts_with("HTTP/1.1 418 I'm a teapot\r\n"));
        let buf = b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n";
        assert!(client(buf, false, &client_fields()).starts_with("HTTP/1.1 200 \r\n"));
    }

    #[test]
    fn client_head_round_trips_through_httparse_and_parse_response() {
        let buf = b"HTTP/1.1 201 Created\r\nLocation: /pet/1\r\nContent-Length: 7\r\nConnection: close\r\n\r\n";
        let f = ClientHead {
            extra: b"Access-Control-Allow-Origin: *\r\n",
            ..client_fields()
        };
        let out = client(buf, false, &f);
        let mut fields = [httparse::EMPTY_HEADER; 8];
        let mut parsed = httparse::Response::new(&mut fields);
        assert_eq!(
            parsed.parse(out.as_bytes()),
            Ok(httparse::Status::Complete(out.len()))
        );
        assert_eq!(parsed.code, Some(201));
        assert_eq!(parsed.reason, Some("Created"));
        let names: Vec<&str> = parsed.headers.iter().map(|h| h.name).collect();
        assert_eq!(
            names,
            ["Location", "Content-Length", "Access-Control-Allow-Origin"]
        );
        let again = response(out.as_bytes(), false);
        assert_eq!(again.body, ResponseBody::Length(7));
        assert!(again.keep_alive);
    }

    #[test]
    fn writing_client_head_does_not_allocate_when_capacity_suffices() {
        let mut worst = b"HTTP/1.0 200\r\n".to_vec();
        for i in 0..60 {
            worst.extend_from_slice(format!("A{i}:b\r\n").as_bytes());
        }
        worst.extend_from_slice(b"Content-Length:18446744073709551615\r\n\r\n");
        let fixtures = [
            worst,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding:chunked\r\n\r\n".to_vec(),
            b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        ];
        let f = ClientHead {
            keep_alive: true,
            client_version: Version::Http10,
            dechunk: false,
            extra: b"Access-Control-Allow-Origin: *\r\n",
        };
        for buf in fixtures {
            let head = response(&buf, false);
            let capacity = client_head_capacity(&head, &f);
            let mut out = Vec::with_capacity(capacity);
            let before = (out.as_ptr(), out.capacity());
            write_client_head(&mut out, &buf, &head, &f);
            assert_eq!((out.as_ptr(), out.capacity()), before, "reallocated");
            assert!(out.len() <= capacity);
        }
    }
}
