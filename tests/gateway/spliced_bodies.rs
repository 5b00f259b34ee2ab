//! Response bodies relayed by `splice(2)` (`upstream.body_relay: splice`) and
//! by copying: the same bytes either way, at every size around the thresholds, with the
//! upstream connection reused after a spliced body; a body cut short or delimited by the
//! close ends the client connection; a client that stops reading stalls no one else on its
//! shard.

use crate::support;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::time::Duration;

use support::hostile::ScriptedBackend;
use support::{eventually, open_api, Action, Backend, Client, Gateway};

const SPLICE: &str = "upstream:\n  body_relay: splice\n";

fn pattern(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i % 253) as u8 ^ (i >> 11) as u8)
        .collect()
}

fn digest(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// The body of a 200 response read up to the connection's close.
fn body_of_200(received: &[u8]) -> &[u8] {
    let head_end = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("the head was relayed")
        + 4;
    assert!(received.starts_with(b"HTTP/1.1 200"));
    &received[head_end..]
}

fn spliced_bytes(gateway: &Gateway) -> u64 {
    gateway.shard_sum(|m| m.spliced_body_bytes.get())
}

/// Below, at and above a page, a spliced body's head read (16 KiB), the splice minimum
/// (16 KiB after what came with the head) and the copying relay's read, up to several MiB.
const SIZES: [usize; 11] = [
    0,
    1,
    4 * 1024 - 300,
    4 * 1024 + 100,
    16 * 1024 - 200,
    16 * 1024 + 100,
    32 * 1024,
    32 * 1024 + 200,
    64 * 1024,
    300_001,
    3 << 20,
];

#[test]
fn bodies_of_every_size_arrive_intact_in_either_relay_over_one_reused_upstream_connection() {
    for relay in ["copy", "splice"] {
        let backend = Backend::start("sizes", |r| {
            let size: usize = r.target.trim_start_matches("/size/").parse().unwrap_or(0);
            Action::ok(pattern(size))
        });
        let gateway = Gateway::start_with(
            &open_api(&[backend.url("")], "load_balance"),
            &format!("upstream:\n  body_relay: {relay}\n"),
            1,
        );
        let mut client = gateway.client();
        let mut total = 0;
        // The second round asks for each size right after a spliced body, when the head is
        // read in the smaller read (`splice::HEAD_READ_AFTER_SPLICE`).
        const AFTER_SPLICED: usize = 64 * 1024;
        for round in 0..2 {
            for size in SIZES {
                if round == 1 {
                    let response = client.get(&format!("/svc/size/{AFTER_SPLICED}"));
                    assert_eq!(
                        response.body.len(),
                        AFTER_SPLICED,
                        "{relay}, before {size} B"
                    );
                    total += AFTER_SPLICED as u64;
                }
                let response = client.get(&format!("/svc/size/{size}"));
                assert_eq!(response.status, 200, "{relay}, {size} B");
                assert_eq!(
                    response.body.len(),
                    size,
                    "{relay}, {size} B, round {round}"
                );
                assert!(
                    digest(&response.body) == digest(&pattern(size)),
                    "{relay}: a {size} B body arrived altered"
                );
                total += size as u64;
            }
        }
        assert_eq!(
            backend.connections(),
            1,
            "{relay}: every response ended cleanly, so one upstream connection served all"
        );
        let spliced = spliced_bytes(&gateway);
        if relay == "copy" {
            assert_eq!(spliced, 0);
        } else {
            assert!(
                spliced > 0 && spliced < total,
                "the large bodies' tails were spliced ({spliced} of {total} B)"
            );
        }
    }
}

/// Where a body may be spliced, the head is read 16 KiB at a time, so that at most that much
/// of the body is copied; a head longer than one read takes several and loses nothing.
#[test]
fn a_head_longer_than_one_read_arrives_whole_and_at_most_one_read_of_the_body_is_copied() {
    const BODY: usize = 96 * 1024;
    const HEAD_READ: u64 = 16 * 1024;
    let long_value = "v".repeat(4000);
    let backend = Backend::start("long-head", move |r| match r.target.as_str() {
        "/done" => Action::ok("done"),
        target => Action::Reply {
            status: 200,
            headers: match target {
                "/long" => (0..10)
                    .map(|i| (format!("X-Long-{i}"), long_value.clone()))
                    .collect(),
                _ => vec![],
            },
            body: pattern(BODY),
        },
    });
    let gateway = Gateway::start_with(&open_api(&[backend.url("")], "load_balance"), SPLICE, 1);
    let mut client = gateway.client();
    let paths = [
        ("/svc/short", false),
        ("/svc/long", true),
        ("/svc/short", false),
    ];
    for (path, long) in paths {
        let response = client.get(path);
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(
            (0..10)
                .filter(|i| response.header(&format!("x-long-{i}")).is_some())
                .count(),
            if long { 10 } else { 0 },
            "{path}: the 40 KiB head arrived whole"
        );
        assert!(
            response.body == pattern(BODY),
            "{path}: the body arrived altered"
        );
    }
    // The relay counts a splice after the call returns, by when the client may have read
    // it; the next request on the same connection is read only after that.
    assert_eq!(client.get("/svc/done").body, b"done");
    let spliced = spliced_bytes(&gateway);
    let bodies = (paths.len() * BODY) as u64;
    assert!(
        spliced >= bodies - paths.len() as u64 * HEAD_READ && spliced <= bodies,
        "{spliced} of {bodies} B spliced; at most one read's worth of each went with its head"
    );
    assert_eq!(backend.connections(), 1, "every response ended cleanly");
}

/// A connection whose last body was spliced reads the next head in 4 KiB rather than
/// 16 KiB (an endpoint that sent one large body most likely sends another), so at most 4 KiB
/// of each following body is copied.
#[test]
fn after_a_spliced_body_the_next_head_read_copies_at_most_4_kib_of_the_body() {
    const BODY: usize = 96 * 1024;
    const FIRST_HEAD_READ: u64 = 16 * 1024;
    const HEAD_READ_AFTER_SPLICE: u64 = 4 * 1024;
    const LARGE: usize = 4;
    let backend = Backend::start("large", |r| match r.target.as_str() {
        "/done" => Action::ok("done"),
        _ => Action::ok(pattern(BODY)),
    });
    let gateway = Gateway::start_with(&open_api(&[backend.url("")], "load_balance"), SPLICE, 1);
    let mut client = gateway.client();
    for _ in 0..LARGE {
        let response = client.get("/svc/large");
        assert!(response.body == pattern(BODY), "a body arrived altered");
    }
    // Read after a follow-up on the same connection: the relay counts a splice after the
    // call returns, and the shard reads the next request only after that.
    assert_eq!(client.get("/svc/done").body, b"done");
    let spliced = spliced_bytes(&gateway);
    let bodies = (LARGE * BODY) as u64;
    let floor = bodies - FIRST_HEAD_READ - (LARGE as u64 - 1) * HEAD_READ_AFTER_SPLICE;
    assert!(
        spliced >= floor && spliced <= bodies,
        "{spliced} of {bodies} B spliced, expected at least {floor}: the heads after the first \
         large body were read in 4 KiB"
    );
    assert_eq!(backend.connections(), 1, "every response ended cleanly");
}

/// After a spliced body the head is read 4 KiB at a time: interim responses and a final
/// head that together span several such reads still arrive whole and in order, and the
/// body behind them is spliced.
#[test]
fn interim_responses_longer_than_the_small_head_read_arrive_whole_after_a_spliced_body() {
    const BODY: usize = 96 * 1024;
    let link = format!("</{}.css>; rel=preload", "a".repeat(3000));
    let backend = ScriptedBackend::start(move |peer| {
        while let Some(request) = peer.read_request() {
            let mut out = Vec::new();
            if request.target.ends_with("/hints") {
                for _ in 0..2 {
                    out.extend_from_slice(
                        format!("HTTP/1.1 103 Early Hints\r\nLink: {link}\r\n\r\n").as_bytes(),
                    );
                }
            }
            out.extend_from_slice(
                format!("HTTP/1.1 200 OK\r\nX-Link: {link}\r\nContent-Length: {BODY}\r\n\r\n")
                    .as_bytes(),
            );
            out.extend_from_slice(&pattern(BODY));
            if !peer.write(&out) {
                return;
            }
        }
    });
    let gateway = Gateway::start_with(&open_api(&[backend.url("")], "load_balance"), SPLICE, 1);
    let mut client = gateway.client();
    let large = client.get("/svc/large");
    assert!(
        large.body == pattern(BODY),
        "the first body arrived altered"
    );
    for round in 0..2 {
        client.send(b"GET /svc/hints HTTP/1.1\r\nHost: h\r\n\r\n");
        let (statuses, last) = client.read_through_interim();
        assert_eq!(statuses, [103, 103, 200], "round {round}");
        assert!(
            last.header("x-link").is_some_and(|v| v.len() > 3000),
            "round {round}: the final head arrived whole"
        );
        assert!(
            last.body == pattern(BODY),
            "round {round}: the body arrived altered"
        );
    }
    assert_eq!(client.get("/svc/done").body.len(), BODY);
    assert!(
        spliced_bytes(&gateway) >= 3 * (BODY as u64 - 16 * 1024),
        "the bodies behind the interim responses were spliced"
    );
    assert_eq!(backend.connections(), 1, "every response ended cleanly");
}

/// `tcpi_data_segs_in` or `tcpi_data_segs_out` of a socket (`struct tcp_info`, Linux 4.6+):
/// how many segments carrying data it has received or sent.
fn data_segments(socket: &impl std::os::fd::AsRawFd, sent: bool) -> u32 {
    const DATA_SEGS_IN: usize = 152;
    let offset = if sent { DATA_SEGS_IN + 4 } else { DATA_SEGS_IN };
    let mut info = [0u8; 256];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: TCP_INFO writes at most `len` bytes into `info` and stores the length it wrote.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert!(
        rc == 0 && len as usize >= offset + 4,
        "TCP_INFO without data segment counts"
    );
    u32::from_ne_bytes(info[offset..offset + 4].try_into().unwrap())
}

/// Where the body's bytes are waiting in the upstream's socket when the head has been read,
/// the head goes out corked behind them: head, first body bytes and the spliced bytes reach
/// the client as one segment, one wake-up of the client, not the head first and the body
/// after it. The backend's response is one segment too (a send buffer that takes it in one
/// piece), so anything more on the client's side is the gateway's doing.
#[test]
fn a_spliced_response_whose_body_has_arrived_reaches_the_client_in_one_segment() {
    const BODY: usize = 40 * 1024;
    const ROUNDS: usize = 3;
    let sent_segments = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let backend_segments = sent_segments.clone();
    let backend = ScriptedBackend::start(move |peer| {
        let buffer: libc::c_int = 4 << 20;
        // SAFETY: SO_SNDBUF reads one c_int from a live socket's option value.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(peer.stream()),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&buffer as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        while let Some(request) = peer.read_request() {
            let size = match request.target.rsplit('/').next() {
                Some("warm") => 1 << 20,
                Some("small") => 10,
                _ => BODY,
            };
            let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n").into_bytes();
            out.extend_from_slice(&pattern(size));
            let before = data_segments(peer.stream(), true);
            if !peer.write(&out) {
                return;
            }
            if size == BODY {
                let after = data_segments(peer.stream(), true);
                backend_segments.lock().unwrap().push(after - before);
            }
        }
    });
    let gateway = Gateway::start_with(&open_api(&[backend.url("")], "load_balance"), SPLICE, 1);
    let mut client = gateway.client();
    // A new connection's segments are at most half the peer's first window (32 KiB): a
    // large body first opens both connections' windows. The small one after it makes the
    // next head read a full 16 KiB again, the later ones 4 KiB: both kinds of head read.
    assert_eq!(client.get("/svc/warm").body.len(), 1 << 20);
    assert_eq!(client.get("/svc/small").body.len(), 10);
    let mut received = Vec::new();
    for round in 0..ROUNDS {
        let before = data_segments(&client.stream, false);
        let response = client.get("/svc/body");
        assert!(
            response.body == pattern(BODY),
            "round {round}: the body arrived altered"
        );
        received.push(data_segments(&client.stream, false) - before);
    }
    // The backend counts a response after writing it, and reads the next request after
    // that: once this one is answered, every count is in.
    assert_eq!(client.get("/svc/small").body.len(), 10);
    assert_eq!(
        *sent_segments.lock().unwrap(),
        [1; ROUNDS],
        "the backend sent each response in one segment"
    );
    assert_eq!(
        received, [1; ROUNDS],
        "each response reached the client in one segment"
    );
    assert_eq!(backend.connections(), 1, "every response ended cleanly");
    assert!(
        spliced_bytes(&gateway) >= (ROUNDS * (BODY - 16 * 1024)) as u64,
        "the bodies were spliced"
    );
}

