//! The poll-based byte streams the `h2` crate runs on: a monoio socket switched to poll-io
//! (`into_poll_io()`, readiness through the ring's embedded poller; HTTP/1.1 connections stay
//! on native io_uring operations), with the bytes the gateway already read replayed first,
//! and rustls driven over such a socket for `h2` over TLS (the handshake itself ran on the
//! native path, `src/tls/handshake.rs`). Never blocks: `WouldBlock` is `Pending`.

use std::io::{self, Read, Write};
use std::ops::DerefMut;
use std::pin::Pin;
use std::task::{Context, Poll};

use monoio::io::poll_io::{AsyncRead, AsyncWrite, ReadBuf};
use monoio::io::IntoPollIo;
use monoio::net::TcpStream;
use rustls::{ConnectionCommon, SideData};

/// monoio names its poll-mode socket type only through this trait.
type TcpStreamPoll = <TcpStream as IntoPollIo>::PollIo;

/// A plain socket in poll mode; `replay` holds bytes read before the switch (the client
/// preface the listener looked at), served before the socket is read again.
pub struct PlainIo {
    tcp: TcpStreamPoll,
    replay: Vec<u8>,
    replayed: usize,
}

impl PlainIo {
    /// Switches `tcp` to poll mode. Fails only if the socket cannot join the poller.
    pub fn new(tcp: TcpStream, replay: Vec<u8>) -> io::Result<PlainIo> {
        let tcp = tcp.into_poll_io()?;
        Ok(PlainIo {
            tcp,
            replay,
            replayed: 0,
        })
    }
}

impl AsyncRead for PlainIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.replayed < this.replay.len() {
            let rest = &this.replay[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            if this.replayed == this.replay.len() {
                // Nothing more to replay: give the buffer back.
                this.replay = Vec::new();
                this.replayed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for PlainIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// rustls over a poll-mode socket: what `tokio-rustls` does, for a connection whose handshake
/// is already complete. `C` is a `ServerConnection` (client side) or `ClientConnection`
/// (HTTP/2 upstreams).
pub struct TlsIo<C> {
    tcp: TcpStreamPoll,
    tls: C,
    /// The peer's close_notify or EOF was seen: reads return end of stream.
    eof: bool,
}

impl<C, SD> TlsIo<C>
where
    C: DerefMut<Target = ConnectionCommon<SD>> + Unpin,
    SD: SideData,
{
    /// `tls` has completed its handshake on `tcp` (early application data may be inside it).
    pub fn new(tcp: TcpStream, tls: C) -> io::Result<TlsIo<C>> {
        let tcp = tcp.into_poll_io()?;
        Ok(TlsIo {
            tcp,
            tls,
            eof: false,
        })
    }

    /// Moves TLS records from the socket into rustls. `Ready(Ok(0))` is end of stream.
    fn read_records(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut socket = SyncSocket {
            tcp: &mut self.tcp,
            cx,
        };
        let n = match self.tls.read_tls(&mut socket) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if let Err(e) = self.tls.process_new_packets() {
            // Best effort: the alert rustls queued tells the peer why.
            let _ = self.write_records(cx);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
        }
        Poll::Ready(Ok(n))
    }

    /// Moves encrypted records from rustls to the socket, as far as the socket takes them.
    fn write_records(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tls.wants_write() {
            let mut socket = SyncSocket {
                tcp: &mut self.tcp,
                cx,
            };
            match self.tls.write_tls(&mut socket) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<C, SD> AsyncRead for TlsIo<C>
where
    C: DerefMut<Target = ConnectionCommon<SD>> + Unpin,
    SD: SideData,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.tls.reader().read(buf.initialize_unfilled()) {
                Ok(n) => {
                    // 0: close_notify (a clean end of stream) or an empty buffer given.
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed the socket without close_notify: end of stream all the same
                // (HTTP/2 frames its own messages, so nothing can pass for complete).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Poll::Ready(Ok(()));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            // Reading records may make rustls answer (a key update): send that first.
            if let Poll::Ready(Err(e)) = this.write_records(cx) {
                return Poll::Ready(Err(e));
            }
            match this.read_records(cx) {
                Poll::Ready(Ok(0)) => this.eof = true,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<C, SD> AsyncWrite for TlsIo<C>
where
    C: DerefMut<Target = ConnectionCommon<SD>> + Unpin,
    SD: SideData,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Records rustls still holds go first: its buffer is what bounds this stream's memory.
        match this.write_records(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        let n = this.tls.writer().write(buf)?;
        // Push what was just encrypted; a full socket leaves it queued in rustls (bounded by
        // its buffer limit) and the next write or flush sends it.
        if let Poll::Ready(Err(e)) = this.write_records(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.tls.writer().flush()?;
        this.write_records(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.tls.send_close_notify();
        match this.write_records(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.tcp).poll_shutdown(cx),
            other => other,
        }
    }
}

/// The socket seen through `std::io` for rustls: `Pending` becomes `WouldBlock` (the waker is
/// registered by the poll underneath).
struct SyncSocket<'a, 'b> {
    tcp: &'a mut TcpStreamPoll,
    cx: &'a mut Context<'b>,
}

impl Read for SyncSocket<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(out);
        match Pin::new(&mut *self.tcp).poll_read(self.cx, &mut buf) {
            Poll::Ready(Ok(())) => Ok(buf.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for SyncSocket<'_, '_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.tcp).poll_write(self.cx, data) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A client connection's plaintext seen by its frame budget (`meter.rs`): every byte read and
/// written passes the meter's frame walker. Once a budget is exhausted, reads end (the
/// connection task sends GOAWAY and closes) and the task is woken to notice.
pub struct Metered<T> {
    inner: T,
    meter: std::rc::Rc<std::cell::RefCell<super::meter::FrameMeter>>,
}

impl<T> Metered<T> {
    pub fn new(inner: T, meter: std::rc::Rc<std::cell::RefCell<super::meter::FrameMeter>>) -> Self {
        Metered { inner, meter }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.meter.borrow().violation().is_some() {
            // No more of this client's frames are processed; the connection task (woken
            // when the budget ran out) sends GOAWAY and closes without reading again.
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let mut meter = this.meter.borrow_mut();
            meter.inbound(&buf.filled()[before..]);
            if meter.violation().is_some() {
                cx.waker().wake_by_ref();
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.meter.borrow_mut().outbound(&buf[..n]);
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Polls `future` until it completes or `timer` fires (`None`).
pub async fn race<F: std::future::Future>(
    mut future: Pin<&mut F>,
    mut timer: Pin<&mut monoio::time::Sleep>,
) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        match std::future::Future::poll(timer.as_mut(), cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
