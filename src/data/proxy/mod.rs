//! The life of a client connection: read a request head -> route -> (authorize) -> pick an
//! endpoint -> forward -> stream the response back, then the next request (pipelined
//! requests are answered in order, one at a time). Heads stay in the connection's reused
//! read buffer as offsets; the common path allocates nothing once the buffers are warm.

pub(crate) mod buffers;
mod downstream;
mod exchange;
mod gather;
pub(crate) mod idle;
mod io;
mod lifecycle;
mod relay;
mod request_body;
mod splice;
mod websocket;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::AsyncWriteRent;

use crate::auth::{
    extract_bearer, find_query_param, remove_query_param, AuthError, ClientCertificate, Credential,
    KeyType,
};
use crate::compile::config::gateway::{GatewayConfig, UnderscoresInHeaders};
use crate::compile::snapshot::{Api, Route, Snapshot};
use crate::cors_policy::is_safe_header_value;
use crate::data::shard::{ClientSlot, ShardContext, ShardView};
use crate::data::shared::ListenerKind;
use crate::error::{GatewayError, RenderOptions};
use crate::http::{
    current_http_date, parse_scanned_request, ChunkLimits, ChunkedDecoder, HeadLimits, HeadScan,
    HeaderError, HeaderKind, Method, NormalizedPath, Parsed, RequestBody, RequestError,
    RequestHead, ResponseHead, TrailerGate, Version,
};
use crate::metrics::Rejection;
use crate::route::{Lookup, MethodSet};
use crate::tls::ClientStream;
use crate::upstream::balancer::AttemptPlan;
pub(crate) use downstream::ClientIo;
use downstream::Downstream;
use io::IoError;
pub(crate) use splice::PipePool;

/// Free space ensured before each read from a client or an upstream.
const READ_CHUNK: usize = buffers::BUFFER_SIZE;

/// Header slots reserved up front. The vectors grow to the largest head a connection has
/// seen and then stay: an API client sending a handful of headers never pays for a
/// hundred slots on each of its idle connections.
const INITIAL_HEADERS: usize = 8;

/// Debug builds only: lets the robustness tests make a connection task panic, to show that a
/// panic costs its connection and not the shard. Release builds have no such path, and no
/// configuration or input can make one panic on purpose.
#[cfg(debug_assertions)]
#[doc(hidden)]
pub mod test_hooks {
    use std::sync::atomic::{AtomicBool, Ordering};

    static ARMED: AtomicBool = AtomicBool::new(false);

    /// While armed, a request whose path ends with this panics in its connection task.
    pub const PANIC_PATH_SUFFIX: &[u8] = b"/__shardgate_test_panic";

    pub fn arm_panics() {
        ARMED.store(true, Ordering::Relaxed);
    }

    pub(super) fn panic_if_armed(path: &[u8]) {
        if ARMED.load(Ordering::Relaxed) && path.ends_with(PANIC_PATH_SUFFIX) {
            panic!("test hook: a panic inside a connection task");
        }
    }
}

/// Serves one TLS client connection until it closes (plain ones: [`idle::serve_plain`]).
pub async fn serve_connection(ctx: Rc<ShardContext>, stream: ClientStream, peer: SocketAddr) {
    let slot = ctx.connections.register(stream.as_raw_fd());
    // HTTP/2 (src/h2/) is chosen by ALPN. Its future, like a tunnel's, is boxed: h2's
    // connection state is several KiB and would otherwise size every connection's task.
    let stream = match stream {
        ClientStream::Tls(tls) if tls.info().alpn_h2 => {
            return Box::pin(crate::data::h2::serve_tls(ctx, tls, peer, slot)).await;
        }
        stream => stream,
    };
    let client_certificate = stream.tls_info().and_then(|info| info.client_certificate);
    let mut connection = ClientConnection::new(ctx, stream, peer, ListenerKind::Https, Some(slot));
    connection.client_certificate = client_certificate;
    // A TLS connection is never parked: rustls may hold decrypted bytes the socket no longer
    // shows, so readability of the socket says nothing.
    let served = connection.serve().await;
    debug_assert_ne!(served, Served::Parked);
    finish(connection).await;
}

/// What follows the request loop of a connection that closes: a WebSocket tunnel if the
/// last request switched protocols, else the close.
async fn finish(mut connection: ClientConnection<ClientStream>) {
    if connection.tunnel.is_some() {
        // The handshake was switched: the connection is a WebSocket tunnel from here on.
        Box::pin(websocket::run(connection)).await;
        return;
    }
    // A TLS client learns that a close-delimited body is complete from close_notify; plain
    // TCP gets a FIN. Best effort, briefly.
    let linger = Duration::from_millis(
        connection
            .ctx
            .view()
            .snapshot
            .gateway
            .timeouts
            .client_io_ms
            .min(1_000),
    );
    let shutdown = std::pin::pin!(connection.down.stream.shutdown());
    let _ = io::race(shutdown, connection.timer.arm_in(linger)).await;
}

