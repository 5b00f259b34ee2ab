//! Starting and stopping the gateway: binds every listener up front (so a busy port fails the
//! start, not a shard), spawns one pinned shard per worker, publishes snapshots on reload and
//! coordinates the drain on shutdown. Used by `shardgate run` and by in-process tests.

use std::io;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::access_log::AccessLogWriter;
use crate::cli::Driver;
use crate::compile::snapshot::{PublishRefused, Snapshot};
use crate::control::dns_refresh::{DnsRefresher, RefreshPlan};
use crate::control::memory::MemoryReleaser;
use crate::data::shard::{self, ShardConfig};
use crate::data::shared::{ListenerKind, Shared};
use crate::upstream::dns;

/// A running gateway.
pub struct Server {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    workers: usize,
    /// Bound addresses of the plain HTTP listeners (ephemeral ports resolved).
    pub http_addrs: Vec<SocketAddr>,
    /// Bound addresses of the HTTPS listeners.
    pub https_addrs: Vec<SocketAddr>,
    /// The io driver each shard got (`io_uring` or `epoll`).
    pub drivers: Vec<&'static str>,
    access_log: Option<AccessLogWriter>,
    dns: Option<DnsRefresher>,
    memory: Option<MemoryReleaser>,
    /// The rate-limit syncer (Redis), a control-plane thread.
    rate_limit_syncer: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds the listeners the snapshot's gateway config names, starts the shards and returns
    /// once every shard is accepting.
    pub fn start(snapshot: Snapshot, driver: Driver) -> io::Result<Server> {
        Server::bind(snapshot)?.start(driver)
    }

    /// Binds every listener and builds the shared state, without starting shards: what the
    /// admin listener needs to answer (`/ready` says "starting" until the shards accept).
    pub fn bind(snapshot: Snapshot) -> io::Result<BoundServer> {
        let workers = snapshot.gateway.worker_count();
        let backlog = snapshot.gateway.listeners.backlog.min(i32::MAX as u32) as i32;
        let mut per_shard: Vec<Vec<(ListenerKind, std::net::TcpListener)>> =
            (0..workers).map(|_| Vec::new()).collect();
        let mut http_addrs = Vec::new();
        let mut https_addrs = Vec::new();
        let listeners = snapshot
            .gateway
            .listeners
            .http
            .iter()
            .map(|a| (ListenerKind::Http, *a))
            .chain(
                snapshot
                    .gateway
                    .listeners
                    .https
                    .iter()
                    .map(|a| (ListenerKind::Https, *a)),
            );
        for (kind, addr) in listeners {
            let sockets = bind_reuseport_group(addr, workers, backlog)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            let bound = sockets[0].local_addr()?;
            match kind {
                ListenerKind::Http => http_addrs.push(bound),
                ListenerKind::Https => https_addrs.push(bound),
            }
            for (shard, socket) in per_shard.iter_mut().zip(sockets) {
                shard.push((kind, socket));
            }
        }

        let access_log = match snapshot.gateway.access_log.enabled {
            true => Some(AccessLogWriter::start(&snapshot.gateway.access_log)?),
            false => None,
        };
        let shared = Arc::new(Shared::new(snapshot, workers));
        Ok(BoundServer {
            shared,
            per_shard,
            http_addrs,
            https_addrs,
            access_log,
            workers,
        })
    }
}

/// Listeners bound and state built; shards not started yet.
pub struct BoundServer {
    shared: Arc<Shared>,
    per_shard: Vec<Vec<(ListenerKind, std::net::TcpListener)>>,
    pub http_addrs: Vec<SocketAddr>,
    pub https_addrs: Vec<SocketAddr>,
    access_log: Option<AccessLogWriter>,
    workers: usize,
}

impl BoundServer {
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Starts one pinned shard per worker; returns once every shard is accepting.
    pub fn start(self, driver: Driver) -> io::Result<Server> {
        let BoundServer {
            shared,
            per_shard,
            http_addrs,
            https_addrs,
            access_log,
            workers,
        } = self;
        // Pin one shard per core only when the process may run on no more cores than it has
        // shards (bare metal with workers = cores, a Kubernetes pod with exclusive cores).
        // With more cores allowed (a shared node), pinning every pod to the first cores of
        // the mask would pile them up on the same CPUs.
        let allowed = core_affinity::get_core_ids().unwrap_or_default();
        let cores = if allowed.len() <= workers {
            allowed
        } else {
            log::info!(
                "not pinning shards: {workers} workers on {} allowed cores",
                allowed.len()
            );
            Vec::new()
        };
        let memory = MemoryReleaser::start()?;
        let (started_tx, started_rx) = mpsc::channel();
        let mut threads = Vec::with_capacity(workers);
        for (index, listeners) in per_shard.into_iter().enumerate() {
            let config = ShardConfig {
                index,
                core: (!cores.is_empty()).then(|| cores[index % cores.len()]),
                driver,
                listeners,
                shared: Arc::clone(&shared),
                access_log: access_log.as_ref().map(AccessLogWriter::shard_buffer),
                memory: memory.handle(),
            };
            let started = started_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("shard-{index}"))
                .spawn(move || shard::run(config, started))?;
            threads.push(thread);
        }
        drop(started_tx);
        let mut drivers = vec![""; workers];
        for _ in 0..workers {
            match started_rx.recv() {
                Ok(Ok((index, driver))) => drivers[index] = driver,
                Ok(Err(e)) => {
                    shared.begin_drain();
                    return Err(e);
                }
                Err(_) => return Err(io::Error::other("a shard exited during start-up")),
            }
        }
        let dns = spawn_dns_refresher(&shared)?;
        let rate_limit_syncer = crate::ratelimit::syncer::spawn(Arc::clone(&shared))?;
        Ok(Server {
            shared,
            threads,
            workers,
            http_addrs,
            https_addrs,
            drivers,
            access_log,
            dns: Some(dns),
            memory: Some(memory),
            rate_limit_syncer: Some(rate_limit_syncer),
        })
    }
}

