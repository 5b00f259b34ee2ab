//! A shard's free list of I/O buffers.
//!
//! A connection needs its three full-size buffers (client input, output, upstream input)
//! only while a request is in flight. Between requests it parks them here and waits for the
//! next request with a small read buffer, so an idle keep-alive connection costs a few KiB
//! instead of three buffers' worth of touched pages, and a busy shard still allocates nothing
//! per request: the buffers circulate between the connections that are active right now.
//!
//! The list belongs to one shard (no lock, no atomic). After a burst it would otherwise keep
//! the burst's peak forever; [`BufferPool::trim`], called about once a second, frees half of
//! the buffers that stayed unused for the whole interval.

use std::cell::{Cell, RefCell};

/// Capacity of a pooled buffer: one read of client or upstream bytes.
pub const BUFFER_SIZE: usize = 16 * 1024;

/// Buffers that grew past this (a replayable request body, a large head) are freed rather
/// than pooled: the pool would otherwise pin the rare large request's memory. A response
/// body's read buffer (`BODY_READ`) is the largest that is pooled.
const MAX_POOLED_CAPACITY: usize = super::relay::BODY_READ;

/// Most buffers a shard keeps (16 MiB). Beyond that, a returned buffer is freed.
const MAX_POOLED: usize = 1024;

#[derive(Default)]
pub struct BufferPool {
    free: RefCell<Vec<Vec<u8>>>,
    /// The fewest free buffers seen since the last trim: that many were not needed.
    low_water: Cell<usize>,
}

impl BufferPool {
    /// Gives `buf` a pooled buffer when it has none (capacity 0). Empty on return either way
    /// when it was handed one; a buffer that already has capacity is left as it is.
    #[inline]
    pub fn fill(&self, buf: &mut Vec<u8>) {
        if buf.capacity() != 0 {
            return;
        }
        let mut free = self.free.borrow_mut();
        *buf = free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_SIZE));
        if free.len() < self.low_water.get() {
            self.low_water.set(free.len());
        }
    }

    /// Takes `buf`'s allocation back, leaving `buf` without one. Its contents are discarded.
    #[inline]
    pub fn park(&self, buf: &mut Vec<u8>) {
        let capacity = buf.capacity();
        if capacity == 0 {
            return;
        }
        let mut taken = std::mem::take(buf);
        let mut free = self.free.borrow_mut();
        if (BUFFER_SIZE..=MAX_POOLED_CAPACITY).contains(&capacity) && free.len() < MAX_POOLED {
            taken.clear();
            free.push(taken);
        }
    }

    /// Frees half of the buffers that were not used since the last call.
    pub fn trim(&self) {
        let mut free = self.free.borrow_mut();
        let unused = self.low_water.get().min(free.len());
        let keep = free.len() - unused.div_ceil(2);
        free.truncate(keep);
        free.shrink_to(keep.max(16));
        self.low_water.set(free.len());
    }

    /// Frees every spare buffer at once (a connection storm has ended: its buffers would
    /// otherwise leave a few per second and keep the heap fragmented meanwhile). Connections
    /// still open allocate again as they need, and refill the pool as they park.
    pub fn release_all(&self) {
        let mut free = self.free.borrow_mut();
        *free = Vec::new();
        self.low_water.set(0);
    }

    /// Buffers waiting in the pool.
    pub fn len(&self) -> usize {
        self.free.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_circulate_without_new_allocations() {
        let pool = BufferPool::default();
        let mut a = Vec::new();
        pool.fill(&mut a);
        assert_eq!(a.capacity(), BUFFER_SIZE);
        a.extend_from_slice(b"request bytes");
        let address = a.as_ptr();
        pool.park(&mut a);
        assert_eq!(a.capacity(), 0);
        assert_eq!(pool.len(), 1);
        let mut b = Vec::new();
        pool.fill(&mut b);
        assert_eq!(b.as_ptr(), address, "the parked allocation is reused");
        assert!(b.is_empty(), "a reused buffer comes back empty");
    }

    #[test]
    fn fill_keeps_a_buffer_that_already_has_one() {
        let pool = BufferPool::default();
        let mut a = Vec::with_capacity(100);
        a.push(1);
        pool.fill(&mut a);
        assert_eq!((a.capacity(), a.len()), (100, 1));
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn odd_sized_buffers_are_freed_not_pooled() {
        let pool = BufferPool::default();
        let mut small = Vec::with_capacity(1024);
        let mut huge = Vec::with_capacity(MAX_POOLED_CAPACITY + 1);
        pool.park(&mut small);
        pool.park(&mut huge);
        assert_eq!(pool.len(), 0);
        assert_eq!((small.capacity(), huge.capacity()), (0, 0));
    }

    #[test]
    fn release_all_frees_every_spare_buffer() {
        let pool = BufferPool::default();
        for _ in 0..10 {
            let mut buf = Vec::with_capacity(BUFFER_SIZE);
            pool.park(&mut buf);
        }
        pool.release_all();
        assert_eq!(pool.len(), 0);
        let mut buf = Vec::new();
        pool.fill(&mut buf);
        assert_eq!(buf.capacity(), BUFFER_SIZE, "an empty pool still fills");
    }

    #[test]
    fn the_pool_is_bounded() {
        let pool = BufferPool::default();
        for _ in 0..MAX_POOLED + 10 {
            let mut buf = Vec::with_capacity(BUFFER_SIZE);
            pool.park(&mut buf);
        }
        assert_eq!(pool.len(), MAX_POOLED);
    }

    #[test]
    fn trim_frees_half_of_what_went_unused_and_keeps_what_is_used() {
        let pool = BufferPool::default();
        let mut held: Vec<Vec<u8>> = (0..8)
            .map(|_| {
                let mut buf = Vec::new();
                pool.fill(&mut buf);
                buf
            })
            .collect();
        for buf in &mut held {
            pool.park(buf);
        }
        pool.trim(); // starts an interval with all 8 free
        assert_eq!(pool.len(), 8);
        // This interval, at most 6 were in use at once: 2 were never needed.
        for buf in held.iter_mut().take(6) {
            pool.fill(buf);
        }
        for buf in held.iter_mut().take(6) {
            pool.park(buf);
        }
        pool.trim();
        assert_eq!(pool.len(), 7);
        // A busy interval that used every buffer frees none.
        for buf in held.iter_mut().take(7) {
            pool.fill(buf);
        }
        for buf in held.iter_mut().take(7) {
            pool.park(buf);
        }
        pool.trim();
        assert_eq!(pool.len(), 7);
        // Idle intervals shrink the pool step by step.
        pool.trim();
        assert_eq!(pool.len(), 3);
        pool.trim();
        assert_eq!(pool.len(), 1);
        pool.trim();
        assert_eq!(pool.len(), 0);
    }
}