#[test]
fn a_backend_closing_mid_body_closes_the_client_connection_after_what_arrived() {
    const SENT: usize = 200 * 1024;
    let backend = ScriptedBackend::start(|peer| {
        let Some(request) = peer.read_request() else {
            return;
        };
        if request.target.ends_with("/again") {
            peer.reply_ok(b"again");
        } else {
            let mut response = b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n".to_vec();
            response.extend_from_slice(&pattern(SENT));
            peer.write(&response);
        }
    });
    let gateway = Gateway::start_with(&open_api(&[backend.url("")], "load_balance"), SPLICE, 1);
    let mut client = gateway.client();
    client.send(b"GET /svc/cut HTTP/1.1\r\nHost: h\r\n\r\n");
    let received = client.read_to_close();
    let body = body_of_200(&received);
    assert!(
        body == &pattern(SENT)[..],
        "every byte that arrived was relayed, and then the connection closed"
    );
    assert!(spliced_bytes(&gateway) > 0, "the tail went by splice");
    assert_eq!(gateway.client().get("/svc/again").status, 200);
}

#[test]
fn a_body_delimited_by_the_close_is_spliced_to_its_end() {
    const SIZE: usize = 2 << 20;
    let backend = ScriptedBackend::start(|peer| {
        if peer.read_request().is_some() {
            let mut response = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
            response.extend_from_slice(&pattern(SIZE));
            peer.write(&response);
        }
    });
    let gateway = Gateway::start_with(&open_api(&[backend.url("")], "load_balance"), SPLICE, 1);
    let mut client = gateway.client();
    client.send(b"GET /svc/until-close HTTP/1.1\r\nHost: h\r\n\r\n");
    let received = client.read_to_close();
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
    assert!(head.contains("connection: close"), "{head}");
    assert!(received[head_end..] == pattern(SIZE)[..]);
    assert!(spliced_bytes(&gateway) > 0);
}

