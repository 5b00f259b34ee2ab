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
//!
//! Long bodies are copied through a larger buffer ([`LARGE_BUFFER_SIZE`]), lent against a
//! per-shard budget ([`MAX_LARGE_LENT`]) so that many slow downloads at once cannot make every
//! connection hold one: past the budget a body keeps its ordinary read buffer.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Capacity of a pooled buffer: one read of client or upstream bytes.
pub const BUFFER_SIZE: usize = 16 * 1024;

/// Buffers that grew past this (a replayable request body, a large head) are freed rather
/// than pooled: the pool would otherwise pin the rare large request's memory. A response
/// body's read buffer (`BODY_READ`) is the largest that is pooled.
const MAX_POOLED_CAPACITY: usize = super::relay::BODY_READ;

/// Most buffers a shard keeps (16 MiB). Beyond that, a returned buffer is freed.
const MAX_POOLED: usize = 1024;

/// Capacity of the read buffer a long body is copied through: a 1 MiB body then takes 4
/// reads and 4 writes where `BODY_READ` took 16 of each, and each ring operation saved is
/// about as dear as copying several KiB (bench/RESULTS.md, "Long bodies copied in 256 KiB
/// steps"). Envoy buffers up to 1 MiB per connection by default; nginx 64 KiB.
pub const LARGE_BUFFER_SIZE: usize = 256 * 1024;

/// Large buffers a shard lends at once (16 MiB): a bound on what slow readers of long
/// bodies can hold, which the small buffers' pool does not need (they are lent to every
/// request anyway).
pub const MAX_LARGE_LENT: usize = 64;

#[derive(Default)]
pub struct BufferPool {
    free: RefCell<Vec<Vec<u8>>>,
    /// The fewest free buffers seen since the last trim: that many were not needed.
    low_water: Cell<usize>,
    /// Spare large buffers, and the fewest seen since the last trim.
    large: RefCell<Vec<Vec<u8>>>,
    large_low_water: Cell<usize>,
    /// Large buffers lent now: one per live [`LargeLease`].
    large_lent: Rc<Cell<usize>>,
}

/// A large buffer's place in the shard's budget, held by the connection whose read buffer
/// it is and given back when that buffer is parked or the connection ends.
#[derive(Debug)]
pub struct LargeLease(Rc<Cell<usize>>);

impl Drop for LargeLease {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
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
        if capacity == LARGE_BUFFER_SIZE {
            let mut large = self.large.borrow_mut();
            if large.len() < MAX_LARGE_LENT {
                taken.clear();
                large.push(taken);
            }
            return;
        }
        let mut free = self.free.borrow_mut();
        if (BUFFER_SIZE..=MAX_POOLED_CAPACITY).contains(&capacity) && free.len() < MAX_POOLED {
            taken.clear();
            free.push(taken);
        }
    }

    /// Swaps `buf`, which holds nothing that is still needed, for a large buffer, when the
    /// shard has one to lend: its ordinary buffer goes back to the pool. The lease must live
    /// as long as `buf` holds the large buffer (until it is parked).
    pub fn lend_large(&self, buf: &mut Vec<u8>) -> Option<LargeLease> {
        if self.large_lent.get() >= MAX_LARGE_LENT {
            return None;
        }
        let mut large = self.large.borrow_mut();
        let lent = large
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(LARGE_BUFFER_SIZE));
        if large.len() < self.large_low_water.get() {
            self.large_low_water.set(large.len());
        }
        drop(large);
        let mut ordinary = std::mem::replace(buf, lent);
        self.park(&mut ordinary);
        self.large_lent.set(self.large_lent.get() + 1);
        Some(LargeLease(Rc::clone(&self.large_lent)))
    }

    /// Frees half of the buffers that were not used since the last call.
    pub fn trim(&self) {
        let mut free = self.free.borrow_mut();
        let unused = self.low_water.get().min(free.len());
        let keep = free.len() - unused.div_ceil(2);
        free.truncate(keep);
        free.shrink_to(keep.max(16));
        self.low_water.set(free.len());
        let mut large = self.large.borrow_mut();
        let unused = self.large_low_water.get().min(large.len());
        let keep = large.len() - unused.div_ceil(2);
        large.truncate(keep);
        self.large_low_water.set(large.len());
    }

    /// Frees every spare buffer at once (a connection storm has ended: its buffers would
    /// otherwise leave a few per second and keep the heap fragmented meanwhile). Connections
    /// still open allocate again as they need, and refill the pool as they park.
    pub fn release_all(&self) {
        let mut free = self.free.borrow_mut();
        *free = Vec::new();
        self.low_water.set(0);
        *self.large.borrow_mut() = Vec::new();
        self.large_low_water.set(0);
    }

    /// Buffers waiting in the pool.
    pub fn len(&self) -> usize {
        self.free.borrow().len()
    }

    /// Large buffers waiting in the pool, and lent now.
    pub fn large(&self) -> (usize, usize) {
        (self.large.borrow().len(), self.large_lent.get())
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
    fn large_buffers_are_lent_within_the_budget_and_come_back_through_park() {
        let pool = BufferPool::default();
        let mut bufs: Vec<Vec<u8>> = (0..MAX_LARGE_LENT + 1).map(|_| Vec::new()).collect();
        let mut leases = Vec::new();
        for buf in &mut bufs {
            pool.fill(buf);
            buf.extend_from_slice(b"a head already relayed");
        }
        for buf in &mut bufs {
            if let Some(lease) = pool.lend_large(buf) {
                leases.push(lease);
            }
        }
        assert_eq!(leases.len(), MAX_LARGE_LENT, "lending stops at the budget");
        assert_eq!(pool.large(), (0, MAX_LARGE_LENT));
        assert_eq!(bufs[0].capacity(), LARGE_BUFFER_SIZE);
        assert!(bufs[0].is_empty(), "a lent buffer comes empty");
        assert_eq!(
            bufs[MAX_LARGE_LENT].capacity(),
            BUFFER_SIZE,
            "past it, the ordinary one stays"
        );
        assert_eq!(
            pool.len(),
            MAX_LARGE_LENT,
            "the swapped-out ordinary buffers are pooled"
        );

        // A connection that ends drops its buffer and its lease: the budget is freed either way.
        let address = bufs[1].as_ptr();
        bufs.remove(0);
        leases.remove(0);
        pool.park(&mut bufs[0]);
        leases.remove(0);
        assert_eq!(pool.large(), (1, MAX_LARGE_LENT - 2));
        let mut next = Vec::new();
        pool.fill(&mut next);
        let lease = pool.lend_large(&mut next).expect("within the budget again");
        assert_eq!(
            next.as_ptr(),
            address,
            "a parked large buffer is lent again"
        );
        drop(lease);
        pool.park(&mut next);
        assert_eq!(pool.large(), (1, MAX_LARGE_LENT - 2));

        // Unused spare large buffers go with the trims like the ordinary ones.
        pool.trim();
        pool.trim();
        assert_eq!(pool.large().0, 0);
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
