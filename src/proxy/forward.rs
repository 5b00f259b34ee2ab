//! The upstream side of a request: pick endpoints in the group's order, connect or reuse a
//! pooled connection, send the request, read the response head (all within the route
//! timeout, retries included), then relay the response body to the client.
//!
//! Retry rules (BEHAVIOUR.md 3): a connect failure moves to the next endpoint whatever the
//! method (nothing was sent); a reused pooled connection that fails before any response byte
//! is replaced by a fresh one for idempotent methods; a fresh connection that closes before
//! any response byte marks the endpoint failed, and idempotent requests whose body is
//! buffered move on to the next endpoint.

use std::pin::pin;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::exchange::connect;
use super::io;
use super::{ClientConnection, READ_CHUNK};
use crate::config::gateway::GatewayConfig;
use crate::error::GatewayError;
use crate::http::{
    write_upstream_head, ChunkLimits, ChunkedDecoder, LengthDecoder, Method, RequestBody, Scan,
    UpstreamHead, Version,
};
use crate::ids::{EndpointId, GroupId};
use crate::route::{write_upstream_target, RouteMatch};
use crate::shard::ShardView;
use crate::upstream::connection::UpstreamConnection;
use crate::upstream::health::{FailureCause, Pick};
use crate::upstream::{Endpoint, Group, GroupMember};

/// Request bodies up to this size are read completely before the first attempt, so that any
/// attempt (retry, next endpoint) can replay them.
const REPLAY_LIMIT: usize = 64 * 1024;

/// Where the request body is.
pub(super) enum RequestBodyState {
    /// Entirely in `inbuf[head_len..end]`: every attempt can send it.
    Buffered { end: usize },
    /// `inbuf[head_len..]` is its beginning; the rest must be read from the client, so it can
    /// be sent once only.
    Streaming(BodyDecoder),
}

/// Finds the end of a body as it streams.
pub(super) enum BodyDecoder {
    Length(LengthDecoder),
    /// A chunked body, the payload bytes it carried so far and `limits.max_body_bytes`.
    Chunked {
        decoder: ChunkedDecoder,
        payload: u64,
        limit: Option<u64>,
    },
}

impl BodyDecoder {
    fn chunked(limit: Option<u64>) -> BodyDecoder {
        BodyDecoder::Chunked {
            decoder: ChunkedDecoder::new(ChunkLimits::default()),
            payload: 0,
            limit,
        }
    }

    /// Frames the next part of the body. A malformed chunked body is a `400`; one whose
    /// payload, seen or announced by a chunk size, is over the body limit a `413` (a
    /// Content-Length body was checked against it before).
    pub(super) fn scan(&mut self, input: &[u8]) -> Result<Scan, GatewayError> {
        match self {
            BodyDecoder::Length(decoder) => Ok(decoder.scan(input)),
            BodyDecoder::Chunked {
                decoder,
                payload,
                limit,
            } => {
                let scan = decoder
                    .scan_payload(input, |range| *payload += range.len() as u64)
                    .map_err(|e| GatewayError::BadRequest(e.reason()))?;
                let announced = payload.saturating_add(decoder.chunk_remaining());
                if limit.is_some_and(|max| announced > max) {
                    return Err(GatewayError::PayloadTooLarge);
                }
                Ok(scan)
            }
        }
    }
}

/// How one attempt on one connected endpoint ended.
pub(super) enum Attempt {
    /// A final response head is in `rbuf`; relay it.
    Response,
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

/// How the upstream side of a request ended.
enum Exchange {
    /// A final response head from `EndpointId` is in `rbuf`.
    Response(UpstreamConnection, EndpointId),
    /// No response; answer with this error.
    Failed(GatewayError),
    /// The client left or sent a malformed body mid-request.
    ClientFailed(Option<GatewayError>),
}

/// Base of the jittered backoff between status-code retries (Choreo Connect's value).
const RETRY_BACKOFF_BASE: Duration = Duration::from_millis(25);

impl<S: AsyncReadRent + AsyncWriteRent> ClientConnection<S> {
    /// Forwards the request to `group` and relays the answer; returns whether the client
    /// connection stays open. `drop_header` names the token header to remove (secured
    /// routes).
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