#[test]
fn a_client_that_stops_reading_a_spliced_body_stalls_no_one_else_on_its_shard() {
    const BIG: usize = 48 << 20;
    let big = pattern(BIG);
    let backend = Backend::start("big", move |r| {
        if r.target.ends_with("/big") {
            Action::ok(big.clone())
        } else {
            Action::ok("small")
        }
    });
    // One shard: a call that blocked it would stall every client.
    let gateway = Gateway::start_with(&open_api(&[backend.url("")], "load_balance"), SPLICE, 1);
    let mut stalled = gateway.client();
    stalled
        .stream
        .write_all(b"GET /svc/big HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    // Wait until the relay is under way and has filled the stalled client's socket.
    assert!(support::eventually(Duration::from_secs(30), || {
        spliced_bytes(&gateway) > 0 && backend.request_count() == 1
    }));
    for _ in 0..5 {
        let mut other = Client::connect(gateway.addr);
        let response = other.get("/svc/small");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"small");
    }
    let response = stalled.read_response(false).unwrap();
    assert_eq!(response.body.len(), BIG);
    assert!(digest(&response.body) == digest(&pattern(BIG)));
}

/// Backend B serves `/b/...` with B's body, A `/a/...` with A's (another pattern): a body
/// from the wrong backend, or altered, shows in its digest.
/// `/…/pending` is large enough (32 MiB) not to fit the sockets' buffers: its relay is still
/// running when the reload lands.
fn body_of(name: &str, path: &str) -> Vec<u8> {
    let size = if path.ends_with("/pending") {
        32 << 20
    } else {
        1 << 20
    };
    let mut body = pattern(size + 1);
    body.drain(..usize::from(name == "a"));
    body
}

