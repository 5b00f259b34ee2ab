//! `request_head`: `parse_request` and `HeadScan::poll` on arbitrary bytes, then the upstream
//! head written for a parsed request, parsed again.
//!
//! Input: `flags, limit a, limit b, limit c, split1 (u16 LE), split2 (u16 LE)`, then the bytes
//! a client sent. `flags` bit 0: small limits from a/b/c (else the defaults); bits 1-5 pick the
//! proxy's choices for the upstream head (host, client address, dropped header, replaced
//! `Authorization`, scheme).
//!
//! Invariants:
//! - a `Complete` parse has `head_len <= buf.len()` (and `<= max_head`), `head_len` is where
//!   `find_head_end` says the head ends, every `Span` lies within `head_len`, the path starts
//!   with `/`, the method matches its token, at most `max_headers` fields;
//! - `HeadScan::poll`, fed the buffer growing at two fuzzer-chosen split points, gives the
//!   verdict `parse_request` gives on the same prefix: both wait, or both fail with the same
//!   error, or the scan reports a head end that `parse_request` then parses (or refuses) with
//!   the same `head_len`;
//! - `write_upstream_head` stays within `upstream_head_capacity`, and its output parses again
//!   as one complete HTTP/1.1 head with the same method, the same body framing, the chosen
//!   host and target, no hop-by-hop field, and the client's end-to-end fields in order.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use shardgate::http::{
    find_head_end, parse_request, upstream_head_capacity, write_client_ip, write_upstream_head,
    HeadLimits, HeadScan, HeaderKind, Method, Parsed, RequestBody, RequestHead, UpstreamHead,
    Version,
};

use crate::{assert_span, head_limits, roomy_limits, show, Input};

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let limits = head_limits(flags & 1 != 0, input.byte(), input.byte(), input.byte());
    let split1 = usize::from(input.u16());
    let split2 = usize::from(input.u16());
    let buf = input.rest();

    let mut head = RequestHead::with_limits(&limits);
    let parsed = parse_request(buf, &limits, &mut head);
    if parsed == Ok(Parsed::Complete) {
        check_complete(buf, &limits, &head);
        check_round_trip(buf, &head, flags);
    }

    let mut splits = [split1 % (buf.len() + 1), split2 % (buf.len() + 1)];
    splits.sort_unstable();
    check_scan_agrees(buf, &limits, &splits);
}

/// What a complete parse promises about its head.
pub fn check_complete(buf: &[u8], limits: &HeadLimits, head: &RequestHead) {
    let head_len = head.head_len;
    assert!(head_len <= buf.len(), "head_len {head_len} > {}", buf.len());
    assert!(
        head_len <= limits.max_head,
        "head_len {head_len} > max_head"
    );
    assert_eq!(
        find_head_end(buf, 0),
        Ok(Some(head_len)),
        "head_len of {}",
        show(buf)
    );
    assert_span("method", head.method_span, head_len);
    assert_span("target", head.target, head_len);
    assert_span("path", head.path, head_len);
    if let Some(query) = head.query {
        assert_span("query", query, head_len);
    }
    if let Some(host) = head.host {
        assert_span("host", host, head_len);
    }
    assert!(head.headers.len() <= limits.max_headers.min(HeadLimits::MAX_HEADERS_CAP));
    for header in &head.headers {
        assert_span("header name", header.name, head_len);
        assert_span("header value", header.value, head_len);
        assert!(
            !header.name.is_empty(),
            "empty header name in {}",
            show(buf)
        );
    }
    assert_eq!(head.method, Method::from_bytes(head.method_span.slice(buf)));
    assert_ne!(head.method, Method::Connect, "CONNECT accepted");
    let path = head.path.slice(buf);
    assert!(
        path.starts_with(b"/"),
        "path {} does not start with /",
        show(path)
    );
    assert!(head.version == Version::Http11 || head.version == Version::Http10);
    if head.version == Version::Http11 {
        assert!(head.host.is_some(), "HTTP/1.1 head without Host");
    }
}

/// Feeds a `HeadScan` the buffer as it grows (to each split point, then whole) and compares
/// its first verdict with `parse_request` on the same prefix.
pub fn check_scan_agrees(buf: &[u8], limits: &HeadLimits, splits: &[usize]) {
    let mut scan = HeadScan::default();
    let mut verdict = Ok(None);
    let mut len = 0;
    for &end in splits.iter().chain([&buf.len()]) {
        len = end;
        verdict = scan.poll(&buf[..len], limits);
        if verdict != Ok(None) {
            break;
        }
    }
    let prefix = &buf[..len];
    let mut head = RequestHead::default();
    let one_shot = parse_request(prefix, limits, &mut head);
    match (verdict, one_shot) {
        (Ok(None), Ok(Parsed::Partial)) => {}
        (Err(a), Err(b)) if a == b => {}
        (Ok(Some(end)), one_shot) => {
            assert_eq!(
                find_head_end(prefix, 0),
                Ok(Some(end)),
                "HeadScan end differs from find_head_end on {}",
                show(prefix)
            );
            match one_shot {
                Ok(Parsed::Complete) => assert_eq!(head.head_len, end),
                Ok(Parsed::Partial) => {
                    panic!(
                        "HeadScan found a head in {} that parse_request calls partial",
                        show(prefix)
                    )
                }
                // parse_request applies every rule to the complete head; the scan only the
                // early ones, so a refusal here is expected.
                Err(_) => {}
            }
        }
        (scan, one_shot) => panic!(
            "HeadScan {scan:?} but parse_request {one_shot:?} on {} (splits {splits:?})",
            show(prefix)
        ),
    }
}

