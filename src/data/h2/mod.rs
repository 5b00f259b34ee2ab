//! HTTP/2 (BEHAVIOUR.md §8): client connections over TLS (ALPN `h2`) and plain TCP (prior
//! knowledge, the client preface detected in a connection's first bytes), each stream run
//! through the HTTP/1.1 request lifecycle by an in-memory bridge (`bridge.rs`), with the
//! limits and frame budgets that keep one connection's cost bounded, and GOAWAY on drain.
//!
//! The codec is the `h2` crate (0.4, which has the rapid-reset and CONTINUATION defences)
//! over monoio's poll-io compatibility layer: only HTTP/2 sockets leave native io_uring
//! operations. See `docs/design-notes.md` for why not monoio-http's h2 fork.

mod bridge;
pub(crate) mod convert;
mod io;
pub mod meter;
mod server;
pub mod upstream;

use std::cell::{Cell, RefCell};
use std::task::{Context, Waker};

pub use server::{serve_h2c, serve_tls};
pub use upstream::UpstreamBridge;

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a plain connection say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preface {
    /// The whole client preface: HTTP/2 with prior knowledge.
    Http2,
    /// A prefix of the preface: read on before deciding.
    Undecided,
    /// Anything else: HTTP/1.1.
    Http1,
}

/// Looks at the first bytes of a plain connection. A request line can never start like the
/// preface (`PRI` is no method the gateway routes, and `HTTP/2.0` no HTTP/1.x version), so a
/// full match is HTTP/2 and a mismatch anywhere is HTTP/1.1.
pub fn detect_preface(first: &[u8]) -> Preface {
    let n = first.len().min(PREFACE.len());
    if first[..n] != PREFACE[..n] {
        Preface::Http1
    } else if n == PREFACE.len() {
        Preface::Http2
    } else {
        Preface::Undecided
    }
}

thread_local! {
    /// This shard's drain has begun: HTTP/2 connections send GOAWAY and finish their streams.
    static DRAINING: Cell<bool> = const { Cell::new(false) };
    /// The tasks of this shard's HTTP/2 connections (`Some` slots are taken; the waker is
    /// registered at the connection's last poll), woken when the drain begins.
    static DRAIN_WAKERS: RefCell<Vec<Option<Option<Waker>>>> = const { RefCell::new(Vec::new()) };
}

/// Tells this shard's HTTP/2 connections to drain (called by the shard's drain, which then
/// waits for them like for any connection).
pub fn begin_drain() {
    DRAINING.with(|d| d.set(true));
    let wakers: Vec<Waker> = DRAIN_WAKERS.with(|w| {
        w.borrow_mut()
            .iter_mut()
            .filter_map(|slot| slot.as_mut().and_then(Option::take))
            .collect()
    });
    // Woken outside the borrow: a waker may poll its task at once.
    for waker in wakers {
        waker.wake();
    }
}

/// One connection's place in the drain wakers.
struct DrainWatch {
    slot: usize,
}

impl DrainWatch {
    fn new() -> DrainWatch {
        let slot = DRAIN_WAKERS.with(|w| {
            let mut wakers = w.borrow_mut();
            // The list is as long as the most HTTP/2 connections the shard had at once.
            match wakers.iter().position(Option::is_none) {
                Some(slot) => {
                    wakers[slot] = Some(None);
                    slot
                }
                None => {
                    wakers.push(Some(None));
                    wakers.len() - 1
                }
            }
        });
        DrainWatch { slot }
    }

    /// Whether the drain has begun; if not, the task is woken when it does.
    fn poll(&self, cx: &mut Context<'_>) -> bool {
        if DRAINING.with(Cell::get) {
            return true;
        }
        DRAIN_WAKERS.with(|w| {
            if let Some(Some(waker)) = w.borrow_mut().get_mut(self.slot) {
                match waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    entry => *entry = Some(cx.waker().clone()),
                }
            }
        });
        false
    }
}

impl Drop for DrainWatch {
    fn drop(&mut self) {
        DRAIN_WAKERS.with(|w| {
            if let Some(slot) = w.borrow_mut().get_mut(self.slot) {
                *slot = None;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preface_is_told_apart_from_request_lines_byte_by_byte() {
        assert_eq!(detect_preface(PREFACE), Preface::Http2);
        let mut longer = PREFACE.to_vec();
        longer.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(detect_preface(&longer), Preface::Http2);
        assert_eq!(detect_preface(b"PRI * HTTP/2"), Preface::Undecided);
        assert_eq!(detect_preface(b"P"), Preface::Undecided);
        assert_eq!(detect_preface(b"POST / HTTP/1.1\r\n"), Preface::Http1);
        assert_eq!(detect_preface(b"PRI * HTTP/1.1\r\n"), Preface::Http1);
        assert_eq!(detect_preface(b"GET / HTTP/1.1\r\n"), Preface::Http1);
    }
}