/// Serves the one request of an HTTP/2 stream (`src/h2/bridge.rs`) through the same lifecycle
/// as an HTTP/1.1 request: `stream` carries the body in and the response out as HTTP/1.1,
/// `head` is the request head serialised from the stream's header list.
pub(crate) async fn serve_bridged<S: ClientIo>(
    ctx: Rc<ShardContext>,
    stream: S,
    head: &[u8],
    peer: SocketAddr,
    kind: ListenerKind,
    client_certificate: Option<ClientCertificate>,
) {
    let mut connection = ClientConnection::new(ctx, stream, peer, kind, None);
    connection.client_certificate = client_certificate;
    connection.ctx.buffers.fill(&mut connection.down.inbuf);
    connection.down.inbuf.extend_from_slice(head);
    connection.serve().await;
    let _ = connection.down.stream.shutdown().await;
}

/// How a connection's request loop ended.
#[derive(Debug, PartialEq, Eq)]
enum Served {
    Closed,
    /// Idle for [`idle::PARK_AFTER`]: the connection goes back to its small idle state.
    Parked,
    /// The client sent the HTTP/2 preface: `inbuf` holds what it sent so far.
    Http2,
}

/// The request a record is about, for the access log.
pub(crate) struct Accounted<'a> {
    pub client: std::net::IpAddr,
    pub method: Method,
    pub version: Version,
    pub target: &'a [u8],
}

/// Accounts for a request answered (or abandoned): counters, latency, the access log line.
pub(crate) fn account(
    ctx: &ShardContext,
    view: &ShardView,
    record: &RequestRecord,
    request: &Accounted<'_>,
) {
    // 499 (nginx's "client closed request") when the client left before an answer.
    let status = if record.status == 0 {
        499
    } else {
        record.status
    };
    let api_label = record
        .api
        .map_or(crate::metrics::NO_API, |api| view.labels.api[api.index()]);
    ctx.with_metrics(|m| m.request(api_label, request.method as usize, status));
    let total_micros = record.started.map_or(0, |s| {
        crate::clock::now().saturating_duration_since(s).as_micros() as u64
    });
    let mut latency = ctx.latency.borrow_mut();
    if record.started.is_some() {
        latency.total.saturating_record(total_micros.max(1));
    }
    if let Some(upstream) = record.upstream_micros {
        latency.upstream.saturating_record(upstream.max(1));
    }
    drop(latency);
    if let Some(access_log) = ctx.access_log.borrow_mut().as_mut() {
        let upstream = record
            .endpoint
            .map(|e| &*view.snapshot.endpoints[e.index()].authority);
        let dropped = access_log.record(&crate::access_log::Entry {
            client: request.client,
            method: request.method.as_str(),
            target: request.target,
            version: request.version.as_str(),
            status,
            bytes: record.bytes,
            upstream,
            upstream_micros: record.upstream_micros,
            total_micros,
            retries: record.retries,
        });
        if dropped > 0 {
            ctx.with_metrics(|m| m.access_log_dropped.add(dropped));
        }
    }
}

/// What came of waiting for the next request.
enum Next {
    Request,
    /// The client left, went idle for too long, or the shard is draining.
    Closed,
    /// The connection starts with the HTTP/2 client preface.
    Http2,
    /// Idle long enough to be parked (see [`idle`]).
    Park,
    /// The head is unacceptable: answer and close.
    Reject(GatewayError, Rejection),
}

/// What happened to the current request, for metrics and the access log.
#[derive(Debug, Default)]
pub(crate) struct RequestRecord {
    /// When the request head was complete.
    pub started: Option<Instant>,
    pub api: Option<crate::ids::ApiId>,
    /// Status sent to the client; 0 when none was (the client left first).
    pub status: u16,
    /// The endpoint that answered (or the last one tried).
    pub endpoint: Option<crate::ids::EndpointId>,
    /// From the first attempt to the response head.
    pub upstream_micros: Option<u64>,
    pub retries: u32,
    /// Attempts on upstreams so far (connects that failed included).
    pub attempts: u32,
    /// Bytes written to the client for this request.
    pub bytes: u64,
}

