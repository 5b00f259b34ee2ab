//! A single-threaded FIFO of due requests, shared by one worker's dispatcher and its
//! connections (all on the same monoio thread: `Rc`/`RefCell`, no locks).
//!
//! The dispatcher pushes requests as they fall due; an idle connection pops the oldest one.
//! Each push wakes one idle connection; a connection registers at most once, so a wake is
//! never spent on a connection that is already busy.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

struct Inner<T> {
    items: VecDeque<T>,
    /// Connections waiting for an item, oldest first.
    idle: VecDeque<usize>,
    wakers: Vec<Option<Waker>>,
    in_idle: Vec<bool>,
    closed: bool,
}

pub struct LocalQueue<T> {
    inner: Rc<RefCell<Inner<T>>>,
}

impl<T> Clone for LocalQueue<T> {
    fn clone(&self) -> Self {
        LocalQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<T> LocalQueue<T> {
    /// A queue for `consumers` connections (ids `0..consumers`).
    pub fn new(consumers: usize, capacity: usize) -> Self {
        LocalQueue {
            inner: Rc::new(RefCell::new(Inner {
                items: VecDeque::with_capacity(capacity),
                idle: VecDeque::with_capacity(consumers),
                wakers: (0..consumers).map(|_| None).collect(),
                in_idle: vec![false; consumers],
                closed: false,
            })),
        }
    }

    pub fn push(&self, item: T) {
        let mut q = self.inner.borrow_mut();
        q.items.push_back(item);
        while let Some(id) = q.idle.pop_front() {
            q.in_idle[id] = false;
            if let Some(w) = q.wakers[id].take() {
                w.wake();
                break;
            }
        }
    }

    /// No more pushes; waiting connections get `None` once the queue is empty.
    pub fn close(&self) {
        let mut q = self.inner.borrow_mut();
        q.closed = true;
        let wakers: Vec<Waker> = q.wakers.iter_mut().filter_map(Option::take).collect();
        q.idle.clear();
        q.in_idle.iter_mut().for_each(|b| *b = false);
        drop(q);
        wakers.into_iter().for_each(Waker::wake);
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.inner.borrow().items.is_empty()
    }

    /// Removes and returns everything still queued.
    pub fn drain(&self) -> Vec<T> {
        self.inner.borrow_mut().items.drain(..).collect()
    }

    /// The oldest item, waiting for one if needed; `None` once closed and empty.
    pub fn pop(&self, consumer: usize) -> Pop<'_, T> {
        Pop { q: self, consumer }
    }
}

pub struct Pop<'a, T> {
    q: &'a LocalQueue<T>,
    consumer: usize,
}

impl<T> Future for Pop<'_, T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let id = self.consumer;
        let mut q = self.q.inner.borrow_mut();
        if let Some(item) = q.items.pop_front() {
            q.wakers[id] = None;
            return Poll::Ready(Some(item));
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

impl<T> Drop for Pop<'_, T> {
    fn drop(&mut self) {
        if let Ok(mut q) = self.q.inner.try_borrow_mut() {
            q.wakers[self.consumer] = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_close() {
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let q: LocalQueue<u32> = LocalQueue::new(3, 16);
            let got = Rc::new(RefCell::new(Vec::new()));
            let mut handles = Vec::new();
            for id in 0..3 {
                let q = q.clone();
                let got = got.clone();
                handles.push(monoio::spawn(async move {
                    while let Some(v) = q.pop(id).await {
                        got.borrow_mut().push(v);
                        monoio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                }));
            }
            for i in 0..30 {
                q.push(i);
                if i % 7 == 0 {
                    monoio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
            }
            while !q.is_empty() {
                monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            q.close();
            for h in handles {
                h.await;
            }
            let mut v = got.borrow().clone();
            v.sort();
            assert_eq!(v, (0..30).collect::<Vec<_>>());
        });
    }
}
