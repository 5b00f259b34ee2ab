//! WebSocket tunnels (BEHAVIOUR.md 7). The opening handshake is an ordinary request through
//! normalisation, routing, security and the group's endpoint policy; when the upstream answers
//! `101 Switching Protocols`, the client connection and that upstream connection become a
//! tunnel: bytes relayed both ways on the shard until either side closes, with one bounded
//! buffer per direction (from the shard's pool), each byte copied once (kernel to buffer to
//! kernel), half-close passed on, and `timeouts.websocket_idle_ms` of silence ending it. The
//! upstream connection is never pooled. Frames are not parsed: the tunnel is the endpoints'.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use super::{account, Accounted, ClientConnection};
use crate::compile::config::gateway::GatewayConfig;
use crate::data::shard::ShardView;
use crate::http::{write_client_head, ClientHead, Version};
use crate::tls::ClientStream;
use crate::upstream::connection::UpstreamConnection;

/// Space for each read of a tunnel direction.
const TUNNEL_READ: usize = 64 * 1024;

/// A handshake the upstream accepted, waiting for the connection task to run the tunnel.
pub(crate) struct Tunnel {
    upstream: UpstreamConnection,
    /// Bytes the upstream sent after its `101` head.
    to_client: Vec<u8>,
    /// Bytes the client sent after its handshake (frames may follow the request at once).
    to_upstream: Vec<u8>,
    api_label: u32,
    endpoint_label: u32,
    /// The snapshot the handshake ran on (set by the request loop).
    pub view: Option<Rc<ShardView>>,
}

impl<S: super::ClientIo> ClientConnection<S> {
    /// Answers the client's handshake with the upstream's `101` and keeps both connections
    /// for the tunnel. Returns false: the request loop ends here, the tunnel takes over.
    pub(super) async fn open_tunnel(
        &mut self,
        view: &ShardView,
        gateway: &GatewayConfig,
        upstream: UpstreamConnection,
        endpoint_label: u32,
    ) -> bool {
        let api_label = self
            .record
            .api
            .map_or(crate::metrics::NO_API, |api| view.labels.api[api.index()]);
        self.out.clear();
        write_client_head(
            &mut self.out,
            &self.rbuf,
            &self.resp,
            &ClientHead {
                keep_alive: false,
                client_version: Version::Http11,
                dechunk: false,
                extra: &self.cors,
            },
        );
        self.record.bytes += self.out.len() as u64;
        let client_io = Duration::from_millis(gateway.timeouts.client_io_ms);
        if self.send_out(client_io).await.is_err() {
            self.count_websocket(api_label, |c| c.refused.inc());
            return false;
        }
        self.count_websocket(api_label, |c| c.upgraded.inc());
        let to_client = self.rbuf[self.resp.head_len..].to_vec();
        // What is left of `inbuf` after the handshake request is the client's first frames.
        let to_upstream = self.down.inbuf.split_off(0);
        self.tunnel = Some(Tunnel {
            upstream,
            to_client,
            to_upstream,
            api_label,
            endpoint_label,
            view: None,
        });
        false
    }

    /// Counts a handshake the upstream did not switch (its own answer was relayed).
    pub(super) fn count_refused_upgrade(&self, view: &ShardView) {
        let api_label = self
            .record
            .api
            .map_or(crate::metrics::NO_API, |api| view.labels.api[api.index()]);
        self.count_websocket(api_label, |c| c.refused.inc());
    }

    fn count_websocket(&self, api_label: u32, f: impl FnOnce(&crate::metrics::WebSocketCounters)) {
        self.ctx.with_metrics(|m| {
            if let Some(c) = m.websocket(api_label) {
                f(c);
            }
        });
    }
}

/// How one direction of a tunnel ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// The sender closed its side cleanly; the other direction may go on.
    Closed,
    /// A read or write failed: the tunnel is over.
    Failed,
}