/// One client connection and its reused buffers.
pub(crate) struct ClientConnection<S> {
    ctx: Rc<ShardContext>,
    peer: SocketAddr,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    proto: &'static [u8],
    /// The client's address as `X-Forwarded-For` text, rendered once per connection.
    client_ip: Vec<u8>,
    /// The certificate the HTTPS listener verified in the handshake, if any (mutual TLS).
    client_certificate: Option<ClientCertificate>,
    /// `None` for an HTTP/2 stream: its connection is registered by `src/h2/`.
    slot: Option<ClientSlot>,
    /// A plain connection that may still turn out to be h2c: its first bytes are compared
    /// with the client preface before they are parsed as a request.
    awaiting_preface: bool,
    /// The client's bytes: the stream, what was read and not consumed yet, the idle wait.
    down: Downstream<S>,
    head: RequestHead,
    /// The head's path after normalisation (BEHAVIOUR.md §2): what is routed, authorised and
    /// forwarded. Read it with `self.path.of(&self.head, &self.down.inbuf)`.
    path: NormalizedPath,
    /// Filters the trailer section of the chunked body being relayed (either direction).
    trailers: TrailerGate,
    scan: HeadScan,
    /// Heads and small bodies being written (upstream request, client response, errors).
    out: Vec<u8>,
    /// Extra response header lines for the current request (CORS).
    cors: Vec<u8>,
    /// The request target kept for the access log (the head leaves `inbuf` while a body
    /// streams). Only filled when the access log is on.
    log_target: Vec<u8>,
    /// The upstream request target being built.
    target: Vec<u8>,
    /// Bytes read from the upstream.
    rbuf: Vec<u8>,
    /// Held while `rbuf` is a large buffer (a long body is being copied).
    large_read: Option<buffers::LargeLease>,
    resp: ResponseHead,
    /// A WebSocket handshake the upstream switched: the tunnel runs once the request loop ends.
    tunnel: Option<websocket::Tunnel>,
    /// The whole request (head and body) reached the upstream: only then can its connection
    /// carry another request (an upstream that answered early still waits for the rest).
    request_sent: bool,
    plan: AttemptPlan,
    record: RequestRecord,
    /// Bounds whichever step is timed right now (one at a time).
    timer: io::Timer,
    /// For writing a response head and the body bytes that came with it in one `writev`;
    /// allocated at the first such write.
    iov: Option<gather::IoVecPair>,
}

impl<S: ClientIo> ClientConnection<S> {
    fn new(
        ctx: Rc<ShardContext>,
        client: S,
        peer: SocketAddr,
        kind: ListenerKind,
        slot: Option<ClientSlot>,
    ) -> Self {
        let limits = head_limits(&ctx.view().snapshot.gateway);
        Self {
            ctx,
            peer,
            proto: match kind {
                ListenerKind::Http => b"http",
                ListenerKind::Https => b"https",
            },
            slot,
            awaiting_preface: false,
            client_certificate: None,
            client_ip: {
                let mut text = Vec::with_capacity(45);
                crate::http::write_client_ip(&mut text, peer.ip());
                text
            },
            down: Downstream::new(client),
            head: RequestHead::with_header_capacity(INITIAL_HEADERS.min(limits.max_headers)),
            path: NormalizedPath::default(),
            trailers: TrailerGate::default(),
            scan: HeadScan::default(),
            out: Vec::new(),
            cors: Vec::new(),
            log_target: Vec::new(),
            target: Vec::new(),
            rbuf: Vec::new(),
            large_read: None,
            iov: None,
            resp: ResponseHead::with_header_capacity(INITIAL_HEADERS.min(limits.max_headers)),
            tunnel: None,
            request_sent: false,
            plan: AttemptPlan::default(),
            record: RequestRecord::default(),
            timer: io::Timer::default(),
        }
    }

    async fn serve(&mut self) -> Served {
        loop {
            // The wait for a head uses the timeouts and limits current when it begins.
            let waiting = self.ctx.view();
            let next = self.next_request(&waiting.snapshot.gateway).await;
            drop(waiting);
            // The request resolves its route on the snapshot current when its head arrived
            // (a keep-alive connection idle across a reload uses the new one); in-flight
            // requests finish on theirs.
            let view = self.ctx.view();
            let keep_open = match next {
                Next::Request => {
                    self.ctx.buffers.fill(&mut self.out);
                    self.ctx.buffers.fill(&mut self.rbuf);
                    self.record = RequestRecord {
                        started: Some(crate::clock::now()),
                        ..RequestRecord::default()
                    };
                    if self.ctx.access_log.borrow().is_some() {
                        self.log_target.clear();
                        self.log_target
                            .extend_from_slice(self.head.target.slice(&self.down.inbuf));
                    }
                    let keep_open = self.handle(&view).await;
                    if let Some(tunnel) = &mut self.tunnel {
                        // Accounted when the tunnel closes, with what it relayed.
                        tunnel.view = Some(Rc::clone(&view));
                        return Served::Closed;
                    }
                    self.finish_record(&view);
                    keep_open
                }
                Next::Closed => false,
                Next::Http2 => return Served::Http2,
                Next::Park => return Served::Parked,
                Next::Reject(error, reason) => {
                    self.ctx.with_metrics(|m| m.reject(reason));
                    self.reply_error(&view.snapshot.gateway, error, true).await;
                    false
                }
            };
            if !keep_open {
                return Served::Closed;
            }
        }
    }

