//! One HTTP/2 client connection: the handshake (bounded by the head timeout), then a loop
//! that accepts streams and runs each through the request lifecycle (inside this task, so a
//! connection's streams end with it), sends GOAWAY when the shard drains, when the
//! connection idles past the keep-alive timeout or when the client exhausts a frame budget,
//! and finishes the streams in flight before closing.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use monoio::io::poll_io::{AsyncRead, AsyncWrite};

use super::bridge::StreamBridge;
use super::convert;
use super::io::{Metered, PlainIo, TlsIo};
use super::meter::{Budget, FrameMeter};
use super::DrainWatch;
use crate::auth::ClientCertificate;
use crate::compile::config::gateway::GatewayConfig;
use crate::data::shard::{ClientSlot, ShardContext};
use crate::data::shared::ListenerKind;
use crate::http::HeadLimits;
use crate::tls::{ClientStream, ServerTlsStream};

/// Serves a plain connection whose first bytes (`read`, a buffer that may hold more than the
/// preface) were the HTTP/2 client preface.
pub async fn serve_h2c(
    ctx: Rc<ShardContext>,
    stream: ClientStream,
    read: Vec<u8>,
    peer: SocketAddr,
    slot: ClientSlot,
) {
    // The HTTP/1.1 loop marked the connection idle while it waited for the preface; an idle
    // connection is shut by the drain instead of being sent GOAWAY.
    slot.set_idle(false);
    let crate::tls::TcpOrTls::Plain(tcp) = stream else {
        // Only plain listeners detect the preface; TLS connections chose h2 by ALPN.
        return;
    };
    match PlainIo::new(tcp, read) {
        Ok(io) => serve(ctx, io, peer, ListenerKind::Http, None, slot).await,
        Err(e) => log::debug!("h2c connection from {peer}: cannot switch to poll-io: {e}"),
    }
}

/// Serves a TLS connection whose handshake chose ALPN `h2`.
pub async fn serve_tls(
    ctx: Rc<ShardContext>,
    stream: Box<ServerTlsStream>,
    peer: SocketAddr,
    slot: ClientSlot,
) {
    let (tls, info) = stream.into_parts();
    let (tcp, conn) = tls.into_parts();
    match TlsIo::new(tcp, conn) {
        Ok(io) => {
            serve(
                ctx,
                io,
                peer,
                ListenerKind::Https,
                info.client_certificate,
                slot,
            )
            .await
        }
        Err(e) => log::debug!("h2 connection from {peer}: cannot switch to poll-io: {e}"),
    }
}

/// The `h2` server settings from `http2:` (and the head limit for the header list).
fn builder(gateway: &GatewayConfig) -> h2::server::Builder {
    let http2 = &gateway.http2;
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(http2.max_concurrent_streams)
        .max_header_list_size(http2.header_list_limit(gateway.limits.max_request_head_bytes))
        .initial_window_size(http2.stream_window_bytes)
        .initial_connection_window_size(http2.connection_window_bytes)
        .max_frame_size(http2.max_frame_bytes)
        .max_send_buffer_size(http2.max_send_buffer_bytes as usize)
        .max_pending_accept_reset_streams(http2.max_pending_accept_reset_streams as usize)
        .max_local_error_reset_streams(Some(http2.max_local_error_reset_streams as usize));
    builder
}

/// What woke the connection loop. Short-lived (one per wake-up, on the stack), so the size
/// of the stream variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Event {
    Stream(http::Request<RecvStream>, SendResponse<Bytes>),
    /// A stream finished.
    StreamDone,
    Drain,
    Idle,
    Budget(super::meter::Violation),
    /// The connection is finished (closed by either side, or an error).
    Closed(Option<h2::Error>),
}

type StreamTask = Pin<Box<dyn Future<Output = ()>>>;