fn own_backend(name: &'static str) -> Backend {
    Backend::start(name, move |r| {
        if r.target.starts_with(&format!("/{name}/")) {
            Action::ok(body_of(name, &r.target))
        } else {
            Action::status(500, format!("{name} got {}", r.target))
        }
    })
}

fn fetch_whole(client: &mut Client, path: &str, from: &str) {
    client.send(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
    let response = client.read_response(false).expect("a response");
    assert_eq!(
        response.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&response.body[..response.body.len().min(300)])
    );
    assert!(
        digest(&response.body) == digest(&body_of(from, path)),
        "{path}: {} B, not {from}'s body whole",
        response.body.len()
    );
}

/// Reloads `gateway` with `body_relay: copy` and a definition `/other` (endpoint `url`) whose
/// file sorts first, so that it takes the lowest dense endpoint ids, and waits until the new
/// snapshot serves `/other`.
fn reload_with_an_api_sorting_first_and_copying(gateway: &Gateway, url: String) {
    std::fs::write(
        gateway.dir.path().join("apis/0-first.yaml"),
        open_api(&[url], "load_balance")
            .replace("title: svc", "title: other")
            .replace("/svc", "/other"),
    )
    .unwrap();
    let config = std::fs::read_to_string(gateway.config_path()).unwrap();
    std::fs::write(
        gateway.config_path(),
        config.replace("body_relay: splice", "body_relay: copy"),
    )
    .unwrap();
    gateway.reload();
    let mut probe = gateway.client();
    assert!(
        eventually(Duration::from_secs(30), || probe.get("/other/probe").status
            != 404),
        "the new snapshot is served"
    );
}

