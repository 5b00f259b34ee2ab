//! `response_head`: `parse_response` for both `request_was_head` values, then the client head
//! written for a parsed response, parsed again.
//!
//! Input: `flags, limit a, limit b, limit c`, then the bytes an upstream sent. `flags` bit 0:
//! small limits from a/b/c (else the defaults); bit 1: the request was HEAD (for the round
//! trip); bits 2-5: the proxy's choices (keep-alive, HTTP/1.0 client, de-chunking, extra
//! CORS lines).
//!
//! Invariants:
//! - both `request_was_head` values agree on everything but the body and keep-alive;
//! - a `Complete` parse has `head_len <= buf.len()` (and `<= max_head`) where `find_head_end`
//!   puts it, spans within `head_len`, a status in 100..=599 other than 101, and the RFC 9112
//!   §6.3 body (none for HEAD, 1xx, 204, 304; chunked; length; until close);
//! - `write_client_head` stays within `client_head_capacity`, and its output parses again
//!   (with the same `request_was_head`) as one complete head with the same status, reason,
//!   framing (de-chunked bodies become until-close), the upstream's end-to-end fields in order,
//!   and no hop-by-hop field except the gateway's own `Connection`.

use shardgate::http::{
    client_head_capacity, find_head_end, parse_response, write_client_head, ClientHead, HeadLimits,
    HeaderKind, Parsed, ResponseBody, ResponseHead, Version,
};

use crate::{assert_span, head_limits, roomy_limits, show, Input};

const EXTRA: &[u8] = b"Access-Control-Allow-Origin: *\r\nVary: Origin\r\n";

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let limits = head_limits(flags & 1 != 0, input.byte(), input.byte(), input.byte());
    let buf = input.rest();

    let mut for_get = ResponseHead::with_limits(&limits);
    let mut for_head = ResponseHead::with_limits(&limits);
    let get = parse_response(buf, false, &limits, &mut for_get);
    let head = parse_response(buf, true, &limits, &mut for_head);
    assert_eq!(
        get,
        head,
        "request_was_head changes the verdict on {}",
        show(buf)
    );
    if get != Ok(Parsed::Complete) {
        return;
    }
    check_complete(buf, &limits, &for_get, false);
    check_complete(buf, &limits, &for_head, true);
    assert_eq!(for_get.head_len, for_head.head_len);
    assert_eq!(for_get.status, for_head.status);
    assert_eq!(for_get.reason, for_head.reason);
    assert_eq!(for_get.version, for_head.version);
    assert_eq!(for_get.headers, for_head.headers);
    assert_eq!(for_get.content_length, for_head.content_length);
    assert_eq!(for_get.chunked, for_head.chunked);

    let request_was_head = flags & 2 != 0;
    let parsed = if request_was_head {
        &for_head
    } else {
        &for_get
    };
    check_round_trip(buf, parsed, request_was_head, flags);
}

/// What a complete parse promises about its head.
pub fn check_complete(
    buf: &[u8],
    limits: &HeadLimits,
    head: &ResponseHead,
    request_was_head: bool,
) {
    let head_len = head.head_len;
    assert!(head_len <= buf.len() && head_len <= limits.max_head);
    assert_eq!(find_head_end(buf, 0), Ok(Some(head_len)));
    assert_span("reason", head.reason, head_len);
    assert!(head.headers.len() <= limits.max_headers.min(HeadLimits::MAX_HEADERS_CAP));
    for header in &head.headers {
        assert_span("header name", header.name, head_len);
        assert_span("header value", header.value, head_len);
    }
    assert!(
        (100..=599).contains(&head.status) && head.status != 101,
        "status {}",
        head.status
    );
    assert!(
        !(head.chunked && head.content_length.is_some()),
        "both framings"
    );
    let expected = if request_was_head || matches!(head.status, 100..=199 | 204 | 304) {
        ResponseBody::None
    } else if head.chunked {
        ResponseBody::Chunked
    } else if let Some(length) = head.content_length {
        ResponseBody::Length(length)
    } else {
        ResponseBody::UntilClose
    };
    assert_eq!(head.body, expected, "framing of {}", show(&buf[..head_len]));
    if head.body == ResponseBody::UntilClose {
        assert!(
            !head.keep_alive,
            "keep-alive with a body delimited by the close"
        );
    }
}