async fn serve<T: AsyncRead + AsyncWrite + Unpin>(
    ctx: Rc<ShardContext>,
    io: T,
    peer: SocketAddr,
    kind: ListenerKind,
    client_certificate: Option<ClientCertificate>,
    slot: ClientSlot,
) {
    let view = ctx.view();
    let gateway = &view.snapshot.gateway;
    let http2 = &gateway.http2;
    let meter = Rc::new(RefCell::new(FrameMeter::new(Budget {
        max_control_frames: http2.max_control_frames,
        max_client_resets: http2.max_client_resets,
        max_empty_frames: http2.max_empty_frames,
    })));
    let head_timeout = Duration::from_millis(gateway.timeouts.client_head_ms);
    let keepalive = Duration::from_millis(gateway.timeouts.client_keepalive_ms);
    let handshake = builder(gateway).handshake::<_, Bytes>(Metered::new(io, Rc::clone(&meter)));
    drop(view);
    let mut conn = match monoio::time::timeout(head_timeout, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            log::debug!("h2 handshake with {peer} failed: {e}");
            return;
        }
        Err(_) => {
            log::debug!("h2 handshake with {peer} timed out");
            return;
        }
    };
    ctx.with_metrics(|m| m.http2_connections.inc());
    // The snapshot the connection's settings came from: after a reload, the next stream is
    // still served (on the new snapshot, like any request) and GOAWAY tells the client to
    // reconnect, so that the new settings apply.
    let generation = ctx.view().generation;
    let drain = DrainWatch::new();
    let mut streams: FuturesUnordered<StreamTask> = FuturesUnordered::new();
    let mut idle = Box::pin(monoio::time::sleep(keepalive));
    let mut idle_armed = true;
    let mut closing = false;
    loop {
        let event = poll_fn(|cx| {
            if !closing {
                if let Some(violation) = meter.borrow().violation() {
                    return Poll::Ready(Event::Budget(violation));
                }
                if drain.poll(cx) {
                    return Poll::Ready(Event::Drain);
                }
            }
            if let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {
                return Poll::Ready(Event::StreamDone);
            }
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((request, respond)))) => {
                    return Poll::Ready(Event::Stream(request, respond))
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Event::Closed(Some(e))),
                Poll::Ready(None) => return Poll::Ready(Event::Closed(None)),
                Poll::Pending => {}
            }
            if idle_armed && streams.is_empty() && idle.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Idle);
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Stream(request, respond) => {
                idle_armed = false;
                streams.push(Box::pin(serve_stream(
                    Rc::clone(&ctx),
                    request,
                    respond,
                    peer,
                    kind,
                    client_certificate,
                )));
                if !closing && ctx.view().generation != generation {
                    conn.graceful_shutdown();
                    closing = true;
                }
            }
            Event::StreamDone => {
                if streams.is_empty() && !closing {
                    idle.as_mut().reset((Instant::now() + keepalive).into());
                    idle_armed = true;
                }
            }
            Event::Drain | Event::Idle => {
                // GOAWAY: no new streams; those in flight finish, then the connection closes.
                conn.graceful_shutdown();
                closing = true;
                idle_armed = false;
            }
            Event::Budget(violation) => {
                log::info!(
                    "h2 connection from {peer}: {} budget exhausted; GOAWAY ENHANCE_YOUR_CALM",
                    violation.label()
                );
                ctx.with_metrics(|m| m.http2_budget_exceeded.inc());
                conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                closing = true;
                idle_armed = false;
            }
            Event::Closed(error) => {
                if let Some(e) = error {
                    log::debug!("h2 connection from {peer} ended: {e}");
                    if e.reason() == Some(Reason::ENHANCE_YOUR_CALM) {
                        ctx.with_metrics(|m| m.http2_budget_exceeded.inc());
                    }
                }
                break;
            }
        }
    }
    // Streams whose exchange with the client is over may still be finishing their own
    // bookkeeping (pooling the upstream connection, metrics, the access log): a moment for
    // them, then the rest (waiting on an upstream for a client that is gone) are dropped.
    let finishing = std::pin::pin!(async { while streams.next().await.is_some() {} });
    let _ = monoio::time::timeout(STREAMS_LINGER, finishing).await;
    drop(slot);
}

/// How long streams may finish after their connection closed.
const STREAMS_LINGER: Duration = Duration::from_secs(1);

/// One stream through the request lifecycle.
async fn serve_stream(
    ctx: Rc<ShardContext>,
    request: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
    peer: SocketAddr,
    kind: ListenerKind,
    client_certificate: Option<ClientCertificate>,
) {
    let (parts, body) = request.into_parts();
    let end_of_stream = body.is_end_stream();
    let mut head = Vec::with_capacity(512);
    let framing = convert::write_request_head(&mut head, &parts, end_of_stream);
    let limits = {
        let view = ctx.view();
        let gateway = &view.snapshot.gateway;
        HeadLimits {
            max_head: gateway.limits.max_response_head_bytes,
            max_request_line: gateway.limits.max_response_head_bytes,
            max_headers: HeadLimits::MAX_HEADERS_CAP,
        }
    };
    let bridge = StreamBridge::new(
        (!end_of_stream).then_some(body),
        framing,
        respond,
        parts.method == http::Method::HEAD,
        convert::is_grpc(&parts.headers),
        limits,
    );
    crate::data::proxy::serve_bridged(ctx, bridge, &head, peer, kind, client_certificate).await;
}
