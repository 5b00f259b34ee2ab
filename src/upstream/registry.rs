//! The process-wide table of upstreams: every distinct (scheme, host, port, TLS settings) a
//! configuration has named is interned once into an [`UpstreamId`] that keeps its meaning
//! until the process exits, whatever later reloads add, remove or reorder. Health words,
//! resolved addresses and the admin drain flag hang off that id, so a reload has no state to
//! carry over and no id can come to mean another endpoint.
//!
//! Interning takes a mutex: it runs on the control thread while a snapshot is compiled,
//! never on the data path. What shards read per request (the health word) is lock-free;
//! what they read per connect (addresses) and the drain flags they copy into shard-local
//! tables in their control loop, when a generation counter says something changed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::compile::config::url::Scheme;
use crate::ids::UpstreamId;
use crate::upstream::health::HealthTable;
use crate::upstream::segmented::Segmented;

/// What makes two endpoint URLs the same upstream.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamKey {
    pub scheme: Scheme,
    /// Lower-cased host name or address literal.
    pub host: Box<str>,
    pub port: u16,
    /// The TLS client settings connections to it are made with (empty for plain HTTP): a
    /// connection opened under other settings is another upstream's.
    pub tls: Box<str>,
}

/// Per-upstream state outside the health word.
#[derive(Default)]
struct UpstreamState {
    /// Taken out of service by the admin API on every shard.
    drained: AtomicBool,
    /// The addresses connects use; replaced by the DNS refresh.
    addrs: Mutex<Option<Arc<[SocketAddr]>>>,
    /// Whether the last lookup failed (so a failure is logged once, and its recovery).
    lookup_failing: AtomicBool,
}

struct Interned {
    ids: HashMap<UpstreamKey, UpstreamId>,
    keys: Vec<UpstreamKey>,
}

