//! Idle keep-alive upstream connections of one shard: a LIFO stack per endpoint (the most
//! recently used connection is the warmest and the least likely to have been closed by the
//! server), bounded, with idle expiry and a liveness check before reuse. Shard-local: no
//! locks, no atomics.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use crate::ids::EndpointId;

/// A pooled connection and when it went idle.
struct Idle<C> {
    conn: C,
    since: Instant,
}

/// Per-endpoint stacks of idle connections.
pub struct ConnectionPool<C> {
    stacks: Vec<VecDeque<Idle<C>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl<C: AsRawFd> ConnectionPool<C> {
    pub fn new(endpoints: usize, max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            stacks: (0..endpoints).map(|_| VecDeque::new()).collect(),
            max_idle,
            idle_timeout,
        }
    }

    /// The warmest live connection to `endpoint`, if any. Expired and dead connections met on
    /// the way are dropped.
    ///
    /// Every reuse is checked, however briefly the connection sat idle: bytes that arrived
    /// on an idle connection (a server's unsolicited 408, or a second response to a request
    /// it split in two) would otherwise be read as the next request's response, one client's
    /// answer served to another. nginx and haproxy watch idle upstream connections with
    /// epoll; here it is one non-blocking peek per reuse.
    pub fn take(&mut self, endpoint: EndpointId, now: Instant) -> Option<C> {
        let stack = self.stacks.get_mut(endpoint.index())?;
        while let Some(idle) = stack.pop_back() {
            let idle_for = now.saturating_duration_since(idle.since);
            if idle_for >= self.idle_timeout {
                continue;
            }
            if !is_reusable(idle.conn.as_raw_fd()) {
                continue;
            }
            return Some(idle.conn);
        }
        None
    }

    /// Returns a connection that finished a response cleanly. When the stack is full the
    /// coldest connection is closed to make room.
    pub fn put(&mut self, endpoint: EndpointId, conn: C, now: Instant) {
        if self.max_idle == 0 {
            return;
        }
        let Some(stack) = self.stacks.get_mut(endpoint.index()) else {
            return;
        };
        if stack.len() >= self.max_idle {
            stack.pop_front();
        }
        stack.push_back(Idle { conn, since: now });
    }

    /// Closes connections idle for longer than the timeout. The oldest are at the front.
    pub fn evict_expired(&mut self, now: Instant) -> usize {
        let mut evicted = 0;
        for stack in &mut self.stacks {
            while stack
                .front()
                .is_some_and(|idle| now.saturating_duration_since(idle.since) >= self.idle_timeout)
            {
                stack.pop_front();
                evicted += 1;
            }
        }
        evicted
    }

    /// Closes every idle connection to `endpoint` (it went down, or left the configuration).
    pub fn drain(&mut self, endpoint: EndpointId) {
        if let Some(stack) = self.stacks.get_mut(endpoint.index()) {
            stack.clear();
        }
    }

    pub fn idle(&self, endpoint: EndpointId) -> usize {
        self.stacks.get(endpoint.index()).map_or(0, VecDeque::len)
    }

    /// Rebuilds the pool for a new endpoint table: `old_id_of[new]` names the endpoint's id in
    /// the previous table when it is still present; the other stacks are closed.
    pub fn remap(&mut self, old_id_of: &[Option<EndpointId>]) {
        let mut old = std::mem::take(&mut self.stacks);
        self.stacks = old_id_of
            .iter()
            .map(|old_id| {
                old_id
                    .and_then(|id| old.get_mut(id.index()))
                    .map(std::mem::take)
                    .unwrap_or_default()
            })
            .collect();
    }
}

/// Whether an idle connection can carry a new request: nothing to read (`EAGAIN`). A zero
/// read means the server closed it; unexpected bytes mean it is out of sync. One
/// non-blocking syscall, far cheaper than a failed request.
fn is_reusable(fd: RawFd) -> bool {
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

    /// A connected pair: (client side, server side).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    fn pool(max_idle: usize) -> ConnectionPool<TcpStream> {
        ConnectionPool::new(2, max_idle, Duration::from_secs(60))
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
        p.put(EndpointId(0), a, now);
        p.put(EndpointId(0), b, now);
        assert_eq!(
            p.take(EndpointId(0), now)
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
            b_port
        );
        assert_eq!(
            p.take(EndpointId(0), now)
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
            a_port
        );
        assert!(p.take(EndpointId(0), now).is_none());
        assert!(p.take(EndpointId(1), now).is_none());
    }

    #[test]
    fn skips_connections_the_server_closed() {
        let mut p = pool(8);
        let now = Instant::now();
        let (live, _keep) = pair();
        let (closed, server) = pair();
        let live_port = live.local_addr().unwrap().port();
        p.put(EndpointId(0), live, now);
        p.put(EndpointId(0), closed, now);
        drop(server);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            p.take(EndpointId(0), now)
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
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
        p.put(EndpointId(0), conn, now);
        assert!(p.take(EndpointId(0), now).is_none());
    }

    #[test]
    fn expired_connections_are_not_reused_and_are_evicted() {
        let mut p = ConnectionPool::new(1, 8, Duration::from_millis(100));
        let then = Instant::now();
        let (a, _sa) = pair();
        p.put(EndpointId(0), a, then);
        assert!(p
            .take(EndpointId(0), then + Duration::from_millis(100))
            .is_none());
        let (b, _sb) = pair();
        p.put(EndpointId(0), b, then);
        assert_eq!(p.evict_expired(then + Duration::from_millis(50)), 0);
        assert_eq!(p.evict_expired(then + Duration::from_millis(150)), 1);
        assert_eq!(p.idle(EndpointId(0)), 0);
    }

    #[test]
    fn a_connection_with_unsolicited_bytes_is_never_reused_however_recent() {
        use std::io::Write;
        let mut p = pool(8);
        let now = Instant::now();
        let (client, mut server) = pair();
        p.put(EndpointId(0), client, now);
        server
            .write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(p.take(EndpointId(0), now).is_none());
        let (closed, server) = pair();
        p.put(EndpointId(0), closed, now);
        drop(server);
        std::thread::sleep(Duration::from_millis(20));
        assert!(p.take(EndpointId(0), now).is_none(), "closed by the server");
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
            p.put(EndpointId(0), client, now);
            servers.push(server);
        }
        assert_eq!(p.idle(EndpointId(0)), 2);
        assert_eq!(
            p.take(EndpointId(0), now)
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
            ports[2]
        );
        assert_eq!(
            p.take(EndpointId(0), now)
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
            ports[1]
        );
    }

    #[test]
    fn remap_keeps_stacks_of_endpoints_still_present() {
        let mut p = pool(8);
        let now = Instant::now();
        let (a, _sa) = pair();
        let (b, _sb) = pair();
        p.put(EndpointId(0), a, now);
        p.put(EndpointId(1), b, now);
        // New table: endpoint 0 is the old 1; old 0 is gone; new 1 is new.
        p.remap(&[Some(EndpointId(1)), None]);
        assert_eq!(p.idle(EndpointId(0)), 1);
        assert_eq!(p.idle(EndpointId(1)), 0);
    }
}
