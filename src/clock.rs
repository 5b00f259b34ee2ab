//! The request path's clock: one read of the monotonic clock per poll of a connection task,
//! however many deadlines, timers and latencies that poll needs.
//!
//! A keep-alive request used to read the clock about nine times (its start, the route's
//! deadline, one per timer armed, the pooled connection's idle stamp, two latencies), and
//! all but a few of those reads fell in the same poll as another. A poll of a connection
//! task is at most a few tens of microseconds of CPU, while every deadline it computes is
//! milliseconds long, so one reading serves the whole poll. monoio offers no hook per
//! event-loop turn; a task's poll is the next best unit, and a stricter one (a turn polls
//! many tasks).
//!
//! Outside a connection task's poll (control ticks, health checks, the admin thread) `now`
//! reads the clock each time: a cached reading never outlives the poll that took it.

use std::cell::Cell;
use std::time::Instant;

/// `None`: not inside a connection task's poll. `Some(None)`: inside, not read yet.
type Cached = Option<Option<Instant>>;

thread_local! {
    static NOW: Cell<Cached> = const { Cell::new(None) };
    static READS: Cell<u64> = const { Cell::new(0) };
}

/// The time, read once per connection-task poll.
#[inline]
pub fn now() -> Instant {
    NOW.with(|cached| match cached.get() {
        Some(Some(now)) => now,
        Some(None) => {
            let now = read();
            cached.set(Some(Some(now)));
            now
        }
        None => read(),
    })
}

#[inline]
fn read() -> Instant {
    READS.with(|reads| reads.set(reads.get() + 1));
    Instant::now()
}

/// Clock reads `now` made on this thread so far.
pub fn reads() -> u64 {
    READS.with(Cell::get)
}

/// Marks one poll of a connection task: readings taken during it are shared, and dropped
/// when it ends (by return or by unwinding).
pub struct PollScope {
    outer: Cached,
}

impl PollScope {
    #[inline]
    pub fn enter() -> PollScope {
        PollScope {
            outer: NOW.with(|cached| cached.replace(Some(None))),
        }
    }
}

impl Drop for PollScope {
    #[inline]
    fn drop(&mut self) {
        // A nested scope hands back an outer one without a reading: it would be older than
        // the work just done.
        let outer = self.outer.map(|_| None);
        NOW.with(|cached| cached.set(outer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn later() -> Instant {
        let start = Instant::now();
        while Instant::now() == start {}
        Instant::now()
    }

    #[test]
    fn one_reading_per_scope_and_none_outside() {
        let reads_before = reads();
        let (first, second) = {
            let _poll = PollScope::enter();
            let first = now();
            later();
            (first, now())
        };
        assert_eq!(first, second, "one reading per poll");
        assert_eq!(reads() - reads_before, 1);
        let after = later();
        assert!(now() >= after, "outside a poll the clock is read afresh");
        assert_eq!(reads() - reads_before, 2);
        let next = {
            let _poll = PollScope::enter();
            now()
        };
        assert!(next > first, "a new poll takes a new reading");
    }

    #[test]
    fn a_panicking_poll_leaves_no_reading_behind() {
        let taken = std::panic::catch_unwind(|| {
            let _poll = PollScope::enter();
            let taken = now();
            if taken.elapsed() < Duration::from_secs(1_000_000) {
                panic!("inside the poll");
            }
            taken
        });
        assert!(taken.is_err());
        let after = later();
        assert!(now() >= after);
    }

    #[test]
    fn a_nested_scope_leaves_the_outer_one_to_read_again() {
        let _outer = PollScope::enter();
        let first = now();
        {
            let _inner = PollScope::enter();
            later();
            assert!(now() > first);
        }
        let after = later();
        let again = now();
        assert!(
            again >= after,
            "the outer scope reads again after the inner one"
        );
        later();
        assert_eq!(now(), again, "and keeps that reading");
    }
}
