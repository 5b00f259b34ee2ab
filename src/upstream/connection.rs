//! An upstream connection as the data path holds it: the (plain or TLS) stream, the
//! circuit-breaker slot it occupies while open, pooled or not, its place in the shard's
//! count of open upstream connections, and the watch that keeps it honest while pooled.

use std::cell::Cell;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use crate::ids::UpstreamId;
use crate::tls::UpstreamStream;
use crate::upstream::circuit::ConnectionSlot;
use crate::upstream::idle_watch::{IdleWatch, Quiet};
use crate::upstream::pool::Pooled;

/// An open upstream connection; dropping it closes the socket and frees the slot.
pub struct UpstreamConnection {
    /// The upstream it was opened to, for its whole life: the pool files it under this id.
    pub upstream: UpstreamId,
    /// The address it is connected to (DNS may stop returning it).
    pub peer: SocketAddr,
    pub stream: UpstreamStream,
    /// Counts against the group's `maxConnections` (uncounted when the group sets none).
    pub slot: ConnectionSlot,
    pub counted: OpenConnection,
    /// Whether to watch it while idle (`upstream.reuse_check: watch`) rather than peek it
    /// when it is reused.
    pub watch_when_idle: bool,
    /// Started the first time the connection goes idle; `None` before, or when it could
    /// not be started (then reuse is peeked).
    pub watch: Option<IdleWatch>,
    /// Its socket was made non-blocking for a spliced body (once per connection).
    pub nonblocking: bool,
    /// The last response it carried had its body spliced: the next head is read in a
    /// small read, which leaves more of a large body in the socket to be spliced.
    pub last_body_spliced: bool,
}

/// The upstream connections one shard has open, in use or pooled. Each connection counts
/// itself in and out, so no path that closes one (error, eviction, drain, reload) can miss
/// it; a plain shard-local cell, which the control loop publishes to the metrics.
#[derive(Clone, Default)]
pub struct OpenConnections(Rc<Cell<i64>>);

impl OpenConnections {
    pub fn get(&self) -> i64 {
        self.0.get()
    }

    /// Counts a connection that has just been opened, until the returned guard drops.
    pub fn opened(&self) -> OpenConnection {
        self.0.set(self.0.get() + 1);
        OpenConnection(Rc::clone(&self.0))
    }
}

/// One open connection's share of [`OpenConnections`].
pub struct OpenConnection(Rc<Cell<i64>>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl AsRawFd for UpstreamConnection {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

impl Pooled for UpstreamConnection {
    fn upstream(&self) -> UpstreamId {
        self.upstream
    }

    fn went_idle(&mut self) {
        // On the epoll fallback a readiness check is a syscall itself: peeking is cheaper.
        if self.watch_when_idle && self.watch.is_none() && !monoio::utils::is_legacy() {
            self.watch = IdleWatch::start(self.stream.as_raw_fd());
        }
        if let Some(watch) = &self.watch {
            watch.went_idle();
        }
    }

    fn quiet(&self) -> Quiet {
        self.watch
            .as_ref()
            .map_or(Quiet::Unwatched, IdleWatch::quiet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_connection_counts_itself_out_when_dropped() {
        let open = OpenConnections::default();
        let first = open.opened();
        let second = open.opened();
        assert_eq!(open.get(), 2);
        drop(first);
        assert_eq!(open.get(), 1);
        drop(second);
        assert_eq!(open.get(), 0);
    }
}
