//! The due requests of one worker, shared by its dispatcher and its connections (all on the
//! same monoio thread: `Rc`/`RefCell`, no locks).
//!
//! A worker's requests are numbered `0, 1, 2, ...` and their intended times follow from the
//! number, so the queue is just two counters: how many requests the dispatcher has released
//! (they are due) and how many the connections have taken. An idle connection takes the
//! oldest released one. However long the backlog gets, it costs no memory.
//!
//! Each released request wakes one idle connection; a connection registers at most once, so
//! a wake is never spent on a connection that is already busy.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

struct Inner {
    released: u64,
    taken: u64,
    /// Connections waiting for a request, oldest first.
    idle: VecDeque<usize>,
    wakers: Vec<Option<Waker>>,
    in_idle: Vec<bool>,
    closed: bool,
}

#[derive(Clone)]
pub struct SlotQueue {
    inner: Rc<RefCell<Inner>>,
}

impl SlotQueue {
    /// A queue for `consumers` connections (ids `0..consumers`).
    pub fn new(consumers: usize) -> Self {
        SlotQueue {
            inner: Rc::new(RefCell::new(Inner {
                released: 0,
                taken: 0,
                idle: VecDeque::with_capacity(consumers),
                wakers: (0..consumers).map(|_| None).collect(),
                in_idle: vec![false; consumers],
                closed: false,
            })),
        }
    }

    /// Requests `0..n` are due; wakes an idle connection for each newly due one.
    pub fn release_until(&self, n: u64) {
        let mut q = self.inner.borrow_mut();
        let mut new = n.saturating_sub(q.released);
        q.released = q.released.max(n);
        while new > 0 {
            let Some(id) = q.idle.pop_front() else { break };
            q.in_idle[id] = false;
            if let Some(w) = q.wakers[id].take() {
                w.wake();
                new -= 1;
            }
        }
    }

    /// No more releases; waiting connections get `None` once every request is taken.
    pub fn close(&self) {
        let mut q = self.inner.borrow_mut();
        q.closed = true;
        q.idle.clear();
        q.in_idle.iter_mut().for_each(|b| *b = false);
        for w in q.wakers.iter_mut().filter_map(Option::take) {
            w.wake();
        }
    }

    /// Released requests no connection has taken.
    pub fn backlog(&self) -> u64 {
        let q = self.inner.borrow();
        q.released - q.taken
    }

    /// The number of the oldest due request not taken yet, waiting for one if needed;
    /// `None` once closed and empty.
    pub fn pop(&self, consumer: usize) -> Pop<'_> {
        Pop { q: self, consumer }
    }
}

pub struct Pop<'a> {
    q: &'a SlotQueue,
    consumer: usize,
}

impl Future for Pop<'_> {
    type Output = Option<u64>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u64>> {
        let id = self.consumer;
        let mut q = self.q.inner.borrow_mut();
        if q.taken < q.released {
            let n = q.taken;
            q.taken += 1;
            q.wakers[id] = None;
            return Poll::Ready(Some(n));
        }
        if q.closed {
            return Poll::Ready(None);
        }
        q.wakers[id] = Some(cx.waker().clone());
        if !q.in_idle[id] {
            q.in_idle[id] = true;
            q.idle.push_back(id);
        }
        Poll::Pending
    }
}

impl Drop for Pop<'_> {
    fn drop(&mut self) {
        if let Ok(mut q) = self.q.inner.try_borrow_mut() {
            q.wakers[self.consumer] = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_request_is_taken_once_in_order() {
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let q = SlotQueue::new(3);
            let got = Rc::new(RefCell::new(Vec::new()));
            let mut handles = Vec::new();
            for id in 0..3 {
                let q = q.clone();
                let got = got.clone();
                handles.push(monoio::spawn(async move {
                    while let Some(v) = q.pop(id).await {
                        got.borrow_mut().push(v);
                        monoio::time::sleep(Duration::from_millis(1)).await;
                    }
                }));
            }
            for n in 1..=30 {
                q.release_until(n);
                if n % 7 == 0 {
                    monoio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            // A burst: several due at once.
            q.release_until(40);
            while q.backlog() > 0 {
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
            q.close();
            for h in handles {
                h.await;
            }
            let v = got.borrow().clone();
            let mut sorted = v.clone();
            sorted.sort();
            assert_eq!(sorted, (0..40).collect::<Vec<_>>());
        });
    }
}
