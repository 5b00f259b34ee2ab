//! Request smuggling, one test per family of vectors (BEHAVIOUR.md 4). Every refused vector is
//! sent on a fresh connection with a second, valid request (`GET /svc/smuggled`) right behind
//! it: the client must get the error status with `connection: close` and then end of stream,
//! and the backend must have received not one byte. Vectors the gateway accepts (a request
//! hidden in a valid body, pipelining after it, absolute-form with a matching `Host`) must
//! reach the backend as exactly the unambiguous requests, checked on the raw bytes the backend
//! read: same bodies byte for byte, one framing header, nothing left over, no smuggled request.

use crate::support;

use std::time::Duration;

use support::hostile::{panics, RawRequest, ScriptedBackend};
use support::{eventually, open_api, Gateway};

/// The valid request hidden behind every refused vector.
const SMUGGLED: &[u8] = b"GET /svc/smuggled HTTP/1.1\r\nHost: h\r\n\r\n";

struct Rig {
    backend: ScriptedBackend,
    gateway: Gateway,
}

fn rig() -> Rig {
    rig_with("")
}

fn rig_with(gateway_yaml: &str) -> Rig {
    let backend = ScriptedBackend::echo_targets();
    let gateway = Gateway::start_with(
        &open_api(&[backend.url("")], "load_balance"),
        gateway_yaml,
        1,
    );
    Rig { backend, gateway }
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).escape_debug().to_string()
}

/// Sends `vector` and the smuggled request behind it on a fresh connection; expects
/// `status`, `connection: close`, end of stream, and nothing at all at the backend.
fn assert_refused(rig: &Rig, name: &str, vector: &[u8], status: u16) {
    let raw_before = rig.backend.raw_total();
    let requests_before = rig.backend.requests().len();
    let mut client = rig.gateway.client();
    let mut bytes = vector.to_vec();
    bytes.extend_from_slice(SMUGGLED);
    client.send(&bytes);
    let response = client
        .read_response(false)
        .unwrap_or_else(|e| panic!("{name}: no response to {}: {e}", show(vector)));
    assert_eq!(response.status, status, "{name}: {}", show(vector));
    assert_eq!(
        response.header("connection"),
        Some("close"),
        "{name}: {}",
        show(vector)
    );
    assert!(
        client.is_closed(Duration::from_secs(5)),
        "{name}: connection left open after {}",
        show(vector)
    );
    assert_eq!(
        rig.backend.raw_total(),
        raw_before,
        "{name}: bytes reached the backend for {}",
        show(vector)
    );
    assert_eq!(rig.backend.requests().len(), requests_before, "{name}");
}

fn refuse_all(rig: &Rig, vectors: &[(&str, &[u8], u16)]) {
    for (name, vector, status) in vectors {
        assert_refused(rig, name, vector, *status);
    }
    assert_eq!(panics(&rig.gateway), 0);
}

