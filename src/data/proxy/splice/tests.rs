use std::io::{Read, Write};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

use super::*;
use crate::testing::{on_both_drivers, tcp_pair};

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
        .collect()
}

/// An upstream that writes `bytes` and then closes (or not), from its own thread.
fn serve(mut peer: std::net::TcpStream, bytes: Vec<u8>, close: bool) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        // The gateway side may give up first (the test's point): errors are expected then.
        let _ = peer.write_all(&bytes);
        if !close {
            thread::sleep(Duration::from_secs(3600));
        }
    })
}

/// A client that reads `len` bytes, after `start` says so (or at once when `None`).
fn read(
    mut peer: std::net::TcpStream,
    len: usize,
    start: Option<mpsc::Receiver<()>>,
) -> thread::JoinHandle<(bool, Vec<u8>, std::net::TcpStream)> {
    thread::spawn(move || {
        // Bounded generously: the test fails on `false`, never hangs.
        let signalled = start.is_none_or(|s| s.recv_timeout(Duration::from_secs(60)).is_ok());
        let mut got = vec![0; len];
        peer.read_exact(&mut got).unwrap();
        (signalled, got, peer)
    })
}

fn ends<'a>(upstream: &'a TcpStream, client: &'a TcpStream, client_io: Duration) -> SpliceEnds<'a> {
    make_nonblocking(upstream).unwrap();
    make_nonblocking(client).unwrap();
    SpliceEnds {
        upstream,
        client,
        upstream_idle: Duration::from_secs(60),
        client_io,
    }
}

#[test]
fn relays_exactly_the_length_and_leaves_the_next_response_in_the_socket() {
    on_both_drivers(|| async {
        let (mut upstream, upstream_peer) = tcp_pair().await;
        let (mut client, client_peer) = tcp_pair().await;
        let body = pattern(700 * 1024 + 13);
        let mut sent = body.clone();
        sent.extend_from_slice(b"NEXT");
        let _server = serve(upstream_peer, sent, false);
        let reader = read(client_peer, body.len() + 4, None);
        let pipes = PipePool::default();
        let mut pipe = pipes.take().unwrap();
        let mut timer = Timer::default();
        let mut relayed = 0;
        let ends = ends(&upstream, &client, Duration::from_secs(60));
        relay(&ends, &mut pipe, Some(body.len() as u64), &mut timer, |n| {
            relayed += n
        })
        .await
        .unwrap();
        assert_eq!(relayed, body.len() as u64);
        pipes.give_back(pipe);
        assert_eq!(
            pipes.pooled(),
            1,
            "an emptied pipe is kept for the next body"
        );
        // The ring's own operations still work on the now non-blocking sockets: the next
        // response is read, and more bytes go to the client, each waiting as it must.
        let (n, next) = upstream.read(Vec::with_capacity(16)).await;
        assert_eq!((n.unwrap(), &next[..]), (4, &b"NEXT"[..]));
        let (written, _) = client.write_all(b"tail").await;
        written.unwrap();
        let (_, got, _) = reader.join().unwrap();
        assert!(
            got[..body.len()] == body[..],
            "the spliced bytes arrive as sent"
        );
        assert_eq!(&got[body.len()..], b"tail");
    });
}