    /// Reads until a complete request head is in `inbuf` and parses it.
    async fn next_request(&mut self, gateway: &GatewayConfig) -> Next {
        let limits = head_limits(gateway);
        let keepalive = Duration::from_millis(gateway.timeouts.client_keepalive_ms);
        let head_timeout = Duration::from_millis(gateway.timeouts.client_head_ms);
        let mut head_deadline = None;
        let head_len = loop {
            if self.awaiting_preface && !self.down.inbuf.is_empty() {
                match crate::data::h2::detect_preface(&self.down.inbuf) {
                    crate::data::h2::Preface::Http2 => return Next::Http2,
                    crate::data::h2::Preface::Undecided => {}
                    crate::data::h2::Preface::Http1 => self.awaiting_preface = false,
                }
            }
            if !self.down.inbuf.is_empty() && !self.awaiting_preface {
                match self.scan.poll(&self.down.inbuf, &limits) {
                    Ok(Some(head_len)) => break head_len,
                    // The head timeout runs from its first bytes (no clock read when a head
                    // arrives whole).
                    Ok(None) => {
                        head_deadline.get_or_insert_with(|| crate::clock::now() + head_timeout);
                    }
                    Err(e) => return reject(e),
                }
            }
            let idle = self.down.inbuf.is_empty();
            if let Some(slot) = &self.slot {
                slot.set_idle(idle);
            }
            if idle && self.ctx.is_draining() {
                return Next::Closed;
            }
            let read = match head_deadline {
                None => self.read_while_idle(keepalive).await,
                Some(deadline) => {
                    io::read_more(
                        &mut self.down.stream,
                        &mut self.down.inbuf,
                        READ_CHUNK,
                        self.timer.arm_at(deadline),
                    )
                    .await
                }
            };
            match read {
                Ok(_) => {}
                Err(IoError::TimedOut) if std::mem::take(&mut self.down.park_due) => {
                    return Next::Park
                }
                Err(IoError::TimedOut) if head_deadline.is_some() => {
                    return Next::Reject(GatewayError::RequestTimeout, Rejection::Timeout)
                }
                Err(_) => return Next::Closed,
            }
        };
        if let Some(slot) = &self.slot {
            slot.set_idle(false);
        }
        match parse_scanned_request(&self.down.inbuf, head_len, &limits, &mut self.head) {
            Ok(Parsed::Complete) => match self.accept_head(gateway) {
                Ok(()) => Next::Request,
                Err(e) => reject(e),
            },
            Ok(Parsed::Partial) => Next::Reject(
                GatewayError::BadRequest("incomplete request head"),
                Rejection::Syntax,
            ),
            Err(e) => reject(e),
        }
    }

    /// The rules applied to a parsed head before anything looks at it: the underscore policy
    /// (BEHAVIOUR.md §4), then path normalisation (§2), so that routing, authorization and
    /// forwarding all see the same, normal path.
    fn accept_head(&mut self, gateway: &GatewayConfig) -> Result<(), RequestError> {
        match gateway.http.underscores_in_headers {
            UnderscoresInHeaders::Allow => {}
            UnderscoresInHeaders::Drop => self.head.drop_underscored_fields(&self.down.inbuf),
            UnderscoresInHeaders::Reject if self.head.has_underscored_field(&self.down.inbuf) => {
                return Err(RequestError::UnderscoreInFieldName)
            }
            UnderscoresInHeaders::Reject => {}
        }
        self.path
            .normalize(self.head.path.slice(&self.down.inbuf))?;
        Ok(())
    }

    /// Waits for the next request's first bytes with the full-size buffers back in the
    /// shard's pool (see [`Downstream::wait_for_request`]).
    async fn read_while_idle(&mut self, keepalive: Duration) -> Result<usize, IoError> {
        let buffers = &self.ctx.buffers;
        buffers.park(&mut self.out);
        buffers.park(&mut self.rbuf);
        self.large_read = None;
        self.down
            .wait_for_request(buffers, &mut self.timer, keepalive)
            .await
    }

