//! One shard's tokens for one limit: what the request path spends with a plain decrement,
//! and what the control loop tops up before it runs out or gives back when the shard goes
//! quiet. Pure bookkeeping over a [`Pool`]; owned by one shard, never shared.

use super::pool::{Pool, Take};

/// What the request path decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Admitted,
    /// Over the limit for the rest of the window.
    Throttled,
    /// No token here or in the pool yet, but the syncer may bring some (Redis).
    Pending,
}

/// A shard's tokens of one window of one limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allowance {
    window: u64,
    tokens: u32,
    /// A request came since the last control tick.
    used: bool,
}

impl Allowance {
    /// Tokens held.
    #[cfg(test)]
    pub fn tokens(&self) -> u32 {
        self.tokens
    }

    #[cfg(test)]
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Tokens of a window that ended are void: they were the old window's.
    fn enter(&mut self, window: u64) {
        if self.window != window {
            self.window = window;
            self.tokens = 0;
        }
    }

    /// The request path: spend a local token, else take a batch from the pool.
    #[inline]
    pub fn admit(
        &mut self,
        pool: &Pool,
        window: u64,
        batch: u32,
        open_with: Option<u32>,
    ) -> Decision {
        self.enter(window);
        self.used = true;
        if self.tokens > 0 {
            self.tokens -= 1;
            return Decision::Admitted;
        }
        match pool.take(window, batch, open_with) {
            Take::Got(n) => {
                self.tokens = n - 1;
                Decision::Admitted
            }
            Take::Exhausted => Decision::Throttled,
            Take::Pending => Decision::Pending,
        }
    }

    /// The control loop, once per tick: a shard that served requests since the last tick
    /// and has half a batch or less tops up to a batch (so the next requests find tokens
    /// here); a shard that served none gives its tokens back to the pool (so a busier shard,
    /// or one client pinned to one shard, can have them). Batches of 1 are never held ahead.
    pub fn tick(&mut self, pool: &Pool, window: u64, batch: u32, open_with: Option<u32>) {
        self.enter(window);
        if !self.used {
            pool.give_back(window, self.tokens);
            self.tokens = 0;
        } else if batch > 1 && self.tokens <= batch / 2 {
            if let Take::Got(n) = pool.take(window, batch - self.tokens, open_with) {
                self.tokens += n;
            }
        }
        self.used = false;
    }

    /// Hands every token back (the shard is dropping this allowance: a reload).
    pub fn release(&mut self, pool: &Pool) {
        pool.give_back(self.window, self.tokens);
        self.tokens = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admits on `shards` allowances in turn (`pattern` picks the shard of each request)
    /// until `requests` were tried; returns the admitted count per shard.
    fn drive(
        pool: &Pool,
        allowances: &mut [Allowance],
        pattern: impl Fn(usize) -> usize,
        requests: usize,
        batch: u32,
        limit: u32,
        tick_every: usize,
    ) -> Vec<u32> {
        let mut admitted = vec![0; allowances.len()];
        for i in 0..requests {
            let shard = pattern(i);
            if allowances[shard].admit(pool, 5, batch, Some(limit)) == Decision::Admitted {
                admitted[shard] += 1;
            }
            if i % tick_every == tick_every - 1 {
                for a in allowances.iter_mut() {
                    a.tick(pool, 5, batch, Some(limit));
                }
            }
        }
        admitted
    }

    #[test]
    fn spread_requests_admit_exactly_the_limit_when_every_shard_is_busy() {
        let pool = Pool::default();
        let mut shards = [Allowance::default(); 2];
        let admitted = drive(&pool, &mut shards, |i| i % 2, 2000, 5, 1000, 7);
        assert_eq!(admitted.iter().sum::<u32>(), 1000);
    }

    #[test]
    fn one_pinned_client_gets_the_whole_limit_once_idle_shards_give_back() {
        let pool = Pool::default();
        let mut shards = [Allowance::default(); 4];
        // Every shard served one request (so each holds a topped-up batch), then traffic
        // comes to shard 0 only.
        for shard in shards.iter_mut() {
            assert_eq!(shard.admit(&pool, 5, 10, Some(4000)), Decision::Admitted);
            shard.tick(&pool, 5, 10, Some(4000));
        }
        assert!(shards[1].tokens() > 0);
        let admitted = drive(&pool, &mut shards, |_| 0, 8000, 10, 4000, 50);
        assert_eq!(admitted[0] + 4, 4000);
        assert!(shards[1..].iter().all(|s| s.tokens() == 0));
    }

    #[test]
    fn tokens_left_at_a_window_end_are_within_the_batches() {
        // Two shards busy until the end of the window with less demand than the limit: what
        // they hold at the end is at most a batch each.
        let pool = Pool::default();
        let mut shards = [Allowance::default(); 2];
        let admitted = drive(&pool, &mut shards, |i| i % 2, 900, 5, 1000, 3);
        assert_eq!(admitted.iter().sum::<u32>(), 900);
        let held: u32 = shards.iter().map(Allowance::tokens).sum();
        assert!(held <= 2 * 5, "{held}");
        assert_eq!(
            pool.level(5) + held + 900,
            1000,
            "nothing is lost or made up"
        );
    }

    #[test]
    fn a_new_window_voids_old_tokens_and_starts_from_the_pool() {
        let pool = Pool::default();
        let mut a = Allowance::default();
        assert_eq!(a.admit(&pool, 1, 3, Some(3)), Decision::Admitted);
        assert_eq!(a.tokens(), 2);
        assert_eq!(a.admit(&pool, 2, 3, Some(3)), Decision::Admitted);
        assert_eq!((a.window(), a.tokens()), (2, 2));
        assert_eq!(a.admit(&pool, 2, 3, Some(3)), Decision::Admitted);
        assert_eq!(a.admit(&pool, 2, 3, Some(3)), Decision::Admitted);
        assert_eq!(a.admit(&pool, 2, 3, Some(3)), Decision::Throttled);
    }

    #[test]
    fn without_an_authority_an_empty_pool_is_pending_until_credited() {
        let pool = Pool::default();
        let mut a = Allowance::default();
        assert_eq!(a.admit(&pool, 1, 2, None), Decision::Pending);
        pool.credit(1, 3, false);
        assert_eq!(a.admit(&pool, 1, 2, None), Decision::Admitted);
        assert_eq!(a.admit(&pool, 1, 2, None), Decision::Admitted);
        assert_eq!(a.admit(&pool, 1, 2, None), Decision::Admitted);
        assert_eq!(a.admit(&pool, 1, 2, None), Decision::Pending);
        pool.credit(1, 0, true);
        assert_eq!(a.admit(&pool, 1, 2, None), Decision::Throttled);
    }

    #[test]
    fn release_returns_what_is_held() {
        let pool = Pool::default();
        let mut a = Allowance::default();
        assert_eq!(a.admit(&pool, 1, 10, Some(100)), Decision::Admitted);
        assert_eq!(pool.level(1), 90);
        a.release(&pool);
        assert_eq!(pool.level(1), 99);
        assert_eq!(a.tokens(), 0);
    }
}
