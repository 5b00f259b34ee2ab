//! The request body on its way upstream: where it is (buffered whole in `inbuf`, or
//! streaming from the client), how its end is found while it streams, reading small bodies
//! completely so that any attempt can replay them, and dropping the answered request from
//! `inbuf`.

use std::time::Duration;

use super::io;
use super::{ClientConnection, READ_CHUNK};
use crate::error::GatewayError;
use crate::http::{ChunkLimits, ChunkedDecoder, LengthDecoder, RequestBody, Scan};

/// Request bodies up to this size are read completely before the first attempt, so that any
/// attempt (retry, next endpoint) can replay them.
pub(super) const REPLAY_LIMIT: usize = 64 * 1024;

/// Where the request body is.
pub(super) enum RequestBodyState {
    /// Entirely in `inbuf[head_len..end]`: every attempt can send it.
    Buffered { end: usize },
    /// `inbuf[head_len..]` is its beginning; the rest must be read from the client, so it can
    /// be sent once only.
    Streaming(BodyDecoder),
}

impl RequestBodyState {
    pub(super) fn is_replayable(&self) -> bool {
        matches!(self, RequestBodyState::Buffered { .. })
    }
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

    pub(super) fn is_done(&self) -> bool {
        match self {
            BodyDecoder::Length(d) => d.is_done(),
            BodyDecoder::Chunked { decoder, .. } => decoder.is_done(),
        }
    }
}

impl<S: super::ClientIo> ClientConnection<S> {
    /// Classifies the request body by what `inbuf` already holds; `limit` is
    /// `limits.max_body_bytes`, for chunked bodies.
    pub(super) fn request_body_state(
        &self,
        limit: Option<u64>,
    ) -> Result<RequestBodyState, GatewayError> {
        let head_len = self.head.head_len;
        let available = &self.down.inbuf[head_len..];
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
    pub(super) async fn buffer_small_body(
        &mut self,
        decoder: &mut BodyDecoder,
        client_io: Duration,
    ) -> Result<Option<usize>, Option<GatewayError>> {
        let head_len = self.head.head_len;
        if let BodyDecoder::Length(d) = decoder {
            if (self.down.inbuf.len() - head_len) as u64 + d.remaining() > REPLAY_LIMIT as u64 {
                return Ok(None);
            }
        }
        while self.down.inbuf.len() - head_len < REPLAY_LIMIT {
            let before = self.down.inbuf.len();
            if io::read_more(
                &mut self.down.stream,
                &mut self.down.inbuf,
                READ_CHUNK,
                self.timer.arm_in(client_io),
            )
            .await
            .is_err()
            {
                return Err(None);
            }
            let scan = decoder.scan(&self.down.inbuf[before..]).map_err(Some)?;
            if scan.done {
                return Ok(Some(before + scan.consumed));
            }
        }
        Ok(None)
    }

    /// Drops the answered request from `inbuf`, so that what is left is the next request.
    /// Returns false when the request's body was not read to its end (the connection must
    /// close after the answer).
    pub(super) fn consume_request(&mut self, body: &RequestBodyState) -> bool {
        match body {
            RequestBodyState::Buffered { end } => {
                let end = (*end).min(self.down.inbuf.len());
                self.down.inbuf.drain(..end);
                true
            }
            // Streaming consumed the head and body from `inbuf` as it went.
            RequestBodyState::Streaming(decoder) => decoder.is_done(),
        }
    }
}
