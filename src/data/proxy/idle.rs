//! A plain client connection while it waits for a request: what its task holds then, and
//! the hand-over to the request path and back.
//!
//! A connection's request path is a future of several KiB (the lifecycle, the relays, the
//! timers) plus the buffers and header tables of [`ClientConnection`]. Most connections of a
//! keep-alive client spend most of their life waiting, so the task of a plain connection
//! holds only the socket, its registry slot and a readability poll; when bytes arrive, the
//! request path is built in a box of its own, serves requests until the client has been
//! silent for [`PARK_AFTER`], and hands the socket back. A busy connection never goes back:
//! the hand-over costs one box per wake-up after a second of silence, never one per request.
//! The waiting connection has no timer either: its keep-alive deadline sits in the shard's
//! connection registry, which wakes it when the deadline passes.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use super::{finish, ClientConnection, Served};
use crate::data::shard::{ClientSlot, ShardContext};
use crate::data::shared::ListenerKind;
use crate::tls::{ClientStream, TcpOrTls};

/// How long a connection may be silent on its request path before it is parked.
pub(super) const PARK_AFTER: Duration = Duration::from_secs(1);

/// A plain connection between requests.
struct Parked {
    tcp: TcpStream,
    slot: ClientSlot,
    /// When the wait began: the keep-alive time counts from here.
    since: Instant,
    /// No request yet: the first bytes may be the HTTP/2 preface (h2c).
    fresh: bool,
}

/// Serves one accepted plain connection until it closes.
pub(crate) async fn serve_plain(ctx: Rc<ShardContext>, tcp: TcpStream, peer: SocketAddr) {
    ctx.with_metrics(|m| m.client_connections_total.inc());
    let slot = ctx.connections.register(tcp.as_raw_fd());
    let mut parked = Parked {
        tcp,
        slot,
        since: Instant::now(),
        fresh: true,
    };
    loop {
        if !wait_readable(&ctx, &parked).await {
            return;
        }
        // Boxed: the request path's state exists only while the connection is awake.
        match Box::pin(awake(Rc::clone(&ctx), parked, peer)).await {
            Some(again) => parked = again,
            None => return,
        }
    }
}

/// Waits for the connection's next bytes (or its end); false if the keep-alive time ran out
/// first or the shard is draining.
async fn wait_readable(ctx: &ShardContext, parked: &Parked) -> bool {
    let keepalive = Duration::from_millis(ctx.view().snapshot.gateway.timeouts.client_keepalive_ms);
    parked.slot.park(parked.since + keepalive);
    if ctx.is_draining() {
        return false;
    }
    // An error is readable too: the read that follows reports it.
    let _ = parked.tcp.readable(false).await;
    parked.slot.unpark() && !ctx.is_draining()
}

/// The request path of a readable connection: serves requests until the connection closes
/// (`None`) or has been silent long enough to park again.
async fn awake(ctx: Rc<ShardContext>, parked: Parked, peer: SocketAddr) -> Option<Parked> {
    let h2c = parked.fresh && ctx.view().snapshot.gateway.http2.h2c;
    let mut connection = ClientConnection::new(
        ctx,
        ClientStream::from(parked.tcp),
        peer,
        ListenerKind::Http,
        Some(parked.slot),
    );
    connection.awaiting_preface = h2c;
    connection.down.woke_readable = true;
    connection.down.idle_since = Some(parked.since);
    match connection.serve().await {
        Served::Parked => {
            let ClientConnection { down, slot, .. } = connection;
            let idle_since = down.idle_since;
            // Only plain connections park, and this one is registered.
            let (TcpOrTls::Plain(tcp), Some(slot)) = (down.stream, slot) else {
                return None;
            };
            Some(Parked {
                tcp,
                slot,
                since: idle_since.unwrap_or_else(Instant::now),
                fresh: false,
            })
        }
        Served::Http2 => {
            let ClientConnection {
                ctx, down, slot, ..
            } = connection;
            if let Some(slot) = slot {
                let (stream, inbuf) = (down.stream, down.inbuf);
                Box::pin(crate::data::h2::serve_h2c(ctx, stream, inbuf, peer, slot)).await;
            }
            None
        }
        Served::Closed => {
            finish(connection).await;
            None
        }
    }
}
