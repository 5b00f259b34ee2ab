//! Idle keep-alive upstream connections of one shard: a LIFO stack per upstream (the most
//! recently used connection is the warmest and the least likely to have been closed by the
//! server), bounded, with idle expiry and a liveness check before reuse. Shard-local: no
//! locks, no atomics.
//!
//! The liveness check is the connection's own ([`Pooled::quiet`]: one non-blocking peek, or
//! the idle watch of `idle_watch.rs` with `upstream.reuse_check: watch`).
//!
//! Stacks are keyed by [`UpstreamId`], which means the same server for the life of the
//! process, and every connection carries the id it was opened for: `put` files it under its
//! own id, never under one the caller names, and `take` hands out only a connection whose id
//! is the one asked for. So no renumbering, reload or caller mistake can put one endpoint's
//! request (its `Host`, its credentials, its body) on another endpoint's connection.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use crate::ids::UpstreamId;
use crate::upstream::idle_watch::Quiet;

/// A connection the pool can hold: it knows which upstream it is connected to, and can say
/// whether anything arrived on it while it was idle.
pub trait Pooled: AsRawFd {
    fn upstream(&self) -> UpstreamId;

    /// It goes (back) into the pool.
    fn went_idle(&mut self);

    /// Whether nothing arrived since [`went_idle`](Self::went_idle), as far as the
    /// connection knows without a syscall.
    fn quiet(&self) -> Quiet;
}

/// A pooled connection and when it went idle.
struct Idle<C> {
    conn: C,
    since: Instant,
}