    /// Accounts for the request just answered (or abandoned).
    fn finish_record(&mut self, view: &ShardView) {
        account(
            &self.ctx,
            view,
            &self.record,
            &Accounted {
                client: self.peer.ip(),
                method: self.head.method,
                version: self.head.version,
                target: &self.log_target,
            },
        );
    }

    /// Routes and answers one parsed request; returns whether the connection stays open.
    async fn handle(&mut self, view: &ShardView) -> bool {
        let snapshot = &*view.snapshot;
        let gateway = &snapshot.gateway;
        let path = self.path.of(&self.head, &self.down.inbuf);
        #[cfg(debug_assertions)]
        test_hooks::panic_if_armed(path);
        let lookup = snapshot.router.lookup(self.head.method, path);
        self.cors.clear();
        let api_id = match lookup {
            Lookup::Found(found) => Some(found.api),
            Lookup::MethodNotAllowed { api, .. } => Some(api),
            Lookup::NotFound => None,
        };
        self.record.api = api_id;
        if let Some(policy) = api_id.and_then(|api| snapshot.apis[api.index()].cors.as_ref()) {
            if let Some(origin) = find_header(&self.head, &self.down.inbuf, b"origin") {
                if policy.allows(origin) && is_safe_header_value(origin) {
                    let preflight = self.head.method == Method::Options
                        && find_header(
                            &self.head,
                            &self.down.inbuf,
                            b"access-control-request-method",
                        )
                        .is_some();
                    if preflight {
                        policy.write_preflight(&mut self.cors, origin);
                        return self.reply_preflight(gateway).await;
                    }
                    policy.write_response(&mut self.cors, origin);
                }
            }
        }
        let found = match lookup {
            Lookup::Found(found) => found,
            Lookup::NotFound => {
                return self
                    .reply_error(gateway, GatewayError::NotFound, false)
                    .await
            }
            Lookup::MethodNotAllowed { allowed, .. } if self.head.method == Method::Options => {
                return self.reply_options(gateway, allowed).await;
            }
            Lookup::MethodNotAllowed { allowed, .. } => {
                return self
                    .reply_error(gateway, GatewayError::MethodNotAllowed(allowed), false)
                    .await;
            }
        };
        let route = &snapshot.routes[found.route.index()];
        let api = &snapshot.apis[found.api.index()];
        // The token header is a credential in a trailer section too, secured route or not.
        self.trailers.start(api.auth_header.as_bytes());
        let (group, drop_header) = if route.secured {
            let (key_type, used) = match self.authenticate(snapshot, api, route) {
                Ok(grant) => grant,
                Err(error) => return self.reply_error(gateway, error, false).await,
            };
            // The environment comes from the token; the other one is never borrowed.
            let group = match key_type {
                KeyType::Production => route.production,
                KeyType::Sandbox => route.sandbox,
            };
            let Some(group) = group else {
                let error = GatewayError::NoEndpointForKeyType(key_type);
                return self.reply_error(gateway, error, false).await;
            };
            // The credential that admitted the request goes no further.
            let drop_header = match used {
                Some(Credential::Bearer) if !gateway.jwt.keep_token_header => {
                    Some(api.auth_header.as_bytes())
                }
                Some(Credential::ApiKeyHeader(name)) => Some(name.as_bytes()),
                Some(Credential::ApiKeyQuery(name)) => {
                    self.remove_api_key_from_query(name.as_bytes());
                    None
                }
                _ => None,
            };
            (group, drop_header)
        } else {
            // Security-disabled resources use production when it exists, else sandbox.
            let Some(group) = route.production.or(route.sandbox) else {
                return self
                    .reply_error(gateway, GatewayError::NotFound, false)
                    .await;
            };
            (group, None)
        };
        // Rate limit (BEHAVIOUR.md §9): once the caller is known (an unauthenticated flood
        // spends no tokens) and before anything reaches the upstream. Almost always a
        // shard-local decrement; see src/ratelimit/.
        if let Some(limit) = route.rate_limit {
            if let Err(error) = self.ctx.rate_limits.admit(snapshot, limit).await {
                return self.reply_error(gateway, error, false).await;
            }
        }
        if let (RequestBody::Length(length), Some(max)) =
            (self.head.body, gateway.limits.max_body_bytes)
        {
            if length > max {
                return self
                    .reply_error(gateway, GatewayError::PayloadTooLarge, true)
                    .await;
            }
        }
        self.forward(view, found, group, drop_header).await
    }