/// Writes the client head for `head` and parses it again.
pub fn check_round_trip(buf: &[u8], head: &ResponseHead, request_was_head: bool, flags: u8) {
    let client_version = if flags & 8 != 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let dechunk = flags & 16 != 0 && head.chunked;
    let f = ClientHead {
        // As the proxy must: never keep-alive when the body ends with the connection.
        keep_alive: flags & 4 != 0 && head.body != ResponseBody::UntilClose && !dechunk,
        client_version,
        dechunk,
        extra: if flags & 32 != 0 { EXTRA } else { b"" },
    };
    let mut out = Vec::new();
    write_client_head(&mut out, buf, head, &f);
    let bound = client_head_capacity(head, &f);
    assert!(
        out.len() <= bound,
        "client head of {} bytes exceeds its bound {bound}",
        out.len()
    );

    let mut again = ResponseHead::default();
    let parsed = parse_response(&out, request_was_head, &roomy_limits(), &mut again);
    assert_eq!(
        parsed,
        Ok(Parsed::Complete),
        "client head does not parse: {}\nfrom {}",
        show(&out),
        show(&buf[..head.head_len])
    );
    assert_eq!(again.head_len, out.len(), "client head has trailing bytes");
    assert_eq!(again.status, head.status);
    assert_eq!(again.version, Version::Http11);
    assert_eq!(
        again.reason.slice(&out),
        head.reason.slice(buf),
        "reason of {}",
        show(&out)
    );

    let no_framing = head.is_interim() || head.status == 204;
    let expected_chunked = head.chunked && !dechunk && !no_framing;
    let expected_length = if no_framing || expected_chunked {
        None
    } else {
        head.content_length
    };
    assert_eq!(again.chunked, expected_chunked, "chunked in {}", show(&out));
    assert_eq!(
        again.content_length,
        expected_length,
        "length in {}",
        show(&out)
    );
    let expected_body = match head.body {
        ResponseBody::Chunked if dechunk => ResponseBody::UntilClose,
        body => body,
    };
    assert_eq!(again.body, expected_body, "body of {}", show(&out));
    if !head.is_interim() {
        assert_eq!(
            again.keep_alive,
            f.keep_alive,
            "keep-alive of {}",
            show(&out)
        );
    }

    // The upstream's end-to-end fields, in order and unchanged; then only the gateway's own.
    let kept: Vec<(&[u8], &[u8])> = head
        .headers
        .iter()
        .filter(|h| {
            !h.hop_by_hop
                && !matches!(
                    h.kind,
                    HeaderKind::ContentLength | HeaderKind::TransferEncoding
                )
        })
        .map(|h| (h.name.slice(buf), h.value.slice(buf)))
        .collect();
    assert!(again.headers.len() >= kept.len());
    for (i, (name, value)) in kept.iter().enumerate() {
        let h = &again.headers[i];
        assert_eq!(
            (h.name.slice(&out), h.value.slice(&out)),
            (*name, *value),
            "field {i} of {}",
            show(&out)
        );
    }
    let mut connection_fields = 0;
    let mut date_fields = 0;
    for h in &again.headers[kept.len()..] {
        match h.kind {
            HeaderKind::ContentLength | HeaderKind::TransferEncoding | HeaderKind::Other => {}
            HeaderKind::Date => {
                date_fields += 1;
                let value = h.value.slice(&out);
                assert!(
                    value.len() == 29 && value.ends_with(b" GMT"),
                    "Date: {}",
                    show(value)
                );
            }
            HeaderKind::Connection => {
                connection_fields += 1;
                let value = h.value.slice(&out);
                assert!(
                    value == b"close" || value == b"keep-alive",
                    "Connection: {}",
                    show(value)
                );
            }
            kind => panic!("unexpected added field {kind:?} in {}", show(&out)),
        }
    }
    assert!(connection_fields <= 1);
    // RFC 9110 §6.6.1: a Date on every final response, the upstream's if it sent one; never
    // one added to a 1xx.
    let upstream_date = head.headers.iter().any(|h| h.kind == HeaderKind::Date);
    let expected_dates = usize::from(!head.is_interim() && !upstream_date);
    assert_eq!(date_fields, expected_dates, "Date in {}", show(&out));
    for h in &again.headers[..kept.len()] {
        assert!(
            !h.kind.is_hop_by_hop(),
            "hop-by-hop field {} forwarded: {}",
            show(h.name.slice(&out)),
            show(&out)
        );
    }
}
