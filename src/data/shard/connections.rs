//! The open client connections of a shard (for the drain) and each connection's slot in it.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;

/// The open client connections of a shard, so that a drain can wake the idle ones.
#[derive(Default)]
pub struct ClientConnections {
    slots: RefCell<Vec<Option<ConnectionEntry>>>,
    free: RefCell<Vec<usize>>,
    open: Cell<usize>,
    /// The most connections open at once since the control loop last asked: a storm shorter
    /// than its interval is still seen.
    peak: Cell<usize>,
}

struct ConnectionEntry {
    fd: RawFd,
    idle: bool,
}

impl ClientConnections {
    /// Registers a connection; the slot is released when the returned guard drops.
    pub fn register(self: &Rc<Self>, fd: RawFd) -> ClientSlot {
        let entry = Some(ConnectionEntry { fd, idle: false });
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
        let open = self.open.get() + 1;
        self.open.set(open);
        if open > self.peak.get() {
            self.peak.set(open);
        }
        ClientSlot {
            registry: Rc::clone(self),
            index,
        }
    }

    pub fn open(&self) -> usize {
        self.open.get()
    }

    /// The most connections open at once since the last call.
    pub fn take_peak(&self) -> usize {
        self.peak.replace(self.open.get())
    }

    /// Shuts every connection down both ways (the drain's deadline passed).
    pub(super) fn shutdown_all(&self) {
        for entry in self.slots.borrow().iter().flatten() {
            // SAFETY: the fd is owned by a live connection task (its slot is registered).
            unsafe { libc::shutdown(entry.fd, libc::SHUT_RDWR) };
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

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.registry.slots.borrow_mut()[self.index] = None;
        self.registry.free.borrow_mut().push(self.index);
        self.registry.open.set(self.registry.open.get() - 1);
    }
}
