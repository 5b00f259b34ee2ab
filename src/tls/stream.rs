//! The streams the data path reads and writes: a TLS connection after its handshake (what was
//! negotiated, the socket's fd for liveness peeks) and `TcpOrTls`, one type for a plain or a
//! TLS connection so that the proxy is written once for `http` and `https`.
//!
//! Data goes through `monoio-rustls`, which copies: socket -> its 16 KiB read buffer ->
//! rustls' record buffer (decrypted in place) -> a Vec per record -> the caller's buffer; and
//! caller -> rustls (encrypted into a Vec per record) -> its 16 KiB write buffer -> socket.
//! A `write` returns only once the records it produced were written to the socket, so no
//! separate flush is needed before waiting for an answer. Nothing is sent on drop: call
//! `shutdown` to send close_notify.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Split, Splitable};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::{CipherSuite, CommonState, HandshakeKind, ProtocolVersion};

/// What a completed handshake negotiated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HandshakeInfo {
    pub version: ProtocolVersion,
    /// Full, full with a HelloRetryRequest, or resumed.
    pub kind: HandshakeKind,
    pub cipher_suite: CipherSuite,
    /// ALPN chose `http/1.1`. `false`: the peer offered no ALPN, or chose `h2`.
    pub alpn_http11: bool,
    /// ALPN chose `h2` (HTTPS listeners with `http2.enabled`, HTTP/2 upstreams).
    pub alpn_h2: bool,
    /// The client's certificate, when it presented one the listener verified (HTTPS
    /// listeners with `tls.client_ca` or APIs with their own client certificates).
    pub client_certificate: Option<crate::auth::ClientCertificate>,
}

impl HandshakeInfo {
    pub(crate) fn of(state: &CommonState) -> Self {
        Self {
            version: state
                .protocol_version()
                .unwrap_or(ProtocolVersion::Unknown(0)),
            kind: state.handshake_kind().unwrap_or(HandshakeKind::Full),
            cipher_suite: state
                .negotiated_cipher_suite()
                .map_or(CipherSuite::Unknown(0), |s| s.suite()),
            alpn_http11: state.alpn_protocol() == Some(super::ALPN_HTTP11),
            alpn_h2: state.alpn_protocol() == Some(super::ALPN_H2),
            client_certificate: None,
        }
    }

    /// Whether the session was resumed (no certificate exchange).
    pub fn resumed(&self) -> bool {
        self.kind == HandshakeKind::Resumed
    }
}

/// A TLS connection after its handshake: the `monoio-rustls` stream `S`, the socket's fd and
/// what was negotiated.
///
/// A read or write whose future is dropped before completing (a timeout) leaves the stream
/// unusable: `monoio-rustls` has lent its internal buffer to the cancelled operation and
/// would panic on the next one. Every later operation on this stream therefore fails with an
/// I/O error instead; close it (callers close after a timeout anyway).
pub struct TlsStream<S> {
    inner: S,
    fd: RawFd,
    info: HandshakeInfo,
    /// An operation started and has not finished; still set at the start of the next one
    /// means its future was dropped mid-way.
    in_flight: bool,
}

/// A client's connection to an HTTPS listener.
pub type ServerTlsStream = TlsStream<monoio_rustls::ServerTlsStream<TcpStream>>;
/// The gateway's connection to an `https://` upstream.
pub type ClientTlsStream = TlsStream<monoio_rustls::ClientTlsStream<TcpStream>>;

impl<S> TlsStream<S> {
    /// `fd` is the socket `inner` owns.
    pub(crate) fn new(inner: S, fd: RawFd, info: HandshakeInfo) -> Self {
        Self {
            inner,
            fd,
            info,
            in_flight: false,
        }
    }

    pub fn info(&self) -> &HandshakeInfo {
        &self.info
    }

    /// The `monoio-rustls` stream and what was negotiated, for a caller that drives the
    /// connection another way (HTTP/2 runs rustls over poll-based I/O, `src/h2/io.rs`).
    pub fn into_parts(self) -> (S, HandshakeInfo) {
        (self.inner, self.info)
    }

    fn begin(&mut self) -> io::Result<()> {
        if self.in_flight {
            return Err(io::Error::other(
                "TLS stream unusable: an earlier read or write on it was cancelled",
            ));
        }
        self.in_flight = true;
        Ok(())
    }
}

