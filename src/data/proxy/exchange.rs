//! One attempt on one upstream connection: send the request head (with the buffered body or
//! its beginning), stream the rest of the body while watching for an early answer, read the
//! final response head (relaying interim ones), each step bounded by the attempt's deadline.
//! Connecting (TCP, then TLS for https endpoints) lives here too.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use super::io::{self, Either};
use super::request_body::{BodyDecoder, RequestBodyState};
use super::splice;
use super::{ClientConnection, READ_CHUNK};
use crate::compile::config::gateway::{BodyRelay, GatewayConfig};
use crate::compile::config::url::Scheme;
use crate::error::GatewayError;
use crate::http::{
    parse_response, write_client_head, ClientHead, HeadLimits, Method, Parsed, Version,
};
use crate::ids::UpstreamId;
use crate::tls::{TcpOrTls, UpstreamStream, UpstreamTls};
use crate::upstream::connection::UpstreamConnection;
use crate::upstream::retry::UpstreamError;
use crate::upstream::Endpoint;

/// How one attempt ended without a response head.
pub(super) enum AttemptError {
    Upstream(UpstreamError),
    /// The client vanished (or sent a malformed body) while its body was being forwarded.
    Client(Option<GatewayError>),
}

/// The clocks of one attempt.
#[derive(Clone, Copy)]
pub(super) struct AttemptTimes {
    /// The response head is due by then (unless a body still streams from the client).
    pub deadline: Instant,
    /// `timeouts.upstream_attempt_ms`: after a streamed body, the head is due this long after
    /// its last byte went.
    pub limit: Duration,
    /// The route's deadline, which bounds everything.
    pub route_deadline: Instant,
}

/// How streaming the request body ended.
enum BodySent {
    Complete,
    /// The upstream sent something (an early answer, or a close) before the body was done;
    /// the rest of the body stays unsent and unread.
    UpstreamSpoke,
    /// Writing to the upstream failed mid-body (it may have answered and closed).
    UpstreamBroke,
    Client(Option<GatewayError>),
}

impl<S: super::ClientIo> ClientConnection<S> {
    /// Sends the request (head and body) and reads the final response head into `rbuf`.
    /// `watch`: leave with [`UpstreamError::EndpointSuspended`] when this shard learns that the
    /// upstream went down (after the given generation) before any response byte came.
    pub(super) async fn send_and_read_head(
        &mut self,
        gateway: &GatewayConfig,
        conn: &mut UpstreamConnection,
        body: &mut RequestBodyState,
        times: AttemptTimes,
        watch: Option<(UpstreamId, u32)>,
    ) -> Result<(), AttemptError> {
        self.request_sent = false;
        {
            let write = pin!(io::write_all_untimed(&mut conn.stream, &mut self.out));
            match io::race(write, self.timer.arm_at(times.deadline)).await {
                None => return Err(AttemptError::Upstream(UpstreamError::AttemptTimeout)),
                // No response byte came back: the same case as a close before the response
                // (the policy decides whether it can be retried).
                Some(Err(_)) => {
                    return Err(AttemptError::Upstream(UpstreamError::ClosedBeforeResponse))
                }
                Some(Ok(())) => {}
            }
        }
        self.rbuf.clear();
        let mut head_deadline = times.deadline;
        self.request_sent = matches!(body, RequestBodyState::Buffered { .. });
        if let RequestBodyState::Streaming(decoder) = body {
            match self.stream_request_body(conn, decoder, gateway).await {
                BodySent::Complete => {
                    self.request_sent = true;
                    // The upstream's time to answer starts when the body is complete: a slow
                    // client's upload is not the endpoint's delay.
                    head_deadline = (crate::clock::now() + times.limit).min(times.route_deadline);
                }
                BodySent::UpstreamSpoke => {}
                BodySent::UpstreamBroke => {
                    // An upstream that answers early often closes without reading the rest;
                    // its answer may be waiting. Anything else is a broken request.
                    return match self
                        .read_response_head(gateway, conn, head_deadline, None)
                        .await
                    {
                        Ok(()) => Ok(()),
                        Err(_) => Err(AttemptError::Upstream(UpstreamError::BrokenMidRequest)),
                    };
                }
                BodySent::Client(error) => return Err(AttemptError::Client(error)),
            }
        }
        self.read_response_head(gateway, conn, head_deadline, watch)
            .await
    }

