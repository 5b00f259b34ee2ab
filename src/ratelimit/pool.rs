//! The shared token pool of one limit: how many requests the instance may still admit in a
//! window. Shards take tokens from it in batches (one compare-and-swap per batch, never per
//! request); in local mode the pool is the authority and opens each window itself, with
//! Redis the syncer thread credits it with what Redis granted. It never hands out more than
//! it holds, so the instance never admits more than it was given.
//!
//! One word per window parity (`window % 2`) packs the window's tag, an `exhausted` bit and
//! the tokens left: the syncer can credit the next window before it starts while shards still
//! drain the current one, and a stale word (an older window) reads as empty.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam::utils::CachePadded;

const TOKENS: u64 = 0xffff_ffff;
const EXHAUSTED: u64 = 1 << 32;
const TAG_SHIFT: u32 = 33;
/// Tags are window indices folded into 31 bits, 0 excluded ("never opened").
const TAG_MODULUS: u64 = (1 << 31) - 1;

/// What a shard got when it asked the pool for tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// This many tokens (at least 1), now the shard's.
    Got(u32),
    /// None left, and none will come this window: answer 429.
    Exhausted,
    /// None left yet, but more may come (the syncer has not credited this window, or is
    /// fetching a batch from Redis).
    Pending,
}

/// The tokens one limit has left, per window.
#[derive(Debug, Default)]
pub struct Pool {
    slots: [CachePadded<AtomicU64>; 2],
    /// A shard found no token and waits for the syncer (Redis mode only; written in the slow
    /// path, read and cleared by the syncer).
    wanted: CachePadded<AtomicBool>,
}

fn tag(window: u64) -> u64 {
    window % TAG_MODULUS + 1
}

fn pack(window: u64, exhausted: bool, tokens: u32) -> u64 {
    (tag(window) << TAG_SHIFT) | if exhausted { EXHAUSTED } else { 0 } | u64::from(tokens)
}

/// `(exhausted, tokens)` of `word` when it belongs to `window`.
fn unpack(word: u64, window: u64) -> Option<(bool, u32)> {
    (word >> TAG_SHIFT == tag(window)).then_some((word & EXHAUSTED != 0, (word & TOKENS) as u32))
}

impl Pool {
    fn slot(&self, window: u64) -> &AtomicU64 {
        &self.slots[(window % 2) as usize]
    }