/// Keep-alive clients whose sockets (and pooled upstream connections) were made non-blocking
/// by spliced bodies, and one spliced body in flight, across a reload that renumbers the
/// endpoints (a definition that sorts first takes B's dense id) and turns splicing off: the
/// body in flight finishes whole on the old snapshot, every later body is copied (through
/// the writev path, on those non-blocking sockets) and comes from its own backend.
#[test]
fn a_reload_that_renumbers_endpoints_and_stops_splicing_mid_body_keeps_every_body_whole() {
    let a = own_backend("a");
    let b = own_backend("b");
    let gateway = Gateway::start_with(&open_api(&[b.url("/b")], "load_balance"), SPLICE, 1);
    let mut clients: Vec<Client> = (0..4).map(|_| gateway.client()).collect();
    for client in &mut clients {
        fetch_whole(client, "/svc/x", "b");
    }
    assert!(spliced_bytes(&gateway) > 0, "the first bodies were spliced");
    // In flight: the client reads nothing, so the relay waits on its full socket.
    let mut in_flight = gateway.client();
    in_flight.send(b"GET /svc/pending HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(eventually(Duration::from_secs(30), || b.request_count() == 5));

    reload_with_an_api_sorting_first_and_copying(&gateway, a.url("/a"));
    let response = in_flight.read_response(false).expect("the body in flight");
    assert!(
        digest(&response.body) == digest(&body_of("b", "/svc/pending")),
        "the body in flight finished whole ({} B)",
        response.body.len()
    );
    // The relay counts a splice after the call returns, by when the client may have read
    // it; the next request on the same connection is read only after that.
    fetch_whole(&mut in_flight, "/svc/after", "b");
    let spliced = spliced_bytes(&gateway);
    for round in 0..3 {
        for client in &mut clients {
            fetch_whole(client, &format!("/svc/{round}"), "b");
            fetch_whole(client, &format!("/other/{round}"), "a");
        }
    }
    assert_eq!(
        spliced_bytes(&gateway),
        spliced,
        "nothing spliced after the reload"
    );
    assert!(a.received().iter().all(|r| r.target.starts_with("/a/")));
    assert!(b.received().iter().all(|r| r.target.starts_with("/b/")));
}

/// A backend that sends part of a spliced body and then neither sends nor closes: the client
/// gets what arrived, then the close, at `timeouts.upstream_idle_ms`; the shard serves on.
#[test]
fn a_backend_frozen_mid_body_closes_the_client_connection_at_the_idle_timeout() {
    let (gateway, _backend, received) =
        fetch_from_backend_frozen_after(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n");
    let body = body_of_200(&received);
    assert!(
        body == &pattern(FROZEN_AFTER)[..],
        "what arrived was relayed ({} B), then the connection closed",
        body.len()
    );
    assert!(spliced_bytes(&gateway) > 0, "the tail went by splice");
    assert_eq!(gateway.client().get("/svc/again").status, 200);
}

/// What a frozen backend sends of its body before it freezes.
const FROZEN_AFTER: usize = 200 * 1024;

/// Asks `/svc/frozen` of a gateway (`upstream_idle_ms: 400`, splicing) whose backend sends
/// `head` and [`FROZEN_AFTER`] bytes of the pattern and then neither sends nor closes until
/// the gateway gives up (`/again` is answered): the gateway, the backend, and what the client
/// got before the close.
fn fetch_from_backend_frozen_after(head: &'static [u8]) -> (Gateway, ScriptedBackend, Vec<u8>) {
    let backend = ScriptedBackend::start(move |peer| {
        let Some(request) = peer.read_request() else {
            return;
        };
        if request.target.ends_with("/again") {
            peer.reply_ok(b"again");
            return;
        }
        peer.write(&[head, &pattern(FROZEN_AFTER)].concat());
        // Frozen: waits for a request that never comes.
        let _ = peer.read_request();
    });
    let gateway = Gateway::start_with(
        &open_api(&[backend.url("")], "load_balance"),
        &format!("{SPLICE}timeouts:\n  upstream_idle_ms: 400\n"),
        1,
    );
    let mut client = gateway.client();
    client.send(b"GET /svc/frozen HTTP/1.1\r\nHost: h\r\n\r\n");
    let received = client.read_to_close();
    (gateway, backend, received)
}

/// Chunk sizes around the splice minimum (16 KiB) and the read after a spliced chunk
/// (4 KiB): small chunks between long ones, a long chunk that the read after a splice cuts
/// into, a chunk that stays just short of the minimum after that read, and a 1 MiB one.
const CHUNKS: [usize; 9] = [
    100,
    40 * 1024,
    20,
    200 * 1024,
    16 * 1024 - 1,
    20 * 1024 + 5,
    16 * 1024 + 3 * 1024,
    1 << 20,
    3,
];

/// Chunk `i`'s payload: a pattern of its own, so that bytes from the wrong chunk show.
fn chunk_payload(i: usize, size: usize) -> Vec<u8> {
    pattern(size)
        .into_iter()
        .map(|b| b ^ (i as u8 + 1))
        .collect()
}

/// The chunked body of [`CHUNKS`] as the backend frames it (each size line carries an
/// extension, and a trailer follows), and its payload.
fn chunked_body() -> (Vec<u8>, Vec<u8>) {
    let (mut raw, mut payload) = (Vec::new(), Vec::new());
    for (i, size) in CHUNKS.into_iter().enumerate() {
        let data = chunk_payload(i, size);
        raw.extend_from_slice(format!("{size:x};n={i}\r\n").as_bytes());
        raw.extend_from_slice(&data);
        raw.extend_from_slice(b"\r\n");
        payload.extend_from_slice(&data);
    }
    raw.extend_from_slice(b"0\r\nX-Sum: 42\r\n\r\n");
    (raw, payload)
}

const CHUNKED_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

/// `/whole` sends the response in one write; `/paced` sends every size line, payload and
/// CRLF in its own write a moment apart, so that the relay waits for each; `/done` ends.
fn chunked_backend() -> ScriptedBackend {
    ScriptedBackend::start(|peer| {
        let (raw, _) = chunked_body();
        while let Some(request) = peer.read_request() {
            let sent = if request.target.ends_with("/whole") {
                peer.write(&[CHUNKED_HEAD, &raw].concat())
            } else if request.target.ends_with("/paced") {
                let mut sent = peer.write(CHUNKED_HEAD);
                for (i, size) in CHUNKS.into_iter().enumerate() {
                    for piece in [
                        format!("{size:x};n={i}\r\n").into_bytes(),
                        chunk_payload(i, size),
                        b"\r\n".to_vec(),
                    ] {
                        std::thread::sleep(Duration::from_millis(2));
                        sent = sent && peer.write(&piece);
                    }
                }
                sent && peer.write(b"0\r\nX-Sum: 42\r\n\r\n")
            } else {
                peer.reply_ok(b"done")
            };
            if !sent {
                return;
            }
        }
    })
}

/// A chunked body passed through: its long chunks' payload is spliced, and the framing
/// around it (size lines with their extensions, CRLFs, the trailer) is read, checked and
/// relayed as it came, whether it all arrived at once or piece by piece; the upstream
/// connection is reused after it. Copying relays the same bytes.
#[test]
fn a_chunked_body_has_its_long_chunks_spliced_and_its_framing_relayed_as_it_came() {
    let (raw, payload) = chunked_body();
    let long: usize = CHUNKS.iter().filter(|&&size| size >= 16 * 1024).sum();
    for relay in ["copy", "splice"] {
        let backend = chunked_backend();
        let gateway = Gateway::start_with(
            &open_api(&[backend.url("")], "load_balance"),
            &format!("upstream:\n  body_relay: {relay}\n"),
            1,
        );
        let mut client = gateway.client();
        for path in ["/svc/whole", "/svc/paced", "/svc/whole"] {
            let response = client.get(path);
            assert_eq!(response.status, 200, "{relay} {path}");
            assert_eq!(response.header("transfer-encoding"), Some("chunked"));
            assert!(
                response.body == payload,
                "{relay} {path}: the payload arrived altered ({} of {} B)",
                response.body.len(),
                payload.len()
            );
        }
        // The framing as it came, byte for byte, on a connection that ends after it.
        let mut closing = gateway.client();
        closing.send(b"GET /svc/whole HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        let received = closing.read_to_close();
        assert!(
            body_of_200(&received) == &raw[..],
            "{relay}: the chunked framing was not relayed as it came"
        );
        // Counts are in once the next request on the connection is answered.
        assert_eq!(client.get("/svc/done").body, b"done");
        let spliced = spliced_bytes(&gateway);
        if relay == "copy" {
            assert_eq!(spliced, 0);
        } else {
            // Of each body, at most one 68 KiB read's worth of a long chunk is copied
            // (after a read that did not end in a splice), and the rest of the long chunks
            // goes by splice; framing and short chunks never do.
            let bodies = 4 * long as u64;
            let floor = 4 * (long as u64 - 2 * 68 * 1024);
            assert!(
                spliced >= floor && spliced <= bodies,
                "{spliced} B spliced of {bodies} B of long chunks (at least {floor} expected)"
            );
        }
        assert_eq!(
            backend.connections(),
            1,
            "{relay}: every body ended cleanly, so one upstream connection served them all"
        );
    }
}

/// Framing that breaks after a spliced chunk, or a chunk cut short while spliced: the client
/// gets what arrived and then the connection's close, never a body that looks complete, and
/// the upstream connection is not reused.
#[test]
fn broken_framing_around_a_spliced_chunk_closes_both_connections_after_what_arrived() {
    const LONG: usize = 64 * 1024;
    let long = || chunk_payload(0, LONG);
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "no-crlf",
            [b"10000\r\n".to_vec(), long(), b"XY0\r\n\r\n".to_vec()].concat(),
        ),
        (
            "bad-size",
            [b"10000\r\n".to_vec(), long(), b"\r\nzz\r\n".to_vec()].concat(),
        ),
        (
            "bare-lf",
            [
                b"10000\r\n".to_vec(),
                long(),
                b"\r\n10\n".to_vec(),
                vec![b'a'; 16],
            ]
            .concat(),
        ),
        // 256 KiB announced, 64 KiB sent, then the close.
        ("cut", [b"40000\r\n".to_vec(), long()].concat()),
    ];
    let scripts = cases.clone();
    let backend = ScriptedBackend::start(move |peer| {
        while let Some(request) = peer.read_request() {
            match scripts
                .iter()
                .find(|(name, _)| request.target.ends_with(name))
            {
                Some((name, body)) => {
                    peer.write(&[CHUNKED_HEAD, body].concat());
                    if *name == "cut" {
                        return;
                    }
                }
                None => {
                    peer.reply_ok(b"again");
                }
            }
        }
    });
    let gateway = Gateway::start_with(&open_api(&[backend.url("")], "load_balance"), SPLICE, 1);
    for (i, (name, sent)) in cases.iter().enumerate() {
        let mut client = gateway.client();
        client.send(format!("GET /svc/{name} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        let received = client.read_to_close();
        let body = body_of_200(&received);
        // Relayed up to the fault: the long chunk and its size line, and for the broken
        // framing at most the bytes read with the fault (never the final chunk's end).
        assert!(
            body.len() >= "10000\r\n".len() + LONG && sent.starts_with(body),
            "{name}: {} B relayed, not a prefix of what was sent with the chunk in it",
            body.len()
        );
        assert!(!body.ends_with(b"0\r\n\r\n"), "{name}: looks complete");
        assert_eq!(gateway.client().get("/svc/again").body, b"again", "{name}");
        assert_eq!(
            backend.connections(),
            i + 2,
            "{name}: the broken connection was not reused; the next request opened another"
        );
    }
    // Of each long chunk, at most the first head read's 16 KiB were copied.
    assert!(spliced_bytes(&gateway) >= (cases.len() * (LONG - 17 * 1024)) as u64);
}

/// An HTTP/1.0 client gets a chunked body de-chunked, which is copied: the whole payload,
/// ended by the close, and nothing spliced.
#[test]
fn a_chunked_body_de_chunked_for_an_http_1_0_client_is_copied_whole() {
    let (_, payload) = chunked_body();
    let backend = chunked_backend();
    let gateway = Gateway::start_with(&open_api(&[backend.url("")], "load_balance"), SPLICE, 1);
    for path in ["/svc/whole", "/svc/paced"] {
        let mut client = gateway.client();
        client.send(format!("GET {path} HTTP/1.0\r\nHost: h\r\n\r\n").as_bytes());
        let received = client.read_to_close();
        let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
        assert!(!head.contains("transfer-encoding"), "{path}: {head}");
        assert!(
            received[head_end..] == payload[..],
            "{path}: the de-chunked payload arrived altered"
        );
    }
    assert_eq!(spliced_bytes(&gateway), 0);
}

/// A backend that sends part of a spliced chunk and then neither sends nor closes: as for a
/// body of known length, what arrived is relayed and the client connection closes at
/// `timeouts.upstream_idle_ms`.
#[test]
fn a_backend_frozen_inside_a_spliced_chunk_closes_the_client_connection_at_the_idle_timeout() {
    let (gateway, _backend, received) = fetch_from_backend_frozen_after(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n",
    );
    let arrived = [&b"100000\r\n"[..], &pattern(FROZEN_AFTER)].concat();
    assert!(
        received.ends_with(&arrived),
        "what arrived was relayed as it came ({} B in all), then the connection closed",
        received.len()
    );
    assert!(spliced_bytes(&gateway) > 0, "the chunk went by splice");
    assert_eq!(gateway.client().get("/svc/again").status, 200);
}

/// A chunked body spliced chunk by chunk is in flight (its client reads nothing yet) when a
/// reload turns splicing off: the body finishes whole on the snapshot it began under, still
/// spliced, and the chunked bodies after it, on the same client connection and on others,
/// are copied and relayed byte for byte.
#[test]
fn a_reload_that_stops_splicing_mid_chunked_body_finishes_it_whole_and_copies_the_next() {
    const CHUNK: usize = 1 << 20;
    const COUNT: usize = 32;
    let pending = || {
        let mut raw = Vec::new();
        for i in 0..COUNT {
            raw.extend_from_slice(format!("{CHUNK:x}\r\n").as_bytes());
            raw.extend_from_slice(&chunk_payload(i, CHUNK));
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        raw
    };
    let backend = ScriptedBackend::start(move |peer| {
        while let Some(request) = peer.read_request() {
            let sent = if request.target.ends_with("/pending") {
                peer.write(&[CHUNKED_HEAD, &pending()].concat())
            } else if request.target.ends_with("/done") {
                peer.reply_ok(b"done")
            } else {
                peer.write(&[CHUNKED_HEAD, &chunked_body().0].concat())
            };
            if !sent {
                return;
            }
        }
    });
    let gateway = Gateway::start_with(&open_api(&[backend.url("")], "load_balance"), SPLICE, 1);
    let (raw, payload) = chunked_body();
    let mut other = gateway.client();
    assert!(other.get("/svc/whole").body == payload);
    assert_eq!(other.get("/svc/done").body, b"done");
    let before = spliced_bytes(&gateway);
    assert!(before > 0, "the first body was spliced");

    let mut in_flight = gateway.client();
    in_flight.send(b"GET /svc/pending HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(eventually(Duration::from_secs(30), || backend
        .requests()
        .iter()
        .any(|r| r.target.ends_with("/pending"))));
    reload_with_an_api_sorting_first_and_copying(&gateway, backend.url(""));

    let response = in_flight.read_response(false).expect("the body in flight");
    let sent: Vec<u8> = (0..COUNT).flat_map(|i| chunk_payload(i, CHUNK)).collect();
    assert!(
        digest(&response.body) == digest(&sent),
        "the body in flight finished whole ({} of {} B)",
        response.body.len(),
        sent.len()
    );
    // The relay counts a splice after the call returns; the next request on the same
    // connection is read only after that.
    assert_eq!(in_flight.get("/svc/done").body, b"done");
    let spliced = spliced_bytes(&gateway);
    assert!(
        spliced - before >= (COUNT * (CHUNK - 68 * 1024)) as u64,
        "the body in flight kept splicing under its snapshot ({} B)",
        spliced - before
    );
    assert!(in_flight.get("/svc/whole").body == payload);
    for path in ["/svc/whole", "/other/whole"] {
        let mut closing = gateway.client();
        closing.send(
            format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert!(
            body_of_200(&closing.read_to_close()) == &raw[..],
            "{path}: the chunked framing was not relayed as it came"
        );
    }
    assert!(other.get("/other/whole").body == payload);
    assert_eq!(other.get("/svc/done").body, b"done");
    assert_eq!(
        spliced_bytes(&gateway),
        spliced,
        "nothing spliced after the reload"
    );
}

/// How a trickling backend sends a body: 1 KiB at a time, each piece its own segment, with a
/// pause between pieces, so that the relay waits for every piece.
fn trickle(peer: &mut support::hostile::Peer, bytes: &[u8]) -> bool {
    peer.stream().set_nodelay(true).unwrap();
    for piece in bytes.chunks(1024) {
        if !peer.write(piece) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// The size of the trickled bodies below.
const TRICKLED: usize = 256 * 1024;

/// A backend that trickles its bodies (a body of known length, the payload of a long chunk,
/// a body delimited by the close): the relay splices them piece by piece, each piece after
/// a wait for the upstream, and every body arrives whole; the bodies of known length and the
/// chunked one leave the upstream connection reusable. Splicing a trickle stays cheaper for
/// the gateway than copying it (bench/RESULTS.md, "A trickling upstream").
#[test]
fn bodies_that_trickle_in_are_spliced_piece_by_piece_and_arrive_whole() {
    let backend = ScriptedBackend::start(|peer| {
        while let Some(request) = peer.read_request() {
            let sent = if request.target.ends_with("/length") {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {TRICKLED}\r\n\r\n");
                peer.write(head.as_bytes()) && trickle(peer, &pattern(TRICKLED))
            } else if request.target.ends_with("/chunked") {
                let size_line = format!("{TRICKLED:x}\r\n");
                peer.write(&[CHUNKED_HEAD, size_line.as_bytes()].concat())
                    && trickle(peer, &pattern(TRICKLED))
                    && peer.write(b"\r\n5\r\nhello\r\n0\r\n\r\n")
            } else if request.target.ends_with("/until-close") {
                peer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
                trickle(peer, &pattern(TRICKLED));
                return;
            } else {
                peer.reply_ok(b"done")
            };
            if !sent {
                return;
            }
        }
    });
    let gateway = Gateway::start_with(&open_api(&[backend.url("")], "load_balance"), SPLICE, 1);
    let mut client = gateway.client();
    let response = client.get("/svc/length");
    assert_eq!(response.status, 200);
    assert!(
        response.body == pattern(TRICKLED),
        "the trickled body arrived whole"
    );
    let mut chunked = pattern(TRICKLED);
    chunked.extend_from_slice(b"hello");
    let response = client.get("/svc/chunked");
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert!(
        response.body == chunked,
        "the trickled chunk arrived whole, framed"
    );
    // The relay counts a splice after the call returns, by when the client may have read
    // it; the next request on the connection is read only after that.
    assert_eq!(client.get("/svc/done").body, b"done");
    assert!(
        spliced_bytes(&gateway) >= 2 * (TRICKLED - 17 * 1024) as u64,
        "the trickles went by splice: {} B",
        spliced_bytes(&gateway)
    );
    assert_eq!(
        backend.connections(),
        1,
        "one upstream connection carried them"
    );

    let before = spliced_bytes(&gateway);
    let mut closing = gateway.client();
    closing.send(b"GET /svc/until-close HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(body_of_200(&closing.read_to_close()) == pattern(TRICKLED));
    // The client connection closes only after the relay's last splice was counted.
    assert!(
        spliced_bytes(&gateway) - before >= (TRICKLED - 17 * 1024) as u64,
        "the trickle delimited by the close went by splice"
    );
}