impl<S> std::fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("fd", &self.fd)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl<S> AsRawFd for TlsStream<S> {
    /// The TCP socket's fd (for a liveness peek; never read or write it directly).
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

impl<S: AsyncReadRent> AsyncReadRent for TlsStream<S> {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        if let Err(e) = self.begin() {
            return (Err(e), buf);
        }
        let result = self.inner.read(buf).await;
        self.in_flight = false;
        result
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        if let Err(e) = self.begin() {
            return (Err(e), buf);
        }
        let result = self.inner.readv(buf).await;
        self.in_flight = false;
        result
    }
}

impl<S: AsyncWriteRent> AsyncWriteRent for TlsStream<S> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        if let Err(e) = self.begin() {
            return (Err(e), buf);
        }
        let result = self.inner.write(buf).await;
        self.in_flight = false;
        result
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        if let Err(e) = self.begin() {
            return (Err(e), buf);
        }
        let result = self.inner.writev(buf).await;
        self.in_flight = false;
        result
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.begin()?;
        let result = self.inner.flush().await;
        self.in_flight = false;
        result
    }

    /// Sends close_notify, then shuts the socket's write side.
    async fn shutdown(&mut self) -> io::Result<()> {
        self.begin()?;
        let result = self.inner.shutdown().await;
        self.in_flight = false;
        result
    }
}

/// A connection that is plain TCP or TLS over TCP. The TLS variant is boxed: it carries
/// rustls' state and is far larger than a `TcpStream`.
pub enum TcpOrTls<T> {
    Plain(TcpStream),
    Tls(Box<T>),
    /// Upstreams only: one stream of a multiplexed HTTP/2 connection, speaking HTTP/1.1 to
    /// the lifecycle (`src/h2/upstream.rs`). It has no socket of its own.
    H2(Box<crate::data::h2::UpstreamBridge>),
}

/// A connection from a client: accepted on an HTTP or an HTTPS listener.
pub type ClientStream = TcpOrTls<ServerTlsStream>;
/// A connection to an upstream: `http://` or `https://`.
pub type UpstreamStream = TcpOrTls<ClientTlsStream>;

impl<S> TcpOrTls<TlsStream<S>> {
    /// What the TLS handshake negotiated; `None` for plain TCP.
    pub fn tls_info(&self) -> Option<&HandshakeInfo> {
        match self {
            TcpOrTls::Plain(_) | TcpOrTls::H2(_) => None,
            TcpOrTls::Tls(tls) => Some(tls.info()),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, TcpOrTls::Tls(_))
    }
}

impl<S> From<TlsStream<S>> for TcpOrTls<TlsStream<S>> {
    fn from(tls: TlsStream<S>) -> Self {
        TcpOrTls::Tls(Box::new(tls))
    }
}

impl<T> From<TcpStream> for TcpOrTls<T> {
    fn from(tcp: TcpStream) -> Self {
        TcpOrTls::Plain(tcp)
    }
}

impl<T: AsRawFd> AsRawFd for TcpOrTls<T> {
    /// `-1` for an HTTP/2 stream: it has no socket of its own, and its connection's socket
    /// says nothing about this stream (a readiness watch on it would see other streams).
    fn as_raw_fd(&self) -> RawFd {
        match self {
            TcpOrTls::Plain(tcp) => tcp.as_raw_fd(),
            TcpOrTls::Tls(tls) => tls.as_raw_fd(),
            TcpOrTls::H2(_) => -1,
        }
    }
}

// The TLS arms box their futures: a TLS read or write future is several hundred bytes, and
// without the box every plain-TCP operation would carry (and move, several times per await)
// a future of the TLS size. TLS already allocates per record; one more small box there is
// the cheaper side of the trade.
impl<T: AsyncReadRent> AsyncReadRent for TcpOrTls<T> {
    async fn read<B: IoBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            TcpOrTls::Plain(tcp) => tcp.read(buf).await,
            TcpOrTls::Tls(tls) => Box::pin(tls.read(buf)).await,
            TcpOrTls::H2(stream) => Box::pin(stream.read(buf)).await,
        }
    }

    async fn readv<B: IoVecBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            TcpOrTls::Plain(tcp) => tcp.readv(buf).await,
            TcpOrTls::Tls(tls) => Box::pin(tls.readv(buf)).await,
            TcpOrTls::H2(stream) => Box::pin(stream.readv(buf)).await,
        }
    }
}

