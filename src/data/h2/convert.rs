//! HTTP/2 messages to and from the HTTP/1.1 bytes the gateway's request lifecycle speaks:
//! a request's header list serialised as an HTTP/1.1 head (RFC 9113 §8.3.1: `:authority`
//! becomes `Host`, split `cookie` fields are joined with `; `, §8.2.3), response heads parsed
//! by the gateway's own codec turned into header lists without the connection-specific
//! fields (§8.2.2), trailer sections both ways, and the gRPC answer to a gateway failure.
//! Pure: no I/O.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;

use crate::http::{HeaderKind, ResponseHead};

/// How the serialised request carries its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFraming {
    /// The request ended with its headers.
    None,
    /// `content-length` was given (h2 checks the DATA frames add up to it).
    Length,
    /// No length: `transfer-encoding: chunked`, trailers in the last chunk.
    Chunked,
}

/// Appends the HTTP/1.1 head of an HTTP/2 request to `out` and says how its body follows.
/// The head ends with `connection: close`: one request per bridged exchange.
pub fn write_request_head(out: &mut Vec<u8>, parts: &Parts, end_of_stream: bool) -> RequestFraming {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .as_bytes();
    // An authority-form CONNECT has no path; h2 hands over an empty one.
    out.extend_from_slice(if target.is_empty() { b"/" } else { target });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let authority = parts.uri.authority().map(|a| a.as_str());
    if let Some(authority) = authority {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(authority.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut has_length = false;
    let mut cookies = 0usize;
    for (name, value) in &parts.headers {
        if name == http::header::HOST && authority.is_some() {
            // §8.3.1: `:authority` wins over a `host` field.
            continue;
        }
        if name == http::header::COOKIE {
            cookies += 1;
            continue;
        }
        if name == http::header::CONTENT_LENGTH {
            has_length = true;
        }
        push_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if cookies > 0 {
        out.extend_from_slice(b"cookie: ");
        for (i, value) in parts
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .enumerate()
        {
            if i > 0 {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    let framing = if end_of_stream {
        RequestFraming::None
    } else if has_length {
        RequestFraming::Length
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        RequestFraming::Chunked
    };
    out.extend_from_slice(b"connection: close\r\n\r\n");
    framing
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The size line of a chunk of `len` bytes (`len` in hex, CRLF).
pub fn write_chunk_size(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.push(HEX[(len >> (i * 4)) & 0xf]);
    }
    out.extend_from_slice(b"\r\n");
}

/// The end of a chunked body: the last chunk, the trailer fields, the final CRLF.
pub fn write_last_chunk(out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    out.extend_from_slice(b"0\r\n");
    if let Some(trailers) = trailers {
        for (name, value) in trailers {
            push_field(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Fields of an HTTP/1.1 response head that mean nothing in HTTP/2 (§8.2.2). The gateway's
/// own head writer already dropped the hop-by-hop ones it forwards; these are the framing and
/// connection fields it adds.
fn is_connection_specific(kind: HeaderKind) -> bool {
    kind.is_hop_by_hop() || kind == HeaderKind::TransferEncoding
}

/// Why a response head cannot be sent as HTTP/2.
#[derive(Debug, thiserror::Error)]
#[error("response field cannot be sent over HTTP/2: {0}")]
pub struct BadField(&'static str);

/// The HTTP/2 response for a response head parsed from `buf`.
pub fn response_from_head(buf: &[u8], head: &ResponseHead) -> Result<http::Response<()>, BadField> {
    let mut response = http::Response::new(());
    *response.status_mut() =
        http::StatusCode::from_u16(head.status).map_err(|_| BadField("status"))?;
    let headers = response.headers_mut();
    headers.reserve(head.headers.len());
    for field in &head.headers {
        if is_connection_specific(field.kind) {
            continue;
        }
        let name = HeaderName::from_bytes(field.name.slice(buf)).map_err(|_| BadField("name"))?;
        let value =
            HeaderValue::from_bytes(field.value.slice(buf)).map_err(|_| BadField("value"))?;
        headers.append(name, value);
    }
    Ok(response)
}

/// Parses a trailer section (field lines and the final empty line, as the gateway's chunked
/// codec validated them) into header fields. Unparseable lines are dropped: the codec already
/// refused malformed sections, so only names HTTP/2 cannot carry end up here.
pub fn parse_trailer_section(section: &[u8]) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    for line in section.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            trailers.append(name, value);
        }
    }
    trailers
}

/// Whether a request is gRPC (`application/grpc`, `application/grpc+proto`, ...).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| is_grpc_content_type(v.as_bytes()))
}

/// `application/grpc` or one of its `+format` / `;params` variants.
pub fn is_grpc_content_type(value: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    value.len() >= GRPC.len()
        && value[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(value.get(GRPC.len()), None | Some(b'+' | b';'))
}

/// The gRPC status for an HTTP status the gateway (or a non-gRPC upstream) answered a gRPC
/// request with: gRPC's HTTP-to-status mapping, except that a gateway timeout is
/// DEADLINE_EXCEEDED (4), as Envoy answers, and size limits are RESOURCE_EXHAUSTED (8).
pub fn grpc_status_for(status: u16) -> u8 {
    match status {
        400 => 13,             // INTERNAL
        401 => 16,             // UNAUTHENTICATED
        403 => 7,              // PERMISSION_DENIED
        404 | 405 | 501 => 12, // UNIMPLEMENTED
        413 | 414 | 431 => 8,  // RESOURCE_EXHAUSTED
        429 | 502 | 503 => 14, // UNAVAILABLE
        504 => 4,              // DEADLINE_EXCEEDED
        _ => 2,                // UNKNOWN
    }
}

/// A trailers-only gRPC answer (HTTP 200, the status in the header block that ends the
/// stream) for an HTTP `status` with `message`.
pub fn grpc_error_response(status: u16, message: &str) -> http::Response<()> {
    let mut response = http::Response::new(());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(
        HeaderName::from_static("grpc-status"),
        HeaderValue::from(u16::from(grpc_status_for(status))),
    );
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(percent_encode(message))) {
        headers.insert(HeaderName::from_static("grpc-message"), value);
    }
    response
}

/// gRPC's `grpc-message` encoding: printable ASCII except `%` as is, the rest `%XX`.
fn percent_encode(message: &str) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
    }
    out
}

/// The `message` of a gateway error body (`{"code":..,"message":..}`), or the status's
/// reason phrase.
pub fn error_message(status: u16, body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("error_message"))
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| {
            http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("error")
                .to_owned()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(request: http::Request<()>) -> Parts {
        request.into_parts().0
    }

    #[test]
    fn request_heads_take_authority_as_host_and_join_cookies() {
        let request = http::Request::post("https://api.example:9095/petstore/v1/pet?x=1")
            .header("cookie", "a=1")
            .header("user-agent", "t")
            .header("cookie", "b=2")
            .header("host", "ignored")
            .body(())
            .unwrap();
        let mut out = Vec::new();
        let framing = write_request_head(&mut out, &parts(request), false);
        assert_eq!(framing, RequestFraming::Chunked);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /petstore/v1/pet?x=1 HTTP/1.1\r\nhost: api.example:9095\r\nuser-agent: t\r\n\
             cookie: a=1; b=2\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn a_length_or_an_ended_stream_needs_no_chunking() {
        let with_length = http::Request::put("http://h/x")
            .header("content-length", "5")
            .body(())
            .unwrap();
        let mut out = Vec::new();
        assert_eq!(
            write_request_head(&mut out, &parts(with_length), false),
            RequestFraming::Length
        );
        assert!(!out.windows(8).any(|w| w == b"chunked\r"));
        let get = http::Request::get("http://h/x").body(()).unwrap();
        out.clear();
        assert_eq!(
            write_request_head(&mut out, &parts(get), true),
            RequestFraming::None
        );
    }

    #[test]
    fn chunk_sizes_are_lower_case_hex() {
        let mut out = Vec::new();
        write_chunk_size(&mut out, 0x3fa0);
        write_chunk_size(&mut out, 1);
        assert_eq!(out, b"3fa0\r\n1\r\n");
    }

    #[test]
    fn trailer_sections_round_trip() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.insert("grpc-message", HeaderValue::from_static("all good"));
        let mut out = Vec::new();
        write_last_chunk(&mut out, Some(&trailers));
        let section = out.strip_prefix(b"0\r\n").unwrap();
        assert_eq!(parse_trailer_section(section), trailers);
    }

    #[test]
    fn grpc_is_recognised_with_its_variants_only() {
        assert!(is_grpc_content_type(b"application/grpc"));
        assert!(is_grpc_content_type(b"application/grpc+proto"));
        assert!(is_grpc_content_type(b"Application/GRPC;charset=utf-8"));
        assert!(!is_grpc_content_type(b"application/grpc-web"));
        assert!(!is_grpc_content_type(b"application/json"));
    }

    #[test]
    fn gateway_failures_map_to_grpc_statuses() {
        assert_eq!(grpc_status_for(503), 14);
        assert_eq!(grpc_status_for(504), 4);
        let response = grpc_error_response(503, "Upstream connection failed: 100%");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["grpc-status"], "14");
        assert_eq!(
            response.headers()["grpc-message"],
            "Upstream connection failed: 100%25"
        );
        assert_eq!(
            error_message(
                503,
                br#"{"code":"102503","message":"Upstream connection failed"}"#
            ),
            "Upstream connection failed"
        );
        assert_eq!(error_message(504, b"not json"), "Gateway Timeout");
    }
}