    /// Decides a secured route: mutual TLS first (it is the connection's), then the route's
    /// credential alternatives in order, the first one present, valid and carrying its scopes
    /// admitting the request. Returns the environment and the credential used (none when a
    /// client certificate alone admits it). A repeated token costs a cache lookup.
    ///
    /// When no alternative admits the request, a credential that was valid but lacked scopes
    /// answers 403; otherwise the first failure of a presented credential answers 401, and
    /// no credential at all is `Missing`.
    fn authenticate<'s>(
        &self,
        snapshot: &'s Snapshot,
        api: &Api,
        route: &'s Route,
    ) -> Result<(KeyType, Option<&'s Credential>), GatewayError> {
        if let Some(mutual_tls) = api.mutual_tls.as_ref().filter(|m| m.mandatory) {
            match &self.client_certificate {
                None => return Err(GatewayError::Unauthorized(AuthError::NoClientCertificate)),
                Some(certificate) if !mutual_tls.accepts(certificate) => {
                    return Err(GatewayError::Unauthorized(
                        AuthError::ClientCertificateNotAccepted,
                    ))
                }
                Some(_) => {}
            }
            if route.access.application_optional {
                // Choreo Connect's environment when no token says otherwise.
                return Ok((KeyType::Production, None));
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut tokens = self.ctx.tokens.borrow_mut();
        let mut refusal = None;
        for alternative in &route.access.alternatives {
            let presented = match &alternative.credential {
                Credential::Bearer => self.header_value(&api.auth_header).map(extract_bearer),
                Credential::ApiKeyHeader(name) => {
                    find_header(&self.head, &self.down.inbuf, name.as_bytes())
                        .map(<[u8]>::trim_ascii)
                        .filter(|key| !key.is_empty())
                        .map(Ok)
                }
                Credential::ApiKeyQuery(name) => self
                    .head
                    .query
                    .and_then(|q| find_query_param(q.slice(&self.down.inbuf), name.as_bytes()))
                    .map(Ok),
            };
            let token = match presented {
                None => continue,
                Some(Ok(token)) => token,
                Some(Err(e)) => {
                    refusal.get_or_insert(GatewayError::Unauthorized(e));
                    continue;
                }
            };
            let token_use = alternative.credential.token_use();
            match tokens.authorize(
                &snapshot.verifier,
                token,
                now,
                token_use,
                &alternative.scopes,
            ) {
                Ok((key_type, true)) => return Ok((key_type, Some(&alternative.credential))),
                Ok((_, false)) => refusal = Some(GatewayError::InsufficientScope),
                Err(e) => {
                    refusal.get_or_insert(GatewayError::Unauthorized(e));
                }
            }
        }
        Err(refusal.unwrap_or(GatewayError::Unauthorized(AuthError::Missing)))
    }

    /// Takes an API key out of the query sent upstream, in place: the query shrinks within
    /// the request's own bytes (no span after it moves). The access log's copy of the target
    /// is rewritten too, so the key is not logged for a request it admitted.
    fn remove_api_key_from_query(&mut self, name: &[u8]) {
        let Some(query) = self.head.query else { return };
        let range = query.range();
        let len = remove_query_param(&mut self.down.inbuf[range.clone()], name);
        self.head.query = (len > 0).then(|| crate::http::Span::new(range.start, range.start + len));
        if self.ctx.access_log.borrow().is_some() {
            self.log_target.clear();
            self.log_target
                .extend_from_slice(self.path.of(&self.head, &self.down.inbuf));
            if let Some(query) = self.head.query {
                self.log_target.push(b'?');
                self.log_target
                    .extend_from_slice(query.slice(&self.down.inbuf));
            }
        }
    }

    /// The value of the first header named `name` (case-insensitive).
    fn header_value(&self, name: &str) -> Option<&[u8]> {
        if name.eq_ignore_ascii_case("authorization") {
            let header = self
                .head
                .headers
                .iter()
                .find(|h| h.kind == HeaderKind::Authorization)?;
            return Some(header.value.slice(&self.down.inbuf));
        }
        find_header(&self.head, &self.down.inbuf, name.as_bytes())
    }

    /// Answers a CORS preflight: `204` with the policy's headers (already in `cors`).
    async fn reply_preflight(&mut self, gateway: &GatewayConfig) -> bool {
        let close = self.must_close_after_reply();
        self.out.clear();
        self.out.extend_from_slice(b"HTTP/1.1 204 No Content\r\n");
        push_date(&mut self.out);
        self.out.extend_from_slice(&self.cors);
        self.out
            .extend_from_slice(connection_header(close, self.head.version));
        self.out.extend_from_slice(b"\r\n");
        self.finish_reply(gateway, close).await
    }

    /// Answers `OPTIONS` on a resource that does not define it: `204` with `Allow`.
    async fn reply_options(&mut self, gateway: &GatewayConfig, allowed: MethodSet) -> bool {
        let close = self.must_close_after_reply();
        self.out.clear();
        self.out.extend_from_slice(b"HTTP/1.1 204 No Content\r\n");
        push_date(&mut self.out);
        self.out.extend_from_slice(b"allow: ");
        let mut with_options = allowed;
        with_options.insert(Method::Options);
        with_options.write_allow(&mut self.out);
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(&self.cors);
        self.out
            .extend_from_slice(connection_header(close, self.head.version));
        self.out.extend_from_slice(b"\r\n");
        self.finish_reply(gateway, close).await
    }

    /// Sends an error answer. `force_close` for errors after which the request stream cannot
    /// be trusted.
    async fn reply_error(
        &mut self,
        gateway: &GatewayConfig,
        error: GatewayError,
        force_close: bool,
    ) -> bool {
        let close = force_close || error.closes_connection() || self.must_close_after_reply();
        let path = self.path.of(&self.head, &self.down.inbuf);
        if let Some(reason) = error.failure_reason() {
            self.ctx.with_metrics(|m| m.auth_failure(reason));
            log::debug!(
                "shard {}: {} {} refused ({}): {}",
                self.ctx.index,
                self.head.method.as_str(),
                String::from_utf8_lossy(path),
                reason.label(),
                match &error {
                    GatewayError::Unauthorized(e) => e as &dyn std::fmt::Display,
                    other => other as &dyn std::fmt::Display,
                }
            );
        }
        self.out.clear();
        error.render_for_path(
            &mut self.out,
            &RenderOptions {
                close,
                http10_keep_alive: !close && self.head.version == Version::Http10,
                head_request: self.head.method == Method::Head,
                extra_headers: &self.cors,
            },
            path,
        );
        self.finish_reply(gateway, close).await
    }

    /// Writes all of `out` to the client, bounded by `client_io` of silence.
    pub(super) async fn send_out(&mut self, client_io: Duration) -> Result<(), IoError> {
        io::write_all(
            &mut self.down.stream,
            &mut self.out,
            self.timer.arm_in(client_io),
        )
        .await
    }

    /// Writes `out` to the client; on keep-alive, drops the answered request from `inbuf`.
    async fn finish_reply(&mut self, gateway: &GatewayConfig, close: bool) -> bool {
        self.record.status = status_of(&self.out);
        self.record.bytes += self.out.len() as u64;
        let client_io = Duration::from_millis(gateway.timeouts.client_io_ms);
        if self.send_out(client_io).await.is_err() {
            return false;
        }
        if close {
            return false;
        }
        match self.buffered_request_end() {
            Some(end) => {
                self.down.inbuf.drain(..end);
                true
            }
            None => false,
        }
    }

    /// Whether a gateway-made answer has to close the connection: the client asked for it,
    /// the shard is draining, or the request body has not been read (answering without
    /// reading it would desynchronise the stream).
    fn must_close_after_reply(&self) -> bool {
        !self.head.keep_alive || self.ctx.is_draining() || self.buffered_request_end().is_none()
    }

    /// Appends the body bytes `inbuf` holds to `out` (after the upstream head): a buffered body
    /// whole, or a streaming body's beginning. A chunked body's trailer section leaves without
    /// its forbidden fields (BEHAVIOUR.md §4); while it is incomplete, what has arrived of it
    /// waits in `trailers` for the rest.
    fn push_request_body(&mut self, body: &request_body::RequestBodyState) {
        let head_len = self.head.head_len;
        let body_start = self.out.len();
        match body {
            request_body::RequestBodyState::Buffered { end } => {
                self.out.extend_from_slice(&self.down.inbuf[head_len..*end]);
                if self.head.body != RequestBody::Chunked {
                    return;
                }
                // The body was validated whole; scanning it again (chunk lines only, payload
                // is skipped) tells where its trailer section starts.
                let mut decoder = ChunkedDecoder::new(ChunkLimits::default());
                if decoder
                    .scan(&self.out[body_start..])
                    .is_ok_and(|scan| scan.done)
                {
                    self.trailers.restart();
                    let end = self.out.len();
                    self.trailers.pass(&decoder, &mut self.out, body_start, end);
                }
            }
            request_body::RequestBodyState::Streaming(decoder) => {
                self.out.extend_from_slice(&self.down.inbuf[head_len..]);
                if let request_body::BodyDecoder::Chunked { decoder, .. } = decoder {
                    self.trailers.restart();
                    let end = self.out.len();
                    self.trailers.pass(decoder, &mut self.out, body_start, end);
                }
            }
        }
    }

    /// `inbuf[..consumed]` of a streaming request body was just scanned: returns how much of
    /// it to send now, with the trailer section held back or filtered (see `TrailerGate`).
    fn pass_request_trailers(
        &mut self,
        decoder: &request_body::BodyDecoder,
        consumed: usize,
    ) -> usize {
        match decoder {
            request_body::BodyDecoder::Chunked { decoder, .. } => {
                self.trailers
                    .pass(decoder, &mut self.down.inbuf, 0, consumed)
            }
            request_body::BodyDecoder::Length(_) => consumed,
        }
    }

    /// Where the current request (head and whole body) ends in `inbuf`, if it is all there.
    fn buffered_request_end(&self) -> Option<usize> {
        let head_len = self.head.head_len;
        let available = self.down.inbuf.get(head_len..)?;
        match self.head.body {
            RequestBody::None => Some(head_len),
            RequestBody::Length(length) => {
                (available.len() as u64 >= length).then(|| head_len + length as usize)
            }
            RequestBody::Chunked => {
                let mut decoder = ChunkedDecoder::new(ChunkLimits::default());
                match decoder.scan(available) {
                    Ok(scan) if scan.done => Some(head_len + scan.consumed),
                    _ => None,
                }
            }
        }
    }
}

/// The value of the first header named `name` (case-insensitive).
fn find_header<'b>(head: &RequestHead, buf: &'b [u8], name: &[u8]) -> Option<&'b [u8]> {
    head.headers
        .iter()
        .find(|h| h.name.len() == name.len() && h.name.slice(buf).eq_ignore_ascii_case(name))
        .map(|h| h.value.slice(buf))
}

