//! Relaying the response: the head rewritten for the client, the body streamed with its
//! framing checked (length, chunked, until close; de-chunked for HTTP/1.0 clients), and the
//! upstream connection pooled only when the response ended cleanly.

use std::time::Duration;

use super::buffers::LARGE_BUFFER_SIZE;
use super::gather;
use super::io::{self, IoError};
use super::splice::{self, SpliceEnd, SpliceEnds};
use super::{ClientConnection, READ_CHUNK};
use crate::compile::config::gateway::{BodyRelay, GatewayConfig};
use crate::error::GatewayError;
use crate::http::{
    write_client_head, ChunkError, ChunkLimits, ChunkedDecoder, ClientHead, LengthDecoder,
    ResponseBody, Scan, TrailerGate, Version,
};
use crate::tls::TcpOrTls;
use crate::upstream::connection::UpstreamConnection;

/// Space for each read of a body that did not fit the first read. A body this long is relayed
/// in a quarter of the round trips a `READ_CHUNK` read per step would take (nginx's default
/// proxy buffers add up to the same 64 KiB), plus room for a response head: a 64 KiB body
/// with its head then fits one read and one write, where 64 KiB even took a second read and
/// write for the head's few hundred bytes. The buffer goes back to the shard's pool at that
/// size and is reused as it is, for the next response's head read too.
pub(super) const BODY_READ: usize = 4 * READ_CHUNK + HEAD_ROOM;

/// Room for a typical response head (most are well under 1 KiB; cookies and CSP headers
/// make some longer).
const HEAD_ROOM: usize = 4 * 1024;

