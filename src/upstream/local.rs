//! One shard's copy of what it needs per connect about each upstream: the addresses to dial
//! and whether the admin API drained it. Copied from the process-wide [`Upstreams`] table in
//! the shard's control loop when its generation counters move, so that a request reads
//! plain shard-local memory (no lock, no shared cache line) for both.

use std::net::SocketAddr;
use std::rc::Rc;

use crate::ids::UpstreamId;
use crate::upstream::registry::Upstreams;

/// A shard's per-upstream addresses and drain flags, by `UpstreamId`.
#[derive(Default)]
pub struct LocalUpstreams {
    /// Shard-local copies (`Rc`): taking one per connect touches no shared cache line.
    addrs: Vec<Rc<[SocketAddr]>>,
    drained: Vec<bool>,
    dns_seen: Option<u64>,
    admin_seen: Option<u64>,
}

/// What changed in a refresh, for the shard to apply to its pool.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// Upstreams whose addresses changed.
    pub readdressed: Vec<UpstreamId>,
    /// Upstreams the admin API drained since the last refresh.
    pub drained: Vec<UpstreamId>,
}

impl LocalUpstreams {
    /// Brings the copy up to date with `upstreams` (cheap when nothing moved: two loads).
    pub fn refresh(&mut self, upstreams: &Upstreams) -> Refreshed {
        let mut refreshed = Refreshed::default();
        let len = upstreams.len();
        let dns = upstreams.dns_generation();
        if self.dns_seen != Some(dns) || self.addrs.len() < len {
            self.dns_seen = Some(dns);
            for index in 0..len {
                let id = UpstreamId(index as u32);
                let current = upstreams.addresses(id);
                match self.addrs.get_mut(index) {
                    Some(old) if **old != *current => {
                        *old = Rc::from(&*current);
                        refreshed.readdressed.push(id);
                    }
                    Some(_) => {}
                    None => self.addrs.push(Rc::from(&*current)),
                }
            }
        }
        let admin = upstreams.admin_generation();
        if self.admin_seen != Some(admin) || self.drained.len() < len {
            self.admin_seen = Some(admin);
            self.drained.resize(len, false);
            for (index, flag) in self.drained.iter_mut().enumerate() {
                let now = upstreams.is_drained(UpstreamId(index as u32));
                if now && !*flag {
                    refreshed.drained.push(UpstreamId(index as u32));
                }
                *flag = now;
            }
        }
        refreshed
    }

    /// The addresses to dial for `id` (empty when it never resolved).
    pub fn addresses(&self, id: UpstreamId) -> Rc<[SocketAddr]> {
        self.addrs
            .get(id.index())
            .cloned()
            .unwrap_or_else(|| Rc::from(Vec::new()))
    }

    /// Whether `id` is still among the addresses of its upstream.
    pub fn has_address(&self, id: UpstreamId, addr: SocketAddr) -> bool {
        self.addrs
            .get(id.index())
            .is_some_and(|addrs| addrs.contains(&addr))
    }

    /// Whether the admin API took `id` out of service.
    #[inline]
    pub fn is_drained(&self, id: UpstreamId) -> bool {
        self.drained.get(id.index()).copied().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::config::url::Scheme;
    use crate::upstream::registry::UpstreamKey;

    #[test]
    fn a_refresh_reports_new_addresses_and_new_drains_once() {
        let upstreams = Upstreams::new();
        let id = upstreams.intern(UpstreamKey {
            scheme: Scheme::Http,
            host: "svc".into(),
            port: 80,
            tls: "".into(),
        });
        let a: SocketAddr = "127.0.0.2:80".parse().unwrap();
        let b: SocketAddr = "127.0.0.3:80".parse().unwrap();
        upstreams.record_lookup(id, Ok(vec![a]));
        let mut local = LocalUpstreams::default();
        assert_eq!(local.refresh(&upstreams), Refreshed::default());
        assert_eq!(&*local.addresses(id), &[a]);
        upstreams.record_lookup(id, Ok(vec![b]));
        upstreams.set_drained(id, true);
        let refreshed = local.refresh(&upstreams);
        assert_eq!(refreshed.readdressed, vec![id]);
        assert_eq!(refreshed.drained, vec![id]);
        assert!(local.is_drained(id) && local.has_address(id, b) && !local.has_address(id, a));
        assert_eq!(local.refresh(&upstreams), Refreshed::default());
        upstreams.set_drained(id, false);
        local.refresh(&upstreams);
        assert!(!local.is_drained(id));
    }
}