    /// Takes up to `want` tokens of `window`. `open_with` is the authority's allotment: a
    /// pool that is its own authority (no Redis) opens a window it has not seen with that
    /// many tokens; without it, an unopened window is `Pending` until credited.
    pub fn take(&self, window: u64, want: u32, open_with: Option<u32>) -> Take {
        let slot = self.slot(window);
        let mut word = slot.load(Ordering::Acquire);
        loop {
            let (next, got) = match unpack(word, window) {
                Some((_, tokens)) if tokens > 0 => {
                    let got = tokens.min(want);
                    (word - u64::from(got), got)
                }
                Some((true, _)) => return Take::Exhausted,
                Some((false, _)) => return Take::Pending,
                None => match open_with {
                    None => return Take::Pending,
                    Some(0) => return Take::Exhausted,
                    Some(allotment) => {
                        let got = allotment.min(want);
                        (pack(window, true, allotment - got), got)
                    }
                },
            };
            match slot.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Take::Got(got),
                Err(current) => word = current,
            }
        }
    }

    /// Adds `tokens` to `window` (the syncer: a Redis grant, or the local share while Redis
    /// is unreachable) and sets whether more can come. A credit for a window older than the
    /// one the slot holds is dropped: that window is over.
    pub fn credit(&self, window: u64, tokens: u32, exhausted: bool) {
        let slot = self.slot(window);
        let mut word = slot.load(Ordering::Acquire);
        loop {
            let next = match unpack(word, window) {
                Some((_, held)) => pack(window, exhausted, held.saturating_add(tokens)),
                // The slot holds the window two before (stale) or never opened: this
                // window's credit replaces it. The slot cannot hold a newer window, since the
                // syncer credits at most one window ahead.
                None => pack(window, exhausted, tokens),
            };
            match slot.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(current) => word = current,
            }
        }
    }

    /// Returns tokens a shard took but did not use, while their window lasts.
    pub fn give_back(&self, window: u64, tokens: u32) {
        if tokens == 0 {
            return;
        }
        let slot = self.slot(window);
        let mut word = slot.load(Ordering::Acquire);
        while let Some((exhausted, held)) = unpack(word, window) {
            let next = pack(window, exhausted, held.saturating_add(tokens));
            match slot.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(current) => word = current,
            }
        }
    }

    /// Says a request is waiting for a credit (the slow path).
    pub fn want(&self) {
        self.wanted.store(true, Ordering::Release);
    }

    /// Whether a request waited for a credit since the last call (the syncer).
    pub fn take_wanted(&self) -> bool {
        self.wanted.swap(false, Ordering::AcqRel)
    }

    /// Empties `window` and clears its `exhausted` bit (the syncer, when Redis is back: what
    /// the pool still holds is handed back rather than reported as used, and requests wait
    /// for Redis's answer instead of being refused); returns what it held.
    pub fn withdraw(&self, window: u64) -> u32 {
        let slot = self.slot(window);
        let mut word = slot.load(Ordering::Acquire);
        while let Some((_, held)) = unpack(word, window) {
            match slot.compare_exchange_weak(
                word,
                pack(window, false, 0),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return held,
                Err(current) => word = current,
            }
        }
        0
    }

    /// Tokens left in `window` (0 when it is not open).
    pub fn level(&self, window: u64) -> u32 {
        unpack(self.slot(window).load(Ordering::Acquire), window).map_or(0, |(_, t)| t)
    }

    /// Whether `window` was declared exhausted (by the authority or the syncer).
    pub fn is_exhausted(&self, window: u64) -> bool {
        unpack(self.slot(window).load(Ordering::Acquire), window).is_some_and(|(e, _)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authoritative_pool_opens_each_window_with_the_allotment() {
        let pool = Pool::default();
        assert_eq!(pool.take(7, 4, Some(10)), Take::Got(4));
        assert_eq!(pool.level(7), 6);
        assert_eq!(pool.take(7, 4, Some(10)), Take::Got(4));
        assert_eq!(
            pool.take(7, 4, Some(10)),
            Take::Got(2),
            "never more than it holds"
        );
        assert_eq!(pool.take(7, 4, Some(10)), Take::Exhausted);
        // The next window starts full; the one after reuses the first slot.
        assert_eq!(pool.take(8, 4, Some(10)), Take::Got(4));
        assert_eq!(pool.take(9, 10, Some(10)), Take::Got(10));
        assert_eq!(pool.take(9, 1, Some(10)), Take::Exhausted);
        assert_eq!(pool.take(10, 1, Some(0)), Take::Exhausted);
    }

    #[test]
    fn a_credited_pool_is_pending_until_credited_and_exhausted_when_told() {
        let pool = Pool::default();
        assert_eq!(pool.take(3, 2, None), Take::Pending);
        pool.credit(3, 3, false);
        assert_eq!(pool.take(3, 2, None), Take::Got(2));
        assert_eq!(pool.take(3, 2, None), Take::Got(1));
        assert_eq!(pool.take(3, 2, None), Take::Pending);
        pool.credit(3, 1, true);
        assert_eq!(pool.take(3, 2, None), Take::Got(1));
        assert_eq!(pool.take(3, 2, None), Take::Exhausted);
        // Crediting the next window ahead leaves the current one alone.
        pool.credit(4, 5, false);
        assert_eq!(pool.take(3, 2, None), Take::Exhausted);
        assert_eq!(pool.level(4), 5);
        // A window two later replaces the stale slot.
        pool.credit(5, 2, false);
        assert_eq!(pool.level(5), 2);
        assert_eq!(pool.level(3), 0);
    }

    #[test]
    fn given_back_tokens_count_only_in_their_window() {
        let pool = Pool::default();
        assert_eq!(pool.take(1, 5, Some(5)), Take::Got(5));
        pool.give_back(1, 3);
        assert_eq!(pool.level(1), 3);
        assert!(pool.is_exhausted(1));
        assert_eq!(pool.take(1, 5, Some(5)), Take::Got(3));
        // Window 1 is over once window 3 opened its slot: late returns are dropped.
        assert_eq!(pool.take(3, 1, Some(5)), Take::Got(1));
        pool.give_back(1, 2);
        assert_eq!(pool.level(3), 4);
        assert_eq!(pool.level(1), 0);
    }

    #[test]
    fn withdraw_empties_the_window_and_says_how_much() {
        let pool = Pool::default();
        pool.credit(9, 6, false);
        assert_eq!(pool.withdraw(9), 6);
        assert_eq!(pool.withdraw(9), 0);
        assert_eq!(pool.take(9, 1, None), Take::Pending);
        assert_eq!(pool.withdraw(10), 0);
    }

    #[test]
    fn concurrent_takers_never_get_more_than_the_allotment() {
        let pool = std::sync::Arc::new(Pool::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let pool = std::sync::Arc::clone(&pool);
                std::thread::spawn(move || {
                    let mut got = 0u32;
                    loop {
                        match pool.take(42, 3, Some(10_000)) {
                            Take::Got(n) => got += n,
                            Take::Exhausted => return got,
                            Take::Pending => unreachable!("an authoritative pool is never pending"),
                        }
                    }
                })
            })
            .collect();
        let total: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 10_000);
    }
}