        let mut body = match self.request_body_state(gateway.limits.max_body_bytes) {
            Ok(body) => body,
            Err(error) => return self.reply_error(gateway, error, true).await,
        };
        // Over the group's concurrent-request limit: answer without calling the upstream
        // (and before asking the client for its body).
        let breakers = &*snapshot.breakers;
        let Ok(_request_slot) = breakers.try_acquire_request(group_id) else {
            let consumed = self.consume_request(&body);
            return self
                .reply_upstream_error(gateway, GatewayError::UpstreamOverflow, consumed)
                .await;
        };
        if self.head.expect_continue
            && matches!(body, RequestBodyState::Streaming(_))
            && self.head.version == Version::Http11
        {
            self.out.clear();
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            if io::write_all(
                &mut self.client,
                &mut self.out,
                self.timer.arm_in(client_io),
            )
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

        let upstream_started = Instant::now();
        let deadline = upstream_started + Duration::from_millis(group.timeout_ms);
        let mut attempts = 0u32;
        let mut status_retries = 0u8;
        let mut _retry_slot = None;
        let exchange = loop {
            let exchange = self
                .try_members(
                    view,
                    found,
                    group_id,
                    &mut body,
                    drop_header,
                    deadline,
                    &mut attempts,
                )
                .await;
            // retryConfig: a listed status from the upstream is retried (next endpoint per
            // the group's policy) while the count lasts, the body can be replayed, the
            // deadline allows the backoff, and the group's retry budget has room.
            if let (Exchange::Response(_, _), Some(retry)) = (&exchange, &group.retry) {
                let replayable = matches!(body, RequestBodyState::Buffered { .. });
                if replayable && status_retries < retry.count && retry.retries_on(self.resp.status)
                {
                    let backoff = self
                        .ctx
                        .jittered(RETRY_BACKOFF_BASE * (1u32 << status_retries.min(8)));
                    if Instant::now() + backoff < deadline {
                        if let Ok(slot) = breakers.try_acquire_retry(group_id) {
                            log::debug!(
                                "status {} from upstream: retry {} after {backoff:?}",
                                self.resp.status,
                                status_retries + 1
                            );
                            // The response is dropped with its connection.
                            drop(exchange);
                            _retry_slot = Some(slot);
                            status_retries += 1;
                            monoio::time::sleep(backoff).await;
                            continue;
                        }
                    }
                }
            }
            break exchange;
        };
        self.record.retries = attempts.saturating_sub(1);
        let request_consumed = match exchange {
            Exchange::ClientFailed(error) => {
                return match error {
                    Some(error) => self.reply_error(gateway, error, true).await,
                    None => false,
                };
            }
            _ => self.consume_request(&body),
        };
        match exchange {
            Exchange::Response(conn, endpoint_id) => {
                self.record.upstream_micros = Some(upstream_started.elapsed().as_micros() as u64);
                self.record.status = self.resp.status;
                let label = view.labels.endpoint[endpoint_id.index()];
                let timeout = Duration::from_millis(group.timeout_ms);
                let keep_open = self
                    .relay_response(gateway, conn, request_consumed, timeout)
                    .await;
                self.ctx.with_metrics(|m| {
                    if let Some(c) = m.endpoint(label) {
                        c.in_flight.add(-1);
                    }
                });
                keep_open
            }
            Exchange::Failed(error) => {
                log::debug!(
                    "{} {}: {error}",
                    self.head.method.as_str(),
                    String::from_utf8_lossy(&self.target)
                );
                self.reply_upstream_error(gateway, error, request_consumed)
                    .await
            }
            Exchange::ClientFailed(_) => unreachable!("handled above"),
        }
    }

