//! The upstream side of a request: pick endpoints in the group's order, connect or reuse a
//! pooled connection, send the request, read the response head (all within the route
//! timeout, retries included), then relay the response body to the client.
//!
//! Retry rules (BEHAVIOUR.md 3): a connect failure moves to the next endpoint whatever the
//! method (nothing was sent); a reused pooled connection that fails before any response byte
//! is replaced by a fresh one for idempotent methods; a fresh connection that closes before
//! any response byte marks the endpoint failed, and idempotent requests whose body is
//! buffered move on to the next endpoint.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;

use super::io::{self, IoError};
use super::{ClientConnection, READ_CHUNK};
use crate::config::gateway::GatewayConfig;
use crate::config::url::Scheme;
use crate::error::GatewayError;
use crate::http::{
    parse_response, write_client_head, write_upstream_head, ChunkError, ChunkLimits,
    ChunkedDecoder, ClientHead, HeadLimits, LengthDecoder, Method, Parsed, RequestBody,
    ResponseBody, Scan, UpstreamHead, Version,
};
use crate::ids::{EndpointId, GroupId};
use crate::route::{write_upstream_target, RouteMatch};
use crate::shard::ShardView;
use crate::tls::{UpstreamStream, UpstreamTls};
use crate::upstream::{Endpoint, Group, GroupMember};

/// Request bodies up to this size are read completely before the first attempt, so that any
/// attempt (retry, next endpoint) can replay them.
const REPLAY_LIMIT: usize = 64 * 1024;

/// Where the request body is.
enum RequestBodyState {
    /// Entirely in `inbuf[head_len..end]`: every attempt can send it.
    Buffered { end: usize },
    /// `inbuf[head_len..]` is its beginning; the rest must be read from the client, so it can
    /// be sent once only.
    Streaming(BodyDecoder),
}

/// Finds the end of a body as it streams.
enum BodyDecoder {
    Length(LengthDecoder),
    Chunked(ChunkedDecoder),
}

impl BodyDecoder {
    fn scan(&mut self, input: &[u8]) -> Result<Scan, ChunkError> {
        match self {
            BodyDecoder::Length(decoder) => Ok(decoder.scan(input)),
            BodyDecoder::Chunked(decoder) => decoder.scan(input),
        }
    }
}

/// How one attempt on one endpoint ended.
enum Attempt {
    /// A final response head is in `rbuf`; relay it.
    Response(UpstreamStream),
    /// Connecting failed: nothing was sent.
    ConnectFailed,
    /// The connection closed or reset before any response byte.
    ClosedBeforeResponse,
    /// The request body could not be sent completely; nothing can be retried.
    BrokenMidRequest,
    /// The upstream sent something that is not an HTTP response.
    BadResponse,
    /// The client vanished (or sent a malformed body) while its body was being forwarded.
    ClientFailed(Option<GatewayError>),
    /// The route deadline passed.
    TimedOut,
}

