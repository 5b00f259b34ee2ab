//! Per-shard memory of validated tokens, so a token seen again costs one hash and one byte
//! comparison instead of a signature check. Bounded, CLOCK (second-chance) eviction, no locks
//! (one per shard, hence `!Sync`). A hit never skips the expiry check, and a hash match is
//! never trusted without comparing the whole token.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use super::claims::{Claims, KeyType};
use super::error::AuthError;
use super::policy::{ScopeSet, TokenUse};
use super::verifier::Verifier;

/// The hash function: (seed, token) -> hash. A field so tests can force collisions; the data
/// path is the same whichever function is installed.
type TokenHashFn = fn(u64, &[u8]) -> u64;

/// Validated tokens of one shard.
pub struct TokenCache {
    slots: Vec<Slot>,
    /// Token hash -> index in `slots`. At most one slot per hash: a colliding token replaces.
    index: HashMap<u64, u32, BuildHasherDefault<PrehashedKey>>,
    capacity: usize,
    /// CLOCK hand: next slot considered for eviction.
    hand: usize,
    clock_skew_secs: u64,
    seed: u64,
    hash: TokenHashFn,
    /// `Verifier::generation` of the results held; a different verifier empties the cache.
    generation: u64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("len", &self.slots.len())
            .field("capacity", &self.capacity)
            .field("generation", &self.generation)
            .finish()
    }
}

struct Slot {
    hash: u64,
    /// The whole token; its buffer is reused when the slot is recycled.
    token: Vec<u8>,
    claims: Claims,
    /// CLOCK reference bit: set by a hit, cleared as the hand passes.
    referenced: Cell<bool>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0 disables it) applying `clock_skew_secs` to `exp`.
    pub fn new(capacity: usize, clock_skew_secs: u64) -> Self {
        Self::with_hash(capacity, clock_skew_secs, token_hash)
    }

    fn with_hash(capacity: usize, clock_skew_secs: u64, hash: TokenHashFn) -> Self {
        // Storage grows as tokens arrive (a quiet shard pays nothing) and stops at `capacity`;
        // after that, slots and their token buffers are recycled.
        TokenCache {
            slots: Vec::new(),
            index: HashMap::default(),
            capacity: capacity.min(u32::MAX as usize),
            hand: 0,
            clock_skew_secs,
            // Keyed per cache so nobody can precompute colliding tokens.
            seed: RandomState::new().hash_one(0x5eed_u64),
            hash,
            generation: 0,
        }
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no token is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Most tokens held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every token (buffers are released).
    pub fn clear(&mut self) {
        self.slots.clear();
        self.index.clear();
        self.hand = 0;
    }

    /// The claims of `token` if it was validated before and has not expired at `now`
    /// (`now < exp + skew`, as `Verifier::verify` requires). Allocates nothing.
    pub fn get(&self, token: &[u8], now: u64) -> Option<&Claims> {
        let hash = (self.hash)(self.seed, token);
        let slot = &self.slots[*self.index.get(&hash)? as usize];
        if slot.token != token {
            return None; // a hash collision: another token's claims
        }
        if !self.is_live(&slot.claims, now) {
            slot.referenced.set(false); // first in line for eviction
            return None;
        }
        slot.referenced.set(true);
        Some(&slot.claims)
    }

    /// Remembers `claims` for `token` (already-expired claims are not stored). When full, the
    /// CLOCK hand evicts the first token not hit since the hand last passed (expired tokens
    /// count as not hit). Amortised O(1).
    pub fn insert(&mut self, token: &[u8], claims: Claims, now: u64) {
        if self.capacity == 0 || !self.is_live(&claims, now) {
            return;
        }
        let hash = (self.hash)(self.seed, token);
        if let Some(&i) = self.index.get(&hash) {
            // The same token again, or a colliding one: the newer token takes the slot.
            self.slots[i as usize].refill(token, claims);
            return;
        }
        if self.slots.len() < self.capacity {
            let i = self.slots.len() as u32;
            self.slots.push(Slot {
                hash,
                token: token.to_vec(),
                claims,
                referenced: Cell::new(false),
            });
            self.index.insert(hash, i);
            return;
        }
        let victim = self.advance_hand(now);
        let slot = &mut self.slots[victim];
        self.index.remove(&slot.hash);
        slot.hash = hash;
        slot.refill(token, claims);
        self.index.insert(hash, victim as u32);
    }

    /// Cached claims, else `verifier.verify` (and remember the result). A cache built for
    /// another `Verifier` (config reload) is emptied first, since issuers and keys may differ.
    pub fn verify(
        &mut self,
        verifier: &Verifier,
        token: &[u8],
        now: u64,
    ) -> Result<Claims, AuthError> {
        self.with_claims(verifier, token, now, TokenUse::Bearer, Claims::clone)
    }

    /// The request path's check of a token presented as `token_use`: its environment, and
    /// whether it carries every scope of `required`. No copy of the claims (whose subject is
    /// reference-counted) and no allocation on a hit.
    pub fn authorize(
        &mut self,
        verifier: &Verifier,
        token: &[u8],
        now: u64,
        token_use: TokenUse,
        required: &ScopeSet,
    ) -> Result<(KeyType, bool), AuthError> {
        self.with_claims(verifier, token, now, token_use, |claims| {
            (claims.key_type, claims.scopes.contains_all(required))
        })
    }

    fn with_claims<R>(
        &mut self,
        verifier: &Verifier,
        token: &[u8],
        now: u64,
        token_use: TokenUse,
        read: impl FnOnce(&Claims) -> R,
    ) -> Result<R, AuthError> {
        if self.generation != verifier.generation() {
            self.clear();
            self.generation = verifier.generation();
            self.clock_skew_secs = verifier.clock_skew_secs();
        }
        if let Some(claims) = self.get(token, now) {
            // The same bytes verified as the other use: its issuer does not sign this one.
            if verifier.token_use(claims.issuer) != Some(token_use) {
                return Err(AuthError::UnknownIssuer);
            }
            return Ok(read(claims));
        }
        let claims = verifier.verify_as(token, now, token_use)?;
        let result = read(&claims);
        self.insert(token, claims, now);
        Ok(result)
    }

    fn is_live(&self, claims: &Claims, now: u64) -> bool {
        now < claims.expires_at.saturating_add(self.clock_skew_secs)
    }

    /// Moves the hand to a slot to evict and returns it: referenced slots get a second chance
    /// (bit cleared); at most one full turn before an unreferenced slot is found.
    fn advance_hand(&mut self, now: u64) -> usize {
        loop {
            let i = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            let slot = &self.slots[i];
            if slot.referenced.get() && self.is_live(&slot.claims, now) {
                slot.referenced.set(false);
            } else {
                return i;
            }
        }
    }
}

