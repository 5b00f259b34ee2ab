//! One HTTP/2 stream presented to the gateway's request lifecycle (`proxy::ClientConnection`)
//! as an in-memory HTTP/1.1 exchange, so that a stream goes through exactly the code an
//! HTTP/1.1 request does (normalisation, routing, security, endpoint choice, retries,
//! timeouts, limits, metrics, access log) and cannot drift from it.
//!
//! - **Reads** give the lifecycle the request body: DATA frames as they come (raw after a
//!   `content-length`, else chunked, the trailers in the last chunk). The head itself is
//!   handed over before the first read (`proxy::serve_bridged`). Flow-control capacity of a
//!   DATA frame is released when the lifecycle comes back for more, i.e. once it has sent
//!   the previous bytes on, not when they arrive.
//! - **Writes** take the HTTP/1.1 response the lifecycle renders, parsed by the gateway's own
//!   codec: the head becomes HEADERS (without connection-specific fields), the body DATA
//!   (de-chunked; trailers become a trailing HEADERS frame). A write returns once the
//!   client's window took its bytes, so a client that stops reading holds the upstream read
//!   back and meets the lifecycle's client I/O timeout.
//! - A response that did not complete (the lifecycle gave up mid-body, the upstream died)
//!   resets the stream: never a truncated response that looks complete.

use std::future::poll_fn;
use std::io;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::BufResult;

use super::convert::{self, RequestFraming};
use crate::http::ResponseHead;
use crate::http::{parse_response, ChunkLimits, ChunkedDecoder, HeadLimits, Parsed, ResponseBody};

/// Where the response is.
enum ResponseState {
    /// Waiting for the (rest of the) head.
    Head,
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Ends when the lifecycle shuts the exchange down.
    UntilClose,
    /// Complete (or answered otherwise, e.g. a gRPC error): later bytes are dropped.
    Done,
}

/// The request side and the response side of one stream.
pub struct StreamBridge {
    /// The request body still to come; `None` when the request ended with its headers.
    recv: Option<RecvStream>,
    framing: RequestFraming,
    /// Request bytes ready for the lifecycle (a framed chunk, the last chunk) and how far it
    /// has read them.
    staged: Vec<u8>,
    staged_read: usize,
    /// Payload bytes handed over and not yet released to the client's window.
    unreleased: usize,
    request_done: bool,

    respond: Option<SendResponse<Bytes>>,
    send: Option<SendStream<Bytes>>,
    response: ResponseState,
    head_buf: Vec<u8>,
    head: ResponseHead,
    limits: HeadLimits,
    request_was_head: bool,
    grpc: bool,
    trailer_section: Vec<u8>,
}

impl StreamBridge {
    /// `recv` is `None` when the request ended with its headers.
    pub fn new(
        recv: Option<RecvStream>,
        framing: RequestFraming,
        respond: SendResponse<Bytes>,
        request_was_head: bool,
        grpc: bool,
        limits: HeadLimits,
    ) -> StreamBridge {
        StreamBridge {
            request_done: recv.is_none(),
            recv,
            framing,
            staged: Vec::new(),
            staged_read: 0,
            unreleased: 0,
            respond: Some(respond),
            send: None,
            response: ResponseState::Head,
            head_buf: Vec::new(),
            head: ResponseHead::with_header_capacity(16),
            limits,
            request_was_head,
            grpc,
            trailer_section: Vec::new(),
        }
    }