    /// Tries the group's members in the balancer's order until one answers with a response
    /// head, applying the health table and the retry rules (module doc).
    #[allow(clippy::too_many_arguments)]
    async fn try_members(
        &mut self,
        view: &ShardView,
        found: RouteMatch,
        group_id: GroupId,
        body: &mut RequestBodyState,
        drop_header: Option<&[u8]>,
        deadline: Instant,
        attempts: &mut u32,
    ) -> Exchange {
        let snapshot = &*view.snapshot;
        let gateway = &snapshot.gateway;
        let group = &snapshot.groups[group_id.index()];
        let health = &*snapshot.upstreams.health;
        let breakers = &*snapshot.breakers;
        let idempotent = self.head.method.is_idempotent();

        // One load of each member's health word: skip suspended members (they come last)
        // and let this shard reconcile what it sees (drain its pool of a downed endpoint).
        let mut plan = std::mem::take(&mut self.plan);
        let now = Instant::now();
        view.cursors.plan(
            group_id.index(),
            group,
            |i| {
                let upstream = snapshot.endpoints[group.members[i].endpoint.index()].upstream;
                let word = health.load(upstream);
                self.ctx.reconcile(upstream, word);
                health.pick_of(word, now) != Pick::Suspended
                    && !self.ctx.upstreams.borrow().is_drained(upstream)
            },
            &mut plan,
        );

        let mut failure = GatewayError::UpstreamUnavailable;
        let mut exchange = None;
        // Members whose expired suspension another shard is probing right now: skipped in
        // the first pass, tried in the second only if nobody else answered.
        let mut skipped = 0u64;
        'passes: for pass in 0..2 {
            'members: for (position, member_index) in plan.members().enumerate() {
                let deferred = position < 64 && skipped & (1 << position) != 0;
                if pass == 1 && !deferred {
                    continue;
                }
                let member = &group.members[member_index];
                let endpoint_id = member.endpoint;
                let endpoint = &snapshot.endpoints[endpoint_id.index()];
                let upstream = endpoint.upstream;
                let label = view.labels.endpoint[endpoint_id.index()];
                // One clock read per member: the probe check and the pool's idle check.
                let now = Instant::now();
                if pass == 0 {
                    // The claim lapses if this request never reports (the shard stalled, the
                    // client left): bounded by one attempt, not the whole route budget.
                    let lease = deadline
                        .saturating_duration_since(now)
                        .min(Duration::from_millis(gateway.timeouts.upstream_attempt_ms));
                    if health.pick_state(upstream, now) == Pick::ProbeDue
                        && !health.try_claim_probe(upstream, now, lease)
                    {
                        if position < 64 {
                            skipped |= 1 << position;
                        }
                        continue;
                    }
                }
                // Every attempt after the first is a retry, within the group's retry budget.
                let _retry_slot = if *attempts > 0 {
                    match breakers.try_acquire_retry(group_id) {
                        Ok(slot) => Some(slot),
                        Err(_) => break 'passes,
                    }
                } else {
                    None
                };
                self.record.endpoint = Some(endpoint_id);
                self.prepare_upstream_request(group, member, endpoint, found, body, drop_header);
                let mut pooled = self.ctx.pool.borrow_mut().take(upstream, now);
                loop {
                    let reused = pooled.is_some();
                    let mut conn = match pooled.take() {
                        Some(conn) => conn,
                        None => {
                            let Ok(slot) = breakers.acquire_connection(group_id, deadline).await
                            else {
                                exchange = Some(Exchange::Failed(GatewayError::UpstreamOverflow));
                                break 'passes;
                            };
                            let connect_for =
                                Duration::from_millis(gateway.timeouts.upstream_connect_ms)
                                    .min(deadline.saturating_duration_since(Instant::now()));
                            *attempts += 1;
                            self.count_attempt(label, *attempts, false);
                            let addrs = self.ctx.upstreams.borrow().addresses(upstream);
                            match connect(
                                endpoint,
                                &addrs,
                                connect_for,
                                &snapshot.tls.upstream,
                                &mut self.timer,
                            )
                            .await
                            {
                                Some((stream, peer)) => UpstreamConnection {
                                    upstream,
                                    peer,
                                    stream,
                                    slot,
                                    counted: self.ctx.upstream_open.opened(),
                                },
                                None => {
                                    // Nothing was sent: the next member, whatever the method.
                                    self.count_failure(label);
                                    self.ctx.with_metrics(|m| {
                                        if let Some(c) = m.endpoint(label) {
                                            c.in_flight.add(-1);
                                        }
                                    });
                                    self.ctx.endpoint_failed(
                                        view,
                                        endpoint_id,
                                        &group.suspension,
                                        FailureCause::Connect,
                                        "connect failed",
                                    );
                                    if Instant::now() >= deadline {
                                        failure = GatewayError::UpstreamTimeout;
                                        break 'passes;
                                    }
                                    continue 'members;
                                }
                            }
                        }
                    };
                    if reused {
                        *attempts += 1;
                        self.count_attempt(label, *attempts, true);
                    }
                    let result = {
                        // The connection's timer bounds the attempt; steps inside that need
                        // their own bound (streaming a body from the client) get a timer of
                        // their own meanwhile.
                        let mut timer = self.timer.take();
                        let result = {
                            let attempt = pin!(self.attempt(gateway, &mut conn, body));
                            io::race(attempt, timer.arm_at(deadline))
                                .await
                                .unwrap_or(Attempt::TimedOut)
                        };
                        self.timer = timer;
                        result
                    };
                    let replayable = matches!(body, RequestBodyState::Buffered { .. });
                    if !matches!(result, Attempt::Response) {
                        self.ctx.with_metrics(|m| {
                            if let Some(c) = m.endpoint(label) {
                                c.in_flight.add(-1);
                            }
                        });
                    }
                    match result {
                        Attempt::Response => {
                            self.ctx.endpoint_succeeded(view, endpoint_id);
                            exchange = Some(Exchange::Response(conn, endpoint_id));
                            break 'passes;
                        }
                        // A stale pooled connection: a fresh one, for requests safe to repeat.
                        Attempt::ClosedBeforeResponse if reused && idempotent && replayable => {
                            continue
                        }
                        Attempt::ClosedBeforeResponse => {
                            if !reused {
                                self.count_failure(label);
                                self.ctx.endpoint_failed(
                                    view,
                                    endpoint_id,
                                    &group.suspension,
                                    FailureCause::Response,
                                    "closed before any response byte",
                                );
                            }
                            if idempotent && replayable {
                                continue 'members;
                            }
                            failure = GatewayError::BadUpstreamResponse;
                            break 'passes;
                        }
                        Attempt::TimedOut => {
                            failure = GatewayError::UpstreamTimeout;
                            break 'passes;
                        }
                        Attempt::BrokenMidRequest | Attempt::BadResponse => {
                            failure = GatewayError::BadUpstreamResponse;
                            break 'passes;
                        }
                        Attempt::ClientFailed(error) => {
                            exchange = Some(Exchange::ClientFailed(error));
                            break 'passes;
                        }
                    }
                }
            }
            if skipped == 0 {
                break;
            }
        }
        self.plan = plan;
        exchange.unwrap_or(Exchange::Failed(failure))
    }

    fn count_attempt(&self, label: u32, attempts: u32, reused: bool) {
        self.ctx.with_metrics(|m| {
            if let Some(c) = m.endpoint(label) {
                c.attempts.inc();
                c.in_flight.add(1);
                if attempts > 1 {
                    c.retries.inc();
                }
                if !reused {
                    c.connections_opened.inc();
                }
            }
        });
    }

    fn count_failure(&self, label: u32) {
        self.ctx.with_metrics(|m| {
            if let Some(c) = m.endpoint(label) {
                c.failures.inc();
            }
        });
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
                BodyDecoder::Chunked { decoder, .. } => decoder.is_done(),
            },
        }
    }

    pub(super) async fn reply_upstream_error(
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
            let _ = io::write_all(
                &mut self.client,
                &mut self.out,
                self.timer.arm_in(client_io),
            )
            .await;
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
        io::write_all(
            &mut self.client,
            &mut self.out,
            self.timer.arm_in(client_io),
        )
        .await
        .is_ok()
            && !close
    }

    /// Classifies the request body by what `inbuf` already holds; `limit` is
    /// `limits.max_body_bytes`, for chunked bodies.
    fn request_body_state(&self, limit: Option<u64>) -> Result<RequestBodyState, GatewayError> {
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
                let mut decoder = BodyDecoder::chunked(limit);
                let scan = decoder.scan(available)?;
                if scan.done {
                    RequestBodyState::Buffered {
                        end: head_len + scan.consumed,
                    }
                } else {
                    RequestBodyState::Streaming(decoder)
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
            if io::read_more(
                &mut self.client,
                &mut self.inbuf,
                READ_CHUNK,
                self.timer.arm_in(client_io),
            )
            .await
            .is_err()
            {
                return Err(None);
            }
            let scan = decoder.scan(&self.inbuf[before..]).map_err(Some)?;
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
                client_ip: &self.client_ip,
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
}
