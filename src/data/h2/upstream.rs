//! HTTP/2 upstreams (`x-wso2-http2-backend-enabled`): each shard keeps a few multiplexed
//! connections per upstream (keyed by the process-lifetime `UpstreamId`, like the HTTP/1.1
//! pool), h2 over TLS by ALPN on https and prior knowledge on http. A request attempt gets
//! one stream of one of them, presented to the request lifecycle as an upstream connection
//! speaking HTTP/1.1 ([`UpstreamBridge`]): the lifecycle writes the request head and body it
//! always writes, reads back a response head and body, and every phase (retries, attempt
//! timeouts, breakers, health, relaying) is the HTTP/1.1 one. The response says
//! `connection: close`, so the lifecycle never pools a stream.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::bridge::{copy_staged, initialised};
use h2::client::{ResponseFuture, SendRequest};
use h2::{Reason, RecvStream, SendStream};
use http::header::{HeaderName, HeaderValue};
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use monoio::BufResult;

use super::convert;
use super::io::{PlainIo, TlsIo};
use crate::compile::config::http2::Http2;
use crate::compile::config::url::Scheme;
use crate::http::{
    parse_request, ChunkLimits, ChunkedDecoder, HeadLimits, HeaderKind, Parsed, RequestBody,
    RequestHead,
};
use crate::ids::UpstreamId;
use crate::tls::UpstreamTls;
use crate::upstream::Endpoint;

/// One multiplexed connection to an upstream.
struct Multiplexed {
    send: SendRequest<Bytes>,
    peer: SocketAddr,
    /// The connection's driver task ended (closed, GOAWAY, error).
    closed: Rc<Cell<bool>>,
    /// Streams open on it now.
    streams: Rc<Cell<u32>>,
}