/// The status code of a response head we rendered (`HTTP/1.1 404 ...`).
fn status_of(head: &[u8]) -> u16 {
    head.get(9..12)
        .filter(|d| d.iter().all(u8::is_ascii_digit))
        .map_or(0, |d| d.iter().fold(0, |n, b| n * 10 + u16::from(b - b'0')))
}

/// The codec's limits from the gateway config.
fn head_limits(gateway: &GatewayConfig) -> HeadLimits {
    HeadLimits {
        max_head: gateway.limits.max_request_head_bytes,
        max_request_line: gateway.limits.max_request_line_bytes,
        max_headers: gateway.limits.max_headers,
    }
}

fn request_error(error: RequestError) -> GatewayError {
    match error.status() {
        431 => GatewayError::HeaderFieldsTooLarge,
        414 => GatewayError::UriTooLong,
        417 => GatewayError::ExpectationFailed,
        505 => GatewayError::VersionNotSupported,
        _ => GatewayError::BadRequest(error.reason()),
    }
}

/// The answer to a refused head and the reason it is counted under.
fn reject(error: RequestError) -> Next {
    let reason = match error {
        RequestError::HeadTooLarge | RequestError::TooManyHeaders => Rejection::HeadTooLarge,
        RequestError::RequestLineTooLong => Rejection::UriTooLong,
        RequestError::UnsupportedVersion => Rejection::Version,
        RequestError::UnsupportedExpectation => Rejection::Expectation,
        RequestError::UnderscoreInFieldName => Rejection::UnderscoreHeader,
        RequestError::Path(_) => Rejection::Path,
        RequestError::Header(
            HeaderError::ContentLengthWithTransferEncoding
            | HeaderError::ConflictingContentLength
            | HeaderError::InvalidContentLength
            | HeaderError::UnsupportedTransferCoding
            | HeaderError::ChunkedNotFinal
            | HeaderError::ChunkedTwice
            | HeaderError::MalformedTransferEncoding
            | HeaderError::TransferEncodingInHttp10,
        ) => Rejection::Framing,
        _ => Rejection::Syntax,
    };
    Next::Reject(request_error(error), reason)
}

/// The `date` line of a gateway-made answer (errors carry theirs from `GatewayError::render`).
fn push_date(out: &mut Vec<u8>) {
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(&current_http_date());
    out.extend_from_slice(b"\r\n");
}

/// The `Connection` line of a gateway-made answer.
fn connection_header(close: bool, version: Version) -> &'static [u8] {
    match (close, version) {
        (true, _) => b"connection: close\r\n",
        (false, Version::Http10) => b"connection: keep-alive\r\n",
        (false, Version::Http11) => b"",
    }
}