impl Slot {
    fn refill(&mut self, token: &[u8], claims: Claims) {
        self.token.clear();
        self.token.extend_from_slice(token);
        self.claims = claims;
        self.referenced.set(false);
    }
}

/// Passes an already-mixed `u64` key straight through as the `HashMap` hash.
#[derive(Default)]
struct PrehashedKey(u64);

impl Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for `u64` keys; this keeps other uses correct anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

const MIX_A: u64 = 0xa076_1d64_78bd_642f;
const MIX_B: u64 = 0xe703_7ed1_a0b4_28db;

/// 64x64 -> 128-bit multiply, halves folded: the mixing step of wyhash/foldhash.
fn folded_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(buf)
}

/// A fast, seeded, non-cryptographic hash of a token (16 bytes per multiply). Correctness
/// never depends on it: hits compare the whole token.
fn token_hash(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed ^ MIX_A;
    let mut chunks = bytes.chunks_exact(16);
    for chunk in &mut chunks {
        h = folded_multiply(read_u64(&chunk[..8]) ^ MIX_B, read_u64(&chunk[8..]) ^ h);
    }
    let rest = chunks.remainder();
    let (low, high) = rest.split_at(rest.len().min(8));
    h = folded_multiply(read_u64(low) ^ MIX_B, read_u64(high) ^ h);
    folded_multiply(h ^ MIX_A, bytes.len() as u64 ^ MIX_B)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::claims::{IssuerId, KeyType};
    use std::sync::Arc;

    fn claims(expires_at: u64, subject: &str) -> Claims {
        Claims {
            issuer: IssuerId(0),
            key_type: KeyType::Production,
            expires_at,
            subject: Some(Arc::from(subject)),
            scopes: Default::default(),
        }
    }

    #[test]
    fn hit_returns_the_stored_claims() {
        let mut cache = TokenCache::new(4, 5);
        cache.insert(b"token-a", claims(1000, "a"), 10);
        assert_eq!(cache.get(b"token-a", 10), Some(&claims(1000, "a")));
        assert_eq!(cache.get(b"token-b", 10), None);
    }

    #[test]
    fn hit_after_expiry_plus_skew_misses() {
        let mut cache = TokenCache::new(4, 5);
        cache.insert(b"t", claims(100, "a"), 10);
        assert!(cache.get(b"t", 100).is_some(), "within skew");
        assert!(cache.get(b"t", 104).is_some(), "within skew");
        assert_eq!(cache.get(b"t", 105), None, "exp + skew reached");
        assert_eq!(cache.get(b"t", 10_000), None);
    }

    #[test]
    fn expired_claims_are_not_stored() {
        let mut cache = TokenCache::new(4, 0);
        cache.insert(b"t", claims(100, "a"), 100);
        assert!(cache.is_empty());
    }

    #[test]
    fn eviction_keeps_the_bound() {
        let mut cache = TokenCache::new(3, 0);
        for i in 0..50u32 {
            cache.insert(format!("token-{i}").as_bytes(), claims(1000, "x"), 0);
            assert!(cache.len() <= 3);
            assert!(cache.index.len() <= 3);
        }
        assert_eq!(cache.len(), 3);
        // The three most recent survive (nothing was hit, so CLOCK acts as FIFO).
        for i in 47..50u32 {
            assert!(
                cache.get(format!("token-{i}").as_bytes(), 0).is_some(),
                "{i}"
            );
        }
    }

    #[test]
    fn a_recently_hit_token_survives_eviction() {
        let mut cache = TokenCache::new(3, 0);
        for name in ["a", "b", "c"] {
            cache.insert(name.as_bytes(), claims(1000, name), 0);
        }
        assert!(cache.get(b"a", 0).is_some());
        cache.insert(b"d", claims(1000, "d"), 0);
        assert!(cache.get(b"a", 0).is_some(), "second chance");
        assert_eq!(cache.get(b"b", 0), None, "oldest unreferenced evicted");
        assert!(cache.get(b"c", 0).is_some());
        assert!(cache.get(b"d", 0).is_some());
    }

    #[test]
    fn an_expired_token_is_evicted_before_a_live_one() {
        let mut cache = TokenCache::new(2, 0);
        cache.insert(b"short", claims(10, "s"), 0);
        cache.insert(b"long", claims(1000, "l"), 0);
        assert!(cache.get(b"short", 5).is_some());
        assert!(cache.get(b"long", 5).is_some());
        // At t=20 "short" has expired: although referenced, it is the victim.
        cache.insert(b"new", claims(1000, "n"), 20);
        assert!(cache.get(b"long", 20).is_some());
        assert!(cache.get(b"new", 20).is_some());
    }

    #[test]
    fn hash_collision_never_returns_another_tokens_claims() {
        let mut cache = TokenCache::with_hash(4, 0, |_, _| 42);
        cache.insert(b"token-a", claims(1000, "a"), 0);
        assert_eq!(cache.get(b"token-b", 0), None, "same hash, different bytes");
        assert_eq!(cache.get(b"token-a", 0), Some(&claims(1000, "a")));
        // A colliding insert replaces the slot: still one entry per hash, never a mix-up.
        cache.insert(b"token-b", claims(2000, "b"), 0);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(b"token-a", 0), None);
        assert_eq!(cache.get(b"token-b", 0), Some(&claims(2000, "b")));
    }

    #[test]
    fn reinserting_a_token_updates_it_in_place() {
        let mut cache = TokenCache::new(4, 0);
        cache.insert(b"t", claims(100, "old"), 0);
        cache.insert(b"t", claims(200, "new"), 0);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(b"t", 150), Some(&claims(200, "new")));
    }

    #[test]
    fn zero_capacity_disables_the_cache() {
        let mut cache = TokenCache::new(0, 0);
        cache.insert(b"t", claims(100, "a"), 0);
        assert_eq!(cache.get(b"t", 0), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn token_hash_depends_on_every_byte_length_and_seed() {
        let base = vec![b'a'; 100];
        let h = token_hash(1, &base);
        for i in 0..base.len() {
            let mut changed = base.clone();
            changed[i] ^= 1;
            assert_ne!(token_hash(1, &changed), h, "byte {i}");
        }
        assert_ne!(token_hash(1, &base[..99]), h);
        assert_ne!(token_hash(2, &base), h);
        assert_ne!(token_hash(1, b""), token_hash(1, b"\0"));
    }

    #[test]
    fn cache_is_send_for_moving_into_a_shard() {
        fn assert_send<T: Send>() {}
        assert_send::<TokenCache>();
    }
}