/// The client address as the proxy renders it (once per connection) for `X-Forwarded-For`.
fn client_ip(flags: u8) -> Vec<u8> {
    let ip = if flags & 4 != 0 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7))
    } else {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))
    };
    let mut out = Vec::new();
    write_client_ip(&mut out, ip);
    out
}

/// The proxy's choices for the upstream head, from the flag bits.
fn upstream_choices<'a>(
    buf: &'a [u8],
    head: &RequestHead,
    flags: u8,
    target: &'a [u8],
    client_ip: &'a [u8],
) -> UpstreamHead<'a> {
    UpstreamHead {
        target,
        host: match (flags & 2 != 0, head.host) {
            (true, Some(host)) => host.slice(buf),
            _ => b"backend.internal:8080",
        },
        client_ip,
        proto: if flags & 32 != 0 { b"https" } else { b"http" },
        drop_header: (flags & 8 != 0).then_some(&b"x-api-key"[..]),
        authorization: (flags & 16 != 0).then_some(&b"Basic dXNlcjpwYXNz"[..]),
    }
}

/// Writes the upstream head for `head` and parses it again.
pub fn check_round_trip(buf: &[u8], head: &RequestHead, flags: u8) {
    // The target the proxy would send: the client's path and query (origin-form, also for
    // an absolute-form client target).
    let mut target = head.path.slice(buf).to_vec();
    if let Some(query) = head.query {
        target.push(b'?');
        target.extend_from_slice(query.slice(buf));
    }
    let ip = client_ip(flags);
    let f = upstream_choices(buf, head, flags, &target, &ip);
    let mut out = Vec::new();
    write_upstream_head(&mut out, buf, head, &f);
    let bound = upstream_head_capacity(head, &f);
    assert!(
        out.len() <= bound,
        "upstream head of {} bytes exceeds its reserved bound {bound}",
        out.len()
    );

    let limits = roomy_limits();
    let mut again = RequestHead::default();
    let parsed = parse_request(&out, &limits, &mut again);
    assert_eq!(
        parsed,
        Ok(Parsed::Complete),
        "upstream head does not parse: {}\nfrom {}",
        show(&out),
        show(&buf[..head.head_len])
    );
    assert_eq!(
        again.head_len,
        out.len(),
        "upstream head has trailing bytes"
    );
    assert_eq!(again.method, head.method);
    assert_eq!(again.method_span.slice(&out), head.method_span.slice(buf));
    assert_eq!(again.version, Version::Http11);
    assert_eq!(
        again.body,
        head.body,
        "body framing changed: {}",
        show(&out)
    );
    assert_eq!(again.target.slice(&out), &target[..]);
    assert_eq!(again.host.map(|h| h.slice(&out)), Some(f.host));
    assert!(again.keep_alive, "upstream head closes the connection");
    assert!(!again.expect_continue, "Expect forwarded");
    for header in &again.headers {
        assert!(
            !header.hop_by_hop && !header.kind.is_hop_by_hop(),
            "hop-by-hop field {} forwarded: {}",
            show(header.name.slice(&out)),
            show(&out)
        );
    }

    // The client's end-to-end fields come first, in order, unchanged.
    let kept: Vec<(&[u8], &[u8])> = head
        .headers
        .iter()
        .filter(|h| {
            !h.hop_by_hop
                && !matches!(
                    h.kind,
                    HeaderKind::Host
                        | HeaderKind::ContentLength
                        | HeaderKind::TransferEncoding
                        | HeaderKind::Expect
                        | HeaderKind::XForwardedFor
                        | HeaderKind::XForwardedProto
                        | HeaderKind::XForwardedHost
                )
                && (h.kind != HeaderKind::Authorization || f.authorization.is_none())
                && !f
                    .drop_header
                    .is_some_and(|d| h.name.slice(buf).eq_ignore_ascii_case(d))
        })
        .map(|h| (h.name.slice(buf), h.value.slice(buf)))
        .collect();
    assert!(again.headers.len() >= kept.len());
    for (i, (name, value)) in kept.iter().enumerate() {
        let h = &again.headers[i];
        assert_eq!(
            (h.name.slice(&out), h.value.slice(&out)),
            (*name, *value),
            "field {i} changed: {}",
            show(&out)
        );
    }
    // Then exactly the gateway's own fields.
    let added: Vec<HeaderKind> = again.headers[kept.len()..].iter().map(|h| h.kind).collect();
    let mut expected = vec![
        HeaderKind::Host,
        HeaderKind::XForwardedFor,
        HeaderKind::XForwardedProto,
    ];
    if head.host.is_some() {
        expected.push(HeaderKind::XForwardedHost);
    }
    if f.authorization.is_some() {
        expected.push(HeaderKind::Authorization);
    }
    match head.body {
        RequestBody::None => {}
        RequestBody::Length(_) => expected.push(HeaderKind::ContentLength),
        RequestBody::Chunked => expected.push(HeaderKind::TransferEncoding),
    }
    assert_eq!(added, expected, "added fields of {}", show(&out));
}
