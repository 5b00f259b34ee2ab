//! Zero-copy relay of a response body (`upstream.body_relay: splice`): from the upstream
//! socket into a pipe and from the pipe to the client's socket with `splice(2)`, so the
//! kernel moves page references instead of the gateway copying every byte out of one socket
//! and into the other. Only where both sides are plain TCP (TLS needs the bytes in user
//! space): a body framed by its length or by the upstream's close, and the payload of each
//! long chunk of a chunked body passed through. A chunk's size line announces how many
//! payload bytes follow, so those can be spliced unseen; the framing around them (the CRLF,
//! the next size line, the trailers) is read and checked in user space as when copying, by a
//! small read after each spliced chunk that leaves a long next chunk in the socket.
//!
//! The calls are made directly, not through the ring: io_uring issues every splice from an
//! io-wq worker thread (docs/design-notes.md), two thread hand-offs per step. A direct
//! call must never block the shard, and `SPLICE_F_NONBLOCK` covers only the pipe's side, so
//! both sockets are switched to `O_NONBLOCK` the first time they are spliced (the ring's own
//! socket operations wait by polling either way). A call that would block waits for
//! readiness through a ring poll, raced with the step's timer, as a read or a write would.
//!
//! The pipe is emptied before it is filled again: a would-block on the way in then always
//! means the upstream has sent nothing yet, and on the way out that the client's socket is
//! full.
//!
//! The pipe is filled once before the response head is written ([`fill_now`]), so that the
//! head can go out corked ([`send_corked`]) and cross to the client in one segment with the
//! body's first bytes.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::pin;
use std::time::Duration;

use monoio::net::TcpStream;

use super::io::{race, Timer};
use super::READ_CHUNK;

/// Bodies shorter than this (after what came with the head) are copied: two calls and a
/// pipe cost more than copying a few KiB.
pub(super) const SPLICE_MIN: u64 = 16 * 1024;

/// How much of a response a head read takes where the body may be spliced: the body bytes
/// that come with the head are copied through user space, the rest stays in the socket to
/// be spliced, and a longer head takes more reads. One ordinary read: a smaller one
/// ([`HEAD_READ_AFTER_SPLICE`]) copies less of a 64 KiB body (5 % less CPU per request)
/// but makes every response of 4 to 20 KiB take a second read and write (15 % more CPU
/// per 4 KiB request, bench/RESULTS.md).
pub(super) const HEAD_READ: usize = READ_CHUNK;

/// The head read on a connection whose last body was spliced: an endpoint that sent one
/// large body most likely sends the next (one resource, one kind of answer), so the
/// smaller read is a good bet there, and a wrong one costs one extra read, once, before
/// the connection learns again.
pub(super) const HEAD_READ_AFTER_SPLICE: usize = 4 * 1024;

/// How much a head read takes where the body may be spliced, given how the connection's
/// last body went.
pub(super) fn head_read(last_body_spliced: bool) -> usize {
    if last_body_spliced {
        HEAD_READ_AFTER_SPLICE
    } else {
        HEAD_READ
    }
}

/// What a pipe is asked to hold (more per call for large bodies). A pipe counts its space
/// in pages, one per piece of a socket buffer, so it may hold fewer bytes than this.
const PIPE_SIZE: libc::c_int = 256 * 1024;

/// Empty pipes a shard keeps for the next spliced body (two descriptors each).
const MAX_POOLED_PIPES: usize = 64;

/// A pipe, both ends non-blocking, and how many bytes it holds now.
pub(super) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
    held: usize,
}

impl Pipe {
    fn open() -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just opened and belong to nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Refused (a user's pipe page limit), the pipe keeps its default size.
        // SAFETY: fcntl on a pipe descriptor we own.
        let sized = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        let capacity = if sized > 0 {
            sized
        } else {
            // SAFETY: as above.
            unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) }
        };
        Ok(Pipe {
            read,
            write,
            capacity: usize::try_from(capacity).unwrap_or(0).max(4096),
            held: 0,
        })
    }

    pub(super) fn holds_bytes(&self) -> bool {
        self.held > 0
    }

    /// How much one splice into the pipe asks for: all of what is left of the body, or
    /// the pipe's capacity when that is less (or the body runs until the close).
    fn room_for(&self, length: Option<u64>) -> usize {
        length.map_or(self.capacity, |left| {
            usize::try_from(left).map_or(self.capacity, |left| left.min(self.capacity))
        })
    }
}

/// A shard's empty pipes. A pipe still holding bytes of a relay that broke off is closed
/// instead: its bytes belong to no one.
#[derive(Default)]
pub(crate) struct PipePool {
    free: RefCell<Vec<Pipe>>,
}

impl PipePool {
    pub(super) fn take(&self) -> Option<Pipe> {
        let pooled = self.free.borrow_mut().pop();
        pooled.or_else(|| match Pipe::open() {
            Ok(pipe) => Some(pipe),
            Err(e) => {
                log::debug!("cannot open a pipe to splice a body ({e}); copying it");
                None
            }
        })
    }

    pub(super) fn give_back(&self, pipe: Pipe) {
        let mut free = self.free.borrow_mut();
        if pipe.held == 0 && free.len() < MAX_POOLED_PIPES {
            free.push(pipe);
        }
    }

    /// Closes every spare pipe (a connection storm has ended).
    pub(crate) fn release_all(&self) {
        self.free.borrow_mut().clear();
    }

    #[cfg(test)]
    fn pooled(&self) -> usize {
        self.free.borrow().len()
    }
}

