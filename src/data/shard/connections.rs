//! The open client connections of a shard (for the drain) and each connection's slot in it.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Instant;

/// The open client connections of a shard, so that a drain can wake the idle ones.
#[derive(Default)]
pub struct ClientConnections {
    slots: RefCell<Vec<Option<ConnectionEntry>>>,
    free: RefCell<Vec<usize>>,
    open: Cell<usize>,
    /// Open connections parked (src/data/proxy/idle.rs): they hold almost nothing.
    parked: Cell<usize>,
    /// The most connections awake (open, not parked) at once since the control loop last
    /// asked: a storm shorter than its interval is still seen.
    peak: Cell<usize>,
}

struct ConnectionEntry {
    fd: RawFd,
    idle: bool,
    /// A parked connection's keep-alive deadline (it holds no timer of its own).
    parked_until: Option<Instant>,
    /// The deadline passed and the connection was woken to close.
    expired: bool,
}

impl ClientConnections {
    /// Registers a connection; the slot is released when the returned guard drops.
    pub fn register(self: &Rc<Self>, fd: RawFd) -> ClientSlot {
        let entry = Some(ConnectionEntry {
            fd,
            idle: false,
            parked_until: None,
            expired: false,
        });
        let index = match self.free.borrow_mut().pop() {
            Some(index) => {
                self.slots.borrow_mut()[index] = entry;
                index
            }
            None => {
                let mut slots = self.slots.borrow_mut();
                slots.push(entry);
                slots.len() - 1
            }
        };
        self.open.set(self.open.get() + 1);
        self.note_awake();
        ClientSlot {
            registry: Rc::clone(self),
            index,
        }
    }

    pub fn open(&self) -> usize {
        self.open.get()
    }

    /// Open connections not parked: the ones that hold a request path's memory.
    pub fn awake(&self) -> usize {
        self.open.get() - self.parked.get()
    }

    fn note_awake(&self) {
        self.peak.set(self.peak.get().max(self.awake()));
    }

    /// The most connections awake at once since the last call.
    pub fn take_peak(&self) -> usize {
        self.peak.replace(self.awake())
    }

    /// Shuts every connection down both ways (the drain's deadline passed).
    pub(super) fn shutdown_all(&self) {
        for entry in self.slots.borrow().iter().flatten() {
            // SAFETY: the fd is owned by a live connection task (its slot is registered).
            unsafe { libc::shutdown(entry.fd, libc::SHUT_RDWR) };
        }
    }

    /// Wakes the parked connections whose keep-alive time ran out by `now`: the shutdown
    /// makes their socket readable, and they see [`ClientSlot::unpark`] say so.
    pub(super) fn expire_parked(&self, now: Instant) {
        if self.parked.get() == 0 {
            return;
        }
        for entry in self.slots.borrow_mut().iter_mut().flatten() {
            if entry.parked_until.is_some_and(|until| until <= now) {
                entry.parked_until = None;
                entry.expired = true;
                self.parked.set(self.parked.get() - 1);
                // SAFETY: the fd is owned by a live connection task (its slot is registered).
                unsafe { libc::shutdown(entry.fd, libc::SHUT_RD) };
            }
        }
    }

    /// Half-closes every connection waiting for its next request: the pending read returns
    /// end-of-stream and the connection ends as if the client had left.
    pub(super) fn shutdown_idle(&self) {
        for entry in self.slots.borrow().iter().flatten() {
            if entry.idle {
                // SAFETY: the fd is owned by a live connection task (its slot is registered).
                unsafe { libc::shutdown(entry.fd, libc::SHUT_RD) };
            }
        }
    }
}

/// A registered connection; dropping it unregisters.
pub struct ClientSlot {
    registry: Rc<ClientConnections>,
    index: usize,
}

impl ClientSlot {
    /// Marks the connection as waiting for a request (idle) or working on one.
    pub fn set_idle(&self, idle: bool) {
        if let Some(entry) = &mut self.registry.slots.borrow_mut()[self.index] {
            entry.idle = idle;
        }
    }
}

impl ClientSlot {
    /// Marks the connection parked (idle, with no timer) until `deadline`.
    pub fn park(&self, deadline: Instant) {
        if let Some(entry) = &mut self.registry.slots.borrow_mut()[self.index] {
            entry.idle = true;
            if entry.parked_until.replace(deadline).is_none() {
                self.registry.parked.set(self.registry.parked.get() + 1);
            }
        }
    }

    /// Ends the park; false if the connection was woken because its time ran out.
    pub fn unpark(&self) -> bool {
        let live = match &mut self.registry.slots.borrow_mut()[self.index] {
            Some(entry) => {
                if entry.parked_until.take().is_some() {
                    self.registry.parked.set(self.registry.parked.get() - 1);
                }
                !entry.expired
            }
            None => false,
        };
        self.registry.note_awake();
        live
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let entry = self.registry.slots.borrow_mut()[self.index].take();
        if entry.is_some_and(|entry| entry.parked_until.is_some()) {
            self.registry.parked.set(self.registry.parked.get() - 1);
        }
        self.registry.free.borrow_mut().push(self.index);
        self.registry.open.set(self.registry.open.get() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    #[test]
    fn parked_connections_are_not_awake_and_leave_the_count_however_they_end() {
        let registry = Rc::new(ClientConnections::default());
        let (a, _a_peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let (b, _b_peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let first = registry.register(a.as_raw_fd());
        let second = registry.register(b.as_raw_fd());
        assert_eq!((registry.open(), registry.awake()), (2, 2));
        let later = Instant::now() + Duration::from_secs(3600);
        first.park(later);
        first.park(later); // parking again is one park
        second.park(later);
        assert_eq!((registry.open(), registry.awake()), (2, 0));
        assert_eq!(registry.take_peak(), 2, "the peak since the last call");
        assert_eq!(
            registry.take_peak(),
            0,
            "then it starts from the awake count"
        );
        assert!(first.unpark(), "woken before its deadline");
        assert_eq!(registry.awake(), 1);
        drop(second); // closed while parked
        assert_eq!((registry.open(), registry.awake()), (1, 1));
        drop(first);
        assert_eq!((registry.open(), registry.awake()), (0, 0));
    }

    #[test]
    fn an_expired_park_wakes_its_socket_and_says_so() {
        let registry = Rc::new(ClientConnections::default());
        let (mut socket, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let slot = registry.register(socket.as_raw_fd());
        let now = Instant::now();
        slot.park(now + Duration::from_secs(10));
        registry.expire_parked(now);
        assert_eq!(registry.awake(), 0, "not yet due");
        registry.expire_parked(now + Duration::from_secs(10));
        assert_eq!(registry.awake(), 1);
        // Shut down for reading: a read (and so a readability poll) completes at once.
        socket.set_nonblocking(true).unwrap();
        assert_eq!(socket.read(&mut [0u8; 8]).unwrap(), 0);
        assert!(!slot.unpark(), "the wake-up is the expiry");
    }
}