#[test]
fn cl_te_and_te_cl_vectors_are_refused_and_reach_nothing() {
    let rig = rig();
    refuse_all(
        &rig,
        &[
            ("CL.TE classic", b"POST /svc/s HTTP/1.1\r\nHost: h\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED", 400),
            ("TE.CL classic", b"POST /svc/s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", 400),
            ("CL 0 with TE", b"POST /svc/s HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
            ("lower case names, upper case coding", b"POST /svc/s HTTP/1.1\r\nHost: h\r\ncontent-length: 4\r\ntransfer-encoding: CHUNKED\r\n\r\n0\r\n\r\n", 400),
            ("TE with identical CL twice", b"POST /svc/s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400),
            ("TE between two CLs", b"POST /svc/s HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
            ("obfuscated TE with CL", b"POST /svc/s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400),
            ("identity TE with CL", b"POST /svc/s HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: identity\r\n\r\nbody", 400),
            ("space before colon of TE, with CL", b"POST /svc/s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400),
            ("space before colon of CL, with TE", b"POST /svc/s HTTP/1.1\r\nHost: h\r\nContent-Length : 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
            ("TE folded onto the next line, with CL", b"POST /svc/s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400),
            ("HTTP/1.0 with TE and CL", b"POST /svc/s HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400),
            ("HTTP/1.0 with TE only", b"POST /svc/s HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ],
    );
}

#[test]
fn obfuscated_transfer_encoding_te_te_is_refused() {
    let rig = rig();
    let te = |value: &[u8]| {
        let mut v = b"POST /svc/s HTTP/1.1\r\nHost: h\r\n".to_vec();
        v.extend_from_slice(value);
        v.extend_from_slice(b"\r\n\r\n0\r\n\r\n");
        v
    };
    let vectors: Vec<(&str, Vec<u8>)> = vec![
        ("unknown coding", te(b"Transfer-Encoding: xchunked")),
        ("truncated coding", te(b"Transfer-Encoding: chunk")),
        (
            "chunked not last",
            te(b"Transfer-Encoding: chunked, identity"),
        ),
        (
            "identity before chunked",
            te(b"Transfer-Encoding: identity, chunked"),
        ),
        (
            "gzip before chunked",
            te(b"Transfer-Encoding: gzip, chunked"),
        ),
        (
            "chunked twice in a list",
            te(b"Transfer-Encoding: chunked, chunked"),
        ),
        (
            "chunked twice in two fields",
            te(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"),
        ),
        (
            "chunked then identity field",
            te(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity"),
        ),
        (
            "identity then chunked field",
            te(b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked"),
        ),
        (
            "coding with a parameter",
            te(b"Transfer-Encoding: chunked;q=1"),
        ),
        ("quoted coding", te(b"Transfer-Encoding: \"chunked\"")),
        ("empty value", te(b"Transfer-Encoding: ")),
        ("vertical tab before", te(b"Transfer-Encoding:\x0bchunked")),
        ("form feed before", te(b"Transfer-Encoding: \x0cchunked")),
        ("vertical tab after", te(b"Transfer-Encoding: chunked\x0b")),
        ("NUL inside", te(b"Transfer-Encoding: chun\x00ked")),
        ("space before colon", te(b"Transfer-Encoding : chunked")),
        ("tab before colon", te(b"Transfer-Encoding\t: chunked")),
        ("obs-fold value", te(b"Transfer-Encoding:\r\n chunked")),
        (
            "obs-fold of a second coding",
            te(b"Transfer-Encoding: chunked\r\n , identity"),
        ),
        (
            "leading space on the line",
            te(b" Transfer-Encoding: chunked"),
        ),
        ("name with a space", te(b"Transfer Encoding: chunked")),
    ];
    let table: Vec<(&str, &[u8], u16)> = vectors
        .iter()
        .map(|(name, v)| (*name, v.as_slice(), 400))
        .collect();
    refuse_all(&rig, &table);
}

#[test]
fn duplicate_and_malformed_content_length_is_refused() {
    let rig = rig();
    let cl = |value: &[u8]| {
        let mut v = b"POST /svc/s HTTP/1.1\r\nHost: h\r\n".to_vec();
        v.extend_from_slice(value);
        v.extend_from_slice(b"\r\n\r\nhello!");
        v
    };
    let vectors: Vec<(&str, Vec<u8>)> = vec![
        (
            "two differing fields",
            cl(b"Content-Length: 5\r\nContent-Length: 6"),
        ),
        (
            "two differing fields, larger first",
            cl(b"Content-Length: 6\r\nContent-Length: 5"),
        ),
        ("differing list", cl(b"Content-Length: 5, 6")),
        ("plus sign", cl(b"Content-Length: +5")),
        ("negative", cl(b"Content-Length: -1")),
        ("hex", cl(b"Content-Length: 0x5")),
        ("decimal point", cl(b"Content-Length: 5.0")),
        ("exponent", cl(b"Content-Length: 5e0")),
        ("underscore", cl(b"Content-Length: 1_0")),
        ("inner space", cl(b"Content-Length: 5 5")),
        ("quoted", cl(b"Content-Length: \"5\"")),
        ("empty", cl(b"Content-Length: ")),
        (
            "u64 overflow by one",
            cl(b"Content-Length: 18446744073709551616"),
        ),
        (
            "far overflow",
            cl(b"Content-Length: 99999999999999999999999"),
        ),
        ("space before colon", cl(b"Content-Length : 5")),
        ("obs-fold value", cl(b"Content-Length:\r\n 5")),
        ("vertical tab before", cl(b"Content-Length:\x0b5")),
        ("NUL after", cl(b"Content-Length: 5\x00")),
    ];
    let table: Vec<(&str, &[u8], u16)> = vectors
        .iter()
        .map(|(name, v)| (*name, v.as_slice(), 400))
        .collect();
    refuse_all(&rig, &table);
}

#[test]
fn whitespace_line_ending_and_field_name_tricks_are_refused() {
    let rig = rig();
    refuse_all(
        &rig,
        &[
            (
                "bare LF everywhere",
                b"GET /svc/s HTTP/1.1\nHost: h\n\n",
                400,
            ),
            (
                "bare LF ending the request line",
                b"GET /svc/s HTTP/1.1\nHost: h\r\n\r\n",
                400,
            ),
            (
                "bare LF ending a field",
                b"GET /svc/s HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
                400,
            ),
            (
                "bare LF ending the head",
                b"GET /svc/s HTTP/1.1\r\nHost: h\r\n\n",
                400,
            ),
            (
                "bare CR between fields",
                b"GET /svc/s HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",
                400,
            ),
            (
                "bare CR inside a value",
                b"GET /svc/s HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
                400,
            ),
            (
                "bare CR in the request line",
                b"GET /svc/s\rHTTP/1.1\r\nHost: h\r\n\r\n",
                400,
            ),
            (
                "NUL in a value",
                b"GET /svc/s HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
                400,
            ),
            (
                "NUL in a name",
                b"GET /svc/s HTTP/1.1\r\nHost: h\r\nX\x00Y: a\r\n\r\n",
                400,
            ),
            (
                "NUL in the target",
                b"GET /svc/s\x00 HTTP/1.1\r\nHost: h\r\n\r\n",
                400,
            ),
            (
                "NUL in the method",
                b"G\x00T /svc/s HTTP/1.1\r\nHost: h\r\n\r\n",
                400,
            ),
            (
                "space in a name",
                b"GET /svc/s HTTP/1.1\r\nHost: h\r\nBad Name: v\r\n\r\n",
                400,
            ),
            (
                "space before colon",
                b"GET /svc/s HTTP/1.1\r\nHost: h\r\nX-A : v\r\n\r\n",
                400,
            ),
            (
                "tab before colon",
                b"GET /svc/s HTTP/1.1\r\nHost: h\r\nX-A\t: v\r\n\r\n",
                400,
            ),
            (
                "empty name",
                b"GET /svc/s HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n",
                400,
            ),
            (
                "separator in a name",
                b"GET /svc/s HTTP/1.1\r\nHost: h\r\nX(a): v\r\n\r\n",
                400,
            ),
            (
                "field without colon",
                b"GET /svc/s HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n",
                400,
            ),
            (
                "obs-fold with space",
                b"GET /svc/s HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n b\r\n\r\n",
                400,
            ),
            (
                "obs-fold with tab",
                b"GET /svc/s HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n\tb\r\n\r\n",
                400,
            ),
            (
                "whitespace before the first field",
                b"GET /svc/s HTTP/1.1\r\n Host: h\r\n\r\n",
                400,
            ),
            (
                "double space in the request line",
                b"GET  /svc/s HTTP/1.1\r\nHost: h\r\n\r\n",
                400,
            ),
            (
                "tab in the request line",
                b"GET\t/svc/s HTTP/1.1\r\nHost: h\r\n\r\n",
                400,
            ),
            (
                "space inside the target",
                b"GET /svc/a b HTTP/1.1\r\nHost: h\r\n\r\n",
                400,
            ),
        ],
    );
}

#[test]
fn bad_chunk_framing_is_refused_before_anything_is_forwarded() {
    let rig = rig();
    let chunked = |body: &[u8]| {
        let mut v =
            b"POST /svc/s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        v.extend_from_slice(body);
        v
    };
    let long_extension = {
        let mut body = b"5;".to_vec();
        body.extend(std::iter::repeat_n(b'a', 5000));
        body.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        body
    };
    let huge_trailers = {
        let mut body = b"0\r\n".to_vec();
        for i in 0..200 {
            body.extend_from_slice(format!("X-T{i}: {}\r\n", "v".repeat(60)).as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body
    };
    let vectors: Vec<(&str, Vec<u8>)> = vec![
        (
            "17 hex digits (overflow)",
            chunked(b"10000000000000000\r\nhello\r\n0\r\n\r\n"),
        ),
        (
            "17 f (overflow)",
            chunked(b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
        ),
        ("negative size", chunked(b"-1\r\nhello\r\n0\r\n\r\n")),
        ("0x prefix", chunked(b"0x5\r\nhello\r\n0\r\n\r\n")),
        ("plus sign", chunked(b"+5\r\nhello\r\n0\r\n\r\n")),
        ("underscore", chunked(b"5_0\r\nhello\r\n0\r\n\r\n")),
        ("not hex", chunked(b"zz\r\nhello\r\n0\r\n\r\n")),
        ("empty size", chunked(b"\r\nhello\r\n0\r\n\r\n")),
        ("space before size", chunked(b" 5\r\nhello\r\n0\r\n\r\n")),
        ("space after size", chunked(b"5 \r\nhello\r\n0\r\n\r\n")),
        ("bare LF after size", chunked(b"5\nhello\r\n0\r\n\r\n")),
        ("bare CR after size", chunked(b"5\rhello\r\n0\r\n\r\n")),
        (
            "data longer than its size",
            chunked(b"5\r\nhelloX\r\n0\r\n\r\n"),
        ),
        ("bare LF after data", chunked(b"5\r\nhello\n0\r\n\r\n")),
        (
            "control byte in an extension",
            chunked(b"5;a=\x01\r\nhello\r\n0\r\n\r\n"),
        ),
        ("size line over 4 KiB", chunked(&long_extension)),
        ("bare LF in a trailer", chunked(b"0\r\nX: y\n\r\n")),
        ("obs-fold in trailers", chunked(b"0\r\nX: y\r\n z\r\n\r\n")),
        (
            "space in a trailer name",
            chunked(b"0\r\nBad Name: y\r\n\r\n"),
        ),
        ("bare LF ending the trailers", chunked(b"0\r\n\n")),
        ("trailer section over 8 KiB", chunked(&huge_trailers)),
    ];
    let table: Vec<(&str, &[u8], u16)> = vectors
        .iter()
        .map(|(name, v)| (*name, v.as_slice(), 400))
        .collect();
    refuse_all(&rig, &table);
}

#[test]
fn bad_chunk_after_a_streamed_prefix_aborts_the_upstream_request() {
    // 80 KiB of valid chunks (more than the gateway buffers for replay), so the body starts
    // streaming to the backend before the fault arrives.
    let rig = rig();
    let mut client = rig.gateway.client();
    let mut request =
        b"POST /svc/streamed HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..20 {
        request.extend_from_slice(b"1000\r\n");
        request.extend(std::iter::repeat_n(b'x', 0x1000));
        request.extend_from_slice(b"\r\n");
    }
    client.send(&request);
    assert!(
        eventually(Duration::from_secs(10), || rig.backend.raw_total() > 0),
        "the body never started streaming"
    );
    let mut fault = b"5\nhello\r\n0\r\n\r\n".to_vec();
    fault.extend_from_slice(SMUGGLED);
    client.send(&fault);
    let response = client
        .read_response(false)
        .expect("an answer to the bad chunk");
    assert_eq!(response.status, 400);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.is_closed(Duration::from_secs(5)));
    // The backend's connection is closed with an incomplete request: it never saw a complete
    // request, and the bytes it got are a prefix of the valid chunks, nothing after them.
    assert!(
        eventually(Duration::from_secs(10), || rig.backend.peer_closed() == 1),
        "upstream connection not closed"
    );
    assert!(rig.backend.requests().is_empty());
    let raw = rig.backend.raw(0);
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body_start = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let forwarded = &raw[head_end..];
    assert!(
        request[body_start..].starts_with(forwarded),
        "{} bytes forwarded that are not the valid prefix",
        forwarded.len()
    );
    assert_eq!(panics(&rig.gateway), 0);
}

#[test]
fn chunked_body_over_the_configured_limit_gets_413() {
    // `limits.max_body_bytes` bounds chunked bodies as it bounds Content-Length ones:
    // oversized chunk sizes must not get around it.
    let rig = rig_with("limits:\n  max_body_bytes: 10\n");
    refuse_all(
        &rig,
        &[
            ("one chunk over the limit", b"POST /svc/s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n", 413),
            ("small chunks adding up over the limit", b"POST /svc/s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n", 413),
            ("huge announced size", b"POST /svc/s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nhello", 413),
            ("Content-Length over the limit", b"POST /svc/s HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world", 413),
        ],
    );
    // At the limit both framings pass, with the exact body.
    let mut client = rig.gateway.client();
    client.send(b"POST /svc/ten HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n");
    assert_eq!(client.read_response(false).unwrap().status, 200);
    client.send(b"POST /svc/ten HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nhelloworld");
    assert_eq!(client.read_response(false).unwrap().status, 200);
    let bodies: Vec<Vec<u8>> = rig.backend.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, [b"helloworld".to_vec(), b"helloworld".to_vec()]);
}

#[test]
fn streamed_chunked_body_over_the_limit_is_cut_off() {
    // Over the replay buffer and over the limit: the gateway has started streaming when the
    // limit is crossed, so the client gets 413 and close, and the upstream request is
    // abandoned (its connection closed, no complete request seen).
    let rig = rig_with("limits:\n  max_body_bytes: 100000\n");
    let mut client = rig.gateway.client();
    let mut request =
        b"POST /svc/big HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..40 {
        request.extend_from_slice(b"1000\r\n");
        request.extend(std::iter::repeat_n(b'x', 0x1000));
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    client.send(&request);
    let response = client.read_response(false).expect("an answer");
    assert_eq!(response.status, 413);
    assert!(client.is_closed(Duration::from_secs(5)));
    assert!(rig.backend.requests().is_empty());
    assert!(eventually(Duration::from_secs(10), || rig
        .backend
        .peer_closed()
        == rig.backend.connections()));
}

#[test]
fn request_line_and_version_vectors_are_refused() {
    let rig = rig();
    refuse_all(
        &rig,
        &[
            ("HTTP/0.9 request line", b"GET /svc/s\r\n\r\n", 400),
            ("HTTP/0.9 without any blank line", b"GET /svc/s\r\n", 400),
            // The full client preface is h2c (tests/http2.rs); a preface that breaks off is
            // an HTTP/1.1 request line like any other.
            (
                "HTTP/2 preface cut short",
                b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
                400,
            ),
            (
                "HTTP/2.0 on a normal request line",
                b"GET /svc/s HTTP/2.0\r\nHost: h\r\n\r\n",
                505,
            ),
            ("HTTP/1.2", b"GET /svc/s HTTP/1.2\r\nHost: h\r\n\r\n", 505),
            (
                "lower-case version",
                b"GET /svc/s http/1.1\r\nHost: h\r\n\r\n",
                400,
            ),
            (
                "version without minor",
                b"GET /svc/s HTTP/1\r\nHost: h\r\n\r\n",
                400,
            ),
            (
                "CONNECT",
                b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
                400,
            ),
            (
                "authority-form",
                b"GET h:80 HTTP/1.1\r\nHost: h\r\n\r\n",
                400,
            ),
            (
                "asterisk-form",
                b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
                400,
            ),
            (
                "fragment",
                b"GET /svc/s#frag HTTP/1.1\r\nHost: h\r\n\r\n",
                400,
            ),
            (
                "non-http scheme",
                b"GET ftp://h/svc/s HTTP/1.1\r\nHost: h\r\n\r\n",
                400,
            ),
            (
                "method with a separator",
                b"GE(T /svc/s HTTP/1.1\r\nHost: h\r\n\r\n",
                400,
            ),
        ],
    );
}

#[test]
fn host_vectors_are_refused() {
    let rig = rig();
    refuse_all(
        &rig,
        &[
            (
                "missing Host on HTTP/1.1",
                b"GET /svc/s HTTP/1.1\r\n\r\n",
                400,
            ),
            (
                "two Host fields",
                b"GET /svc/s HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                400,
            ),
            (
                "two identical Host fields",
                b"GET /svc/s HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
                400,
            ),
            (
                "Host list",
                b"GET /svc/s HTTP/1.1\r\nHost: a, b\r\n\r\n",
                400,
            ),
            (
                "Host with userinfo",
                b"GET /svc/s HTTP/1.1\r\nHost: user@a\r\n\r\n",
                400,
            ),
            (
                "Host with a path",
                b"GET /svc/s HTTP/1.1\r\nHost: a/b\r\n\r\n",
                400,
            ),
            (
                "Host with a bad port",
                b"GET /svc/s HTTP/1.1\r\nHost: a:8o\r\n\r\n",
                400,
            ),
            ("empty Host", b"GET /svc/s HTTP/1.1\r\nHost: \r\n\r\n", 400),
            (
                "absolute-form, other Host",
                b"GET http://other.example/svc/s HTTP/1.1\r\nHost: h\r\n\r\n",
                400,
            ),
            (
                "absolute-form, other port",
                b"GET http://h:8080/svc/s HTTP/1.1\r\nHost: h\r\n\r\n",
                400,
            ),
            (
                "absolute-form with userinfo",
                b"GET http://user@h/svc/s HTTP/1.1\r\nHost: user@h\r\n\r\n",
                400,
            ),
            (
                "absolute-form without a path",
                b"GET http://h HTTP/1.1\r\nHost: h\r\n\r\n",
                400,
            ),
            (
                "absolute-form, two Hosts",
                b"GET http://h/svc/s HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n",
                400,
            ),
        ],
    );
}

/// Sends `bytes` and reads `targets.len()` responses, each `200` echoing its upstream target.
fn exchange(rig: &Rig, name: &str, bytes: &[u8], targets: &[&str], expect_continue: bool) {
    let mut client = rig.gateway.client();
    if expect_continue {
        let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        client.send(&bytes[..split]);
        let interim = client.read_any_response(false).unwrap();
        assert_eq!(interim.status, 100, "{name}");
        client.send(&bytes[split..]);
    } else {
        client.send(bytes);
    }
    for target in targets {
        let response = client
            .read_response(false)
            .unwrap_or_else(|e| panic!("{name}: no response for {target}: {e}"));
        assert_eq!(response.status, 200, "{name}: {target}");
        assert_eq!(response.text(), *target, "{name}");
    }
}

/// The requests the backend completed since `from`, as (method, target, body).
fn seen(backend: &ScriptedBackend, from: usize) -> Vec<(String, String, Vec<u8>)> {
    backend.requests()[from..]
        .iter()
        .map(|r| (r.method.clone(), r.target.clone(), r.body.clone()))
        .collect()
}

fn expected(list: &[(&str, &str, &[u8])]) -> Vec<(String, String, Vec<u8>)> {
    list.iter()
        .map(|(m, t, b)| (m.to_string(), t.to_string(), b.to_vec()))
        .collect()
}

/// Each backend connection received exactly the requests recorded on it, back to back, and
/// nothing else (the backend reads eagerly, so a stray byte would be in its raw log).
fn assert_backend_streams_exact(backend: &ScriptedBackend) {
    std::thread::sleep(Duration::from_millis(200));
    let requests = backend.requests();
    for index in 0..backend.connections() {
        let mut expected = Vec::new();
        for r in requests.iter().filter(|r| r.connection == index) {
            expected.extend_from_slice(&r.raw_head);
            expected.extend_from_slice(&r.raw_body);
        }
        assert!(
            backend.raw(index) == expected,
            "connection {index} carried more than its requests: {}",
            show(&backend.raw(index)[expected.len().min(backend.raw(index).len())..])
        );
    }
    assert!(
        !requests.iter().any(|r| r.target.contains("smuggled")),
        "a smuggled request reached the backend"
    );
}

fn framing_headers(r: &RawRequest) -> (usize, usize) {
    let count = |name: &str| {
        r.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    };
    (count("content-length"), count("transfer-encoding"))
}

#[test]
fn requests_hidden_in_valid_bodies_stay_bodies_and_pipelining_after_them_works() {
    let Rig { backend, gateway } = rig();
    let hidden = b"GET /svc/smuggled HTTP/1.1\r\nHost: h\r\n\r\n";
    let after = b"GET /svc/after HTTP/1.1\r\nHost: h\r\n\r\n";
    let with_after = |first: &[u8]| [first, &after[..]].concat();
    let rig = Rig { backend, gateway };

    // CL body holding a whole request (the CL.TE payload without its TE).
    let from = rig.backend.requests().len();
    let mut request = format!(
        "POST /svc/cl HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        hidden.len()
    )
    .into_bytes();
    request.extend_from_slice(hidden);
    exchange(
        &rig,
        "CL body",
        &with_after(&request),
        &["/cl", "/after"],
        false,
    );
    assert_eq!(
        seen(&rig.backend, from),
        expected(&[("POST", "/cl", hidden), ("GET", "/after", b"")])
    );
    assert_eq!(framing_headers(&rig.backend.requests()[from]), (1, 0));

    // Chunked body whose chunk data is a whole request (the TE.CL payload without its CL).
    let from = rig.backend.requests().len();
    let mut chunked_body = format!("{:x}\r\n", hidden.len()).into_bytes();
    chunked_body.extend_from_slice(hidden);
    chunked_body.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut request =
        b"POST /svc/te HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    request.extend_from_slice(&chunked_body);
    exchange(
        &rig,
        "chunk data",
        &with_after(&request),
        &["/te", "/after"],
        false,
    );
    assert_eq!(
        seen(&rig.backend, from),
        expected(&[("POST", "/te", hidden), ("GET", "/after", b"")])
    );
    assert_eq!(rig.backend.requests()[from].raw_body, chunked_body);
    assert_eq!(framing_headers(&rig.backend.requests()[from]), (0, 1));

    // The last chunk, then a request: that is pipelining, answered as two requests.
    let from = rig.backend.requests().len();
    let request = b"POST /svc/zero HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /svc/pipelined HTTP/1.1\r\nHost: h\r\n\r\n";
    exchange(
        &rig,
        "last chunk then request",
        &with_after(request),
        &["/zero", "/pipelined", "/after"],
        false,
    );
    assert_eq!(
        seen(&rig.backend, from),
        expected(&[
            ("POST", "/zero", b""),
            ("GET", "/pipelined", b""),
            ("GET", "/after", b"")
        ])
    );

    // Content-Length: 0 then a request in the same write.
    let from = rig.backend.requests().len();
    let request = b"POST /svc/empty HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\nGET /svc/next HTTP/1.1\r\nHost: h\r\n\r\n";
    exchange(
        &rig,
        "CL 0 then request",
        &with_after(request),
        &["/empty", "/next", "/after"],
        false,
    );
    assert_eq!(
        seen(&rig.backend, from),
        expected(&[
            ("POST", "/empty", b""),
            ("GET", "/next", b""),
            ("GET", "/after", b"")
        ])
    );

    // Identical duplicate Content-Length fields: one request, one field upstream.
    let from = rig.backend.requests().len();
    let request =
        b"POST /svc/dup HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello";
    exchange(
        &rig,
        "duplicate CL",
        &with_after(request),
        &["/dup", "/after"],
        false,
    );
    assert_eq!(
        seen(&rig.backend, from),
        expected(&[("POST", "/dup", b"hello"), ("GET", "/after", b"")])
    );
    assert_eq!(framing_headers(&rig.backend.requests()[from]), (1, 0));

    // Extensions and trailers that look like requests pass through as framing, verbatim.
    let from = rig.backend.requests().len();
    let chunked_body =
        b"5;x=\"GET /svc/smuggled HTTP/1.1\"\r\nhello\r\n0\r\nX-Trailer: GET /svc/smuggled\r\n\r\n";
    let mut request =
        b"POST /svc/ext HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    request.extend_from_slice(chunked_body);
    exchange(
        &rig,
        "extensions",
        &with_after(&request),
        &["/ext", "/after"],
        false,
    );
    assert_eq!(
        seen(&rig.backend, from),
        expected(&[("POST", "/ext", b"hello"), ("GET", "/after", b"")])
    );
    assert_eq!(rig.backend.requests()[from].raw_body, chunked_body);

    // A streamed body (over the 64 KiB replay buffer) ending in a request, both framings.
    let mut big = vec![b'x'; 70_000];
    big.extend_from_slice(hidden);
    let from = rig.backend.requests().len();
    let mut request = format!(
        "POST /svc/bigcl HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        big.len()
    )
    .into_bytes();
    request.extend_from_slice(&big);
    exchange(
        &rig,
        "streamed CL",
        &with_after(&request),
        &["/bigcl", "/after"],
        false,
    );
    let mut chunked_body = Vec::new();
    for piece in big.chunks(10_000) {
        chunked_body.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked_body.extend_from_slice(piece);
        chunked_body.extend_from_slice(b"\r\n");
    }
    chunked_body.extend_from_slice(b"0\r\n\r\n");
    let mut request =
        b"POST /svc/bigte HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    request.extend_from_slice(&chunked_body);
    exchange(
        &rig,
        "streamed chunked",
        &with_after(&request),
        &["/bigte", "/after"],
        false,
    );
    assert_eq!(
        seen(&rig.backend, from),
        expected(&[
            ("POST", "/bigcl", &big),
            ("GET", "/after", b""),
            ("POST", "/bigte", &big),
            ("GET", "/after", b"")
        ])
    );
    assert_eq!(rig.backend.requests()[from + 2].raw_body, chunked_body);

    // Expect: 100-continue, then a body holding a request.
    let from = rig.backend.requests().len();
    let mut request = format!(
        "POST /svc/expect HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        hidden.len()
    )
    .into_bytes();
    request.extend_from_slice(hidden);
    exchange(
        &rig,
        "expect",
        &with_after(&request),
        &["/expect", "/after"],
        true,
    );
    assert_eq!(
        seen(&rig.backend, from),
        expected(&[("POST", "/expect", hidden), ("GET", "/after", b"")])
    );

    // HTTP/1.0 keep-alive with a body holding a request.
    let from = rig.backend.requests().len();
    let mut request = format!(
        "POST /svc/old HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\nContent-Length: {}\r\n\r\n",
        hidden.len()
    )
    .into_bytes();
    request.extend_from_slice(hidden);
    request.extend_from_slice(b"GET /svc/after HTTP/1.0\r\nHost: h\r\n\r\n");
    exchange(&rig, "HTTP/1.0", &request, &["/old", "/after"], false);
    assert_eq!(
        seen(&rig.backend, from),
        expected(&[("POST", "/old", hidden), ("GET", "/after", b"")])
    );

    assert_eq!(panics(&rig.gateway), 0);
    assert_backend_streams_exact(&rig.backend);
}

#[test]
fn absolute_form_with_matching_host_is_normalised_to_origin_form() {
    let rig = rig();
    let from = rig.backend.requests().len();
    let mut client = rig.gateway.client();
    client.send(b"GET http://api.example:8080/svc/abs?q=1 HTTP/1.1\r\nHost: api.example:8080\r\n\r\nGET HTTP://API.EXAMPLE/svc/upper HTTP/1.1\r\nHost: api.example\r\n\r\nGET https://h/svc/tls HTTP/1.1\r\nHost: h\r\n\r\n");
    for target in ["/abs?q=1", "/upper", "/tls"] {
        let response = client.read_response(false).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), target);
    }
    let requests = &rig.backend.requests()[from..];
    let upstream = format!("127.0.0.1:{}", rig.backend.addr.port());
    assert_eq!(requests.len(), 3);
    for (request, forwarded_host) in requests
        .iter()
        .zip(["api.example:8080", "api.example", "h"])
    {
        assert!(request.target.starts_with('/'), "{}", request.target);
        assert_eq!(request.header("host"), Some(upstream.as_str()));
        assert_eq!(request.header("x-forwarded-host"), Some(forwarded_host));
        assert_eq!(
            request
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
                .count(),
            1
        );
    }
    // The mismatching forms are refused (also in `host_vectors_are_refused`).
    assert_refused(
        &rig,
        "absolute-form, other Host",
        b"GET http://evil.example/svc/s HTTP/1.1\r\nHost: api.example\r\n\r\n",
        400,
    );
}
