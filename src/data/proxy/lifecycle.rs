//! The upstream side of a request, as explicit phases read top to bottom (Pingora's
//! `upstream_peer` / `fail_to_connect` / `error_while_proxy` are the model):
//!
//! 1. **admit**: classify the body, take the group's request slot (`maxRequests`), answer
//!    `100 Continue`, read a small body whole so that it can be replayed;
//! 2. **plan**: the group's members in the order its policy gives (round robin or failover,
//!    suspended members last, drained ones never);
//! 3. **attempt**, per member: pick (an expired suspension is probed by one request across
//!    all shards), connect or reuse, send, read the response head (`exchange.rs`), each step
//!    bounded by the attempt timeout, and each failure one typed [`UpstreamError`];
//! 4. **decide**: the pure policy of [`crate::upstream::retry`] turns the failure or the
//!    status into the next step: a fresh connection, the next member, or the answer;
//! 5. **respond**: relay the response (`relay.rs`) or render the gateway's error.

use std::os::fd::AsRawFd;
use std::pin::pin;
use std::time::{Duration, Instant};

use super::exchange::{connect, AttemptError};
use super::io;
use super::request_body::RequestBodyState;
use super::ClientConnection;
use crate::compile::config::gateway::{GatewayConfig, ReuseCheck};
use crate::data::shard::ShardView;
use crate::error::GatewayError;
use crate::http::{write_upstream_head, Method, UpstreamHead, Version};
use crate::ids::{EndpointId, GroupId};
use crate::route::{write_upstream_target, RouteMatch};
use crate::tls::UpstreamStream;
use crate::upstream::balancer::{AttemptPlan, MemberState};
use crate::upstream::circuit::BreakerGuard;
use crate::upstream::connection::UpstreamConnection;
use crate::upstream::health::Pick;
use crate::upstream::idle_watch::Quiet;
use crate::upstream::pool::{nothing_to_read, Pooled};
use crate::upstream::retry::{self, Decision, Facts, StatusFacts, UpstreamError};
use crate::upstream::{Endpoint, Group, GroupMember};

/// Base of the jittered backoff between status-code retries (Choreo Connect's value).
const RETRY_BACKOFF_BASE: Duration = Duration::from_millis(25);

/// How the upstream side of a request ended.
enum Exchange {
    /// A final response head from `EndpointId` is in `rbuf`.
    Response(UpstreamConnection, EndpointId),
    /// No response; answer with this error.
    Failed(GatewayError),
    /// The client left or sent a malformed body mid-request.
    ClientFailed(Option<GatewayError>),
}

/// How one attempt on one member ended.
enum AttemptResult {
    /// A final response head is in `rbuf`.
    Response(UpstreamConnection),
    Failed(UpstreamError),
    /// Answer with this without trying anything else (a breaker said no).
    Answer(GatewayError),
    Client(Option<GatewayError>),
}

/// A member chosen for an attempt: its place in the plan and its index in the group.
#[derive(Clone, Copy, Debug)]
struct Picked {
    position: usize,
    member: usize,
}

/// Where a request is in its plan. Members whose expired suspension another request (maybe
/// on another shard) is probing are skipped, and tried in a second pass only when nothing
/// else is left.
#[derive(Default)]
struct MemberCursor {
    next: usize,
    /// Plan positions (below 64) skipped for a probe this request did not take.
    deferred: u64,
}

impl MemberCursor {
    fn has_more(&self, plan: &AttemptPlan) -> bool {
        self.next < plan.len() || self.deferred != 0
    }
}

/// Everything the attempts of one request share.
struct Attempting<'a> {
    view: &'a ShardView,
    group_id: GroupId,
    group: &'a Group,
    found: RouteMatch,
    drop_header: Option<&'a [u8]>,
    /// The route deadline (`timeoutInMillis`), retries included.
    deadline: Instant,
    /// `timeouts.upstream_attempt_ms`.
    attempt_limit: Duration,
    idempotent: bool,
    /// When the upstream phases began: the clock reading every decision up to the first
    /// attempt's first wait uses (no time passes between them but the code's own).
    started: Instant,
}

impl<S: super::ClientIo> ClientConnection<S> {
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