impl<S: AsyncReadRent + AsyncWriteRent> ClientConnection<S> {
    /// Forwards the request to `group` and relays the answer; returns whether the client
    /// connection stays open.
    /// `drop_header` names the token header to remove (secured routes).
    pub(super) async fn forward(
        &mut self,
        view: &ShardView,
        found: RouteMatch,
        group_id: GroupId,
        drop_header: Option<&[u8]>,
    ) -> bool {
        let snapshot = &*view.snapshot;
        let gateway = &snapshot.gateway;
        let group = &snapshot.groups[group_id.index()];
        let client_io = Duration::from_millis(gateway.timeouts.client_io_ms);

        let mut body = match self.request_body_state() {
            Ok(body) => body,
            Err(error) => return self.reply_error(gateway, error, true).await,
        };
        if self.head.expect_continue
            && matches!(body, RequestBodyState::Streaming(_))
            && self.head.version == Version::Http11
        {
            self.out.clear();
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            if io::write_all(&mut self.client, &mut self.out, client_io)
                .await
                .is_err()
            {
                return false;
            }
        }
        if let RequestBodyState::Streaming(decoder) = &mut body {
            match self.buffer_small_body(decoder, client_io).await {
                Ok(Some(end)) => body = RequestBodyState::Buffered { end },
                Ok(None) => {}
                Err(None) => return false,
                Err(Some(error)) => return self.reply_error(gateway, error, true).await,
            }
        }

        let mut plan = std::mem::take(&mut self.plan);
        view.cursors
            .plan(group_id.index(), group, |_| true, &mut plan);
        let deadline = Instant::now() + Duration::from_millis(group.timeout_ms);
        let idempotent = self.head.method.is_idempotent();
        let mut outcome = Err(GatewayError::UpstreamUnavailable);
        let mut client_failure = None;
        let upstream_started = Instant::now();
        let mut attempts = 0u32;
        'members: for member in plan.members() {
            let member = &group.members[member];
            let endpoint_id = member.endpoint;
            let endpoint = &snapshot.endpoints[endpoint_id.index()];
            let label = view.labels.endpoint[endpoint_id.index()];
            self.record.endpoint = Some(endpoint_id);
            self.prepare_upstream_request(group, member, endpoint, found, &body, drop_header);
            let mut pooled = self.ctx.pool.borrow_mut().take(endpoint_id, Instant::now());
            loop {
                let reused = pooled.is_some();
                let tls = &snapshot.tls.upstream;
                self.ctx.with_metrics(|m| {
                    if let Some(c) = m.endpoint(label) {
                        c.attempts.inc();
                        c.in_flight.add(1);
                        if attempts > 0 {
                            c.retries.inc();
                        }
                        if !reused {
                            c.connections_opened.inc();
                        }
                    }
                });
                attempts += 1;
                let attempt =
                    self.attempt(gateway, tls, endpoint, pooled.take(), &mut body, deadline);
                let result = monoio::time::timeout_at(deadline.into(), attempt)
                    .await
                    .unwrap_or(Attempt::TimedOut);
                let replayable = matches!(body, RequestBodyState::Buffered { .. });
                if !matches!(result, Attempt::Response(_)) {
                    let failed = matches!(result, Attempt::ConnectFailed)
                        || (!reused && matches!(result, Attempt::ClosedBeforeResponse));
                    self.ctx.with_metrics(|m| {
                        if let Some(c) = m.endpoint(label) {
                            c.in_flight.add(-1);
                            if failed {
                                c.failures.inc();
                            }
                        }
                    });
                }
                match result {
                    Attempt::Response(conn) => {
                        outcome = Ok((conn, endpoint_id));
                        break 'members;
                    }
                    Attempt::ConnectFailed => {
                        self.ctx.endpoint_failed(endpoint_id);
                        continue 'members;
                    }
                    Attempt::ClosedBeforeResponse if reused && idempotent && replayable => continue,
                    Attempt::ClosedBeforeResponse => {
                        if !reused {
                            self.ctx.endpoint_failed(endpoint_id);
                        }
                        if idempotent && replayable {
                            continue 'members;
                        }
                        outcome = Err(GatewayError::BadUpstreamResponse);
                        break 'members;
                    }
                    Attempt::TimedOut => {
                        outcome = Err(GatewayError::UpstreamTimeout);
                        break 'members;
                    }
                    Attempt::BrokenMidRequest => {
                        outcome = Err(GatewayError::BadUpstreamResponse);
                        break 'members;
                    }
                    Attempt::BadResponse => {
                        outcome = Err(GatewayError::BadUpstreamResponse);
                        break 'members;
                    }
                    Attempt::ClientFailed(error) => {
                        client_failure = Some(error);
                        break 'members;
                    }
                }
            }
        }
        self.plan = plan;
        self.record.retries = attempts.saturating_sub(1);
        if let Some(error) = client_failure {
            return match error {
                Some(error) => self.reply_error(gateway, error, true).await,
                None => false,
            };
        }
        let request_consumed = self.consume_request(&body);
        match outcome {
            Ok((conn, endpoint_id)) => {
                self.record.upstream_micros = Some(upstream_started.elapsed().as_micros() as u64);
                self.record.status = self.resp.status;
                self.ctx.endpoint_succeeded(endpoint_id);
                let keep_open = self
                    .relay_response(
                        gateway,
                        conn,
                        endpoint_id,
                        request_consumed,
                        Duration::from_millis(group.timeout_ms),
                    )
                    .await;
                let label = view.labels.endpoint[endpoint_id.index()];
                self.ctx.with_metrics(|m| {
                    if let Some(c) = m.endpoint(label) {
                        c.in_flight.add(-1);
                    }
                });
                keep_open
            }
            Err(error) => {
                log::debug!(
                    "{} {}: {error}",
                    self.head.method.as_str(),
                    String::from_utf8_lossy(&self.target)
                );
                self.reply_upstream_error(gateway, error, request_consumed)
                    .await
            }
        }
    }

    /// Drops the answered request from `inbuf`, so that what is left is the next request.
    /// Returns false when the request's body was not read to its end.
    fn consume_request(&mut self, body: &RequestBodyState) -> bool {
        match body {
            RequestBodyState::Buffered { end } => {
                let end = (*end).min(self.inbuf.len());
                self.inbuf.drain(..end);
                true
            }
            // Streaming consumed the head and body from `inbuf` as it went.
            RequestBodyState::Streaming(decoder) => match decoder {
                BodyDecoder::Length(d) => d.is_done(),
                BodyDecoder::Chunked(d) => d.is_done(),
            },
        }
    }

    async fn reply_upstream_error(
        &mut self,
        gateway: &GatewayConfig,
        error: GatewayError,
        request_consumed: bool,
    ) -> bool {
        self.record.status = error.status();
        if !request_consumed {
            // The head left `inbuf` with a partly streamed body: answer and close.
            self.out.clear();
            error.render(
                &mut self.out,
                &crate::error::RenderOptions {
                    close: true,
                    ..Default::default()
                },
            );
            let client_io = Duration::from_millis(gateway.timeouts.client_io_ms);
            let _ = io::write_all(&mut self.client, &mut self.out, client_io).await;
            return false;
        }
        // `inbuf` no longer holds the head; reply_error only needs the copied head fields.
        let close = !self.head.keep_alive || self.ctx.is_draining();
        self.out.clear();
        error.render(
            &mut self.out,
            &crate::error::RenderOptions {
                close,
                http10_keep_alive: !close && self.head.version == Version::Http10,
                head_request: self.head.method == Method::Head,
                extra_headers: &self.cors,
            },
        );
        let client_io = Duration::from_millis(gateway.timeouts.client_io_ms);
        io::write_all(&mut self.client, &mut self.out, client_io)
            .await
            .is_ok()
            && !close
    }

    /// Classifies the request body by what `inbuf` already holds.
    fn request_body_state(&self) -> Result<RequestBodyState, GatewayError> {
        let head_len = self.head.head_len;
        let available = &self.inbuf[head_len..];
        Ok(match self.head.body {
            RequestBody::None => RequestBodyState::Buffered { end: head_len },
            RequestBody::Length(length) if available.len() as u64 >= length => {
                RequestBodyState::Buffered {
                    end: head_len + length as usize,
                }
            }
            RequestBody::Length(length) => {
                let mut decoder = LengthDecoder::new(length);
                decoder.scan(available);
                RequestBodyState::Streaming(BodyDecoder::Length(decoder))
            }
            RequestBody::Chunked => {
                let mut decoder = ChunkedDecoder::new(ChunkLimits::default());
                let scan = decoder
                    .scan(available)
                    .map_err(|e| GatewayError::BadRequest(e.reason()))?;
                if scan.done {
                    RequestBodyState::Buffered {
                        end: head_len + scan.consumed,
                    }
                } else {
                    RequestBodyState::Streaming(BodyDecoder::Chunked(decoder))
                }
            }
        })
    }

    /// Reads the rest of a body of at most `REPLAY_LIMIT` bytes into `inbuf`. `Ok(Some(end))`
    /// when it is now complete; `Ok(None)` when it is larger (it will stream); `Err(None)` when
    /// the client left; `Err(Some(e))` for a malformed body.
    async fn buffer_small_body(
        &mut self,
        decoder: &mut BodyDecoder,
        client_io: Duration,
    ) -> Result<Option<usize>, Option<GatewayError>> {
        let head_len = self.head.head_len;
        if let BodyDecoder::Length(d) = decoder {
            if (self.inbuf.len() - head_len) as u64 + d.remaining() > REPLAY_LIMIT as u64 {
                return Ok(None);
            }
        }
        while self.inbuf.len() - head_len < REPLAY_LIMIT {
            let before = self.inbuf.len();
            if io::read_more(&mut self.client, &mut self.inbuf, READ_CHUNK, client_io)
                .await
                .is_err()
            {
                return Err(None);
            }
            let scan = decoder
                .scan(&self.inbuf[before..])
                .map_err(|e| Some(GatewayError::BadRequest(e.reason())))?;
            if scan.done {
                return Ok(Some(before + scan.consumed));
            }
        }
        Ok(None)
    }

    /// Builds the upstream request head (and the buffered body, or the body's beginning) in
    /// `out` for one endpoint of the group.
    fn prepare_upstream_request(
        &mut self,
        group: &Group,
        member: &GroupMember,
        endpoint: &Endpoint,
        found: RouteMatch,
        body: &RequestBodyState,
        drop_header: Option<&[u8]>,
    ) {
        let path = self.head.path.slice(&self.inbuf);
        let query = self.head.query.map(|q| q.slice(&self.inbuf));
        self.target.clear();
        write_upstream_target(
            &mut self.target,
            &member.base_path,
            &path[found.rest_start..],
            query,
        );
        self.out.clear();
        write_upstream_head(
            &mut self.out,
            &self.inbuf,
            &self.head,
            &UpstreamHead {
                target: &self.target,
                host: endpoint.authority.as_bytes(),
                client_ip: self.peer.ip(),
                proto: self.proto,
                drop_header,
                authorization: group.authorization.as_deref(),
            },
        );
        let body_bytes = match body {
            RequestBodyState::Buffered { end } => &self.inbuf[self.head.head_len..*end],
            RequestBodyState::Streaming(_) => &self.inbuf[self.head.head_len..],
        };
        self.out.extend_from_slice(body_bytes);
    }

    /// One try on one endpoint, up to the final response head.
    async fn attempt(
        &mut self,
        gateway: &GatewayConfig,
        tls: &UpstreamTls,
        endpoint: &Endpoint,
        pooled: Option<UpstreamStream>,
        body: &mut RequestBodyState,
        deadline: Instant,
    ) -> Attempt {
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => match connect(
                endpoint,
                Duration::from_millis(gateway.timeouts.upstream_connect_ms),
                tls,
            )
            .await
            {
                Some(conn) => conn,
                None => return Attempt::ConnectFailed,
            },
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match io::write_all(&mut conn, &mut self.out, left).await {
            Ok(()) => {}
            Err(IoError::TimedOut) => return Attempt::TimedOut,
            Err(_) if reused => return Attempt::ClosedBeforeResponse,
            Err(_) => return Attempt::BrokenMidRequest,
        }
        if let RequestBodyState::Streaming(decoder) = body {
            if let Some(failed) = self.stream_request_body(&mut conn, decoder, gateway).await {
                return failed;
            }
        }
        self.read_response_head(gateway, &mut conn, deadline)
            .await
            .map_or_else(|a| a, |()| Attempt::Response(conn))
    }

    /// Forwards the rest of a streamed request body, from the client to `conn`.
    async fn stream_request_body(
        &mut self,
        conn: &mut UpstreamStream,
        decoder: &mut BodyDecoder,
        gateway: &GatewayConfig,
    ) -> Option<Attempt> {
        let client_io = Duration::from_millis(gateway.timeouts.client_io_ms);
        // The head and the body's beginning went out with the head.
        self.inbuf.clear();
        loop {
            match io::read_more(&mut self.client, &mut self.inbuf, READ_CHUNK, client_io).await {
                Ok(_) => {}
                Err(_) => return Some(Attempt::ClientFailed(None)),
            }
            let scan = match decoder.scan(&self.inbuf) {
                Ok(scan) => scan,
                Err(e) => {
                    return Some(Attempt::ClientFailed(Some(GatewayError::BadRequest(
                        e.reason(),
                    ))))
                }
            };
            if io::write_range(conn, &mut self.inbuf, 0..scan.consumed, client_io)
                .await
                .is_err()
            {
                return Some(Attempt::BrokenMidRequest);
            }
            self.inbuf.drain(..scan.consumed);
            if scan.done {
                return None;
            }
        }
    }

    /// Reads until `rbuf` holds a final response head, relaying interim (1xx) ones.
    async fn read_response_head(
        &mut self,
        gateway: &GatewayConfig,
        conn: &mut UpstreamStream,
        deadline: Instant,
    ) -> Result<(), Attempt> {
        let limits = HeadLimits {
            max_head: gateway.limits.max_response_head_bytes,
            max_request_line: gateway.limits.max_response_head_bytes,
            max_headers: HeadLimits::MAX_HEADERS_CAP,
        };
        let was_head = self.head.method == Method::Head;
        self.rbuf.clear();
        let mut received_any = false;
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
                            if io::write_all(&mut self.client, &mut self.out, client_io)
                                .await
                                .is_err()
                            {
                                return Err(Attempt::ClientFailed(None));
                            }
                        }
                        self.rbuf.drain(..head_len);
                        continue;
                    }
                    Ok(Parsed::Complete) => return Ok(()),
                    Ok(Parsed::Partial) => {}
                    Err(_) => return Err(Attempt::BadResponse),
                }
            }
            match io::read_more_until(conn, &mut self.rbuf, READ_CHUNK, deadline).await {
                Ok(_) => received_any = true,
                Err(IoError::TimedOut) => return Err(Attempt::TimedOut),
                Err(_) if !received_any => return Err(Attempt::ClosedBeforeResponse),
                Err(_) => return Err(Attempt::BadResponse),
            }
        }
    }

    /// Sends the response head and body to the client; pools the upstream connection when
    /// the response ended cleanly. Returns whether the client connection stays open.
    async fn relay_response(
        &mut self,
        gateway: &GatewayConfig,
        mut conn: UpstreamStream,
        endpoint_id: EndpointId,
        request_consumed: bool,
        upstream_idle: Duration,
    ) -> bool {
        let client_io = Duration::from_millis(gateway.timeouts.client_io_ms);
        let client_version = self.head.version;
        let dechunk = client_version == Version::Http10 && self.resp.body == ResponseBody::Chunked;
        let keep_client = request_consumed
            && self.head.keep_alive
            && !self.ctx.is_draining()
            && self.resp.body != ResponseBody::UntilClose
            && !dechunk;
        self.out.clear();
        write_client_head(
            &mut self.out,
            &self.rbuf,
            &self.resp,
            &ClientHead {
                keep_alive: keep_client,
                client_version,
                dechunk,
                extra: &self.cors,
            },
        );
        let head_len = self.resp.head_len;
        let mut decoder = match self.resp.body {
            ResponseBody::None => None,
            ResponseBody::Length(length) => {
                Some(ResponseDecoder::Length(LengthDecoder::new(length)))
            }
            ResponseBody::Chunked => Some(ResponseDecoder::Chunked(
                ChunkedDecoder::new(ChunkLimits::default()),
                dechunk,
            )),
            ResponseBody::UntilClose => Some(ResponseDecoder::UntilClose),
        };
        // The body's first bytes go out with the head, in one write.
        let mut done = decoder.is_none();
        let mut stray;
        if let Some(decoder) = &mut decoder {
            match decoder.relay(&self.rbuf[head_len..], &mut self.out) {
                Ok(scan) => {
                    done = scan.done;
                    stray = scan.done && head_len + scan.consumed < self.rbuf.len();
                }
                Err(_) => {
                    // Nothing was sent yet: the upstream broke its own framing.
                    return self
                        .reply_upstream_error(
                            gateway,
                            GatewayError::BadUpstreamResponse,
                            request_consumed,
                        )
                        .await;
                }
            }
        } else {
            stray = head_len < self.rbuf.len();
        }
        self.record.bytes += self.out.len() as u64;
        if io::write_all(&mut self.client, &mut self.out, client_io)
            .await
            .is_err()
        {
            return false;
        }
        while !done {
            let Some(decoder) = &mut decoder else { break };
            self.rbuf.clear();
            match io::read_more(&mut conn, &mut self.rbuf, READ_CHUNK, upstream_idle).await {
                Ok(_) => {}
                Err(IoError::Closed) if matches!(decoder, ResponseDecoder::UntilClose) => {
                    return false
                }
                // Mid-body failure: closing the client connection is the only honest signal
                // (never a truncated response that looks complete).
                Err(_) => return false,
            }
            let scan = match decoder.relay_in_place(&mut self.rbuf, &mut self.out) {
                Ok(scan) => scan,
                Err(_) => return false,
            };
            done = scan.done;
            stray = scan.done && scan.consumed < self.rbuf.len();
            self.record.bytes += if decoder.dechunks() {
                self.out.len()
            } else {
                scan.consumed
            } as u64;
            let sent = if decoder.dechunks() {
                io::write_all(&mut self.client, &mut self.out, client_io).await
            } else {
                io::write_range(
                    &mut self.client,
                    &mut self.rbuf,
                    0..scan.consumed,
                    client_io,
                )
                .await
            };
            if sent.is_err() {
                return false;
            }
        }
        if self.resp.keep_alive && !stray {
            self.ctx
                .pool
                .borrow_mut()
                .put(endpoint_id, conn, Instant::now());
        }
        keep_client
    }
}