/// Per-upstream stacks of idle connections.
pub struct ConnectionPool<C> {
    stacks: Vec<VecDeque<Idle<C>>>,
    /// By `UpstreamId`: whether the current configuration still uses it. A connection
    /// returned for an upstream that left (by a request that ran on the old configuration)
    /// is closed, not kept.
    live: Vec<bool>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl<C: Pooled> ConnectionPool<C> {
    /// A pool in which no upstream is live yet (see [`set_live`](Self::set_live)).
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            stacks: Vec::new(),
            live: Vec::new(),
            max_idle,
            idle_timeout,
        }
    }

    /// The upstreams of the current configuration: connections to any other are closed now
    /// and refused from now on.
    pub fn set_live(&mut self, live: impl IntoIterator<Item = UpstreamId>) {
        self.live.iter_mut().for_each(|l| *l = false);
        for id in live {
            if self.live.len() <= id.index() {
                self.live.resize(id.index() + 1, false);
            }
            self.live[id.index()] = true;
        }
        for (index, stack) in self.stacks.iter_mut().enumerate() {
            if !self.live.get(index).copied().unwrap_or(false) {
                stack.clear();
            }
        }
    }

    /// The warmest live connection to `upstream` that is vouched for or unwatched, else the
    /// warmest one not yet confirmed either way. The caller must see an unwatched one peeked
    /// and an unconfirmed one settled
    /// ([`IdleWatch::settled`](crate::upstream::idle_watch::IdleWatch::settled)) before
    /// sending on it. Expired and stirred connections met on the way are dropped.
    ///
    /// Every reuse is checked, however briefly the connection sat idle: bytes that arrived
    /// on an idle connection (a server's unsolicited 408, or a second response to a request
    /// it split in two) would otherwise be read as the next request's response, one client's
    /// answer served to another. A connection that went idle in this very event-loop turn
    /// cannot be vouched for yet; the one below it usually can, and is just as warm.
    pub fn take(&mut self, upstream: UpstreamId, now: Instant) -> Option<C> {
        let stack = self.stacks.get_mut(upstream.index())?;
        let mut unconfirmed = None;
        let mut index = stack.len();
        while index > 0 {
            index -= 1;
            let idle = &stack[index];
            if idle.conn.upstream() != upstream {
                // `put` files by the connection's own id, so this cannot happen; if it ever
                // did, the connection is closed rather than lent to another endpoint.
                debug_assert!(false, "a pooled connection under another upstream's id");
                stack.remove(index);
                unconfirmed = unconfirmed.map(|at: usize| at - 1);
                continue;
            }
            if now.saturating_duration_since(idle.since) >= self.idle_timeout {
                // Everything below went idle earlier still.
                stack.drain(..=index);
                // Only indices above `index` were recorded; they moved down with the drain.
                unconfirmed = unconfirmed.map(|at: usize| at - (index + 1));
                break;
            }
            match idle.conn.quiet() {
                // Unwatched: nothing better will be known of the ones below either.
                Quiet::Vouched | Quiet::Unwatched => {
                    return stack.remove(index).map(|idle| idle.conn)
                }
                Quiet::Stirred => {
                    stack.remove(index);
                    unconfirmed = unconfirmed.map(|at: usize| at - 1);
                }
                Quiet::Unconfirmed => {
                    unconfirmed.get_or_insert(index);
                }
            }
        }
        stack.remove(unconfirmed?).map(|idle| idle.conn)
    }

    /// Returns a connection that finished a response cleanly, under the upstream it is
    /// connected to. When the stack is full the coldest connection is closed to make room;
    /// a connection to an upstream the configuration no longer uses is closed.
    pub fn put(&mut self, conn: C, now: Instant) {
        let upstream = conn.upstream().index();
        if self.max_idle == 0 || !self.live.get(upstream).copied().unwrap_or(false) {
            return;
        }
        if self.stacks.len() <= upstream {
            self.stacks.resize_with(upstream + 1, VecDeque::new);
        }
        let stack = &mut self.stacks[upstream];
        if stack.len() >= self.max_idle {
            stack.pop_front();
        }
        let mut conn = conn;
        conn.went_idle();
        stack.push_back(Idle { conn, since: now });
    }

    /// Closes connections idle for longer than the timeout (the oldest are at the front)
    /// and those on which something arrived: a server that closed its end is answered with
    /// our close now, not when the connection would have been taken.
    pub fn evict_expired(&mut self, now: Instant) -> usize {
        let mut evicted = 0;
        for stack in &mut self.stacks {
            let before = stack.len();
            while stack
                .front()
                .is_some_and(|idle| now.saturating_duration_since(idle.since) >= self.idle_timeout)
            {
                stack.pop_front();
            }
            stack.retain(|idle| idle.conn.quiet() != Quiet::Stirred);
            evicted += before - stack.len();
        }
        evicted
    }

    /// Closes every idle connection to `upstream` (it went down, or was drained).
    pub fn drain(&mut self, upstream: UpstreamId) {
        if let Some(stack) = self.stacks.get_mut(upstream.index()) {
            stack.clear();
        }
    }

    /// Closes the idle connections to `upstream` that `keep` refuses (e.g. to an address
    /// DNS no longer returns).
    pub fn retain(&mut self, upstream: UpstreamId, keep: impl Fn(&C) -> bool) {
        if let Some(stack) = self.stacks.get_mut(upstream.index()) {
            stack.retain(|idle| keep(&idle.conn));
        }
    }

    pub fn idle(&self, upstream: UpstreamId) -> usize {
        self.stacks.get(upstream.index()).map_or(0, VecDeque::len)
    }
}