        // Phase 1: admit.
        let mut body = match self.request_body_state(gateway.limits.max_body_bytes) {
            Ok(body) => body,
            Err(error) => return self.reply_error(gateway, error, true).await,
        };
        // Over the group's concurrent-request limit: answer without calling the upstream
        // (and before asking the client for its body).
        let Ok(_request_slot) = snapshot.breakers.try_acquire_request(group_id) else {
            let consumed = self.consume_request(&body);
            return self
                .reply_upstream_error(gateway, GatewayError::UpstreamOverflow, consumed)
                .await;
        };
        let client_io = Duration::from_millis(gateway.timeouts.client_io_ms);
        if self.head.expect_continue
            && matches!(body, RequestBodyState::Streaming(_))
            && self.head.version == Version::Http11
        {
            self.out.clear();
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            if self.send_out(client_io).await.is_err() {
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

        // Phases 2 to 4: plan, attempts, decisions.
        let started = crate::clock::now();
        let request = Attempting {
            view,
            group_id,
            group,
            found,
            drop_header,
            deadline: started + Duration::from_millis(group.timeout_ms),
            attempt_limit: Duration::from_millis(gateway.timeouts.upstream_attempt_ms),
            idempotent: self.head.method.is_idempotent(),
            started,
        };
        let exchange = self.exchange(&request, &mut body).await;

        // Phase 5: respond.
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
                self.record.upstream_micros = Some(
                    crate::clock::now()
                        .saturating_duration_since(started)
                        .as_micros() as u64,
                );
                self.record.status = self.resp.status;
                let label = view.labels.endpoint[endpoint_id.index()];
                if self.resp.is_switching_protocols() {
                    // The in-flight count ends with the tunnel.
                    return self.open_tunnel(view, gateway, conn, label).await;
                }
                if self.head.upgrade_websocket {
                    self.count_refused_upgrade(view);
                }
                let timeout = Duration::from_millis(group.timeout_ms);
                let keep_open = self
                    .relay_response(gateway, conn, request_consumed, timeout)
                    .await;
                self.count_in_flight(label, -1);
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

    /// Phases 2 to 4: attempts on the plan's members until one answers with a response the
    /// policy accepts, or the policy says to answer.
    async fn exchange(
        &mut self,
        request: &Attempting<'_>,
        body: &mut RequestBodyState,
    ) -> Exchange {
        let view = request.view;
        let breakers = &*view.snapshot.breakers;
        let mut plan = std::mem::take(&mut self.plan);
        // Read again only after a wait: a failed attempt or a retry's backoff.
        let mut now = request.started;
        self.plan_members(request, &mut plan, now);
        let mut cursor = MemberCursor::default();
        // At most one retry slot (`maxRetries`) at a time: the one of the attempt under way.
        let mut _retry_slot: Option<BreakerGuard<'_>> = None;
        let mut status_retries = 0u8;
        let mut fresh = false;
        let mut current = self.next_member(request, &plan, &mut cursor, body, now);
        let outcome = loop {
            let Some(at) = current else {
                // Every member is drained: nothing may be tried.
                break Exchange::Failed(GatewayError::UpstreamUnavailable);
            };
            let endpoint_id = request.group.members[at.member].endpoint;
            let result = self.attempt(request, at, &plan, body, fresh, now).await;
            fresh = false;
            match result {
                AttemptResult::Response(conn) => {
                    self.ctx.endpoint_succeeded(view, endpoint_id);
                    let retry = request.group.retry.as_ref();
                    // Most answers are no retry target: no backoff to draw, no clock to read.
                    if !retry.is_some_and(|retry| retry.retries_on(self.resp.status)) {
                        break Exchange::Response(conn, endpoint_id);
                    }
                    let backoff = self
                        .ctx
                        .jittered(RETRY_BACKOFF_BASE * (1u32 << status_retries.min(8)));
                    let mut facts = StatusFacts {
                        retries: status_retries,
                        replayable: body.is_replayable(),
                        backoff_fits: Instant::now() + backoff < request.deadline,
                        retry_budget: true,
                    };
                    let mut slot = None;
                    if retry::after_status(self.resp.status, retry, facts) {
                        slot = breakers.try_acquire_retry(request.group_id).ok();
                        facts.retry_budget = slot.is_some();
                    }
                    if !retry::after_status(self.resp.status, retry, facts) {
                        break Exchange::Response(conn, endpoint_id);
                    }
                    log::debug!(
                        "status {} from upstream: retry {} after {backoff:?}",
                        self.resp.status,
                        status_retries + 1
                    );
                    // The response goes with its connection.
                    drop(conn);
                    self.count_in_flight(view.labels.endpoint[endpoint_id.index()], -1);
                    _retry_slot = slot;
                    status_retries += 1;
                    monoio::time::sleep(backoff).await;
                    now = Instant::now();
                    current = Some(next_after_status(&plan, at));
                }
                AttemptResult::Client(error) => break Exchange::ClientFailed(error),
                AttemptResult::Answer(error) => break Exchange::Failed(error),
                AttemptResult::Failed(error) => {
                    let label = view.labels.endpoint[endpoint_id.index()];
                    if let Some(cause) = error.endpoint_failure() {
                        self.count_failure(label);
                        self.ctx.endpoint_failed(
                            view,
                            endpoint_id,
                            &request.group.suspension,
                            cause,
                            error.describe(),
                        );
                    }
                    now = Instant::now();
                    let mut facts = Facts {
                        idempotent: request.idempotent,
                        replayable: body.is_replayable(),
                        member_left: cursor.has_more(&plan),
                        time_left: now < request.deadline,
                        retry_budget: true,
                    };
                    let mut slot = None;
                    if retry::after_failure(error, facts) == Decision::NextMember {
                        slot = breakers.try_acquire_retry(request.group_id).ok();
                        facts.retry_budget = slot.is_some();
                    }
                    match retry::after_failure(error, facts) {
                        Decision::FreshConnection => fresh = true,
                        Decision::NextMember => {
                            _retry_slot = slot;
                            current = self.next_member(request, &plan, &mut cursor, body, now);
                        }
                        Decision::Answer(answer) => {
                            log::debug!(
                                "upstream {}: {}; answering {}",
                                view.snapshot.endpoints[endpoint_id.index()].origin(),
                                error.describe(),
                                answer.status()
                            );
                            break Exchange::Failed(answer);
                        }
                    }
                }
            }
        };
        self.record.retries = self.record.attempts.saturating_sub(1);
        self.plan = plan;
        outcome
    }

    /// Phase 2: the members in the order the group's policy gives. One load of each
    /// member's health word: suspended members come last, drained ones not at all, and this
    /// shard reconciles what it sees (drains its pool of a downed endpoint).
    fn plan_members(&self, request: &Attempting<'_>, plan: &mut AttemptPlan, now: Instant) {
        let snapshot = &*request.view.snapshot;
        let health = &*snapshot.upstreams.health;
        let group = request.group;
        let local = self.ctx.upstreams.borrow();
        request.view.cursors.plan(
            request.group_id.index(),
            group,
            |i| {
                let upstream = snapshot.endpoints[group.members[i].endpoint.index()].upstream;
                if local.is_drained(upstream) {
                    return MemberState::Excluded;
                }
                let word = health.load(upstream);
                self.ctx.reconcile(upstream, word);
                match health.pick_of(word, now) {
                    Pick::Suspended => MemberState::Suspended,
                    Pick::Usable | Pick::ProbeDue => MemberState::Usable,
                }
            },
            plan,
        );
    }

    /// The next member to try. A member whose suspension is over is tried by the one request
    /// (across all shards) that wins its probe claim; a request that could not move on after
    /// a failed probe (not idempotent, or its body streams) leaves the probe to others while
    /// it has somewhere else to go, so that a probe's failure never reaches a client that
    /// had another member.
    fn next_member(
        &self,
        request: &Attempting<'_>,
        plan: &AttemptPlan,
        cursor: &mut MemberCursor,
        body: &RequestBodyState,
        now: Instant,
    ) -> Option<Picked> {
        let snapshot = &*request.view.snapshot;
        let health = &*snapshot.upstreams.health;
        let can_move_on = request.idempotent && body.is_replayable();
        while let Some(member) = plan.get(cursor.next) {
            let position = cursor.next;
            cursor.next += 1;
            let upstream =
                snapshot.endpoints[request.group.members[member].endpoint.index()].upstream;
            if health.pick_state(upstream, now) == Pick::ProbeDue {
                let elsewhere = cursor.has_more(plan);
                // The claim lapses if this request never reports (its shard stalled, its
                // client left): bounded by one attempt, not the whole route budget.
                let lease = request
                    .deadline
                    .saturating_duration_since(now)
                    .min(request.attempt_limit);
                let probes =
                    (can_move_on || !elsewhere) && health.try_claim_probe(upstream, now, lease);
                if !probes && position < 64 {
                    cursor.deferred |= 1 << position;
                    continue;
                }
            }
            return Some(Picked { position, member });
        }
        // Second pass: the members skipped for a probe, now that nothing else is left.
        if cursor.deferred != 0 {
            let position = cursor.deferred.trailing_zeros() as usize;
            cursor.deferred &= !(1 << position);
            return plan.get(position).map(|member| Picked { position, member });
        }
        None
    }

    /// Phase 3 for one member: connect or reuse, then send and read the head, within the
    /// attempt's share of the route budget.
    async fn attempt(
        &mut self,
        request: &Attempting<'_>,
        at: Picked,
        plan: &AttemptPlan,
        body: &mut RequestBodyState,
        fresh: bool,
        now: Instant,
    ) -> AttemptResult {
        let view = request.view;
        let snapshot = &*view.snapshot;
        let gateway = &snapshot.gateway;
        let member = &request.group.members[at.member];
        let endpoint_id = member.endpoint;
        let endpoint = &snapshot.endpoints[endpoint_id.index()];
        let upstream = endpoint.upstream;
        let label = view.labels.endpoint[endpoint_id.index()];
        self.record.endpoint = Some(endpoint_id);
        self.prepare_upstream_request(request, member, endpoint, body);
        // The attempt's share: what is left of the route budget over the usable members
        // still to try, so that a frozen first member leaves time for the next.
        let eligible_left = plan.usable().saturating_sub(at.position).max(1) as u32;
        let share = request.deadline.saturating_duration_since(now) / eligible_left;
        let attempt_deadline = now + share.min(request.attempt_limit);

        // HTTP/2 upstreams multiplex streams on their own connections (src/h2/upstream.rs);
        // the HTTP/1.1 pool never holds them.
        let pooled = if fresh || request.group.http2 {
            None
        } else {
            self.take_pooled(upstream, now, attempt_deadline).await
        };
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => {
                let breakers = &*snapshot.breakers;
                let Ok(slot) = breakers
                    .acquire_connection(request.group_id, attempt_deadline)
                    .await
                else {
                    return AttemptResult::Answer(GatewayError::UpstreamOverflow);
                };
                let connect_for = Duration::from_millis(gateway.timeouts.upstream_connect_ms)
                    .min(attempt_deadline.saturating_duration_since(Instant::now()));
                let addrs = self.ctx.upstreams.borrow().addresses(upstream);
                self.count_attempt(label, false);
                let connected = if request.group.http2 {
                    crate::data::h2::upstream::open_stream(
                        endpoint,
                        &addrs,
                        Instant::now() + connect_for,
                        &snapshot.tls.upstream,
                        &gateway.http2,
                        Duration::from_millis(gateway.timeouts.upstream_idle_ms),
                    )
                    .await
                    .map(|(stream, peer)| (UpstreamStream::H2(stream), peer))
                } else {
                    connect(
                        endpoint,
                        &addrs,
                        connect_for,
                        &snapshot.tls.upstream,
                        &mut self.timer,
                    )
                    .await
                };
                match connected {
                    Some((stream, peer)) => UpstreamConnection {
                        upstream,
                        peer,
                        stream,
                        slot,
                        counted: self.ctx.upstream_open.opened(),
                        watch_when_idle: gateway.upstream.reuse_check == ReuseCheck::Watch,
                        watch: None,
                        nonblocking: false,
                        last_body_spliced: false,
                    },
                    None => return AttemptResult::Failed(UpstreamError::Connect),
                }
            }
        };
        if reused {
            self.count_attempt(label, true);
        }
        self.count_in_flight(label, 1);
        // Requests that can move on leave as soon as another request has this endpoint
        // suspended, rather than waiting out their own attempt timeout.
        let watch = (request.idempotent && body.is_replayable())
            .then(|| (upstream, self.ctx.suspensions.generation(upstream)));
        let times = super::exchange::AttemptTimes {
            deadline: attempt_deadline,
            limit: request.attempt_limit,
            route_deadline: request.deadline,
        };
        let result = self
            .send_and_read_head(gateway, &mut conn, body, times, watch)
            .await;
        match result {
            Ok(()) => AttemptResult::Response(conn),
            Err(error) => {
                self.count_in_flight(label, -1);
                match error {
                    AttemptError::Client(error) => AttemptResult::Client(error),
                    AttemptError::Upstream(UpstreamError::ClosedBeforeResponse) if reused => {
                        AttemptResult::Failed(UpstreamError::StaleReuse)
                    }
                    AttemptError::Upstream(error) => AttemptResult::Failed(error),
                }
            }
        }
    }

    /// A pooled connection to `upstream` that nothing arrived on while it was idle: peeked
    /// (`reuse_check: peek`), or vouched for by its watch. A watched one that went idle in
    /// this event-loop turn is waited for until its watch settles (the next submission)
    /// rather than peeked; if it does not settle by `deadline`, it is peeked.
    async fn take_pooled(
        &mut self,
        upstream: crate::ids::UpstreamId,
        now: Instant,
        deadline: Instant,
    ) -> Option<UpstreamConnection> {
        loop {
            let conn = self.ctx.pool.borrow_mut().take(upstream, now)?;
            let quiet = match (conn.quiet(), &conn.watch) {
                (Quiet::Unconfirmed, Some(watch)) => {
                    let settled = pin!(watch.settled());
                    io::race(settled, self.timer.arm_at(deadline))
                        .await
                        .unwrap_or(Quiet::Unconfirmed)
                }
                (quiet, _) => quiet,
            };
            let reusable = match quiet {
                Quiet::Vouched => true,
                Quiet::Stirred => false,
                Quiet::Unconfirmed | Quiet::Unwatched => nothing_to_read(conn.as_raw_fd()),
            };
            if reusable {
                return Some(conn);
            }
        }
    }

    /// Counts an attempt on the endpoint (every attempt after a request's first is a retry).
    fn count_attempt(&mut self, label: u32, reused: bool) {
        self.record.attempts += 1;
        let retry = self.record.attempts > 1;
        self.ctx.with_metrics(|m| {
            if let Some(c) = m.endpoint(label) {
                c.attempts.inc();
                if retry {
                    c.retries.inc();
                }
                if !reused {
                    c.connections_opened.inc();
                }
            }
        });
    }

    fn count_in_flight(&self, label: u32, delta: i64) {
        self.ctx.with_metrics(|m| {
            if let Some(c) = m.endpoint(label) {
                c.in_flight.add(delta);
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

    /// Answers with a gateway error after the upstream side failed.
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
            let _ = self.send_out(client_io).await;
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
        self.send_out(client_io).await.is_ok() && !close
    }

    /// Builds the upstream request head (and the buffered body, or the body's beginning) in
    /// `out` for one endpoint of the group.
    fn prepare_upstream_request(
        &mut self,
        request: &Attempting<'_>,
        member: &GroupMember,
        endpoint: &Endpoint,
        body: &RequestBodyState,
    ) {
        let path = self.path.of(&self.head, &self.down.inbuf);
        let query = self.head.query.map(|q| q.slice(&self.down.inbuf));
        self.target.clear();
        let rest = &path[request.found.rest_start..];
        match &request.view.snapshot.routes[request.found.route.index()].uri_mapping {
            Some(mapping) => mapping.write_target(&mut self.target, &member.base_path, rest, query),
            None => write_upstream_target(&mut self.target, &member.base_path, rest, query),
        }
        self.out.clear();
        write_upstream_head(
            &mut self.out,
            &self.down.inbuf,
            &self.head,
            &UpstreamHead {
                target: &self.target,
                host: endpoint.authority.as_bytes(),
                client_ip: &self.client_ip,
                proto: self.proto,
                drop_header: request.drop_header,
                authorization: request.group.authorization.as_deref(),
            },
        );
        self.push_request_body(body);
    }
}

/// Where a status retry goes: the next usable member after the one that answered, in plan
/// order (load_balance: the rotation; failover: list order), wrapping; the same member only
/// when no other is usable.
fn next_after_status(plan: &AttemptPlan, answered: Picked) -> Picked {
    let usable = plan.usable();
    if usable <= 1 || answered.position >= usable {
        return answered;
    }
    let position = (answered.position + 1) % usable;
    Picked {
        position,
        member: plan.get(position).unwrap_or(answered.member),
    }
}
