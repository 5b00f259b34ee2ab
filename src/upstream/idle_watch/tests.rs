use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use monoio::io::AsyncReadRent;

use super::*;
use crate::testing::{on_both_drivers, tcp_pair};

/// Lets the event loop submit and complete what the watch armed: several turns, since
/// the test asserts what the watch concluded, not how fast.
async fn settle(watch: &IdleWatch) -> Quiet {
    for _ in 0..2_000 {
        monoio::time::sleep(Duration::from_millis(5)).await;
        if watch.quiet() != Quiet::Unconfirmed {
            break;
        }
    }
    watch.quiet()
}

#[test]
fn a_quiet_idle_connection_is_vouched_for_once_its_poll_was_submitted() {
    on_both_drivers(|| async {
        let (client, _server) = tcp_pair().await;
        let watch = IdleWatch::start(client.as_raw_fd()).unwrap();
        watch.went_idle();
        // In the turn it went idle nothing was submitted yet: the pool must peek.
        assert_eq!(watch.quiet(), Quiet::Unconfirmed);
        assert_eq!(settle(&watch).await, Quiet::Vouched);
    });
}

#[test]
fn a_connection_taken_in_the_turn_it_went_idle_settles_within_the_next_submission() {
    on_both_drivers(|| async {
        let (client, mut server) = tcp_pair().await;
        let watch = IdleWatch::start(client.as_raw_fd()).unwrap();
        watch.went_idle();
        assert_eq!(watch.settled().await, Quiet::Vouched);
        // Bytes that were there before the period began settle it as stirred.
        server.write_all(b"stale").unwrap();
        for _ in 0..10_000 {
            if !crate::upstream::pool::nothing_to_read(client.as_raw_fd()) {
                break;
            }
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        watch.went_idle();
        assert_eq!(watch.quiet(), Quiet::Unconfirmed);
        assert_eq!(watch.settled().await, Quiet::Stirred);
    });
}

#[test]
fn bytes_or_a_close_on_an_idle_connection_stir_it() {
    on_both_drivers(|| async {
        // Bytes after it went idle and was vouched for.
        let (client, mut server) = tcp_pair().await;
        let watch = IdleWatch::start(client.as_raw_fd()).unwrap();
        watch.went_idle();
        assert_eq!(settle(&watch).await, Quiet::Vouched);
        server
            .write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            .unwrap();
        let mut stirred = Quiet::Vouched;
        for _ in 0..2_000 {
            monoio::time::sleep(Duration::from_millis(5)).await;
            stirred = watch.quiet();
            if stirred == Quiet::Stirred {
                break;
            }
        }
        assert_eq!(stirred, Quiet::Stirred);
        // Still unread when the next idle period begins: level-triggered, stirred again.
        watch.went_idle();
        assert_eq!(settle(&watch).await, Quiet::Stirred);

        // Bytes that were already there when it went idle (never vouched for).
        let (client, mut server) = tcp_pair().await;
        server.write_all(b"stale").unwrap();
        let watch = IdleWatch::start(client.as_raw_fd()).unwrap();
        watch.went_idle();
        assert_eq!(settle(&watch).await, Quiet::Stirred);

        // The server closed its end.
        let (client, server) = tcp_pair().await;
        drop(server);
        let watch = IdleWatch::start(client.as_raw_fd()).unwrap();
        watch.went_idle();
        assert_eq!(settle(&watch).await, Quiet::Stirred);
    });
}

#[test]
fn the_response_to_a_lent_connection_does_not_stir_its_next_idle_period() {
    on_both_drivers(|| async {
        let (mut client, mut server) = tcp_pair().await;
        let watch = IdleWatch::start(client.as_raw_fd()).unwrap();
        for round in 0..20u8 {
            watch.went_idle();
            assert_eq!(settle(&watch).await, Quiet::Vouched, "round {round}");
            // Lent: a response arrives (waking the armed poll) and is read, as the request
            // path does, before the connection goes idle again.
            server.write_all(&[round; 100]).unwrap();
            let mut got = 0;
            while got < 100 {
                let (read, _) = client.read(vec![0u8; 100 - got]).await;
                got += read.unwrap();
            }
            // Sometimes straight back, sometimes after the watch saw the response.
            if round % 2 == 0 {
                monoio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
}

#[test]
fn ending_the_watch_closes_its_descriptor() {
    on_both_drivers(|| async {
        let (client, mut server) = tcp_pair().await;
        let watch = IdleWatch::start(client.as_raw_fd()).unwrap();
        watch.went_idle();
        assert_eq!(settle(&watch).await, Quiet::Vouched);
        drop(client);
        drop(watch);
        // Both descriptors closed: the server reads the end of the stream. Read without
        // blocking, so that the runtime keeps turning while we wait (bounded generously).
        server.set_nonblocking(true).unwrap();
        let mut ended = false;
        for _ in 0..2_000 {
            match server.read(&mut [0u8; 8]) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(_) => panic!("unexpected bytes"),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(ended, "the watch kept the connection open");
    });
}
