//! One vectored write of a response head and the body bytes that arrived with it.
//!
//! The head is rebuilt by the gateway in its own buffer while the body's first bytes sit
//! behind the upstream's head in the read buffer. Copying them behind the new head costs a
//! `memmove` of up to a whole read (64 KiB): about a tenth of a 64 KiB request's CPU
//! (`bench/RESULTS.md`). `writev` sends both from where they are.

use std::ops::Range;
use std::pin::{pin, Pin};

use monoio::buf::IoVecBuf;
use monoio::io::AsyncWriteRent;
use monoio::net::TcpStream;
use monoio::time::Sleep;

use super::io::{race, IoError};

/// Fewer body bytes than this are copied behind the head: a copy that small costs less than
/// a second iovec, and a connection of small responses never allocates an [`IoVecPair`].
pub(super) const GATHER_MIN: usize = 4096;

/// The iovec pair of one connection's gathered writes. It lives on the heap so that its
/// address stays put while the ring owns it; a connection allocates it once.
pub(super) type IoVecPair = Box<[libc::iovec; 2]>;

/// The two buffers and their iovecs, owned by the write while it is in flight: a write
/// cancelled by its timer keeps them alive until the kernel is done with them.
struct Gathered {
    head: Vec<u8>,
    body: Vec<u8>,
    iov: IoVecPair,
}

// SAFETY: `iov` points into `head` and `body`, whose heap storage does not move while the
// value is owned by the runtime (they are not touched), and the array itself is boxed.
unsafe impl IoVecBuf for Gathered {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iov.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        2
    }
}

impl Gathered {
    /// Points the iovecs at `head[head_from..]` and `body[body_from..body_end]`.
    fn aim(&mut self, head_from: usize, body_from: usize, body_end: usize) {
        let head = &self.head[head_from..];
        let body = &self.body[body_from..body_end];
        self.iov[0] = libc::iovec {
            iov_base: head.as_ptr() as *mut libc::c_void,
            iov_len: head.len(),
        };
        self.iov[1] = libc::iovec {
            iov_base: body.as_ptr() as *mut libc::c_void,
            iov_len: body.len(),
        };
    }
}

/// Writes all of `head`, then `body[range]`, with as few `writev` calls as the socket takes,
/// until `timer` fires. Like the other writes, a timed-out one loses its buffers (the
/// connection is closed after it anyway).
pub(super) async fn write_head_and_body(
    stream: &mut TcpStream,
    head: &mut Vec<u8>,
    body: &mut Vec<u8>,
    range: Range<usize>,
    iov: &mut Option<IoVecPair>,
    timer: Pin<&mut Sleep>,
) -> Result<(), IoError> {
    let empty = || libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut gathered = Gathered {
        head: std::mem::take(head),
        body: std::mem::take(body),
        iov: iov.take().unwrap_or_else(|| Box::new([empty(), empty()])),
    };
    let (mut head_from, mut body_from) = (0, range.start);
    let write = async move {
        loop {
            gathered.aim(head_from, body_from, range.end);
            let (result, back) = stream.writev(gathered).await;
            gathered = back;
            let mut written = match result {
                Ok(0) => return (Err(IoError::Closed), gathered),
                Ok(n) => n,
                // A socket made non-blocking for splicing: io_uring's `writev` (unlike its
                // `send`) may hand the `EAGAIN` back instead of waiting, kernel by kernel.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Err(e) = stream.writable(false).await {
                        return (Err(IoError::Io(e)), gathered);
                    }
                    continue;
                }
                Err(e) => return (Err(IoError::Io(e)), gathered),
            };
            let from_head = written.min(gathered.head.len() - head_from);
            head_from += from_head;
            written -= from_head;
            body_from += written;
            if head_from == gathered.head.len() && body_from == range.end {
                return (Ok(()), gathered);
            }
        }
    };
    match race(pin!(write), timer).await {
        None => Err(IoError::TimedOut),
        Some((result, gathered)) => {
            *head = gathered.head;
            *body = gathered.body;
            *iov = Some(gathered.iov);
            result
        }
    }
}

#[cfg(test)]
mod tests;