impl<S: super::ClientIo> ClientConnection<S> {
    /// Sends the response head and body to the client; pools the upstream connection when
    /// the response ended cleanly. Returns whether the client connection stays open.
    pub(super) async fn relay_response(
        &mut self,
        gateway: &GatewayConfig,
        mut conn: UpstreamConnection,
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
        // The body's first bytes go out with the head, in one write: from where they are
        // (`rbuf[head_len..body_end]`, one `writev`, or one corked `sendmsg` ahead of a
        // splice) to a plain client when they pass as they are and are many or the rest of
        // the body will be spliced, copied behind the head otherwise (TLS and HTTP/2 streams
        // copy them anyway).
        // Splicing needs both sockets plain TCP (`prepare_splice` readies no other).
        let splicing = gateway.upstream.body_relay == BodyRelay::Splice
            && matches!(conn.stream, TcpOrTls::Plain(_))
            && self.down.stream.plain_tcp().is_some();
        let with_head = self.rbuf.len() - head_len;
        let gather = self.down.stream.plain_tcp().is_some()
            && decoder.as_ref().is_some_and(|d| {
                !d.dechunks()
                    && (with_head >= gather::GATHER_MIN || (splicing && d.spliced_after(with_head)))
            });
        let mut body_end = head_len;
        let mut done = decoder.is_none();
        let mut stray;
        if let Some(decoder) = &mut decoder {
            let scanned = if gather {
                decoder.relay_in_place(&mut self.rbuf[head_len..], &mut self.out)
            } else {
                decoder.relay(&self.rbuf[head_len..], &mut self.out)
            };
            match scanned {
                Ok(scan) => {
                    done = scan.done;
                    stray = scan.done && head_len + scan.consumed < self.rbuf.len();
                    self.trailers.restart();
                    if gather {
                        body_end = decoder.pass_trailers(
                            &mut self.trailers,
                            &mut self.rbuf,
                            head_len,
                            head_len + scan.consumed,
                        );
                    } else {
                        let end = self.out.len();
                        decoder.pass_trailers(
                            &mut self.trailers,
                            &mut self.out,
                            end - scan.consumed,
                            end,
                        );
                    }
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
        self.record.bytes += (self.out.len() + body_end - head_len) as u64;
        // What is spliced next (the rest of the body, or of the current chunk): its pipe,
        // filled with what the upstream has sent already, and what is left in the socket.
        let mut to_splice = match &decoder {
            Some(decoder) if splicing && !done => self.prepare_splice(&mut conn, decoder),
            _ => None,
        };
        if self
            .send_ahead_of(to_splice.as_ref(), head_len..body_end, client_io)
            .await
            .is_err()
        {
            self.give_back(to_splice);
            return false;
        }
        let mut spliced = false;
        let mut read_limit = BODY_READ;
        let mut last_read = 0;
        while !done {
            let Some(decoder) = &mut decoder else { break };
            if let Some((pipe, left)) = to_splice.take() {
                if let Err(end) = self
                    .splice_body(&conn, pipe, left, upstream_idle, client_io)
                    .await
                {
                    // A body delimited by the close ends this way; any other end is
                    // mid-body, and closing the client connection is the honest signal.
                    if !(left.is_none() && matches!(end, SpliceEnd::UpstreamClosed)) {
                        log::debug!("spliced response body broke off: {end}");
                    }
                    return false;
                }
                spliced = true;
                done = decoder.spliced();
                stray = false;
                // What follows a spliced chunk is its CRLF and the next size line: a small
                // read takes them and leaves a large next chunk in the socket to splice. Only
                // that one read is small (bench/RESULTS.md, "The reads after a spliced chunk").
                read_limit = splice::HEAD_READ_AFTER_SPLICE;
                continue;
            }
            self.rbuf.clear();
            if read_limit == BODY_READ && self.large_read.is_none() && decoder.is_long(last_read) {
                self.large_read = self.ctx.buffers.lend_large(&mut self.rbuf);
                if self.large_read.is_none() {
                    self.ctx.with_metrics(|m| m.large_buffer_refusals.inc());
                }
            }
            if self.large_read.is_some() && read_limit == BODY_READ {
                read_limit = LARGE_BUFFER_SIZE;
            }
            let read = {
                let read = std::pin::pin!(io::read_more_untimed(
                    &mut conn.stream,
                    &mut self.rbuf,
                    BODY_READ,
                    read_limit
                ));
                io::race(read, self.timer.arm_in(upstream_idle)).await
            };
            // A mid-body failure, or the close that ends a body delimited by it: the client
            // connection closes either way (never a truncated response that looks complete).
            let Some(Ok(n)) = read else {
                return false;
            };
            last_read = n;
            read_limit = BODY_READ;
            let scan = match decoder.relay_in_place(&mut self.rbuf, &mut self.out) {
                Ok(scan) => scan,
                Err(_) => return false,
            };
            done = scan.done;
            stray = scan.done && scan.consumed < self.rbuf.len();
            let forward =
                decoder.pass_trailers(&mut self.trailers, &mut self.rbuf, 0, scan.consumed);
            // De-chunked, the body is in `out`; passed as it is, in `rbuf[..forward]`.
            let (passed, in_place) = if decoder.dechunks() {
                (self.out.len(), 0..0)
            } else {
                (forward, 0..forward)
            };
            self.record.bytes += passed as u64;
            if splicing && !done {
                to_splice = self.prepare_splice(&mut conn, decoder);
            }
            if self
                .send_ahead_of(to_splice.as_ref(), in_place, client_io)
                .await
                .is_err()
            {
                self.give_back(to_splice);
                return false;
            }
        }
        if self.resp.keep_alive && !stray && self.request_sent {
            conn.last_body_spliced = spliced;
            self.ctx.pool.borrow_mut().put(conn, crate::clock::now());
        }
        keep_client
    }

    /// Readies what `decoder` says can be spliced next (the rest of a long body, or of a long
    /// chunk) when both sockets are plain TCP: both non-blocking, and a pipe holding what the
    /// upstream has sent already, with what is left after it. `None` when nothing is to be
    /// spliced; nothing was read then.
    fn prepare_splice(
        &mut self,
        conn: &mut UpstreamConnection,
        decoder: &ResponseDecoder,
    ) -> Option<(splice::Pipe, Option<u64>)> {
        let mut length = decoder.spliceable()?;
        let TcpOrTls::Plain(upstream) = &conn.stream else {
            return None;
        };
        let client = self.down.stream.plain_tcp()?;
        if !conn.nonblocking {
            splice::make_nonblocking(upstream).ok()?;
            conn.nonblocking = true;
        }
        if !self.down.nonblocking {
            splice::make_nonblocking(client).ok()?;
            self.down.nonblocking = true;
        }
        let mut pipe = self.ctx.pipes.take()?;
        splice::fill_now(upstream, &mut pipe, &mut length);
        Some((pipe, length))
    }

    /// A pipe readied for a splice that will not happen (the write before it failed).
    fn give_back(&self, to_splice: Option<(splice::Pipe, Option<u64>)>) {
        if let Some((pipe, _)) = to_splice {
            self.ctx.pipes.give_back(pipe);
        }
    }

    /// Writes `out` (emptied) and then `rbuf[body]` to the client. When a pipe is to be
    /// spliced right behind them and holds bytes already, they go corked: the splice that
    /// follows carries them in its segment, one transmission and one wake-up of the client
    /// instead of two.
    async fn send_ahead_of(
        &mut self,
        to_splice: Option<&(splice::Pipe, Option<u64>)>,
        mut body: std::ops::Range<usize>,
        client_io: Duration,
    ) -> Result<(), IoError> {
        if let (Some((pipe, _)), Some(client)) = (to_splice, self.down.stream.plain_tcp()) {
            if pipe.holds_bytes() && !(self.out.is_empty() && body.is_empty()) {
                let corked = splice::send_corked(client, &self.out, &self.rbuf[body.clone()]);
                let from_head = corked.min(self.out.len());
                self.out.drain(..from_head);
                body.start += corked - from_head;
            }
        }
        let sent = match self.down.stream.plain_tcp() {
            Some(client) if !self.out.is_empty() && !body.is_empty() => {
                gather::write_head_and_body(
                    client,
                    &mut self.out,
                    &mut self.rbuf,
                    body,
                    &mut self.iov,
                    self.timer.arm_in(client_io),
                )
                .await
            }
            _ => {
                if !self.out.is_empty() {
                    self.send_out(client_io).await?;
                }
                io::write_range(
                    &mut self.down.stream,
                    &mut self.rbuf,
                    body,
                    self.timer.arm_in(client_io),
                )
                .await
            }
        };
        self.out.clear();
        sent
    }

    /// Splices what `pipe` holds and the rest of the body (`length` bytes, or until the
    /// upstream closes) to the client, readied by [`Self::prepare_splice`].
    async fn splice_body(
        &mut self,
        conn: &UpstreamConnection,
        mut pipe: splice::Pipe,
        length: Option<u64>,
        upstream_idle: Duration,
        client_io: Duration,
    ) -> Result<(), SpliceEnd> {
        let (TcpOrTls::Plain(upstream), Some(client)) =
            (&conn.stream, self.down.stream.plain_tcp())
        else {
            // prepare_splice readies plain TCP sockets only.
            return Err(SpliceEnd::Client(std::io::ErrorKind::Unsupported.into()));
        };
        let ends = SpliceEnds {
            upstream,
            client,
            upstream_idle,
            client_io,
        };
        let (record, ctx) = (&mut self.record, &self.ctx);
        let result = splice::relay(&ends, &mut pipe, length, &mut self.timer, |sent| {
            record.bytes += sent;
            ctx.with_metrics(|m| m.spliced_body_bytes.add(sent));
        })
        .await;
        self.ctx.pipes.give_back(pipe);
        result
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

    /// Whether the body is long enough to be copied through a large buffer: more of it is
    /// left than one ordinary read takes, or (length unknown) the last read filled one. Not
    /// a body de-chunked for an HTTP/1.0 client: its copy in `out` would grow as large and
    /// leave the pool's sizes.
    fn is_long(&self, last_read: usize) -> bool {
        match self {
            ResponseDecoder::Length(d) => d.remaining() > BODY_READ as u64,
            ResponseDecoder::Chunked(_, true) => false,
            ResponseDecoder::Chunked(_, false) | ResponseDecoder::UntilClose => {
                last_read >= BODY_READ - HEAD_ROOM
            }
        }
    }

    /// What can be spliced next: `Some(Some(n))`, the next `n` bytes (the rest of a body of
    /// known length, or of the current chunk's payload, passed through); `Some(None)`, all
    /// of it until the upstream closes. Parts shorter than [`splice::SPLICE_MIN`] are copied,
    /// and so is a body de-chunked for an HTTP/1.0 client. The framing around a spliced
    /// chunk (its CRLF, the size lines, the trailers) is still read and checked.
    fn spliceable(&self) -> Option<Option<u64>> {
        let left = match self {
            ResponseDecoder::Length(d) => d.remaining(),
            ResponseDecoder::Chunked(d, false) => d.chunk_remaining(),
            ResponseDecoder::Chunked(_, true) => return None,
            ResponseDecoder::UntilClose => return Some(None),
        };
        (left >= splice::SPLICE_MIN).then_some(Some(left))
    }

    /// Whether the body's rest will be spliced once the `with_head` bytes that came with
    /// the head are relayed (a chunked body's next chunk is not known before they are
    /// scanned).
    fn spliced_after(&self, with_head: usize) -> bool {
        match self {
            ResponseDecoder::Length(d) => {
                d.remaining().saturating_sub(with_head as u64) >= splice::SPLICE_MIN
            }
            ResponseDecoder::UntilClose => true,
            ResponseDecoder::Chunked(..) => false,
        }
    }

    /// What [`Self::spliceable`] offered went past the decoder; returns whether the body is
    /// complete (a chunk's framing goes on).
    fn spliced(&mut self) -> bool {
        match self {
            ResponseDecoder::Chunked(d, _) => {
                d.skip_payload();
                false
            }
            ResponseDecoder::Length(_) | ResponseDecoder::UntilClose => true,
        }
    }

    /// A chunked body passed through leaves its trailer section filtered (BEHAVIOUR.md §4):
    /// [`TrailerGate::pass`] over `buf[start..end]`; other bodies pass as they are.
    fn pass_trailers(
        &self,
        gate: &mut TrailerGate,
        buf: &mut Vec<u8>,
        start: usize,
        end: usize,
    ) -> usize {
        match self {
            ResponseDecoder::Chunked(decoder, false) => gate.pass(decoder, buf, start, end),
            _ => end,
        }
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
