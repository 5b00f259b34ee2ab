//! Writing heads onward: the request head for the upstream and the response head for the
//! client, each with only the necessary edits (hop-by-hop fields, Host, X-Forwarded-*, framing
//! re-rendered from the validated values). One `reserve` per head, then `extend_from_slice`
//! only: nothing allocates when the output vector already has the capacity.

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use super::{HeaderKind, RequestBody, RequestHead, ResponseHead, Version};

/// What the proxy decided about the upstream request; the rest comes from the client's head.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamHead<'a> {
    /// The request-target for the upstream, already joined by the proxy (endpoint base path,
    /// rest of the client's path, query).
    pub target: &'a [u8],
    /// The upstream authority for `Host` (port omitted when default).
    pub host: &'a [u8],
    /// The client's address, appended to `X-Forwarded-For`.
    pub client_ip: IpAddr,
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
        + MAX_IP_TEXT
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
    push_ip(out, f.client_ip);
    out.extend_from_slice(b"\r\n");
    push_field(out, b"X-Forwarded-Proto", f.proto);
    if let Some(host) = head.host {
        push_field(out, b"X-Forwarded-Host", host.slice(buf));
    }
    if let Some(authorization) = f.authorization {
        push_field(out, b"Authorization", authorization);
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
    // a missing reason, the framing line and the Connection line.
    const ADDED: usize = 128;
    head.head_len + head.headers.len() + f.extra.len() + ADDED
}

/// Writes the client response head for `head` (parsed from `buf`) into `out`.
///
/// `HTTP/1.1 status reason` (the upstream's reason phrase), the upstream's fields in order minus
/// hop-by-hop ones and the framing fields, then the framing re-rendered from the validated
/// values (none for 1xx and 204; no `Transfer-Encoding` when de-chunking; a HEAD or 304 response
/// keeps the length or coding it announced), `Connection: close` when the client connection
/// ends, `Connection: keep-alive` for a persisting HTTP/1.0 client, and `f.extra`.
pub fn write_client_head(out: &mut Vec<u8>, buf: &[u8], head: &ResponseHead, f: &ClientHead<'_>) {
    out.reserve(client_head_capacity(head, f));
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(head.status));
    out.extend_from_slice(b" ");
    out.extend_from_slice(head.reason.slice(buf));
    out.extend_from_slice(b"\r\n");

    for header in &head.headers {
        if header.hop_by_hop
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
    let interim_or_no_content = head.is_interim() || head.status == 204;
    if !interim_or_no_content {
        if head.chunked && !f.dechunk {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        } else if let Some(length) = head.content_length {
            push_content_length(out, length);
        }
    }
    // An interim response says nothing about the connection; the final one will.
    if !head.is_interim() {
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

fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
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
/// dual-stack listener included), bare IPv6 text.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
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