/// Frames a response body while relaying it.
enum ResponseDecoder {
    Length(LengthDecoder),
    /// The bool says whether to de-chunk (HTTP/1.0 client).
    Chunked(ChunkedDecoder, bool),
    UntilClose,
}

impl ResponseDecoder {
    fn dechunks(&self) -> bool {
        matches!(self, ResponseDecoder::Chunked(_, true))
    }

    /// Appends the body part of `input` to `out` (de-chunked if needed).
    fn relay(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Scan, ChunkError> {
        match self {
            ResponseDecoder::Length(d) => {
                let scan = d.scan(input);
                out.extend_from_slice(&input[..scan.consumed]);
                Ok(scan)
            }
            ResponseDecoder::Chunked(d, true) => d.decode(input, out),
            ResponseDecoder::Chunked(d, false) => {
                let scan = d.scan(input)?;
                out.extend_from_slice(&input[..scan.consumed]);
                Ok(scan)
            }
            ResponseDecoder::UntilClose => {
                out.extend_from_slice(input);
                Ok(Scan {
                    consumed: input.len(),
                    done: false,
                })
            }
        }
    }

    /// Frames `input` for writing it as it is (`input[..consumed]`), or, when de-chunking,
    /// decodes into `out` (cleared first).
    fn relay_in_place(&mut self, input: &mut [u8], out: &mut Vec<u8>) -> Result<Scan, ChunkError> {
        match self {
            ResponseDecoder::Length(d) => Ok(d.scan(input)),
            ResponseDecoder::Chunked(d, false) => d.scan(input),
            ResponseDecoder::Chunked(d, true) => {
                out.clear();
                d.decode(input, out)
            }
            ResponseDecoder::UntilClose => Ok(Scan {
                consumed: input.len(),
                done: false,
            }),
        }
    }
}

/// Connects to the first address of the endpoint that accepts, within `timeout` for the
/// whole step (TLS handshake included: a handshake failure is a connect failure).
async fn connect(
    endpoint: &Endpoint,
    timeout: Duration,
    tls: &UpstreamTls,
) -> Option<UpstreamStream> {
    let deadline = Instant::now() + timeout;
    for &addr in endpoint.addrs.iter() {
        let Ok(Ok(tcp)) =
            monoio::time::timeout_at(deadline.into(), TcpStream::connect_addr(addr)).await
        else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        if endpoint.scheme == Scheme::Http {
            return Some(UpstreamStream::from(tcp));
        }
        match monoio::time::timeout_at(deadline.into(), tls.connect(tcp, &endpoint.host)).await {
            Ok(Ok(stream)) => return Some(UpstreamStream::from(stream)),
            Ok(Err(e)) => log::debug!("TLS handshake with {} failed: {e}", endpoint.origin()),
            Err(_) => log::debug!("TLS handshake with {} timed out", endpoint.origin()),
        }
    }
    log::debug!(
        "cannot connect to {} ({:?})",
        endpoint.origin(),
        endpoint.addrs.first().map(SocketAddr::to_string)
    );
    None
}
