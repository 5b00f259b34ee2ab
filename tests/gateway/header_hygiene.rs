//! Header hygiene (BEHAVIOUR.md §4, issue 14) on real loopback sockets, checked on the raw
//! bytes the backend (or the client) received: underscore names, trailer sections in both
//! directions, `Date` on every response, `417` for expectations other than `100-continue`.

use crate::support;

use std::time::Duration;

use shardgate::metrics::Rejection;
use support::hostile::{panics, RawRequest, ScriptedBackend};
use support::{open_api, Client, Gateway};

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).escape_debug().to_string()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn rejections(gateway: &Gateway, reason: Rejection) -> u64 {
    gateway.shard_sum(|m| m.rejections(reason))
}

/// One request sent raw; the backend's raw view of it.
fn forwarded(gateway: &Gateway, backend: &ScriptedBackend, request: &[u8]) -> RawRequest {
    let before = backend.requests().len();
    let mut client = gateway.client();
    client.send(request);
    let response = client.read_response(false).expect("a response");
    assert_eq!(response.status, 200, "{}", show(request));
    let requests = backend.requests();
    assert_eq!(requests.len(), before + 1);
    requests[before].clone()
}

const UNDERSCORED: &[u8] = b"GET /svc/u HTTP/1.1\r\nHost: gateway.test\r\n\
X_Forwarded_Host: evil.example\r\nX-Ok: 1\r\nx_real_ip: 10.0.0.1\r\nAccept: */*\r\n\r\n";

#[test]
fn underscored_header_names_are_dropped_by_default() {
    let backend = ScriptedBackend::echo_targets();
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let request = forwarded(&gateway, &backend, UNDERSCORED);
    let head = &request.raw_head;
    assert!(!head.contains(&b'_'), "{}", show(head));
    assert!(
        contains(head, b"\r\nX-Ok: 1\r\nAccept: */*\r\n"),
        "{}",
        show(head)
    );
    assert!(
        contains(head, b"\r\nX-Forwarded-Host: gateway.test\r\n"),
        "{}",
        show(head)
    );
    assert_eq!(panics(&gateway), 0);
}

#[test]
fn underscored_header_names_can_be_refused_or_allowed() {
    let backend = ScriptedBackend::echo_targets();
    let gateway = Gateway::start_with(
        &open_api(&[backend.url("")], "load_balance"),
        "http:\n  underscores_in_headers: reject\n",
        1,
    );
    let mut client = gateway.client();
    client.send(UNDERSCORED);
    let response = client.read_response(false).unwrap();
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json()["description"],
        "underscore in a header field name"
    );
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(backend.raw_total(), 0);
    assert_eq!(rejections(&gateway, Rejection::UnderscoreHeader), 1);
    // Underscores elsewhere (path, values) are no reason to refuse.
    forwarded(
        &gateway,
        &backend,
        b"GET /svc/a_b HTTP/1.1\r\nHost: h\r\nX-Id: a_b\r\n\r\n",
    );
    drop(gateway);

    let backend = ScriptedBackend::echo_targets();
    let gateway = Gateway::start_with(
        &open_api(&[backend.url("")], "load_balance"),
        "http:\n  underscores_in_headers: allow\n",
        1,
    );
    let request = forwarded(&gateway, &backend, UNDERSCORED);
    assert!(
        contains(
            &request.raw_head,
            b"\r\nX_Forwarded_Host: evil.example\r\nX-Ok: 1\r\nx_real_ip: 10.0.0.1\r\n"
        ),
        "{}",
        show(&request.raw_head)
    );
}

/// A chunked body whose trailer section holds every forbidden field between allowed ones.
const BODY_WITH_TRAILERS: &[u8] = b"5\r\nhello\r\n0\r\nX-Sum: 1\r\nContent-Length: 5\r\n\
Host: evil.example\r\nTransfer-Encoding: chunked\r\nAuthorization: Bearer stolen\r\n\
Proxy-Authorization: Basic eA==\r\nTrailer: X-Sum\r\nTE: trailers\r\nExpect: 100-continue\r\n\
Range: bytes=0-1\r\nCache-Control: no-cache\r\nX-After: 2\r\n\r\n";

const FILTERED_TRAILERS: &[u8] = b"0\r\nX-Sum: 1\r\nX-After: 2\r\n\r\n";