/// Runs the tunnel of a connection whose handshake was switched, until both directions end,
/// one fails, or the tunnel is idle for `timeouts.websocket_idle_ms`; then accounts for it
/// (one access log line, at close, with the bytes relayed and the duration).
pub(crate) async fn run(connection: ClientConnection<ClientStream>) {
    let ClientConnection {
        ctx,
        down,
        peer,
        slot,
        head,
        log_target,
        mut record,
        tunnel,
        ..
    } = connection;
    let Some(Tunnel {
        upstream,
        to_client,
        to_upstream,
        api_label,
        endpoint_label,
        view: Some(view),
    }) = tunnel
    else {
        return;
    };
    // The connection stays registered (the drain waits for it, up to `drain_ms`) and its
    // breaker slot and open-connection count stay taken until the tunnel closes.
    let _slot = slot;
    let UpstreamConnection {
        stream,
        slot: _breaker_slot,
        counted: _counted,
        ..
    } = upstream;
    let idle = Duration::from_millis(view.snapshot.gateway.timeouts.websocket_idle_ms);
    let counters = |f: &dyn Fn(&crate::metrics::WebSocketCounters)| {
        ctx.with_metrics(|m| {
            if let Some(c) = m.websocket(api_label) {
                f(c);
            }
        })
    };
    counters(&|c| c.open.add(1));
    let (mut client_read, mut client_write) = down.stream.into_halves();
    let (mut upstream_read, mut upstream_write) = stream.into_halves();
    let (mut up_buf, mut down_buf) = (Vec::new(), Vec::new());
    ctx.buffers.fill(&mut up_buf);
    ctx.buffers.fill(&mut down_buf);
    // A tunnel moves bulk data: 64 KiB per read takes a quarter of the operations per MB a
    // pooled 16 KiB buffer would (once per tunnel; the buffers go back to the pool as they
    // are, as the relay's do).
    up_buf.reserve(TUNNEL_READ);
    down_buf.reserve(TUNNEL_READ);
    let activity = Cell::new(Instant::now());
    let (up_bytes, down_bytes) = (Cell::new(0u64), Cell::new(0u64));
    {
        let mut up = pin!(pump(
            &mut client_read,
            &mut upstream_write,
            to_upstream,
            &mut up_buf,
            &activity,
            &up_bytes
        ));
        let mut down = pin!(pump(
            &mut upstream_read,
            &mut client_write,
            to_client,
            &mut down_buf,
            &activity,
            &down_bytes
        ));
        let mut watchdog = pin!(idle_watchdog(&activity, idle));
        let (mut up_done, mut down_done) = (None, None);
        poll_fn(|cx| {
            if up_done.is_none() {
                if let Poll::Ready(ended) = up.as_mut().poll(cx) {
                    up_done = Some(ended);
                }
            }
            if down_done.is_none() {
                if let Poll::Ready(ended) = down.as_mut().poll(cx) {
                    down_done = Some(ended);
                }
            }
            let failed = up_done == Some(Ended::Failed) || down_done == Some(Ended::Failed);
            let both = up_done.is_some() && down_done.is_some();
            if failed || both || watchdog.as_mut().poll(cx).is_ready() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
    ctx.buffers.park(&mut up_buf);
    ctx.buffers.park(&mut down_buf);
    counters(&|c| {
        c.open.add(-1);
        c.bytes_to_upstream.add(up_bytes.get());
        c.bytes_to_client.add(down_bytes.get());
    });
    ctx.with_metrics(|m| {
        if let Some(c) = m.endpoint(endpoint_label) {
            c.in_flight.add(-1);
        }
    });
    record.bytes += down_bytes.get();
    account(
        &ctx,
        &view,
        &record,
        &Accounted {
            client: peer.ip(),
            method: head.method,
            version: head.version,
            target: &log_target,
        },
    );
}

/// Relays `from` to `to` until `from` closes (then `to` is shut down for writing, so the
/// peer sees the end of this direction) or an operation fails. `pending` goes first.
async fn pump<R: AsyncReadRent, W: AsyncWriteRent>(
    from: &mut R,
    to: &mut W,
    pending: Vec<u8>,
    buf: &mut Vec<u8>,
    activity: &Cell<Instant>,
    moved: &Cell<u64>,
) -> Ended {
    if !pending.is_empty() {
        let len = pending.len() as u64;
        let (written, _) = to.write_all(pending).await;
        if written.is_err() {
            return Ended::Failed;
        }
        moved.set(moved.get() + len);
    }
    loop {
        buf.clear();
        let (read, returned) = from.read(std::mem::take(buf)).await;
        *buf = returned;
        match read {
            Ok(0) => break,
            Ok(n) => {
                activity.set(Instant::now());
                let (written, returned) = to.write_all(std::mem::take(buf)).await;
                *buf = returned;
                if written.is_err() {
                    return Ended::Failed;
                }
                moved.set(moved.get() + n as u64);
            }
            Err(_) => return Ended::Failed,
        }
    }
    match to.shutdown().await {
        Ok(()) => Ended::Closed,
        Err(_) => Ended::Failed,
    }
}

/// Completes when nothing moved either way for `idle`.
async fn idle_watchdog(activity: &Cell<Instant>, idle: Duration) {
    loop {
        let deadline = activity.get() + idle;
        if Instant::now() >= deadline {
            return;
        }
        monoio::time::sleep_until(deadline.into()).await;
    }
}
