//! Watches a pooled upstream connection while it sits idle (`upstream.reuse_check:
//! watch`), so that reusing it needs no syscall. Bytes (a server's unsolicited 408, a second response to a request it split)
//! or a close that arrive on an idle connection would otherwise be read as the next
//! request's response; nginx and haproxy notice them through epoll, where an idle
//! connection's readiness comes for free. Here it was one `MSG_PEEK` per reuse, a syscall
//! on nearly every request.
//!
//! The watch is a small task per connection, started the first time the connection goes
//! idle, on a duplicated descriptor of its socket (io_uring keeps an armed poll on the
//! file, not on the descriptor number, so the two cannot be confused). For each idle period
//! it arms a readability poll and, behind it in the same submission, a writability probe: an
//! idle socket is writable, so the probe completes in that submission, and io_uring issues
//! a submission's entries in order, so a readability that was already there has completed
//! by then.
//! After the probe the watch *vouches* for the period: quiet when the poll is still
//! pending, *stirred* as soon as it completes. A connection taken before its watch could
//! vouch (in the same event-loop turn as it went idle) waits for it to settle, within the
//! next submission ([`IdleWatch::settled`]).
//!
//! The poll stays armed while the connection is lent: the response wakes it, which the
//! watch recognises as belonging to a period that ended and ignores; the next idle period
//! arms a fresh, level-triggered poll.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::os::fd::{FromRawFd, RawFd};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

use monoio::net::TcpStream;

/// What the watch can say of the current idle period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quiet {
    /// Nothing arrived since the connection went idle, and the watch saw that in a
    /// completed submission: reusable without a syscall.
    Vouched,
    /// The watch has not yet seen a submission of this period's poll.
    Unconfirmed,
    /// Bytes, a close or an error arrived: never reusable.
    Stirred,
    /// The connection has no watch (`reuse_check: peek`, the epoll driver): it must be
    /// peeked, and no other answer will come.
    Unwatched,
}

/// The connection's side of its watch; dropping it ends the watch task.
pub struct IdleWatch {
    state: Rc<State>,
}

struct State {
    /// Bumped each time the connection goes idle. The watch records which period each of
    /// its observations belongs to, so that the response to a lent connection (which wakes
    /// the previous period's poll) is never taken for bytes on an idle one.
    period: Cell<u64>,
    vouched: Cell<u64>,
    stirred: Cell<u64>,
    closed: Cell<bool>,
    /// The watch task, waiting for a new period or the end.
    task: Cell<Option<Waker>>,
    /// A request waiting for this period to be vouched for or stirred.
    waiter: Cell<Option<Waker>>,
}

impl State {
    fn wake(&self) {
        if let Some(waker) = self.task.take() {
            waker.wake();
        }
    }

    /// The watch's conclusion about `period`, if it is still the current one.
    fn conclude(&self, period: u64, stirred: bool) {
        if self.period.get() != period {
            return;
        }
        if stirred {
            self.stirred.set(period);
        } else {
            self.vouched.set(period);
        }
        if let Some(waiter) = self.waiter.take() {
            waiter.wake();
        }
    }

    /// Resolves once `ready` holds; only the watch task waits on its state.
    fn until<'a>(&'a self, ready: impl Fn(&State) -> bool + 'a) -> impl Future<Output = ()> + 'a {
        poll_fn(move |cx| {
            if ready(self) {
                return Poll::Ready(());
            }
            self.task.set(Some(cx.waker().clone()));
            Poll::Pending
        })
    }
}

impl IdleWatch {
    /// Starts watching the socket `fd` (a connection that is going idle for the first
    /// time). `None` when the descriptor cannot be duplicated: reuse is then peeked.
    pub fn start(fd: RawFd) -> Option<Self> {
        let handle = duplicate(fd)?;
        let state = Rc::new(State {
            period: Cell::new(0),
            vouched: Cell::new(0),
            stirred: Cell::new(0),
            closed: Cell::new(false),
            task: Cell::new(None),
            waiter: Cell::new(None),
        });
        monoio::spawn(watch(handle, Rc::clone(&state)));
        Some(Self { state })
    }

    /// The connection goes (back) into the pool: a new idle period begins.
    pub fn went_idle(&self) {
        self.state.period.set(self.state.period.get() + 1);
        self.state.wake();
    }

    /// Resolves once the watch has vouched for the current period or seen it stirred: for
    /// a connection taken in the very turn it went idle, within the next submission.
    pub fn settled(&self) -> impl Future<Output = Quiet> + '_ {
        poll_fn(|cx| match self.quiet() {
            Quiet::Unconfirmed => {
                self.state.waiter.set(Some(cx.waker().clone()));
                Poll::Pending
            }
            settled => Poll::Ready(settled),
        })
    }

    pub fn quiet(&self) -> Quiet {
        let period = self.state.period.get();
        if self.state.stirred.get() == period {
            Quiet::Stirred
        } else if self.state.vouched.get() == period {
            Quiet::Vouched
        } else {
            Quiet::Unconfirmed
        }
    }
}

impl Drop for IdleWatch {
    fn drop(&mut self) {
        self.state.closed.set(true);
        self.state.wake();
    }
}

async fn watch(handle: TcpStream, state: Rc<State>) {
    let mut watched = 0;
    loop {
        state
            .until(|s| s.closed.get() || s.period.get() != watched)
            .await;
        if state.closed.get() {
            return;
        }
        watched = state.period.get();
        // Polled first, so its submission entry precedes the probe's.
        let mut readable = pin!(handle.readable(false));
        let mut probe = pin!(handle.writable(false));
        let mut ended = pin!(state.until(move |s| s.closed.get() || s.period.get() != watched));
        let mut probed = false;
        let stirred = poll_fn(|cx| {
            if readable.as_mut().poll(cx).is_ready() {
                return Poll::Ready(true);
            }
            if !probed && probe.as_mut().poll(cx).is_ready() {
                probed = true;
                // Checked above in this same poll: the poll was submitted before the probe
                // and has not completed.
                state.conclude(watched, false);
            }
            // Closed, or a new period began before this one's poll completed (it was lent
            // and given back with nothing read, or the completion is not reaped yet): the
            // next turn of the loop ends the watch or arms afresh.
            match ended.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(false),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        // A completion during a later period is that period's response (the connection
        // was lent meanwhile): ignored, the next period arms a fresh poll.
        if stirred {
            state.conclude(watched, true);
        }
    }
}

/// A second descriptor on a connected socket, ours alone: closed when the stream drops.
pub(crate) fn duplicate(fd: RawFd) -> Option<TcpStream> {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor owned by a live connection; the new
    // descriptor belongs to nobody else.
    let duplicate = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if duplicate < 0 {
        return None;
    }
    // SAFETY: `duplicate` is an open socket descriptor nobody else owns.
    let std = unsafe { std::net::TcpStream::from_raw_fd(duplicate) };
    TcpStream::from_std(std).ok()
}

#[cfg(test)]
mod tests;