fn chunked_post(body: &[u8]) -> Vec<u8> {
    let mut request =
        b"POST /svc/t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    request.extend_from_slice(body);
    request
}

#[test]
fn forbidden_request_trailers_never_reach_the_backend() {
    let backend = ScriptedBackend::echo_targets();
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));

    // Buffered (the whole body arrives with the head).
    let request = forwarded(&gateway, &backend, &chunked_post(BODY_WITH_TRAILERS));
    let mut expected = b"5\r\nhello\r\n".to_vec();
    expected.extend_from_slice(FILTERED_TRAILERS);
    assert_eq!(show(&request.raw_body), show(&expected));
    assert_eq!(request.body, b"hello");

    // The trailer section split across writes, in the middle of a field name.
    let full = chunked_post(BODY_WITH_TRAILERS);
    let cut = full.windows(7).position(|w| w == b"Host: e").unwrap() + 2;
    let before = backend.requests().len();
    let mut client = gateway.client();
    client.send(&full[..cut]);
    std::thread::sleep(Duration::from_millis(50));
    client.send(&full[cut..]);
    assert_eq!(client.read_response(false).unwrap().status, 200);
    assert_eq!(show(&backend.requests()[before].raw_body), show(&expected));

    // Streamed (larger than the 64 KiB replay buffer), trailers in a separate write.
    let mut body = Vec::new();
    for _ in 0..10 {
        body.extend_from_slice(format!("{:x}\r\n", 10_000).as_bytes());
        body.extend_from_slice(&[b'x'; 10_000]);
        body.extend_from_slice(b"\r\n");
    }
    let payload_end = body.len();
    body.extend_from_slice(&BODY_WITH_TRAILERS[10..]);
    let full = chunked_post(&body);
    let split = full.len() - (body.len() - payload_end) + 6;
    let before = backend.requests().len();
    let mut client = gateway.client();
    client.send(&full[..split]);
    std::thread::sleep(Duration::from_millis(50));
    client.send(&full[split..]);
    assert_eq!(client.read_response(false).unwrap().status, 200);
    let streamed = &backend.requests()[before];
    assert_eq!(streamed.body.len(), 100_000);
    assert!(
        streamed.raw_body.ends_with(FILTERED_TRAILERS),
        "{}",
        show(&streamed.raw_body[streamed.raw_body.len() - 80..])
    );
    assert_eq!(
        streamed.raw_body.len(),
        payload_end + FILTERED_TRAILERS.len()
    );
    assert_eq!(panics(&gateway), 0);
}

#[test]
fn the_token_header_is_a_forbidden_trailer_too() {
    let backend = ScriptedBackend::echo_targets();
    let definition = open_api(&[backend.url("")], "load_balance").replace(
        "x-wso2-basePath: /svc\n",
        "x-wso2-basePath: /svc\nx-wso2-auth-header: X-Api-Token\n",
    );
    let gateway = Gateway::start(&definition);
    let request = forwarded(
        &gateway,
        &backend,
        &chunked_post(b"0\r\nx-api-token: secret\r\nX-Keep: 1\r\n\r\n"),
    );
    assert_eq!(show(&request.raw_body), show(b"0\r\nX-Keep: 1\r\n\r\n"));
}

#[test]
fn forbidden_response_trailers_never_reach_the_client() {
    // A small body is copied behind the head; one of 6,000 bytes goes out from the read
    // buffer in one writev, its trailers filtered in place there: both must filter alike.
    for data in [b"hello".to_vec(), vec![b'z'; 6000]] {
        let chunk = [format!("{:x}\r\n", data.len()).as_bytes(), &data, b"\r\n"].concat();
        let response = [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            &chunk,
            b"0\r\nX-Sum: 1\r\nContent-Length: 99\r\nTransfer-Encoding: gzip\r\n\
Host: x\r\nCache-Control: no-store\r\nX-After: 2\r\n\r\n",
        ]
        .concat();
        let backend = ScriptedBackend::start(move |peer| {
            while peer.read_request().is_some() {
                if !peer.write(&response) {
                    return;
                }
            }
        });
        let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
        let mut client = gateway.client();
        client.send(b"GET /svc/r HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        let raw = client.read_to_close();
        let body_start = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(
            show(&raw[body_start..]),
            show(&[&chunk[..], b"0\r\nX-Sum: 1\r\nX-After: 2\r\n\r\n"].concat())
        );
        // Keep-alive: the next response on the same connection is intact after the filtered
        // one.
        let mut client = gateway.client();
        for _ in 0..2 {
            client.send(b"GET /svc/r HTTP/1.1\r\nHost: h\r\n\r\n");
            let response = client.read_response(false).unwrap();
            assert_eq!(response.status, 200);
            assert!(response.body == data, "{} bytes", data.len());
        }
    }
}

/// The `Date` values of a raw response head.
fn dates(head: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(head)
        .split("\r\n")
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("date")
                .then(|| value.trim().to_owned())
        })
        .collect()
}