impl<T: AsyncWriteRent> AsyncWriteRent for TcpOrTls<T> {
    async fn write<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            TcpOrTls::Plain(tcp) => tcp.write(buf).await,
            TcpOrTls::Tls(tls) => Box::pin(tls.write(buf)).await,
            TcpOrTls::H2(stream) => Box::pin(stream.write(buf)).await,
        }
    }

    async fn writev<B: IoVecBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            TcpOrTls::Plain(tcp) => tcp.writev(buf).await,
            TcpOrTls::Tls(tls) => Box::pin(tls.writev(buf)).await,
            TcpOrTls::H2(stream) => Box::pin(stream.writev(buf)).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            TcpOrTls::Plain(tcp) => tcp.flush().await,
            TcpOrTls::Tls(tls) => Box::pin(tls.flush()).await,
            TcpOrTls::H2(stream) => stream.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            TcpOrTls::Plain(tcp) => tcp.shutdown().await,
            TcpOrTls::Tls(tls) => Box::pin(tls.shutdown()).await,
            TcpOrTls::H2(stream) => stream.shutdown().await,
        }
    }
}

/// The reading side of a connection split for a tunnel (a WebSocket relay reads and writes
/// both ways at once). Both TCP and `monoio-rustls` streams declare that their reads and
/// writes may run concurrently (monoio's `Split`).
pub enum ReadHalf<S> {
    Plain(OwnedReadHalf<TcpStream>),
    Tls(OwnedReadHalf<S>),
}

/// The writing side; see [`ReadHalf`].
pub enum WriteHalf<S: AsyncWriteRent> {
    Plain(OwnedWriteHalf<TcpStream>),
    Tls(OwnedWriteHalf<S>),
}

impl<S: Split + AsyncReadRent + AsyncWriteRent> TcpOrTls<TlsStream<S>> {
    /// Splits the connection into halves that can be used at the same time. Only for a
    /// connection that ends as a tunnel: the halves never go back together.
    pub fn into_halves(self) -> (ReadHalf<S>, WriteHalf<S>) {
        match self {
            TcpOrTls::Plain(tcp) => {
                let (read, write) = tcp.into_split();
                (ReadHalf::Plain(read), WriteHalf::Plain(write))
            }
            TcpOrTls::Tls(tls) => {
                // The in-flight guard of `TlsStream` assumes one operation at a time; the
                // split halves run one of each, which monoio-rustls supports.
                let (read, write) = tls.inner.into_split();
                (ReadHalf::Tls(read), WriteHalf::Tls(write))
            }
            // Only a `101` makes a tunnel, and an HTTP/2 stream cannot answer one: the h2
            // codec refuses it, so the bridge never presents it (src/h2/upstream.rs).
            TcpOrTls::H2(_) => unreachable!("an HTTP/2 stream never becomes a tunnel"),
        }
    }
}

impl<S: AsyncReadRent> AsyncReadRent for ReadHalf<S> {
    async fn read<B: IoBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            ReadHalf::Plain(half) => half.read(buf).await,
            ReadHalf::Tls(half) => Box::pin(half.read(buf)).await,
        }
    }

    async fn readv<B: IoVecBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            ReadHalf::Plain(half) => half.readv(buf).await,
            ReadHalf::Tls(half) => Box::pin(half.readv(buf)).await,
        }
    }
}

impl<S: AsyncWriteRent> AsyncWriteRent for WriteHalf<S> {
    async fn write<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            WriteHalf::Plain(half) => half.write(buf).await,
            WriteHalf::Tls(half) => Box::pin(half.write(buf)).await,
        }
    }

    async fn writev<B: IoVecBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            WriteHalf::Plain(half) => half.writev(buf).await,
            WriteHalf::Tls(half) => Box::pin(half.writev(buf)).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            WriteHalf::Plain(half) => half.flush().await,
            WriteHalf::Tls(half) => Box::pin(half.flush()).await,
        }
    }

    /// A FIN (plain) or close_notify and FIN (TLS): the peer sees the end of this direction
    /// while the other one stays open.
    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            WriteHalf::Plain(half) => half.shutdown().await,
            WriteHalf::Tls(half) => Box::pin(half.shutdown()).await,
        }
    }
}
