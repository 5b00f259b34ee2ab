//! One attempt on one upstream connection: send the request head (with the buffered body or
//! its beginning), stream the rest of the body, read the final response head (relaying
//! interim ones). Connecting (TCP, then TLS for https endpoints) lives here too.

use std::net::SocketAddr;
use std::pin::pin;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;

use super::forward::{Attempt, BodyDecoder, RequestBodyState};
use super::io::{self, IoError};
use super::{ClientConnection, READ_CHUNK};
use crate::config::gateway::GatewayConfig;
use crate::config::url::Scheme;
use crate::http::{
    parse_response, write_client_head, ClientHead, HeadLimits, Method, Parsed, Version,
};
use crate::tls::{UpstreamStream, UpstreamTls};
use crate::upstream::connection::UpstreamConnection;
use crate::upstream::Endpoint;

impl<S: AsyncReadRent + AsyncWriteRent> ClientConnection<S> {
    /// One try on one connected endpoint: send the request, read the final response head.
    pub(super) async fn attempt(
        &mut self,
        gateway: &GatewayConfig,
        conn: &mut UpstreamConnection,
        body: &mut RequestBodyState,
    ) -> Attempt {
        // The caller bounds the whole attempt by the route deadline; no timer per step.
        match io::write_all_untimed(&mut conn.stream, &mut self.out).await {
            Ok(()) => {}
            Err(IoError::TimedOut) => return Attempt::TimedOut,
            // No response byte came back: the same case as a close before the response
            // (the caller's rules decide whether it can be retried).
            Err(_) => return Attempt::ClosedBeforeResponse,
        }
        if let RequestBodyState::Streaming(decoder) = body {
            if let Some(failed) = self
                .stream_request_body(&mut conn.stream, decoder, gateway)
                .await
            {
                return failed;
            }
        }
        match self.read_response_head(gateway, &mut conn.stream).await {
            Ok(()) => Attempt::Response,
            Err(failed) => failed,
        }
    }

    /// Forwards the rest of a streamed request body, from the client to `conn`.
    pub(super) async fn stream_request_body(
        &mut self,
        conn: &mut UpstreamStream,
        decoder: &mut BodyDecoder,
        gateway: &GatewayConfig,
    ) -> Option<Attempt> {
        let client_io = Duration::from_millis(gateway.timeouts.client_io_ms);
        // The head and the body's beginning went out with the head.
        self.inbuf.clear();
        loop {
            match io::read_more(
                &mut self.client,
                &mut self.inbuf,
                READ_CHUNK,
                self.timer.arm_in(client_io),
            )
            .await
            {
                Ok(_) => {}
                Err(_) => return Some(Attempt::ClientFailed(None)),
            }
            let scan = match decoder.scan(&self.inbuf) {
                Ok(scan) => scan,
                Err(error) => return Some(Attempt::ClientFailed(Some(error))),
            };
            if io::write_range(
                conn,
                &mut self.inbuf,
                0..scan.consumed,
                self.timer.arm_in(client_io),
            )
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
    pub(super) async fn read_response_head(
        &mut self,
        gateway: &GatewayConfig,
        conn: &mut UpstreamStream,
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
                            if io::write_all(
                                &mut self.client,
                                &mut self.out,
                                self.timer.arm_in(client_io),
                            )
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
            match io::read_more_untimed(conn, &mut self.rbuf, READ_CHUNK).await {
                Ok(_) => received_any = true,
                Err(IoError::TimedOut) => return Err(Attempt::TimedOut),
                Err(_) if !received_any => return Err(Attempt::ClosedBeforeResponse),
                Err(_) => return Err(Attempt::BadResponse),
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