/// A connection being established: requests that find no other connection wait for it
/// rather than each opening its own.
#[derive(Default)]
struct Connecting {
    done: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Connecting {
    fn finish(&self) {
        self.done.set(true);
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            if self.done.get() {
                return Poll::Ready(());
            }
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// A connect in progress, withdrawn (and its waiters woken) when dropped.
struct PendingConnect {
    upstream: UpstreamId,
    connecting: Rc<Connecting>,
}

impl Drop for PendingConnect {
    fn drop(&mut self) {
        CONNECTIONS.with(|c| {
            if let Some(entry) = c.borrow_mut().get_mut(&self.upstream) {
                entry
                    .connecting
                    .retain(|p| !Rc::ptr_eq(p, &self.connecting));
            }
        });
        self.connecting.finish();
    }
}

/// One upstream's connections on this shard.
#[derive(Default)]
struct UpstreamConnections {
    open: Vec<Rc<Multiplexed>>,
    connecting: Vec<Rc<Connecting>>,
}

thread_local! {
    /// This shard's HTTP/2 upstream connections.
    static CONNECTIONS: RefCell<HashMap<UpstreamId, UpstreamConnections>> =
        RefCell::new(HashMap::new());
}

/// What a request does to get a connection.
enum Choice {
    Use(Rc<Multiplexed>),
    Connect(Rc<Connecting>),
    Wait(Rc<Connecting>),
}

/// Closes this shard's HTTP/2 upstream connections. Called when the shard stops, while its
/// runtime still runs: handles dropped later, by the thread-local's destructor, would wake
/// tasks of a runtime that is gone.
pub fn close_all() {
    let all = CONNECTIONS.with(|c| std::mem::take(&mut *c.borrow_mut()));
    drop(all);
}

/// Opens a stream to `endpoint` for one attempt: on the least loaded open connection, or on a
/// new one while there are fewer than `http2.upstream_connections` and the others carry
/// `http2.upstream_max_streams`. `None` when no connection can be had by `deadline` (a
/// connect failure, as for HTTP/1.1).
pub async fn open_stream(
    endpoint: &Endpoint,
    addrs: &[SocketAddr],
    deadline: Instant,
    tls: &UpstreamTls,
    http2: &Http2,
    upstream_idle: Duration,
) -> Option<(Box<UpstreamBridge>, SocketAddr)> {
    // A connection the upstream is retiring (GOAWAY: a restart, nginx's per-connection
    // request limit) refuses new streams: that is no failure of the endpoint, so the stream
    // goes to another connection, a new one if need be. Once: a second refusal is.
    for _ in 0..2 {
        match open_stream_once(endpoint, addrs, deadline, tls, http2, upstream_idle).await {
            Opened::Stream(bridge, peer) => return Some((bridge, peer)),
            Opened::Retired => continue,
            Opened::Failed => return None,
        }
    }
    None
}

/// How one try to open a stream ended.
enum Opened {
    Stream(Box<UpstreamBridge>, SocketAddr),
    /// The chosen connection no longer takes streams.
    Retired,
    Failed,
}

async fn open_stream_once(
    endpoint: &Endpoint,
    addrs: &[SocketAddr],
    deadline: Instant,
    tls: &UpstreamTls,
    http2: &Http2,
    upstream_idle: Duration,
) -> Opened {
    let upstream = endpoint.upstream;
    let max_connections = http2.upstream_connections as usize;
    let conn = loop {
        let choice = CONNECTIONS.with(|c| {
            let mut map = c.borrow_mut();
            let entry = map.entry(upstream).or_default();
            entry.open.retain(|m| !m.closed.get());
            let slots = entry.open.len() + entry.connecting.len();
            let least = entry.open.iter().min_by_key(|m| m.streams.get()).cloned();
            match least {
                Some(m)
                    if m.streams.get() < http2.upstream_max_streams || slots >= max_connections =>
                {
                    Choice::Use(m)
                }
                _ if slots < max_connections => {
                    let connecting = Rc::new(Connecting::default());
                    entry.connecting.push(Rc::clone(&connecting));
                    Choice::Connect(connecting)
                }
                _ => Choice::Wait(Rc::clone(&entry.connecting[0])),
            }
        });
        match choice {
            Choice::Use(conn) => break conn,
            Choice::Connect(connecting) => {
                // Withdrawn however this ends, a cancelled attempt included: a connect left
                // pending would hold every later request waiting.
                let _pending = PendingConnect {
                    upstream,
                    connecting,
                };
                let connected = connect(endpoint, addrs, deadline, tls, http2, upstream_idle)
                    .await
                    .map(Rc::new);
                if let Some(conn) = &connected {
                    CONNECTIONS.with(|c| {
                        c.borrow_mut()
                            .entry(upstream)
                            .or_default()
                            .open
                            .push(Rc::clone(conn))
                    });
                }
                match connected {
                    Some(conn) => break conn,
                    None => return Opened::Failed,
                }
            }
            Choice::Wait(connecting) => {
                let wait = pin!(connecting.wait());
                let sleep = pin!(monoio::time::sleep_until(deadline.into()));
                if super::io::race(wait, sleep).await.is_none() {
                    return Opened::Failed;
                }
            }
        }
    };
    // A stream slot within the upstream's SETTINGS_MAX_CONCURRENT_STREAMS, by the deadline.
    let ready = pin!(conn.send.clone().ready());
    let sleep = pin!(monoio::time::sleep_until(deadline.into()));
    let send = match super::io::race(ready, sleep).await {
        Some(Ok(send)) => send,
        Some(Err(e)) => {
            log::debug!("h2 upstream {}: connection retired: {e}", endpoint.origin());
            conn.closed.set(true);
            return Opened::Retired;
        }
        None => return Opened::Failed,
    };
    conn.streams.set(conn.streams.get() + 1);
    let bridge = UpstreamBridge::new(send, Rc::clone(&conn.streams), endpoint.scheme);
    Opened::Stream(Box::new(bridge), conn.peer)
}

/// Connects (TCP, then TLS with ALPN `h2` on https) and runs the HTTP/2 handshake; the
/// connection's driver runs as its own task until the connection ends or idles out.
async fn connect(
    endpoint: &Endpoint,
    addrs: &[SocketAddr],
    deadline: Instant,
    tls: &UpstreamTls,
    http2: &Http2,
    upstream_idle: Duration,
) -> Option<Multiplexed> {
    for (tried, &addr) in addrs.iter().enumerate() {
        // Each address gets an equal share of the time left (a black-holed one cannot starve
        // the rest).
        let left = deadline.saturating_duration_since(Instant::now());
        let share = Instant::now() + left / (addrs.len() - tried) as u32;
        let connected = async {
            let tcp = TcpStream::connect_addr(addr).await.ok()?;
            let _ = tcp.set_nodelay(true);
            let mut builder = h2::client::Builder::new();
            builder
                .initial_window_size(http2.stream_window_bytes)
                .initial_connection_window_size(http2.connection_window_bytes)
                .max_send_buffer_size(http2.max_send_buffer_bytes as usize)
                .enable_push(false);
            match endpoint.scheme {
                Scheme::Http => {
                    let io = PlainIo::new(tcp, Vec::new()).ok()?;
                    let (send, conn) = builder.handshake::<_, Bytes>(io).await.ok()?;
                    Some((send, Box::pin(conn) as Pin<Box<dyn Future<Output = _>>>))
                }
                Scheme::Https => {
                    let stream = tls.connect_h2(tcp, &endpoint.host).await.ok()?;
                    if !stream.info().alpn_h2 {
                        log::debug!("{} did not choose ALPN h2", endpoint.origin());
                        return None;
                    }
                    let (tls_stream, _) = stream.into_parts();
                    let (tcp, session) = tls_stream.into_parts();
                    let io = TlsIo::new(tcp, session).ok()?;
                    let (send, conn) = builder.handshake::<_, Bytes>(io).await.ok()?;
                    Some((send, Box::pin(conn) as Pin<Box<dyn Future<Output = _>>>))
                }
            }
        };
        let connected = pin!(connected);
        let sleep = pin!(monoio::time::sleep_until(share.into()));
        let Some(Some((send, driver))) = super::io::race(connected, sleep).await else {
            log::debug!("h2 connect to {} ({addr}) failed", endpoint.origin());
            continue;
        };
        let closed = Rc::new(Cell::new(false));
        let streams = Rc::new(Cell::new(0));
        monoio::spawn(drive(
            driver,
            Rc::clone(&closed),
            Rc::clone(&streams),
            upstream_idle,
        ));
        return Some(Multiplexed {
            send,
            peer: addr,
            closed,
            streams,
        });
    }
    None
}

/// Drives one upstream connection until it ends, or until it has carried no stream for
/// `idle` (then it is dropped, which closes it). A panic in the codec ends this connection,
/// not the shard.
async fn drive(
    mut conn: Pin<Box<dyn Future<Output = Result<(), h2::Error>>>>,
    closed: Rc<Cell<bool>>,
    streams: Rc<Cell<u32>>,
    idle: Duration,
) {
    let mut idle_since: Option<Instant> = None;
    let mut tick = Box::pin(monoio::time::sleep(idle));
    let ended = poll_fn(|cx: &mut Context<'_>| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| conn.as_mut().poll(cx))) {
            Ok(Poll::Ready(_)) | Err(_) => return Poll::Ready(()),
            Ok(Poll::Pending) => {}
        }
        if streams.get() > 0 {
            idle_since = None;
        } else if idle_since.is_none() {
            idle_since = Some(Instant::now());
            tick.as_mut().reset((Instant::now() + idle).into());
        }
        if idle_since.is_some() && tick.as_mut().poll(cx).is_ready() {
            if streams.get() == 0 {
                return Poll::Ready(());
            }
            idle_since = None;
        }
        Poll::Pending
    });
    ended.await;
    closed.set(true);
}

/// Where the request is.
enum RequestState {
    Head,
    Length(u64),
    Chunked(ChunkedDecoder),
    Done,
}

/// One stream to an HTTP/2 upstream, seen by the lifecycle as an HTTP/1.1 connection.
pub struct UpstreamBridge {
    send_request: Option<SendRequest<Bytes>>,
    scheme: Scheme,
    streams: Rc<Cell<u32>>,
    request: RequestState,
    head_buf: Vec<u8>,
    head: RequestHead,
    send: Option<SendStream<Bytes>>,
    trailer_section: Vec<u8>,
    response: Option<ResponseFuture>,
    recv: Option<RecvStream>,
    /// Response bytes ready for the lifecycle.
    staged: Vec<u8>,
    staged_read: usize,
    unreleased: usize,
    chunked: bool,
    response_done: bool,
}

impl UpstreamBridge {
    fn new(send_request: SendRequest<Bytes>, streams: Rc<Cell<u32>>, scheme: Scheme) -> Self {
        UpstreamBridge {
            send_request: Some(send_request),
            scheme,
            streams,
            request: RequestState::Head,
            head_buf: Vec::new(),
            head: RequestHead::with_header_capacity(16),
            send: None,
            trailer_section: Vec::new(),
            response: None,
            recv: None,
            staged: Vec::new(),
            staged_read: 0,
            unreleased: 0,
            chunked: false,
            response_done: false,
        }
    }

