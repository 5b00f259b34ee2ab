//! The client side of a connection as bytes: its stream, what was read from it and not
//! consumed yet, and the wait for the next request (with the idle buffer and, for a plain
//! connection, the park it may end in). What the bytes mean is the request loop's business
//! (`mod.rs` and the lifecycle); this module only moves them.

use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, CancelableAsyncReadRent, Canceller};
use monoio::net::TcpStream;

use super::buffers::BufferPool;
use super::io::{self, IoError};
use super::{idle, READ_CHUNK};
use crate::tls::ClientStream;

/// The read buffer an idle connection waits with. Large enough for a typical request head
/// with a bearer token in one read; a longer one takes a second read.
const IDLE_READ: usize = 2 * 1024;

/// A client connection's transport as the request loop needs it: bytes both ways, and the
/// socket itself where the transport is plain TCP.
pub(crate) trait ClientIo: AsyncReadRent + AsyncWriteRent {
    /// The socket itself, when the connection is plain TCP: its reads can be cancelled
    /// without losing bytes, so the connection can be parked.
    fn plain_tcp(&mut self) -> Option<&mut TcpStream> {
        None
    }
}

impl ClientIo for ClientStream {
    fn plain_tcp(&mut self) -> Option<&mut TcpStream> {
        match self {
            crate::tls::TcpOrTls::Plain(tcp) => Some(tcp),
            _ => None,
        }
    }
}

/// The client side of one connection.
pub(crate) struct Downstream<S> {
    pub(super) stream: S,
    /// Client bytes not consumed yet: the current request's head and body prefix, then any
    /// pipelined requests. A buffer from the shard's pool, held only while a request is in
    /// flight.
    pub(super) inbuf: Vec<u8>,
    /// What an idle connection reads the next request's first bytes into.
    idle_read: Vec<u8>,
    /// Cancels the idle read of a plain connection when it is time to park.
    canceller: Option<Canceller>,
    /// The idle wait ended because it is time to park, not because the keep-alive ran out.
    pub(super) park_due: bool,
    /// When the current wait for the next request began.
    pub(super) idle_since: Option<Instant>,
    /// Set by [`idle`] when it hands over a connection that is readable: the first idle wait
    /// reads at once.
    pub(super) woke_readable: bool,
    /// Its socket was made non-blocking for a spliced body (once per connection).
    pub(super) nonblocking: bool,
}

impl<S: ClientIo> Downstream<S> {
    pub(super) fn new(stream: S) -> Self {
        Downstream {
            stream,
            inbuf: Vec::new(),
            idle_read: Vec::new(),
            canceller: None,
            park_due: false,
            idle_since: None,
            woke_readable: false,
            nonblocking: false,
        }
    }

    /// Waits for the first bytes of the next request holding no full-size buffer (`inbuf`
    /// goes back to the shard's pool): it reads into the small idle buffer and moves that one
    /// short read into a pooled `inbuf`. A plain connection's wait ends at
    /// [`idle::PARK_AFTER`] so that it can park (where it waits with no buffer at all); one
    /// handed back readable by [`idle`] reads straight into `inbuf`.
    pub(super) async fn wait_for_request(
        &mut self,
        buffers: &BufferPool,
        timer: &mut io::Timer,
        keepalive: Duration,
    ) -> Result<usize, IoError> {
        buffers.park(&mut self.inbuf);
        if std::mem::take(&mut self.woke_readable) {
            // Handed over by `idle` because bytes (or the end) arrived: read them at once.
            self.idle_since = None;
            buffers.fill(&mut self.inbuf);
            return io::read_more(
                &mut self.stream,
                &mut self.inbuf,
                READ_CHUNK,
                timer.arm_in(keepalive),
            )
            .await;
        }
        if self.idle_read.capacity() == 0 {
            self.idle_read = Vec::with_capacity(IDLE_READ);
        }
        // Only a plain socket parks (its reads cancel cleanly), and only a plain one reads
        // the clock for it; a keep-alive time under the park time never parks.
        let read = match self.stream.plain_tcp() {
            Some(tcp) if keepalive > idle::PARK_AFTER => {
                let idle_since = *self.idle_since.get_or_insert_with(Instant::now);
                let read = read_until_parked(
                    tcp,
                    &mut self.idle_read,
                    &mut self.canceller,
                    timer,
                    idle_since + idle::PARK_AFTER,
                )
                .await;
                self.park_due = read.is_none();
                read.unwrap_or(Err(IoError::TimedOut))
            }
            _ => {
                io::read_more(
                    &mut self.stream,
                    &mut self.idle_read,
                    IDLE_READ,
                    timer.arm_in(keepalive),
                )
                .await
            }
        }?;
        self.idle_since = None;
        buffers.fill(&mut self.inbuf);
        self.inbuf.extend_from_slice(&self.idle_read);
        self.idle_read.clear();
        Ok(read)
    }
}

/// A read into the idle buffer that, if nothing arrived by `park_at`, is cancelled: `None`
/// when it was, the connection then parks. A read that is merely dropped may take bytes with
/// it; this one is cancelled and then awaited, so bytes it completed with just before are
/// kept.
async fn read_until_parked(
    tcp: &mut TcpStream,
    idle_read: &mut Vec<u8>,
    canceller: &mut Option<Canceller>,
    timer: &mut io::Timer,
    park_at: Instant,
) -> Option<Result<usize, IoError>> {
    let canceller = canceller.get_or_insert_with(Canceller::new);
    let buf = std::mem::take(idle_read);
    let (result, slice) = {
        let mut read =
            std::pin::pin!(tcp.cancelable_read(buf.slice_mut(0..IDLE_READ), canceller.handle()));
        match io::select2(read.as_mut(), timer.arm_at(park_at)).await {
            io::Either::Left(done) => done,
            io::Either::Right(()) => {
                // A cancelled canceller stays cancelled: the next wait gets a new one.
                *canceller = std::mem::take(canceller).cancel();
                read.await
            }
        }
    };
    *idle_read = slice.into_inner();
    Some(match result {
        Ok(0) => Err(IoError::Closed),
        Ok(n) => Ok(n),
        Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => return None,
        Err(e) => Err(IoError::Io(e)),
    })
}