/// Why a spliced body did not arrive whole.
#[derive(Debug)]
pub(super) enum SpliceEnd {
    /// The upstream closed the connection: the end of a body delimited by the close, a
    /// truncated body otherwise.
    UpstreamClosed,
    UpstreamTimedOut,
    ClientTimedOut,
    Upstream(io::Error),
    Client(io::Error),
}

impl std::fmt::Display for SpliceEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpliceEnd::UpstreamClosed => f.write_str("the upstream closed the connection"),
            SpliceEnd::UpstreamTimedOut => f.write_str("the upstream went quiet"),
            SpliceEnd::ClientTimedOut => f.write_str("the client stopped reading"),
            SpliceEnd::Upstream(e) => write!(f, "upstream socket: {e}"),
            SpliceEnd::Client(e) => write!(f, "client socket: {e}"),
        }
    }
}

/// The two sockets of a spliced body and the timeouts of their steps.
pub(super) struct SpliceEnds<'a> {
    pub upstream: &'a TcpStream,
    pub client: &'a TcpStream,
    pub upstream_idle: Duration,
    pub client_io: Duration,
}

/// Moves into `pipe` what the upstream's socket holds now, at most `length` (`None`: until
/// the upstream closes; `length` is lowered by what moved). Never waits: nothing there yet,
/// or a failure, moves nothing, and [`relay`] meets it on its first step. Filling the pipe
/// before the head is written lets the head go out corked ([`send_corked`]), in the same
/// segment as the first spliced bytes.
pub(super) fn fill_now(upstream: &TcpStream, pipe: &mut Pipe, length: &mut Option<u64>) {
    if let Ok(moved @ 1..) = splice(
        upstream.as_raw_fd(),
        pipe.write.as_raw_fd(),
        pipe.room_for(*length),
    ) {
        pipe.held += moved;
        if let Some(left) = length {
            *left -= moved as u64;
        }
    }
}

/// Writes `head` then `body` to the client's socket with `MSG_MORE`, without waiting, and
/// returns how many bytes it took (0 when it would block or failed: the caller's ordinary
/// write then sends them, and meets any failure). Only where spliced bytes follow at once:
/// the kernel holds a corked segment until a write without `MSG_MORE` (the splice out of a
/// pipe that then runs empty) pushes it, so head and body cross loopback as one segment and
/// wake the client once, not twice.
pub(super) fn send_corked(client: &TcpStream, head: &[u8], body: &[u8]) -> usize {
    let mut iov = [
        libc::iovec {
            iov_base: head.as_ptr() as *mut libc::c_void,
            iov_len: head.len(),
        },
        libc::iovec {
            iov_base: body.as_ptr() as *mut libc::c_void,
            iov_len: body.len(),
        },
    ];
    // SAFETY: a zeroed msghdr is valid (no name, no control data); its iovecs point into
    // `head` and `body`, which outlive the call.
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len();
        libc::sendmsg(
            client.as_raw_fd(),
            &msg,
            libc::MSG_MORE | libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    usize::try_from(sent).unwrap_or(0)
}

/// Moves `length` bytes (`None`: until the upstream closes) from the upstream to the client
/// through `pipe`, first what the pipe holds already, telling `sent` each time the client's
/// socket took some. `length` counts what is still in the upstream's socket, not the pipe.
pub(super) async fn relay(
    ends: &SpliceEnds<'_>,
    pipe: &mut Pipe,
    mut length: Option<u64>,
    timer: &mut Timer,
    mut sent: impl FnMut(u64),
) -> Result<(), SpliceEnd> {
    let from = ends.upstream.as_raw_fd();
    let to = ends.client.as_raw_fd();
    loop {
        while pipe.held > 0 {
            match splice(pipe.read.as_raw_fd(), to, pipe.held) {
                Ok(0) => return Err(SpliceEnd::Client(io::ErrorKind::WriteZero.into())),
                Ok(taken) => {
                    pipe.held -= taken;
                    sent(taken as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let writable = pin!(ends.client.writable(false));
                    match race(writable, timer.arm_in(ends.client_io)).await {
                        None => return Err(SpliceEnd::ClientTimedOut),
                        Some(Err(e)) => return Err(SpliceEnd::Client(e)),
                        Some(Ok(())) => {}
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SpliceEnd::Client(e)),
            }
        }
        if length == Some(0) {
            return Ok(());
        }
        let moved = match splice(from, pipe.write.as_raw_fd(), pipe.room_for(length)) {
            Ok(0) => return Err(SpliceEnd::UpstreamClosed),
            Ok(moved) => moved,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let readable = pin!(ends.upstream.readable(false));
                match race(readable, timer.arm_in(ends.upstream_idle)).await {
                    None => return Err(SpliceEnd::UpstreamTimedOut),
                    Some(Err(e)) => return Err(SpliceEnd::Upstream(e)),
                    Some(Ok(())) => continue,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SpliceEnd::Upstream(e)),
        };
        pipe.held += moved;
        if let Some(left) = &mut length {
            *left -= moved as u64;
        }
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (owned by live streams
    // and the pipe); null offsets are the only form a socket or a pipe accepts.
    let moved = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    usize::try_from(moved).map_err(|_| io::Error::last_os_error())
}

/// Makes `stream`'s socket non-blocking, so that a direct splice on it cannot block the
/// shard. The ring's operations on it are unaffected: they wait by polling either way.
pub(super) fn make_nonblocking(stream: &TcpStream) -> io::Result<()> {
    let fd = stream.as_raw_fd();
    // SAFETY: F_GETFL and F_SETFL on a socket owned by a live stream.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