    /// Stages the next part of the request body; leaves `staged` empty at its end.
    async fn refill(&mut self) -> io::Result<()> {
        self.staged.clear();
        self.staged_read = 0;
        let Some(recv) = self.recv.as_mut() else {
            return Ok(());
        };
        // The lifecycle is back for more: what it had was sent on.
        if self.unreleased > 0 {
            let _ = recv.flow_control().release_capacity(self.unreleased);
            self.unreleased = 0;
        }
        if self.request_done {
            return Ok(());
        }
        loop {
            match poll_fn(|cx| recv.poll_data(cx)).await {
                Some(Ok(data)) if data.is_empty() => continue,
                Some(Ok(data)) => {
                    self.unreleased = data.len();
                    if self.framing == RequestFraming::Chunked {
                        convert::write_chunk_size(&mut self.staged, data.len());
                        self.staged.extend_from_slice(&data);
                        self.staged.extend_from_slice(b"\r\n");
                    } else {
                        self.staged.extend_from_slice(&data);
                    }
                    return Ok(());
                }
                Some(Err(e)) => return Err(h2_error(e)),
                None => {
                    self.request_done = true;
                    if self.framing == RequestFraming::Chunked {
                        let trailers = poll_fn(|cx| recv.poll_trailers(cx))
                            .await
                            .map_err(h2_error)?;
                        convert::write_last_chunk(&mut self.staged, trailers.as_ref());
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Takes the bytes of one write of the response.
    async fn take_response(&mut self, data: &[u8]) -> io::Result<()> {
        if !matches!(self.response, ResponseState::Head) {
            return self.take_body(data).await;
        }
        self.head_buf.extend_from_slice(data);
        loop {
            match parse_response(
                &self.head_buf,
                self.request_was_head,
                &self.limits,
                &mut self.head,
            ) {
                Ok(Parsed::Partial) => return Ok(()),
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                Ok(Parsed::Complete) if self.head.is_interim() => {
                    // 100 Continue and 103 Early Hints reach the client as informational
                    // HEADERS; a client that cannot take them loses nothing.
                    let head_len = self.head.head_len;
                    if let (Some(respond), Ok(informational)) = (
                        self.respond.as_mut(),
                        convert::response_from_head(&self.head_buf, &self.head),
                    ) {
                        let _ = respond.send_informational(informational);
                    }
                    self.head_buf.drain(..head_len);
                }
                Ok(Parsed::Complete) => break,
            }
        }
        let head_len = self.head.head_len;
        let body = self.head_buf.split_off(head_len);
        self.start_response(&body)?;
        self.take_body(&body).await
    }

    /// Sends the response head; `body` is what came with it.
    fn start_response(&mut self, body: &[u8]) -> io::Result<()> {
        let Some(mut respond) = self.respond.take() else {
            return Err(io::ErrorKind::BrokenPipe.into());
        };
        let status = self.head.status;
        let grpc_response = self
            .head
            .headers
            .iter()
            .find(|h| {
                h.kind == crate::http::HeaderKind::Other
                    && h.name
                        .slice(&self.head_buf)
                        .eq_ignore_ascii_case(b"content-type")
            })
            .is_some_and(|h| convert::is_grpc_content_type(h.value.slice(&self.head_buf)));
        if self.grpc && !grpc_response && status != 200 {
            // A gRPC client reads errors from grpc-status, not from HTTP statuses or bodies:
            // a gateway failure (or a non-gRPC answer) becomes a trailers-only gRPC error.
            let message = convert::error_message(status, body);
            let answer = convert::grpc_error_response(status, &message);
            respond.send_response(answer, true).map_err(h2_error)?;
            self.response = ResponseState::Done;
            return Ok(());
        }
        let response = convert::response_from_head(&self.head_buf, &self.head)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.response = match self.head.body {
            ResponseBody::None | ResponseBody::Length(0) => ResponseState::Done,
            ResponseBody::Length(length) => ResponseState::Length(length),
            ResponseBody::Chunked => {
                ResponseState::Chunked(ChunkedDecoder::new(ChunkLimits::default()))
            }
            ResponseBody::UntilClose => ResponseState::UntilClose,
        };
        let ended = matches!(self.response, ResponseState::Done);
        let send = respond.send_response(response, ended).map_err(h2_error)?;
        if !ended {
            self.send = Some(send);
        }
        Ok(())
    }

    /// Sends body bytes the lifecycle wrote, after their framing.
    async fn take_body(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let Some(send) = self.send.as_mut() else {
            return Ok(());
        };
        match &mut self.response {
            ResponseState::Head | ResponseState::Done => Ok(()),
            ResponseState::Length(remaining) => {
                let take = (*remaining).min(data.len() as u64) as usize;
                *remaining -= take as u64;
                let ended = *remaining == 0;
                send_payload(send, &data[..take], ended).await?;
                if ended {
                    self.finish();
                }
                Ok(())
            }
            ResponseState::UntilClose => send_payload(send, data, false).await,
            ResponseState::Chunked(decoder) => {
                let trailer_before = decoder.trailer_section_len();
                let mut payload = Vec::new();
                let scan = decoder
                    .scan_payload(data, |range| payload.push(range))
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let trailer_bytes = decoder.trailer_section_len() - trailer_before;
                self.trailer_section
                    .extend_from_slice(&data[scan.consumed - trailer_bytes..scan.consumed]);
                for range in payload {
                    send_payload(send, &data[range], false).await?;
                }
                if scan.done {
                    let trailers = convert::parse_trailer_section(&self.trailer_section);
                    if trailers.is_empty() {
                        send.send_data(Bytes::new(), true).map_err(h2_error)?;
                    } else {
                        send.send_trailers(trailers).map_err(h2_error)?;
                    }
                    self.finish();
                }
                Ok(())
            }
        }
    }

    fn finish(&mut self) {
        self.response = ResponseState::Done;
        self.send = None;
    }
}

/// Sends `data` as the client's window allows: waits for capacity, so that at most the
/// stream's send buffer is queued.
pub(super) async fn send_payload(
    send: &mut SendStream<Bytes>,
    mut data: &[u8],
    end: bool,
) -> io::Result<()> {
    if data.is_empty() {
        if end {
            send.send_data(Bytes::new(), true).map_err(h2_error)?;
        }
        return Ok(());
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let granted = match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(granted)) => granted,
            Some(Err(e)) => return Err(h2_error(e)),
            // The stream was reset or the connection is gone.
            None => return Err(io::ErrorKind::BrokenPipe.into()),
        };
        if granted == 0 {
            continue;
        }
        let n = granted.min(data.len());
        let last = n == data.len();
        send.send_data(Bytes::copy_from_slice(&data[..n]), end && last)
            .map_err(h2_error)?;
        data = &data[n..];
    }
    Ok(())
}

fn h2_error(e: h2::Error) -> io::Error {
    io::Error::other(e)
}

impl Drop for StreamBridge {
    fn drop(&mut self) {
        if matches!(self.response, ResponseState::Done) {
            return;
        }
        // Unfinished: the client must see a reset, not an end of stream.
        if let Some(send) = self.send.as_mut() {
            send.send_reset(Reason::INTERNAL_ERROR);
        } else if let Some(respond) = self.respond.as_mut() {
            respond.send_reset(Reason::INTERNAL_ERROR);
        }
    }
}

/// Copies what is left of `staged` (from `*staged_read`) into `buf`, as much as fits; the
/// read side of both bridges (downstream streams and HTTP/2 upstream streams).
pub(super) fn copy_staged<T: IoBufMut>(
    staged: &[u8],
    staged_read: &mut usize,
    buf: &mut T,
) -> usize {
    let rest = &staged[*staged_read..];
    let n = rest.len().min(buf.bytes_total());
    // SAFETY: `write_ptr` points to `bytes_total` writable bytes of `buf`; `n` is at most
    // that, and the source is a distinct allocation.
    unsafe {
        std::ptr::copy_nonoverlapping(rest.as_ptr(), buf.write_ptr(), n);
        buf.set_init(n);
    }
    *staged_read += n;
    n
}

/// The initialised bytes of an owned buffer handed to a write.
pub(super) fn initialised<T: IoBuf>(buf: &T) -> &[u8] {
    // SAFETY: `read_ptr` points to `bytes_init` initialised bytes owned by `buf`, which the
    // returned slice borrows (so `buf` is neither written nor dropped meanwhile).
    unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) }
}

/// A stream's request comes from the h2 connection, never read ahead: the idle wait of the
/// request loop does not apply.
impl crate::data::proxy::ClientIo for StreamBridge {}

impl AsyncReadRent for StreamBridge {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        if self.staged_read == self.staged.len() {
            if let Err(e) = self.refill().await {
                return (Err(e), buf);
            }
        }
        let n = copy_staged(&self.staged, &mut self.staged_read, &mut buf);
        (Ok(n), buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        // The lifecycle reads into one buffer at a time.
        (
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "vectored reads of an HTTP/2 stream",
            )),
            buf,
        )
    }
}

impl AsyncWriteRent for StreamBridge {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let data = initialised(&buf);
        let n = data.len();
        match self.take_response(data).await {
            Ok(()) => (Ok(n), buf),
            Err(e) => (Err(e), buf),
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        (
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "vectored writes to an HTTP/2 stream",
            )),
            buf,
        )
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// The lifecycle is done with the exchange: a body delimited by the upstream's close
    /// ends here; anything else unfinished is reset when the bridge drops.
    async fn shutdown(&mut self) -> io::Result<()> {
        if matches!(self.response, ResponseState::UntilClose) {
            if let Some(send) = self.send.as_mut() {
                send.send_data(Bytes::new(), true).map_err(h2_error)?;
            }
            self.finish();
        }
        Ok(())
    }
}