/// Every upstream of the process (see the module doc). Shared as `Arc<Upstreams>` by every
/// snapshot of the process.
pub struct Upstreams {
    interned: Mutex<Interned>,
    pub health: Arc<HealthTable>,
    state: Segmented<UpstreamState>,
    /// Bumped whenever an upstream's addresses change.
    dns_generation: AtomicU64,
    /// Bumped whenever an upstream is drained or enabled.
    admin_generation: AtomicU64,
    /// Lookups that failed (the last good addresses were kept).
    dns_failures: AtomicU64,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("interned", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Upstreams {
    pub fn new() -> Self {
        Self {
            interned: Mutex::new(Interned {
                ids: HashMap::new(),
                keys: Vec::new(),
            }),
            health: Arc::new(HealthTable::new(0)),
            state: Segmented::default(),
            dns_generation: AtomicU64::new(0),
            admin_generation: AtomicU64::new(0),
            dns_failures: AtomicU64::new(0),
        }
    }

    /// The id of `key`, interning it (healthy, unresolved, in service) when it is new.
    pub fn intern(&self, key: UpstreamKey) -> UpstreamId {
        let mut interned = lock(&self.interned);
        if let Some(&id) = interned.ids.get(&key) {
            return id;
        }
        let id = UpstreamId(u32::try_from(interned.keys.len()).expect("fewer than 2^32 upstreams"));
        // The words exist before the id is handed out, hence before any snapshot names it.
        self.health.grow_to(id.index() + 1);
        self.state.grow_to(id.index() + 1);
        interned.keys.push(key.clone());
        interned.ids.insert(key, id);
        id
    }

    /// How many upstreams have been interned; every id is below it.
    pub fn len(&self) -> usize {
        lock(&self.interned).keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key an id was interned with.
    pub fn key(&self, id: UpstreamId) -> Option<UpstreamKey> {
        lock(&self.interned).keys.get(id.index()).cloned()
    }

    /// The addresses connects to `id` use; empty when it never resolved.
    pub fn addresses(&self, id: UpstreamId) -> Arc<[SocketAddr]> {
        self.state
            .get(id.index())
            .and_then(|s| lock(&s.addrs).clone())
            .unwrap_or_else(|| Arc::from(Vec::new()))
    }

    /// Whether a lookup of `id` has ever succeeded.
    pub fn is_resolved(&self, id: UpstreamId) -> bool {
        self.state
            .get(id.index())
            .is_some_and(|s| lock(&s.addrs).is_some())
    }

    /// Records the result of a lookup. A success replaces the addresses (bumping the DNS
    /// generation when they changed); a failure keeps the last good ones. Returns what to
    /// log, if anything: a change of addresses, the first failure of a run, a recovery.
    pub fn record_lookup(
        &self,
        id: UpstreamId,
        result: Result<Vec<SocketAddr>, String>,
    ) -> Option<LookupEvent> {
        let state = self.state.get(id.index())?;
        match result {
            Ok(mut addrs) => {
                addrs.dedup();
                let recovered = state.lookup_failing.swap(false, Ordering::AcqRel);
                let mut current = lock(&state.addrs);
                let changed = current.as_deref() != Some(&addrs[..]);
                if changed {
                    let previous = current.replace(Arc::from(addrs.clone()));
                    drop(current);
                    self.dns_generation.fetch_add(1, Ordering::AcqRel);
                    if previous.is_some() {
                        return Some(LookupEvent::Changed(addrs));
                    }
                }
                recovered.then_some(LookupEvent::Recovered)
            }
            Err(error) => {
                self.dns_failures.fetch_add(1, Ordering::Relaxed);
                let first = !state.lookup_failing.swap(true, Ordering::AcqRel);
                first.then_some(LookupEvent::Failed(error))
            }
        }
    }

    /// Changes whenever any upstream's addresses change.
    pub fn dns_generation(&self) -> u64 {
        self.dns_generation.load(Ordering::Acquire)
    }

    /// Lookups that failed since start.
    pub fn dns_failures(&self) -> u64 {
        self.dns_failures.load(Ordering::Relaxed)
    }

    /// Takes `id` out of service (`true`) or returns it (`false`); whether it changed.
    pub fn set_drained(&self, id: UpstreamId, drained: bool) -> bool {
        let Some(state) = self.state.get(id.index()) else {
            return false;
        };
        let changed = state.drained.swap(drained, Ordering::AcqRel) != drained;
        if changed {
            self.admin_generation.fetch_add(1, Ordering::AcqRel);
        }
        changed
    }

    pub fn is_drained(&self, id: UpstreamId) -> bool {
        self.state
            .get(id.index())
            .is_some_and(|s| s.drained.load(Ordering::Acquire))
    }

    /// Changes whenever an upstream is drained or enabled.
    pub fn admin_generation(&self) -> u64 {
        self.admin_generation.load(Ordering::Acquire)
    }
}

/// What a lookup result changed, for the log.
#[derive(Debug, PartialEq, Eq)]
pub enum LookupEvent {
    /// New addresses replaced resolved ones.
    Changed(Vec<SocketAddr>),
    /// The first failure after a success (the last good addresses are kept).
    Failed(String),
    /// A success after failures.
    Recovered,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(host: &str, port: u16) -> UpstreamKey {
        UpstreamKey {
            scheme: Scheme::Http,
            host: host.into(),
            port,
            tls: "".into(),
        }
    }

    #[test]
    fn an_upstream_keeps_its_id_whatever_is_interned_around_it() {
        let upstreams = Upstreams::new();
        let m = upstreams.intern(key("m.example", 80));
        let a = upstreams.intern(key("a.example", 80));
        assert_ne!(m, a);
        assert_eq!(upstreams.intern(key("m.example", 80)), m);
        assert_eq!(upstreams.intern(key("a.example", 80)), a);
        assert_eq!(upstreams.key(m).unwrap().host.as_ref(), "m.example");
        let tls = UpstreamKey {
            scheme: Scheme::Https,
            tls: "ca=a.pem".into(),
            ..key("m.example", 80)
        };
        let other_tls = UpstreamKey {
            tls: "ca=b.pem".into(),
            ..tls.clone()
        };
        assert_ne!(upstreams.intern(tls.clone()), upstreams.intern(other_tls));
        assert_eq!(upstreams.intern(tls.clone()), upstreams.intern(tls));
    }

    #[test]
    fn ids_beyond_a_segment_have_health_words() {
        let upstreams = Upstreams::new();
        let last = (0..300)
            .map(|port| upstreams.intern(key("h", port)))
            .last()
            .unwrap();
        assert!(upstreams.health.load(last).is_healthy());
        assert!(upstreams.health.capacity() >= 300);
    }

    #[test]
    fn a_failed_lookup_keeps_the_last_good_addresses_and_is_reported_once() {
        let upstreams = Upstreams::new();
        let id = upstreams.intern(key("svc", 80));
        assert!(!upstreams.is_resolved(id));
        let a: SocketAddr = "127.0.0.2:80".parse().unwrap();
        let b: SocketAddr = "127.0.0.3:80".parse().unwrap();
        let g0 = upstreams.dns_generation();
        assert_eq!(upstreams.record_lookup(id, Ok(vec![a])), None);
        assert!(upstreams.dns_generation() > g0);
        assert_eq!(
            upstreams.record_lookup(id, Err("no such host".into())),
            Some(LookupEvent::Failed("no such host".into()))
        );
        assert_eq!(upstreams.record_lookup(id, Err("again".into())), None);
        assert_eq!(&*upstreams.addresses(id), &[a]);
        assert_eq!(upstreams.dns_failures(), 2);
        assert_eq!(
            upstreams.record_lookup(id, Ok(vec![a])),
            Some(LookupEvent::Recovered)
        );
        let g1 = upstreams.dns_generation();
        assert_eq!(
            upstreams.record_lookup(id, Ok(vec![b])),
            Some(LookupEvent::Changed(vec![b]))
        );
        assert!(upstreams.dns_generation() > g1);
        assert_eq!(&*upstreams.addresses(id), &[b]);
    }

    #[test]
    fn drain_and_enable_bump_the_admin_generation_only_on_change() {
        let upstreams = Upstreams::new();
        let id = upstreams.intern(key("svc", 80));
        let g = upstreams.admin_generation();
        assert!(upstreams.set_drained(id, true));
        assert!(!upstreams.set_drained(id, true));
        assert!(upstreams.is_drained(id));
        assert_eq!(upstreams.admin_generation(), g + 1);
        assert!(upstreams.set_drained(id, false));
        assert!(!upstreams.is_drained(id));
    }
}