    /// Forwards the rest of a streamed request body, from the client to `conn`, while
    /// watching the upstream: an upstream that answers before the body is complete (a `401`
    /// or `413` to a large upload) is heard at once instead of after the whole upload, and
    /// one that stopped reading cannot deadlock the exchange.
    async fn stream_request_body(
        &mut self,
        conn: &mut UpstreamConnection,
        decoder: &mut BodyDecoder,
        gateway: &GatewayConfig,
    ) -> BodySent {
        let client_io = Duration::from_millis(gateway.timeouts.client_io_ms);
        // A second handle on the upstream socket, to wait for its readability while the
        // stream itself is busy. A cancelled TLS write would leave the TLS stream unusable,
        // so on https upstreams only the waits for the client are raced with it. `None`
        // if the descriptor cannot be duplicated: then no early answer is noticed.
        let watcher = crate::upstream::idle_watch::duplicate(conn.stream.as_raw_fd());
        let race_writes = !conn.stream.is_tls();
        // One readiness wait for the whole body, polled by each step.
        let spoke = watcher.as_ref().map(|w| w.readable(false));
        let mut spoke = pin!(spoke);
        // The head and the body's beginning went out with the head.
        self.down.inbuf.clear();
        loop {
            let read = {
                let read = pin!(io::read_more(
                    &mut self.down.stream,
                    &mut self.down.inbuf,
                    READ_CHUNK,
                    self.timer.arm_in(client_io),
                ));
                match spoke.as_mut().as_pin_mut() {
                    Some(spoke) => match io::select2(read, spoke).await {
                        Either::Left(read) => read,
                        Either::Right(_) => return BodySent::UpstreamSpoke,
                    },
                    None => read.await,
                }
            };
            if read.is_err() {
                return BodySent::Client(None);
            }
            let scan = match decoder.scan(&self.down.inbuf) {
                Ok(scan) => scan,
                Err(error) => return BodySent::Client(Some(error)),
            };
            let forward = self.pass_request_trailers(decoder, scan.consumed);
            let written = {
                let write = pin!(io::write_range(
                    &mut conn.stream,
                    &mut self.down.inbuf,
                    0..forward,
                    self.timer.arm_in(client_io),
                ));
                match spoke.as_mut().as_pin_mut().filter(|_| race_writes) {
                    Some(spoke) => match io::select2(write, spoke).await {
                        Either::Left(written) => written,
                        Either::Right(_) => return BodySent::UpstreamSpoke,
                    },
                    None => write.await,
                }
            };
            if written.is_err() {
                return BodySent::UpstreamBroke;
            }
            self.down.inbuf.drain(..forward);
            if scan.done {
                return BodySent::Complete;
            }
        }
    }

