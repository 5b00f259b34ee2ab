//! Giving memory back to the system after a storm of client connections.
//!
//! Connections free everything they hold when they close (tests/connection_storm.rs checks the
//! heap), but glibc keeps freed chunks in its arenas: after 10,000 connections close, RSS
//! stays near its peak, fragmented, not leaked (docs/robustness.md). One `malloc_trim(0)` once
//! such a storm has subsided returns those pages. It walks every arena (6 to 10 ms after
//! 10,000 connections, measured; the log line says how long), so it runs on a control-plane
//! thread of its own (`control::memory::MemoryReleaser`), never on a shard: a shard's control loop only asks
//! for it (a non-blocking send) once a storm has subsided.

/// Open client connections a shard must have reached for their fall to count as a storm. Low
/// enough that a few hundred connections' worth of buffers is given back; trimming a small
/// heap takes well under a millisecond, and at most once a second.
const STORM_CONNECTIONS: usize = 256;

/// Watches one shard's open client connections; says when a storm has subsided.
#[derive(Debug, Default)]
pub struct StormWatch {
    peak: usize,
}

impl StormWatch {
    /// Records the most connections open at once since the last call and the current count;
    /// returns the storm's peak once the count has fallen to a quarter of a storm-sized peak
    /// (the peak then starts over from here).
    pub fn subsided(&mut self, peak_since_last: usize, open: usize) -> Option<usize> {
        self.peak = self.peak.max(peak_since_last).max(open);
        if self.peak >= STORM_CONNECTIONS && open <= self.peak / 4 {
            return Some(std::mem::replace(&mut self.peak, open));
        }
        None
    }
}

/// A shard's way to ask for a release.
#[derive(Clone)]
pub struct ReleaseHandle(crossbeam::channel::Sender<String>);

impl ReleaseHandle {
    /// A handle whose requests go to `requests` (the control plane's releaser).
    pub(crate) fn new(requests: crossbeam::channel::Sender<String>) -> ReleaseHandle {
        ReleaseHandle(requests)
    }

    /// Asks for a release; a request already pending covers this one.
    pub fn request(&self, reason: String) {
        let _ = self.0.try_send(reason);
    }
}

/// Returns the allocator's free pages to the system, where the allocator can.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only releases memory no one holds.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_count_never_trims() {
        let mut watch = StormWatch::default();
        for _ in 0..100 {
            assert!(watch.subsided(200, 200).is_none());
        }
        assert!(
            watch.subsided(0, 0).is_none(),
            "200 connections are not a storm"
        );
    }

    #[test]
    fn a_storm_trims_each_time_the_count_falls_to_a_quarter() {
        let mut watch = StormWatch::default();
        assert!(watch.subsided(10_000, 10_000).is_none());
        assert!(watch.subsided(6_000, 6_000).is_none());
        assert!(watch.subsided(2_501, 2_501).is_none());
        assert_eq!(watch.subsided(2_500, 2_500), Some(10_000));
        // 2,500 still open is itself a storm's worth: its fall trims once more.
        assert!(watch.subsided(700, 700).is_none());
        assert!(watch.subsided(600, 600).is_some());
        assert!(watch.subsided(150, 150).is_some());
        assert!(watch.subsided(0, 0).is_none(), "150 is not a storm");
        // A storm that came and went between two looks is still seen.
        assert_eq!(watch.subsided(5_000, 3), Some(5_000));
        // The next storm is watched afresh.
        assert!(watch.subsided(2_000, 2_000).is_none());
        assert!(watch.subsided(10, 10).is_some());
    }
}