/// Whether an idle connection can carry a new request: nothing to read (`EAGAIN`). A zero
/// read means the server closed it; unexpected bytes mean it is out of sync. One
/// non-blocking syscall, far cheaper than a failed request: for connections without a
/// watch, or whose watch could not settle in time.
pub(crate) fn nothing_to_read(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: `fd` is an open socket owned by the pooled connection for the duration of the
    // call; the buffer is one valid byte; MSG_PEEK leaves the socket's data untouched and
    // MSG_DONTWAIT keeps the call from blocking the shard.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    /// A test connection: a socket and the upstream it claims to be connected to.
    struct Conn {
        stream: TcpStream,
        upstream: UpstreamId,
        /// What its watch says; `None`: a peek says it.
        watch: Option<Quiet>,
        /// How often the pool asked.
        asked: std::cell::Cell<usize>,
    }

    impl AsRawFd for Conn {
        fn as_raw_fd(&self) -> RawFd {
            self.stream.as_raw_fd()
        }
    }

    /// Its quiet is a peek, as for a connection without a watch.
    impl Pooled for Conn {
        fn upstream(&self) -> UpstreamId {
            self.upstream
        }

        fn went_idle(&mut self) {}

        fn quiet(&self) -> Quiet {
            self.asked.set(self.asked.get() + 1);
            if let Some(watch) = self.watch {
                return watch;
            }
            if nothing_to_read(self.as_raw_fd()) {
                Quiet::Vouched
            } else {
                Quiet::Stirred
            }
        }
    }

    impl Conn {
        fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
            self.stream.local_addr()
        }
    }

    const E0: UpstreamId = UpstreamId(0);
    const E1: UpstreamId = UpstreamId(1);

    /// A connected pair for upstream 0: (client side, server side).
    fn pair() -> (Conn, TcpStream) {
        pair_for(E0)
    }

    fn pair_for(upstream: UpstreamId) -> (Conn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (
            Conn {
                stream: client,
                upstream,
                watch: None,
                asked: Default::default(),
            },
            server,
        )
    }

    fn pool(max_idle: usize) -> ConnectionPool<Conn> {
        let mut pool = ConnectionPool::new(max_idle, Duration::from_secs(60));
        pool.set_live([E0, E1]);
        pool
    }

    #[test]
    fn returns_the_most_recently_pooled_connection_first() {
        let mut p = pool(8);
        let now = Instant::now();
        let (a, _sa) = pair();
        let (b, _sb) = pair();
        let (a_port, b_port) = (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        );
        p.put(a, now);
        p.put(b, now);
        assert_eq!(
            p.take(E0, now).unwrap().local_addr().unwrap().port(),
            b_port
        );
        assert_eq!(
            p.take(E0, now).unwrap().local_addr().unwrap().port(),
            a_port
        );
        assert!(p.take(E0, now).is_none());
        assert!(p.take(E1, now).is_none());
    }

    #[test]
    fn skips_connections_the_server_closed() {
        let mut p = pool(8);
        let now = Instant::now();
        let (live, _keep) = pair();
        let (closed, server) = pair();
        let live_port = live.local_addr().unwrap().port();
        p.put(live, now);
        p.put(closed, now);
        drop(server);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            p.take(E0, now).unwrap().local_addr().unwrap().port(),
            live_port
        );
    }

    #[test]
    fn skips_connections_with_unexpected_bytes() {
        let mut p = pool(8);
        let now = Instant::now();
        let (conn, mut server) = pair();
        server.write_all(b"HTTP/1.1 200 OK\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        p.put(conn, now);
        assert!(p.take(E0, now).is_none());
    }

    #[test]
    fn expired_connections_are_not_reused_and_are_evicted() {
        let mut p = ConnectionPool::new(8, Duration::from_millis(100));
        p.set_live([E0]);
        let then = Instant::now();
        let (a, _sa) = pair();
        p.put(a, then);
        assert!(p.take(E0, then + Duration::from_millis(100)).is_none());
        let (b, _sb) = pair();
        p.put(b, then);
        assert_eq!(p.evict_expired(then + Duration::from_millis(50)), 0);
        assert_eq!(p.evict_expired(then + Duration::from_millis(150)), 1);
        assert_eq!(p.idle(E0), 0);
    }

    #[test]
    fn a_connection_with_unsolicited_bytes_is_never_reused_however_recent() {
        use std::io::Write;
        let mut p = pool(8);
        let now = Instant::now();
        let (client, mut server) = pair();
        p.put(client, now);
        server
            .write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(p.take(E0, now).is_none());
        let (closed, server) = pair();
        p.put(closed, now);
        drop(server);
        std::thread::sleep(Duration::from_millis(20));
        assert!(p.take(E0, now).is_none(), "closed by the server");
    }

    #[test]
    fn a_full_stack_closes_its_coldest_connection() {
        let mut p = pool(2);
        let now = Instant::now();
        let conns: Vec<_> = (0..3).map(|_| pair()).collect();
        let ports: Vec<u16> = conns
            .iter()
            .map(|(c, _)| c.local_addr().unwrap().port())
            .collect();
        let mut servers = Vec::new();
        for (client, server) in conns {
            p.put(client, now);
            servers.push(server);
        }
        assert_eq!(p.idle(E0), 2);
        assert_eq!(
            p.take(E0, now).unwrap().local_addr().unwrap().port(),
            ports[2]
        );
        assert_eq!(
            p.take(E0, now).unwrap().local_addr().unwrap().port(),
            ports[1]
        );
    }

    #[test]
    fn a_connection_is_filed_under_its_own_upstream_and_only_handed_out_for_it() {
        let mut p = pool(8);
        let now = Instant::now();
        let (to_b, _sb) = pair_for(E1);
        let port = to_b.local_addr().unwrap().port();
        p.put(to_b, now);
        assert!(p.take(E0, now).is_none(), "another upstream's connection");
        assert_eq!(p.take(E1, now).unwrap().local_addr().unwrap().port(), port);
    }

    #[test]
    fn connections_to_upstreams_that_left_are_closed_and_refused() {
        let mut p = pool(8);
        let now = Instant::now();
        let (a, _sa) = pair_for(E0);
        let (b, _sb) = pair_for(E1);
        p.put(a, now);
        p.put(b, now);
        p.set_live([E1]);
        assert_eq!((p.idle(E0), p.idle(E1)), (0, 1));
        // A request still running on the old configuration returns its connection.
        let (late, _sl) = pair_for(E0);
        p.put(late, now);
        assert_eq!(p.idle(E0), 0);
        // An upstream never made live takes nothing either.
        let (other, _so) = pair_for(UpstreamId(9));
        p.put(other, now);
        assert_eq!(p.idle(UpstreamId(9)), 0);
    }

    #[test]
    fn retain_closes_only_the_refused_connections() {
        let mut p = pool(8);
        let now = Instant::now();
        let (a, _sa) = pair();
        let (b, _sb) = pair();
        let keep = b.local_addr().unwrap().port();
        p.put(a, now);
        p.put(b, now);
        p.retain(E0, |c| c.local_addr().unwrap().port() == keep);
        assert_eq!(p.idle(E0), 1);
        assert_eq!(p.take(E0, now).unwrap().local_addr().unwrap().port(), keep);
    }

    #[test]
    fn a_vouched_or_unwatched_connection_is_handed_out_without_looking_further() {
        for top in [Quiet::Vouched, Quiet::Unwatched] {
            let mut p = pool(8);
            let now = Instant::now();
            let mut servers = Vec::new();
            for _ in 0..4 {
                let (mut conn, server) = pair();
                conn.watch = Some(top);
                servers.push(server);
                p.put(conn, now);
            }
            let taken = p.take(E0, now).unwrap();
            assert_eq!(taken.asked.get(), 1, "{top:?}");
            assert_eq!(p.idle(E0), 3);
        }
    }

    #[test]
    fn the_warmest_vouched_connection_is_preferred_to_unconfirmed_ones_above_it() {
        let mut p = pool(8);
        let now = Instant::now();
        let mut ports = Vec::new();
        let mut servers = Vec::new();
        for quiet in [
            Quiet::Vouched,
            Quiet::Vouched,
            Quiet::Stirred,
            Quiet::Unconfirmed,
        ] {
            let (mut conn, server) = pair();
            conn.watch = Some(quiet);
            ports.push(conn.local_addr().unwrap().port());
            servers.push(server);
            p.put(conn, now);
        }
        // The unconfirmed top is passed over, the stirred one closed, the warmer vouched
        // one taken.
        let taken = p.take(E0, now).unwrap();
        assert_eq!(taken.local_addr().unwrap().port(), ports[1]);
        assert_eq!(p.idle(E0), 2);
        // Then the other vouched one, then the unconfirmed one, for the caller to settle.
        assert_eq!(
            p.take(E0, now).unwrap().local_addr().unwrap().port(),
            ports[0]
        );
        assert_eq!(
            p.take(E0, now).unwrap().local_addr().unwrap().port(),
            ports[3]
        );
        assert!(p.take(E0, now).is_none());
    }
}