/// The order of a corked response: what the upstream sent already goes into the pipe, the
/// head goes out corked, and the relay empties the pipe first and then moves only what was
/// left of the length, leaving the next response in the upstream's socket.
#[test]
fn a_pipe_filled_before_the_head_is_emptied_behind_it_and_only_the_rest_is_moved() {
    on_both_drivers(|| async {
        let (mut upstream, upstream_peer) = tcp_pair().await;
        let (client, client_peer) = tcp_pair().await;
        let body = pattern(300 * 1024 + 7);
        let mut sent = body.clone();
        sent.extend_from_slice(b"NEXT");
        let (head, first) = (b"HEAD\r\n\r\n", &body[..1000]);
        let ends = ends(&upstream, &client, Duration::from_secs(60));
        let reader = read(client_peer, head.len() + body.len(), None);
        let mut peer = upstream_peer;
        // The rest of the body is in the socket before the head goes out, as it is when a
        // backend's one write carries both.
        peer.write_all(&sent[first.len()..]).unwrap();
        let pipes = PipePool::default();
        let mut pipe = pipes.take().unwrap();
        let mut left = Some((body.len() - first.len()) as u64);
        let mut filled = false;
        for _ in 0..6000 {
            fill_now(&upstream, &mut pipe, &mut left);
            if pipe.holds_bytes() {
                filled = true;
                break;
            }
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(filled, "the bytes in the socket were moved into the pipe");
        let left_after_fill = left.unwrap();
        assert!(left_after_fill < (body.len() - first.len()) as u64);
        assert_eq!(send_corked(&client, head, first), head.len() + first.len());
        let mut relayed = 0;
        relay(&ends, &mut pipe, left, &mut Timer::default(), |n| {
            relayed += n
        })
        .await
        .unwrap();
        assert_eq!(
            relayed,
            (body.len() - first.len()) as u64,
            "the pipe's bytes and the rest, nothing more"
        );
        let (_, got, _) = reader.join().unwrap();
        assert_eq!(&got[..head.len()], head);
        assert!(
            got[head.len()..] == body[..],
            "the body follows the head in order"
        );
        let (n, next) = upstream.read(Vec::with_capacity(16)).await;
        assert_eq!((n.unwrap(), &next[..]), (4, &b"NEXT"[..]));
        drop(peer);
    });
}

#[test]
fn a_body_delimited_by_the_close_ends_with_the_upstream_close() {
    on_both_drivers(|| async {
        let (upstream, upstream_peer) = tcp_pair().await;
        let (client, client_peer) = tcp_pair().await;
        let body = pattern(300 * 1024);
        let server = serve(upstream_peer, body.clone(), true);
        let reader = read(client_peer, body.len(), None);
        let mut pipe = PipePool::default().take().unwrap();
        let mut relayed = 0;
        let ends = ends(&upstream, &client, Duration::from_secs(60));
        let end = relay(&ends, &mut pipe, None, &mut Timer::default(), |n| {
            relayed += n
        })
        .await;
        assert!(matches!(end, Err(SpliceEnd::UpstreamClosed)), "{end:?}");
        assert_eq!(relayed, body.len() as u64);
        server.join().unwrap();
        assert!(reader.join().unwrap().1 == body);
    });
}

/// Relays a 100,000-byte body of which the upstream sends only the first 50,000 bytes and
/// then closes (`close`) or goes quiet; returns how the relay ended and how much it passed on.
async fn relay_cut_short(close: bool, upstream_idle: Duration) -> (Result<(), SpliceEnd>, u64) {
    let (upstream, upstream_peer) = tcp_pair().await;
    let (client, client_peer) = tcp_pair().await;
    let _server = serve(upstream_peer, pattern(50_000), close);
    let reader = read(client_peer, 50_000, None);
    let mut pipe = PipePool::default().take().unwrap();
    let mut relayed = 0;
    let mut ends = ends(&upstream, &client, Duration::from_secs(60));
    ends.upstream_idle = upstream_idle;
    let end = relay(
        &ends,
        &mut pipe,
        Some(100_000),
        &mut Timer::default(),
        |n| relayed += n,
    )
    .await;
    let (_, got, _) = reader.join().unwrap();
    assert!(
        got == pattern(50_000),
        "what arrived was passed on as it was"
    );
    (end, relayed)
}

#[test]
fn a_truncated_body_ends_with_the_upstream_close_after_what_arrived() {
    on_both_drivers(|| async {
        let (end, relayed) = relay_cut_short(true, Duration::from_secs(60)).await;
        assert!(matches!(end, Err(SpliceEnd::UpstreamClosed)), "{end:?}");
        assert_eq!(relayed, 50_000);
    });
}

#[test]
fn an_upstream_that_freezes_mid_body_ends_at_the_idle_timeout_after_what_arrived() {
    on_both_drivers(|| async {
        let (end, relayed) = relay_cut_short(false, Duration::from_millis(300)).await;
        assert!(matches!(end, Err(SpliceEnd::UpstreamTimedOut)), "{end:?}");
        assert_eq!(relayed, 50_000, "what arrived was passed on");
    });
}

#[test]
fn a_client_that_stops_reading_leaves_the_shard_running() {
    on_both_drivers(|| async {
        let (upstream, upstream_peer) = tcp_pair().await;
        let (client, client_peer) = tcp_pair().await;
        // Far more than the sockets buffer: the relay must wait for the client.
        let body = pattern(24 << 20);
        let _server = serve(upstream_peer, body.clone(), false);
        let (start, started) = mpsc::channel();
        let reader = read(client_peer, body.len(), Some(started));
        // Another task of the same thread: it only runs if the relay waits instead of
        // blocking the thread in a call. It lets the client read once it has run a while.
        let ticker = monoio::spawn(async move {
            for _ in 0..20 {
                monoio::time::sleep(Duration::from_millis(2)).await;
            }
            start.send(()).unwrap();
        });
        let mut pipe = PipePool::default().take().unwrap();
        let mut relayed = 0;
        let ends = ends(&upstream, &client, Duration::from_secs(60));
        relay(
            &ends,
            &mut pipe,
            Some(body.len() as u64),
            &mut Timer::default(),
            |n| relayed += n,
        )
        .await
        .unwrap();
        ticker.await;
        let (signalled, got, _) = reader.join().unwrap();
        assert!(
            signalled,
            "the client's signal came from the shard's other task"
        );
        assert!(got == body);
    });
}

#[test]
fn a_pipe_left_holding_bytes_is_closed_not_pooled() {
    on_both_drivers(|| async {
        let (upstream, upstream_peer) = tcp_pair().await;
        let (client, _client_peer) = tcp_pair().await;
        let _server = serve(upstream_peer, pattern(24 << 20), false);
        let pipes = PipePool::default();
        let mut pipe = pipes.take().unwrap();
        let mut relayed = 0;
        // The client never reads: its write step times out with bytes still in the pipe.
        let ends = ends(&upstream, &client, Duration::from_millis(200));
        let end = relay(
            &ends,
            &mut pipe,
            Some(24 << 20),
            &mut Timer::default(),
            |n| relayed += n,
        )
        .await;
        assert!(matches!(end, Err(SpliceEnd::ClientTimedOut)), "{end:?}");
        assert!(pipe.held > 0);
        pipes.give_back(pipe);
        assert_eq!(pipes.pooled(), 0);
    });
}
