use std::io::Read;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::*;
use crate::data::proxy::io::Timer;
use crate::testing::{on_both_drivers, tcp_pair};

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ salt).collect()
}

/// Reads `len` bytes once `start` says so, from its own thread.
fn read_after(
    mut peer: std::net::TcpStream,
    len: usize,
    start: mpsc::Receiver<()>,
) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        start.recv_timeout(Duration::from_secs(60)).unwrap();
        let mut got = vec![0; len];
        peer.read_exact(&mut got).unwrap();
        got
    })
}

#[test]
fn head_and_body_range_arrive_in_order_and_the_buffers_come_back() {
    on_both_drivers(|| async {
        let mut iov = None;
        for (head_len, body_len) in [(0, 10), (120, 0), (120, 1), (300, 70_000)] {
            let (mut ours, peer) = tcp_pair().await;
            let mut head = pattern(head_len, 1);
            // The range leaves bytes before and after it that must not be sent.
            let mut body = pattern(body_len + 20, 2);
            let range = 7..7 + body_len;
            let expected: Vec<u8> = [&head[..], &body[range.clone()]].concat();
            let (go, start) = mpsc::channel();
            let reader = read_after(peer, expected.len(), start);
            go.send(()).unwrap();
            let mut timer = Timer::default();
            write_head_and_body(
                &mut ours,
                &mut head,
                &mut body,
                range,
                &mut iov,
                timer.arm_in(Duration::from_secs(60)),
            )
            .await
            .unwrap();
            assert!(
                reader.join().unwrap() == expected,
                "{head_len} + {body_len}"
            );
            assert_eq!(head, pattern(head_len, 1), "the head buffer is handed back");
            assert_eq!(body.len(), body_len + 20, "the body buffer is handed back");
            assert!(iov.is_some(), "the iovec pair is kept for the next write");
        }
    });
}

#[test]
fn a_write_larger_than_the_socket_takes_at_once_is_resumed_where_it_stopped() {
    on_both_drivers(|| async {
        for nonblocking in [false, true] {
            resumed_write(nonblocking).await;
        }
    });
}

/// On a blocking socket and on a non-blocking one, as a spliced connection's is: io_uring's
/// `writev` fails with `EAGAIN` on the latter where its `send` would wait.
async fn resumed_write(nonblocking: bool) {
    {
        let (mut ours, peer) = tcp_pair().await;
        if nonblocking {
            crate::data::proxy::splice::make_nonblocking(&ours).unwrap();
        }
        // Far more than the socket buffers hold: writes come back short, so the loop resumes
        // inside the head and inside the body; a missing or repeated byte shows.
        let mut head = pattern(3 * 1024 * 1024 + 17, 3);
        let mut body = pattern(9 * 1024 * 1024, 4);
        let range = 5..body.len() - 3;
        let expected: Vec<u8> = [&head[..], &body[range.clone()]].concat();
        let reader = thread::spawn(move || {
            // Small reads keep the socket full, so writes keep coming back short. A write
            // that stopped early fails the test by the timeout (generous), never hangs it:
            // the runtime closes the socket only after the test's future is done.
            let mut peer = peer;
            peer.set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let mut got = Vec::with_capacity(expected.len());
            let mut piece = [0; 4096];
            while got.len() < expected.len() {
                match peer.read(&mut piece) {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => got.extend_from_slice(&piece[..n]),
                }
            }
            got == expected
        });
        let mut timer = Timer::default();
        write_head_and_body(
            &mut ours,
            &mut head,
            &mut body,
            range,
            &mut None,
            timer.arm_in(Duration::from_secs(120)),
        )
        .await
        .unwrap();
        assert!(
            reader.join().unwrap(),
            "every byte once, in order ({nonblocking})"
        );
    }
}

#[test]
fn a_reader_that_never_reads_ends_the_write_at_the_timer() {
    on_both_drivers(|| async {
        for nonblocking in [false, true] {
            let (mut ours, _peer) = tcp_pair().await;
            if nonblocking {
                crate::data::proxy::splice::make_nonblocking(&ours).unwrap();
            }
            let mut head = pattern(100, 5);
            let mut body = pattern(32 * 1024 * 1024, 6);
            let len = body.len();
            let mut timer = Timer::default();
            let result = write_head_and_body(
                &mut ours,
                &mut head,
                &mut body,
                0..len,
                &mut None,
                timer.arm_in(Duration::from_millis(200)),
            )
            .await;
            assert!(matches!(result, Err(IoError::TimedOut)), "{result:?}");
        }
    });
}
