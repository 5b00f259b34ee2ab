//! Long response bodies copied through the shard's large read buffers (256 KiB, at most 64
//! lent per shard): every framing arrives whole, and more slow readers than there are large
//! buffers share the budget, the rest copying through their ordinary buffer, with nothing
//! lost either way.

use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{eventually, open_api, Action, Backend, Gateway};

const LARGE_BUFFERS_PER_SHARD: i64 = 64;

fn pattern(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
        .collect()
}

fn lent(gateway: &Gateway) -> i64 {
    let metrics = gateway.server().shared().metrics.shard_metrics();
    metrics.iter().map(|m| m.large_buffers_lent.get()).sum()
}

fn refusals(gateway: &Gateway) -> u64 {
    gateway.shard_sum(|m| m.large_buffer_refusals.get())
}

/// `/len/N`: N bytes with a length; `/chunked/N`: the same bytes in chunks of 100,003 bytes;
/// `/close/N`: delimited by the close.
fn framings_backend() -> Backend {
    Backend::start("long", |r| {
        let mut parts = r.target.rsplit('/');
        let size: usize = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let body = pattern(size);
        match parts.next() {
            Some("chunked") => Action::Chunked {
                status: 200,
                chunks: body.chunks(100_003).map(<[u8]>::to_vec).collect(),
                trailers: vec![],
            },
            Some("close") => {
                let mut raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
                raw.extend_from_slice(&body);
                Action::RawThenClose(raw)
            }
            _ => Action::ok(body),
        }
    })
}

#[test]
fn long_bodies_of_every_framing_arrive_whole_when_copied_through_a_large_buffer() {
    let backend = framings_backend();
    let gateway = Gateway::start_with(&open_api(&[backend.url("")], "load_balance"), "", 1);
    let mut client = gateway.client();
    for size in [300_001, (1 << 20) + 7, 3 << 20] {
        for framing in ["len", "chunked"] {
            let response = client.get(&format!("/svc/{framing}/{size}"));
            assert_eq!(response.status, 200, "{framing} {size}");
            assert_eq!(response.body.len(), size, "{framing} {size}");
            assert!(
                response.body == pattern(size),
                "{framing}: a {size} B body arrived altered"
            );
        }
        // Delimited by the close: the client connection closes after it.
        let response = gateway.client().get(&format!("/svc/close/{size}"));
        assert!(response.until_close);
        assert!(
            response.body == pattern(size),
            "close: a {size} B body arrived altered"
        );
        // De-chunked for an HTTP/1.0 client (copied through its ordinary buffer).
        let mut old = TcpStream::connect(gateway.addr).unwrap();
        old.write_all(format!("GET /svc/chunked/{size} HTTP/1.0\r\nHost: h\r\n\r\n").as_bytes())
            .unwrap();
        let mut received = Vec::new();
        old.read_to_end(&mut received).unwrap();
        let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(received.starts_with(b"HTTP/1.0 200") || received.starts_with(b"HTTP/1.1 200"));
        assert!(
            received[head_end..] == pattern(size)[..],
            "HTTP/1.0: a {size} B body arrived altered"
        );
    }
    assert_eq!(
        refusals(&gateway),
        0,
        "one client at a time never exhausts the budget"
    );
    // Every response ended cleanly: the buffers went back and nothing is lent while idle.
    assert!(eventually(Duration::from_secs(10), || lent(&gateway) == 0));
}

#[test]
fn more_slow_readers_of_long_bodies_than_large_buffers_share_the_budget_and_lose_nothing() {
    // Too long to fit the sockets' buffers: each relay stays under way until its client reads.
    const SIZE: usize = 16 << 20;
    const READERS: usize = LARGE_BUFFERS_PER_SHARD as usize + 6;
    let body = pattern(SIZE);
    let served = body.clone();
    let backend = Backend::start("long", move |_| Action::ok(served.clone()));
    // One shard: one budget.
    let gateway = Gateway::start_with(&open_api(&[backend.url("")], "load_balance"), "", 1);
    let mut readers: Vec<_> = (0..READERS).map(|_| gateway.client()).collect();
    for reader in &mut readers {
        reader.send(b"GET /svc/long HTTP/1.1\r\nHost: h\r\n\r\n");
    }
    // Every relay is under way and stalled on its client: 64 with a large buffer, the others
    // refused one and copying through their ordinary buffer.
    assert!(
        eventually(Duration::from_secs(60), || {
            lent(&gateway) == LARGE_BUFFERS_PER_SHARD && refusals(&gateway) >= 6
        }),
        "lent {}, refusals {}",
        lent(&gateway),
        refusals(&gateway)
    );
    assert_eq!(backend.request_count(), READERS);
    for (i, reader) in readers.iter_mut().enumerate() {
        let response = reader.read_response(false).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body.len(), SIZE, "reader {i}");
        assert!(
            response.body == body,
            "reader {i}: the body arrived altered"
        );
    }
    // Each connection can be reused, and the lent buffers all went back.
    assert_eq!(readers[0].get("/svc/long").body.len(), SIZE);
    drop(readers);
    assert!(eventually(Duration::from_secs(10), || lent(&gateway) == 0));
}