    /// Takes the bytes of one write of the request (head, then body).
    async fn take_request(&mut self, data: &[u8]) -> io::Result<()> {
        if !matches!(self.request, RequestState::Head) {
            return self.take_body(data).await;
        }
        self.head_buf.extend_from_slice(data);
        let limits = HeadLimits {
            max_head: usize::MAX / 2,
            max_request_line: usize::MAX / 2,
            max_headers: HeadLimits::MAX_HEADERS_CAP,
        };
        match parse_request(&self.head_buf, &limits, &mut self.head) {
            Ok(Parsed::Partial) => return Ok(()),
            Ok(Parsed::Complete) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
        let request = self.request_from_head()?;
        let end = self.head.body == RequestBody::None || self.head.body == RequestBody::Length(0);
        let Some(mut send_request) = self.send_request.take() else {
            return Err(io::ErrorKind::BrokenPipe.into());
        };
        let (response, send) = send_request
            .send_request(request, end)
            .map_err(io::Error::other)?;
        self.response = Some(response);
        self.request = match self.head.body {
            _ if end => RequestState::Done,
            RequestBody::Length(length) => RequestState::Length(length),
            RequestBody::Chunked => {
                RequestState::Chunked(ChunkedDecoder::new(ChunkLimits::default()))
            }
            RequestBody::None => RequestState::Done,
        };
        if !end {
            self.send = Some(send);
        }
        let body = self.head_buf.split_off(self.head.head_len);
        self.take_body(&body).await
    }

    /// The HTTP/2 request for the HTTP/1.1 head the lifecycle wrote.
    fn request_from_head(&self) -> io::Result<http::Request<()>> {
        let buf = &self.head_buf;
        let head = &self.head;
        let bad = |what: &'static str| io::Error::new(io::ErrorKind::InvalidData, what);
        let authority = head.host.map(|h| h.slice(buf)).unwrap_or_default();
        let mut uri = Vec::with_capacity(16 + authority.len() + head.target.len());
        uri.extend_from_slice(self.scheme.as_str().as_bytes());
        uri.extend_from_slice(b"://");
        uri.extend_from_slice(authority);
        uri.extend_from_slice(head.target.slice(buf));
        let mut request = http::Request::new(());
        *request.method_mut() =
            http::Method::from_bytes(head.method_span.slice(buf)).map_err(|_| bad("method"))?;
        *request.uri_mut() = http::Uri::try_from(uri).map_err(|_| bad("target"))?;
        let headers = request.headers_mut();
        for field in &head.headers {
            // `Host` is `:authority`; framing and connection fields mean nothing in h2.
            if field.hop_by_hop
                || matches!(
                    field.kind,
                    HeaderKind::Host | HeaderKind::TransferEncoding | HeaderKind::Connection
                )
            {
                continue;
            }
            let name = HeaderName::from_bytes(field.name.slice(buf)).map_err(|_| bad("name"))?;
            let value =
                HeaderValue::from_bytes(field.value.slice(buf)).map_err(|_| bad("value"))?;
            headers.append(name, value);
        }
        // gRPC servers require it; for anything else it says trailers are welcome.
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
        Ok(request)
    }

    async fn take_body(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let Some(send) = self.send.as_mut() else {
            return Ok(());
        };
        match &mut self.request {
            RequestState::Head | RequestState::Done => Ok(()),
            RequestState::Length(remaining) => {
                let take = (*remaining).min(data.len() as u64) as usize;
                *remaining -= take as u64;
                let ended = *remaining == 0;
                super::bridge::send_payload(send, &data[..take], ended).await?;
                if ended {
                    self.request = RequestState::Done;
                    self.send = None;
                }
                Ok(())
            }
            RequestState::Chunked(decoder) => {
                let trailer_before = decoder.trailer_section_len();
                let mut payload = Vec::new();
                let scan = decoder
                    .scan_payload(data, |range| payload.push(range))
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let trailer_bytes = decoder.trailer_section_len() - trailer_before;
                self.trailer_section
                    .extend_from_slice(&data[scan.consumed - trailer_bytes..scan.consumed]);
                for range in payload {
                    super::bridge::send_payload(send, &data[range], false).await?;
                }
                if scan.done {
                    let trailers = convert::parse_trailer_section(&self.trailer_section);
                    if trailers.is_empty() {
                        send.send_data(Bytes::new(), true)
                            .map_err(io::Error::other)?;
                    } else {
                        send.send_trailers(trailers).map_err(io::Error::other)?;
                    }
                    self.request = RequestState::Done;
                    self.send = None;
                }
                Ok(())
            }
        }
    }

    /// Stages the next response bytes: the head once the response arrived, then the body.
    async fn refill(&mut self) -> io::Result<()> {
        self.staged.clear();
        self.staged_read = 0;
        if let Some(response) = self.response.take() {
            let response = response.await.map_err(io::Error::other)?;
            let (parts, recv) = response.into_parts();
            self.write_response_head(&parts, recv.is_end_stream());
            if recv.is_end_stream() {
                self.response_done = true;
            } else {
                self.recv = Some(recv);
            }
            return Ok(());
        }
        let Some(recv) = self.recv.as_mut() else {
            return Ok(());
        };
        // Back for more: the previous bytes went on to the client.
        if self.unreleased > 0 {
            let _ = recv.flow_control().release_capacity(self.unreleased);
            self.unreleased = 0;
        }
        if self.response_done {
            return Ok(());
        }
        loop {
            match poll_fn(|cx| recv.poll_data(cx)).await {
                Some(Ok(data)) if data.is_empty() => continue,
                Some(Ok(data)) => {
                    self.unreleased = data.len();
                    if self.chunked {
                        convert::write_chunk_size(&mut self.staged, data.len());
                        self.staged.extend_from_slice(&data);
                        self.staged.extend_from_slice(b"\r\n");
                    } else {
                        self.staged.extend_from_slice(&data);
                    }
                    return Ok(());
                }
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => {
                    self.response_done = true;
                    if self.chunked {
                        let trailers = poll_fn(|cx| recv.poll_trailers(cx))
                            .await
                            .map_err(io::Error::other)?;
                        convert::write_last_chunk(&mut self.staged, trailers.as_ref());
                    }
                    return Ok(());
                }
            }
        }
    }

    /// The HTTP/1.1 head of the upstream's response: its length when it gave one (or the
    /// stream already ended), else chunked so that trailers can follow.
    fn write_response_head(&mut self, parts: &http::response::Parts, ended: bool) {
        let out = &mut self.staged;
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(parts.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        let mut has_length = false;
        for (name, value) in &parts.headers {
            if name == http::header::CONTENT_LENGTH {
                has_length = true;
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let bodiless = matches!(parts.status.as_u16(), 100..=199 | 204 | 304);
        if !has_length && !bodiless {
            if ended {
                out.extend_from_slice(b"content-length: 0\r\n");
            } else {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                self.chunked = true;
            }
        }
        // A stream is one exchange: the lifecycle must not pool it.
        out.extend_from_slice(b"connection: close\r\n\r\n");
    }
}

impl Drop for UpstreamBridge {
    fn drop(&mut self) {
        self.streams.set(self.streams.get().saturating_sub(1));
        if let Some(send) = self.send.as_mut() {
            // The request body never finished: tell the upstream to drop it.
            send.send_reset(Reason::CANCEL);
        }
    }
}

impl AsyncReadRent for UpstreamBridge {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        if self.staged_read == self.staged.len() {
            if let Err(e) = self.refill().await {
                return (Err(e), buf);
            }
        }
        let n = copy_staged(&self.staged, &mut self.staged_read, &mut buf);
        (Ok(n), buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        (
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "vectored reads of an HTTP/2 upstream stream",
            )),
            buf,
        )
    }
}

impl AsyncWriteRent for UpstreamBridge {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let data = initialised(&buf);
        let n = data.len();
        match self.take_request(data).await {
            Ok(()) => (Ok(n), buf),
            Err(e) => (Err(e), buf),
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        (
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "vectored writes to an HTTP/2 upstream stream",
            )),
            buf,
        )
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        Ok(())
    }
}