impl Server {
    pub fn workers(&self) -> usize {
        self.workers
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Makes `snapshot` the one new requests use (see `Shared::publish`).
    pub fn publish(&self, snapshot: Snapshot) -> Result<(), PublishRefused> {
        self.shared.publish(snapshot)
    }

    /// Stops accepting; shards finish in-flight requests (bounded by `timeouts.drain_ms`)
    /// and exit.
    pub fn begin_shutdown(&self) {
        self.shared.begin_drain();
    }

    /// Waits for every shard to exit.
    pub fn wait(mut self) {
        if let Some(dns) = self.dns.take() {
            dns.join();
        }
        if let Some(syncer) = self.rate_limit_syncer.take() {
            // It sleeps at most a round; wake it so that it sees the drain now.
            syncer.thread().unpark();
            let _ = syncer.join();
        }
        for thread in std::mem::take(&mut self.threads) {
            if thread.join().is_err() {
                log::error!("a shard thread panicked");
            }
        }
        // The shards' release handles went with them: the releaser's thread can end.
        self.memory.take();
        // The shards' buffers went with them; now the writer can finish what is queued.
        if let Some(access_log) = self.access_log {
            access_log.finish();
        }
    }

    /// Shuts down and waits.
    pub fn stop(self) {
        self.begin_shutdown();
        self.wait();
    }
}

/// Re-resolves the current configuration's endpoint names off the data path, every
/// `upstream.dns_refresh_ms` (read each round: a reload may change it), until the drain.
fn spawn_dns_refresher(shared: &Arc<Shared>) -> io::Result<DnsRefresher> {
    let upstreams = Arc::clone(&shared.snapshot().0.upstreams);
    let (planning, stopping) = (Arc::clone(shared), Arc::clone(shared));
    DnsRefresher::spawn(
        upstreams,
        move || {
            let (snapshot, _) = planning.snapshot();
            let mut names: Vec<(crate::ids::UpstreamId, Box<str>, u16)> = Vec::new();
            for endpoint in &snapshot.endpoints {
                if dns::is_name(&endpoint.host)
                    && !names.iter().any(|(id, _, _)| *id == endpoint.upstream)
                {
                    names.push((endpoint.upstream, endpoint.host.clone(), endpoint.port));
                }
            }
            RefreshPlan {
                names,
                hosts_file: snapshot.gateway.upstream.hosts_file.clone(),
                interval: Duration::from_millis(snapshot.gateway.upstream.dns_refresh_ms),
            }
        },
        move || stopping.is_draining(),
    )
}

/// One listening socket per shard on `addr`, all with SO_REUSEPORT so the kernel spreads
/// connections over the shards. Port 0 is resolved by the first bind.
///
/// SO_REUSEPORT would also let a second gateway (same user) join the group silently and take
/// a share of the connections, maybe with other certificates or routes. So the address is
/// first bound without it: that fails with "address in use" when anything listens there,
/// SO_REUSEPORT or not, and the start fails with a clear error instead.
fn bind_reuseport_group(
    addr: SocketAddr,
    count: usize,
    backlog: i32,
) -> io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        ensure_not_in_use(addr)?;
    }
    let first = bind_reuseport(addr, backlog)?;
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..count {
        sockets.push(bind_reuseport(bound, backlog)?);
    }
    Ok(sockets)
}

/// Fails when another socket is bound to `addr` (an exclusive bind attempt, released at once).
fn ensure_not_in_use(addr: SocketAddr) -> io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // SO_REUSEADDR: connections of an earlier run in TIME_WAIT do not count as "in use".
    probe.set_reuse_address(true)?;
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            e.kind(),
            "address already in use by another process (is another gateway running?)",
        )),
        Err(e) => Err(e),
    }
}

fn bind_reuseport(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}
