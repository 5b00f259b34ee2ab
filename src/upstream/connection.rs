//! An upstream connection as the data path holds it: the (plain or TLS) stream and the
//! circuit-breaker slot it occupies while open, pooled or not.

use std::os::fd::{AsRawFd, RawFd};

use crate::tls::UpstreamStream;
use crate::upstream::circuit::ConnectionSlot;

/// An open upstream connection; dropping it closes the socket and frees the slot.
pub struct UpstreamConnection {
    pub stream: UpstreamStream,
    /// Counts against the group's `maxConnections` (uncounted when the group sets none).
    pub slot: ConnectionSlot,
}

impl AsRawFd for UpstreamConnection {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}