    /// Reads until `rbuf` holds a final response head, relaying interim (1xx) ones, by
    /// `deadline`.
    pub(super) async fn read_response_head(
        &mut self,
        gateway: &GatewayConfig,
        connection: &mut UpstreamConnection,
        deadline: Instant,
        watch: Option<(UpstreamId, u32)>,
    ) -> Result<(), AttemptError> {
        let limits = HeadLimits {
            max_head: gateway.limits.max_response_head_bytes,
            max_request_line: gateway.limits.max_response_head_bytes,
            max_headers: HeadLimits::MAX_HEADERS_CAP,
        };
        let was_head = self.head.method == Method::Head;
        self.resp.upgrade_requested = self.head.upgrade_websocket;
        let mut received_any = !self.rbuf.is_empty();
        // Where a large body may be spliced, the head's reads leave the body in the socket
        // (relay.rs).
        let last_body_spliced = connection.last_body_spliced;
        let conn = &mut connection.stream;
        let head_read_limit = if gateway.upstream.body_relay == BodyRelay::Splice
            && matches!(conn, TcpOrTls::Plain(_))
            && self.down.stream.plain_tcp().is_some()
        {
            splice::head_read(last_body_spliced)
        } else {
            usize::MAX
        };
        let upstream = |error| Err(AttemptError::Upstream(error));
        loop {
            if !self.rbuf.is_empty() {
                match parse_response(&self.rbuf, was_head, &limits, &mut self.resp) {
                    Ok(Parsed::Complete) if self.resp.is_interim() => {
                        let head_len = self.resp.head_len;
                        // The gateway answered `Expect: 100-continue` itself; other interim
                        // responses (103 Early Hints, ...) reach HTTP/1.1 clients.
                        if self.resp.status != 100 && self.head.version == Version::Http11 {
                            self.out.clear();
                            write_client_head(
                                &mut self.out,
                                &self.rbuf,
                                &self.resp,
                                &ClientHead {
                                    keep_alive: true,
                                    client_version: Version::Http11,
                                    dechunk: false,
                                    extra: b"",
                                },
                            );
                            let client_io = Duration::from_millis(gateway.timeouts.client_io_ms);
                            if self.send_out(client_io).await.is_err() {
                                return Err(AttemptError::Client(None));
                            }
                        }
                        self.rbuf.drain(..head_len);
                        continue;
                    }
                    Ok(Parsed::Complete) => return Ok(()),
                    Ok(Parsed::Partial) => {}
                    Err(_) => return upstream(UpstreamError::BadResponse),
                }
            }
            let read = {
                let read = pin!(io::read_more_untimed(
                    conn,
                    &mut self.rbuf,
                    READ_CHUNK,
                    head_read_limit
                ));
                let timed = pin!(io::race(read, self.timer.arm_at(deadline)));
                match watch.filter(|_| !received_any) {
                    Some((id, since)) => {
                        let down = pin!(self.ctx.suspensions.wait_down(id, since));
                        match io::select2(timed, down).await {
                            Either::Left(read) => read,
                            Either::Right(()) => return upstream(UpstreamError::EndpointSuspended),
                        }
                    }
                    None => timed.await,
                }
            };
            match read {
                None => return upstream(UpstreamError::AttemptTimeout),
                Some(Ok(_)) => received_any = true,
                Some(Err(_)) if !received_any => {
                    return upstream(UpstreamError::ClosedBeforeResponse)
                }
                Some(Err(_)) => return upstream(UpstreamError::BadResponse),
            }
        }
    }
}

/// Connects to the first of `addrs` that accepts, TLS handshake included (a handshake
/// failure is a connect failure), within `timeout` for the whole step. Each address gets its
/// own attempt, bounded by an equal share of the time left, so that a black-holed first
/// address cannot starve the others.
pub(super) async fn connect(
    endpoint: &Endpoint,
    addrs: &[SocketAddr],
    timeout: Duration,
    tls: &UpstreamTls,
    timer: &mut io::Timer,
) -> Option<(UpstreamStream, SocketAddr)> {
    let deadline = Instant::now() + timeout;
    for (tried, &addr) in addrs.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let share = left / (addrs.len() - tried) as u32;
        let attempt_deadline = Instant::now() + share;
        let connecting = pin!(TcpStream::connect_addr(addr));
        let tcp = match io::race(connecting, timer.arm_at(attempt_deadline)).await {
            Some(Ok(tcp)) => tcp,
            Some(Err(e)) => {
                log::debug!("connect to {} ({addr}) failed: {e}", endpoint.origin());
                continue;
            }
            None => {
                log::debug!("connect to {} ({addr}) timed out", endpoint.origin());
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        if endpoint.scheme == Scheme::Http {
            return Some((UpstreamStream::from(tcp), addr));
        }
        // Boxed: a TLS handshake is rare (connections are pooled) and its state is large.
        let mut handshake = Box::pin(tls.connect(tcp, &endpoint.host));
        match io::race(handshake.as_mut(), timer.arm_at(attempt_deadline)).await {
            Some(Ok(stream)) => return Some((UpstreamStream::from(stream), addr)),
            Some(Err(e)) => log::debug!("TLS handshake with {} failed: {e}", endpoint.origin()),
            None => log::debug!("TLS handshake with {} timed out", endpoint.origin()),
        }
    }
    if addrs.is_empty() {
        log::debug!("cannot connect to {}: no addresses", endpoint.origin());
    }
    None
}