fn assert_one_gateway_date(response: &support::Response, what: &str) {
    let dates: Vec<&str> = response
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("date"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(dates.len(), 1, "{what}: {:?}", response.headers);
    // IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
    let date = dates[0].as_bytes();
    assert_eq!(date.len(), 29, "{what}: {}", dates[0]);
    assert!(
        date[3] == b',' && date.ends_with(b" GMT"),
        "{what}: {}",
        dates[0]
    );
}

#[test]
fn every_response_carries_a_date_but_interim_ones() {
    let backend = ScriptedBackend::start(|peer| {
        while let Some(request) = peer.read_request() {
            let reply: &[u8] = match request.target.as_str() {
                "/dated" => b"HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 0\r\n\r\n",
                "/hints" => b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            };
            if !peer.write(reply) {
                return;
            }
        }
    });
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let mut client = gateway.client();

    let response = client.get("/svc/undated");
    assert_eq!(response.status, 200);
    assert_one_gateway_date(&response, "forwarded response without Date");

    let response = client.get("/svc/dated");
    let upstream: Vec<&str> = response
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("date"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        upstream,
        ["Sun, 06 Nov 1994 08:49:37 GMT"],
        "the origin's own Date is kept"
    );

    client.send(b"GET /svc/hints HTTP/1.1\r\nHost: h\r\n\r\n");
    let interim = client.read_any_response(false).unwrap();
    assert_eq!(interim.status, 103);
    assert!(
        !interim
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("date")),
        "{:?}",
        interim.headers
    );
    let last = client.read_response(false).unwrap();
    assert_one_gateway_date(&last, "final response after 103");

    let response = client.get("/nowhere");
    assert_eq!(response.status, 404);
    assert_one_gateway_date(&response, "404");
    let response = client.request("OPTIONS", "/svc/x", &[], b"");
    assert_eq!(response.status, 204);
    assert_one_gateway_date(&response, "OPTIONS 204");

    // A rejected head, read raw.
    let mut client = gateway.client();
    client.send(b"GET /svc/%zz HTTP/1.1\r\nHost: h\r\n\r\n");
    let raw = client.read_to_close();
    assert!(raw.starts_with(b"HTTP/1.1 400 "), "{}", show(&raw));
    assert_eq!(dates(&raw).len(), 1, "{}", show(&raw));
}

#[test]
fn expectations_other_than_100_continue_get_417() {
    let backend = ScriptedBackend::echo_targets();
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    for expect in ["foo", "100-continue, bar", "200-ok"] {
        let mut client = gateway.client();
        client.send(
            format!("POST /svc/e HTTP/1.1\r\nHost: h\r\nExpect: {expect}\r\nContent-Length: 2\r\n\r\nhi")
                .as_bytes(),
        );
        let response = client.read_response(false).unwrap();
        assert_eq!(response.status, 417, "Expect: {expect}");
        assert_eq!(response.json()["code"], "417");
        assert_eq!(response.header("connection"), Some("close"));
        assert!(client.is_closed(Duration::from_secs(5)));
    }
    assert_eq!(backend.raw_total(), 0);
    assert_eq!(rejections(&gateway, Rejection::Expectation), 3);
    // 100-continue in any case still works, and is not forwarded.
    let mut client = Client::connect(gateway.addr);
    client.send(
        b"POST /svc/c HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n",
    );
    assert_eq!(client.read_any_response(false).unwrap().status, 100);
    client.send(b"hi");
    assert_eq!(client.read_response(false).unwrap().status, 200);
    let request = &backend.requests()[0];
    assert_eq!(request.body, b"hi");
    assert!(!contains(&request.raw_head.to_ascii_lowercase(), b"expect"));
}
