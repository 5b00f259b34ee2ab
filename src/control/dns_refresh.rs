//! The DNS refresher: a control-plane thread that re-resolves the current configuration's
//! endpoint names every `upstream.dns_refresh_ms` (`upstream::dns` does the lookups and
//! records them in the process-wide upstream table, which shards copy from).

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ids::UpstreamId;
use crate::upstream::dns::{refresh_one, HostsFile};
use crate::upstream::registry::Upstreams;

/// What the refresher needs to know each round.
pub struct RefreshPlan {
    /// The upstreams of the current configuration that have a name, with host and port.
    pub names: Vec<(UpstreamId, Box<str>, u16)>,
    pub hosts_file: Option<PathBuf>,
    pub interval: Duration,
}

/// A thread that re-resolves the current configuration's names every interval until
/// `stop()` says so. `plan()` is asked each round (a reload may change names or settings).
pub struct DnsRefresher {
    thread: Option<JoinHandle<()>>,
}

impl DnsRefresher {
    pub fn spawn(
        upstreams: Arc<Upstreams>,
        plan: impl Fn() -> RefreshPlan + Send + 'static,
        stop: impl Fn() -> bool + Send + 'static,
    ) -> std::io::Result<DnsRefresher> {
        let thread = std::thread::Builder::new()
            .name("dns".into())
            .spawn(move || {
                let mut last = Instant::now();
                while !stop() {
                    std::thread::sleep(Duration::from_millis(50));
                    let round = plan();
                    if round.interval.is_zero() || last.elapsed() < round.interval {
                        continue;
                    }
                    last = Instant::now();
                    let hosts = match round.hosts_file.as_deref().map(HostsFile::read) {
                        Some(Ok(hosts)) => Some(hosts),
                        Some(Err(e)) => {
                            log::warn!("dns: {e}; names are resolved by the system meanwhile");
                            None
                        }
                        None => None,
                    };
                    for (id, host, port) in &round.names {
                        if stop() {
                            return;
                        }
                        refresh_one(&upstreams, *id, host, *port, hosts.as_ref());
                    }
                }
            })?;
        Ok(DnsRefresher {
            thread: Some(thread),
        })
    }

    /// Waits for the thread (after `stop()` turned true).
    pub fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
