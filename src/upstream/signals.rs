//! Per-shard news of endpoints going down, for the requests waiting on them. When an
//! endpoint is suspended (by this shard's failure report, or another shard's, seen when this
//! shard next reads the word), the requests of this shard still waiting for its first
//! response byte can leave at once for the next member instead of each waiting out its own
//! attempt timeout: with a frozen primary under load, that is the difference between one slow
//! request and every in-flight one.
//!
//! Shard-local (`Cell`/`RefCell`): a waiter registers its waker in a slot reused across
//! requests, so waiting allocates nothing once warm.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::ids::UpstreamId;

/// Down-generations per upstream and the wakers of the requests waiting on them.
#[derive(Default)]
pub struct SuspensionSignals {
    /// By `UpstreamId`: bumped each time this shard learns the upstream went down.
    generations: RefCell<Vec<u32>>,
    waiters: RefCell<Vec<Option<(UpstreamId, Waker)>>>,
    free: RefCell<Vec<usize>>,
    /// Wake-ups delivered (for tests and metrics).
    woken: Cell<u64>,
}

impl SuspensionSignals {
    /// The current down-generation of `upstream`; a waiter started at it is woken when it
    /// changes.
    pub fn generation(&self, upstream: UpstreamId) -> u32 {
        self.generations
            .borrow()
            .get(upstream.index())
            .copied()
            .unwrap_or(0)
    }

    /// `upstream` went down: wakes every request of this shard waiting on it.
    pub fn notify_down(&self, upstream: UpstreamId) {
        {
            let mut generations = self.generations.borrow_mut();
            if generations.len() <= upstream.index() {
                generations.resize(upstream.index() + 1, 0);
            }
            generations[upstream.index()] = generations[upstream.index()].wrapping_add(1);
        }
        let mut woken = 0;
        for (id, waker) in self.waiters.borrow().iter().flatten() {
            if *id == upstream {
                waker.wake_by_ref();
                woken += 1;
            }
        }
        self.woken.set(self.woken.get() + woken);
    }

    /// Completes when `upstream` goes down after generation `since`.
    pub fn wait_down(&self, upstream: UpstreamId, since: u32) -> DownWait<'_> {
        DownWait {
            signals: self,
            upstream,
            since,
            slot: None,
        }
    }

    /// Wake-ups delivered so far.
    pub fn woken(&self) -> u64 {
        self.woken.get()
    }

    fn register(&self, slot: &mut Option<usize>, upstream: UpstreamId, waker: &Waker) {
        let mut waiters = self.waiters.borrow_mut();
        match *slot {
            Some(index) => match &mut waiters[index] {
                Some((_, current)) if current.will_wake(waker) => {}
                entry => *entry = Some((upstream, waker.clone())),
            },
            None => {
                let entry = Some((upstream, waker.clone()));
                let index = match self.free.borrow_mut().pop() {
                    Some(index) => {
                        waiters[index] = entry;
                        index
                    }
                    None => {
                        waiters.push(entry);
                        waiters.len() - 1
                    }
                };
                *slot = Some(index);
            }
        }
    }

    fn release(&self, index: usize) {
        self.waiters.borrow_mut()[index] = None;
        self.free.borrow_mut().push(index);
    }
}

/// See [`SuspensionSignals::wait_down`]. Dropping it releases its slot.
pub struct DownWait<'a> {
    signals: &'a SuspensionSignals,
    upstream: UpstreamId,
    since: u32,
    slot: Option<usize>,
}

impl Future for DownWait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.signals.generation(this.upstream) != this.since {
            return Poll::Ready(());
        }
        this.signals
            .register(&mut this.slot, this.upstream, cx.waker());
        Poll::Pending
    }
}

impl Drop for DownWait<'_> {
    fn drop(&mut self) {
        if let Some(index) = self.slot.take() {
            self.signals.release(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn waiters_on_an_upstream_are_woken_when_it_goes_down_and_only_then() {
        let signals = SuspensionSignals::default();
        let (a, b) = (UpstreamId(0), UpstreamId(3));
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let mut on_a = Box::pin(signals.wait_down(a, signals.generation(a)));
        let mut on_b = Box::pin(signals.wait_down(b, signals.generation(b)));
        assert!(on_a.as_mut().poll(&mut cx).is_pending());
        assert!(on_b.as_mut().poll(&mut cx).is_pending());
        // Polled again: the slot is reused, not duplicated.
        assert!(on_a.as_mut().poll(&mut cx).is_pending());
        signals.notify_down(b);
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert!(on_b.as_mut().poll(&mut cx).is_ready());
        assert!(on_a.as_mut().poll(&mut cx).is_pending());
        drop(on_b);
        signals.notify_down(a);
        assert!(on_a.as_mut().poll(&mut cx).is_ready());
        assert_eq!(signals.woken(), 2);
        drop(on_a);
        // Released slots are reused.
        let mut again = Box::pin(signals.wait_down(a, signals.generation(a)));
        assert!(again.as_mut().poll(&mut cx).is_pending());
        assert_eq!(signals.waiters.borrow().len(), 2);
    }
}
