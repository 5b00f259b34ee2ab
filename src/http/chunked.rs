//! Chunked bodies (RFC 9112 §7.1) as a streaming state machine that validates every byte while
//! the body passes through: chunk sizes, extensions, the CRLF after each chunk, and the trailer
//! section. The same machine serves pass-through (forward input verbatim) and de-chunking (for
//! HTTP/1.0 clients). It never buffers: any split of the input gives the same result.

use std::ops::Range;

use super::header::{is_field_value_byte, is_tchar};
use super::Scan;

/// Bounds on the parts of a chunked body that are not payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// One chunk-size line: size, extensions, CRLF.
    pub max_chunk_line: usize,
    /// The whole trailer section, final CRLF included.
    pub max_trailer_section: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits {
            max_chunk_line: 4 * 1024,
            max_trailer_section: 8 * 1024,
        }
    }
}

/// A fault in a chunked body. For a request body: answer 400 if nothing was answered yet, and
/// close; for a response body: close the client connection (never a truncated "complete" body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.reason())]
pub enum ChunkError {
    /// Nothing before the CR or `;` of a chunk-size line.
    EmptySize,
    WhitespaceBeforeSize,
    /// A byte that is neither hex digit, nor `;`/whitespace before an extension, nor CRLF.
    InvalidSize,
    /// More than 16 significant hex digits.
    SizeOverflow,
    /// A control byte inside a chunk extension.
    InvalidExtension,
    ChunkLineTooLong,
    /// LF not preceded by CR, anywhere in the framing.
    BareLf,
    /// CR not followed by LF.
    BareCr,
    /// Chunk data not followed by CRLF.
    MissingDataCrlf,
    /// A trailer line that is not `name: value` (obs-fold, space before colon, bad bytes).
    InvalidTrailer,
    TrailerTooLarge,
}

impl ChunkError {
    pub const fn reason(self) -> &'static str {
        match self {
            ChunkError::EmptySize => "empty chunk size",
            ChunkError::WhitespaceBeforeSize => "whitespace before chunk size",
            ChunkError::InvalidSize => "invalid chunk size",
            ChunkError::SizeOverflow => "chunk size overflows 64 bits",
            ChunkError::InvalidExtension => "control byte in chunk extension",
            ChunkError::ChunkLineTooLong => "chunk size line too long",
            ChunkError::BareLf => "LF without CR in chunked framing",
            ChunkError::BareCr => "CR not followed by LF in chunked framing",
            ChunkError::MissingDataCrlf => "chunk data not followed by CRLF",
            ChunkError::InvalidTrailer => "invalid trailer field",
            ChunkError::TrailerTooLarge => "trailer section too large",
        }
    }
}

/// Where the decoder is in the chunked grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a chunk-size line: a hex digit must come first.
    SizeStart,
    /// Reading hex digits; `digits` counts those after leading zeros.
    Size {
        size: u64,
        digits: u8,
    },
    /// Whitespace after the size: only `;` (an extension) may follow (RFC 9112's BWS).
    SizeWhitespace {
        size: u64,
    },
    /// Inside the chunk extensions, up to CR.
    Extension {
        size: u64,
    },
    /// CR of the size line seen; LF must follow.
    SizeLf {
        size: u64,
    },
    Data {
        remaining: u64,
    },
    /// The chunk's data is complete; CR must follow.
    DataCr,
    DataLf,
    /// At the start of a trailer line or of the final CRLF.
    TrailerStart,
    TrailerName,
    /// After the colon, up to CR.
    TrailerValue,
    TrailerLf,
    /// CR of the final empty line seen; LF must follow.
    EndLf,
    Done,
    /// A fault was found; it is reported again on every later call.
    Failed(ChunkError),
}

/// Streaming validator and decoder of one chunked body. Create one per body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    limits: ChunkLimits,
    /// Bytes of the current chunk-size line so far.
    line_len: usize,
    /// Bytes of the trailer section so far.
    trailer_len: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new(ChunkLimits::default())
    }
}

impl ChunkedDecoder {
    pub fn new(limits: ChunkLimits) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::SizeStart,
            limits,
            line_len: 0,
            trailer_len: 0,
        }
    }

    /// The last chunk and the trailer section have been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Pass-through: validates `input` and says how much of it belongs to this body. Forward
    /// `input[..consumed]` verbatim (trailers included); bytes after it, once `done`, belong to
    /// the next message.
    pub fn scan(&mut self, input: &[u8]) -> Result<Scan, ChunkError> {
        self.scan_payload(input, |_| {})
    }

    /// De-chunking: like [`ChunkedDecoder::scan`], and appends the payload bytes to `out`.
    /// Trailers are validated and dropped (an HTTP/1.0 recipient has no use for them).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Scan, ChunkError> {
        self.scan_payload(input, |payload| out.extend_from_slice(&input[payload]))
    }

    /// Like [`ChunkedDecoder::scan`], and calls `on_payload` with each range of `input` that is
    /// payload, in order; lets a caller de-chunk without copying (e.g. write the ranges out).
    pub fn scan_payload(
        &mut self,
        input: &[u8],
        mut on_payload: impl FnMut(Range<usize>),
    ) -> Result<Scan, ChunkError> {
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                State::Data { remaining } => {
                    let available = (input.len() - pos) as u64;
                    let take = remaining.min(available) as usize;
                    on_payload(pos..pos + take);
                    pos += take;
                    self.state = match remaining - take as u64 {
                        0 => State::DataCr,
                        remaining => State::Data { remaining },
                    };
                }
                State::Done => break,
                State::Failed(fault) => return Err(fault),
                _ => {
                    let byte = input[pos];
                    pos += 1;
                    if let Err(fault) = self.step(byte) {
                        self.state = State::Failed(fault);
                        return Err(fault);
                    }
                }
            }
        }
        if let State::Failed(fault) = self.state {
            return Err(fault);
        }
        Ok(Scan {
            consumed: pos,
            done: self.state == State::Done,
        })
    }

    /// Advances over one framing byte (anything but payload).
    fn step(&mut self, byte: u8) -> Result<(), ChunkError> {
        self.count_framing_byte()?;
        self.state = match (self.state, byte) {
            (State::SizeStart, _) => match hex_value(byte) {
                Some(0) => State::Size { size: 0, digits: 0 },
                Some(value) => State::Size {
                    size: value,
                    digits: 1,
                },
                None => {
                    return Err(match byte {
                        b' ' | b'\t' => ChunkError::WhitespaceBeforeSize,
                        b'\r' | b';' => ChunkError::EmptySize,
                        b'\n' => ChunkError::BareLf,
                        _ => ChunkError::InvalidSize,
                    })
                }
            },
            (State::Size { size, digits }, _) => match hex_value(byte) {
                // Leading zeros are insignificant; only real digits count towards 16.
                Some(value) => {
                    let digits = if size == 0 && value == 0 {
                        0
                    } else {
                        digits + 1
                    };
                    if digits > 16 {
                        return Err(ChunkError::SizeOverflow);
                    }
                    State::Size {
                        size: size << 4 | value,
                        digits,
                    }
                }
                None => after_size(size, byte)?,
            },
            (State::SizeWhitespace { size }, b' ' | b'\t') => State::SizeWhitespace { size },
            (State::SizeWhitespace { size }, b';') => State::Extension { size },
            (State::SizeWhitespace { .. }, b'\n') => return Err(ChunkError::BareLf),
            (State::SizeWhitespace { .. }, _) => return Err(ChunkError::InvalidSize),
            (State::Extension { size }, b'\r') => State::SizeLf { size },
            (State::Extension { .. }, b'\n') => return Err(ChunkError::BareLf),
            (State::Extension { size }, _) if is_field_value_byte(byte) => {
                State::Extension { size }
            }
            (State::Extension { .. }, _) => return Err(ChunkError::InvalidExtension),
            (State::SizeLf { size }, b'\n') => {
                self.line_len = 0;
                if size == 0 {
                    State::TrailerStart
                } else {
                    State::Data { remaining: size }
                }
            }
            (State::SizeLf { .. }, _) => return Err(ChunkError::BareCr),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::SizeStart,
            (State::DataCr | State::DataLf, _) => return Err(ChunkError::MissingDataCrlf),
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::TrailerStart, b'\n') => return Err(ChunkError::BareLf),
            (State::TrailerStart, _) if is_tchar(byte) => State::TrailerName,
            // Obs-fold, a leading colon, whitespace or junk where a field name must start.
            (State::TrailerStart, _) => return Err(ChunkError::InvalidTrailer),
            (State::TrailerName, b':') => State::TrailerValue,
            (State::TrailerName, _) if is_tchar(byte) => State::TrailerName,
            (State::TrailerName, b'\n') => return Err(ChunkError::BareLf),
            (State::TrailerName, _) => return Err(ChunkError::InvalidTrailer),
            (State::TrailerValue, b'\r') => State::TrailerLf,
            (State::TrailerValue, b'\n') => return Err(ChunkError::BareLf),
            (State::TrailerValue, _) if is_field_value_byte(byte) => State::TrailerValue,
            (State::TrailerValue, _) => return Err(ChunkError::InvalidTrailer),
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::EndLf, b'\n') => State::Done,
            (State::TrailerLf | State::EndLf, _) => return Err(ChunkError::BareCr),
            (State::Data { .. } | State::Done | State::Failed(_), _) => {
                unreachable!("payload, done and failed states are handled by scan_payload")
            }
        };
        Ok(())
    }

    /// Charges a framing byte to the size-line or trailer-section limit.
    fn count_framing_byte(&mut self) -> Result<(), ChunkError> {
        match self.state {
            State::SizeStart
            | State::Size { .. }
            | State::SizeWhitespace { .. }
            | State::Extension { .. }
            | State::SizeLf { .. } => {
                self.line_len += 1;
                if self.line_len > self.limits.max_chunk_line {
                    return Err(ChunkError::ChunkLineTooLong);
                }
            }
            State::TrailerStart
            | State::TrailerName
            | State::TrailerValue
            | State::TrailerLf
            | State::EndLf => {
                self.trailer_len += 1;
                if self.trailer_len > self.limits.max_trailer_section {
                    return Err(ChunkError::TrailerTooLarge);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The byte that ends the size digits: whitespace (then `;`), `;`, or CR.
fn after_size(size: u64, byte: u8) -> Result<State, ChunkError> {
    match byte {
        b' ' | b'\t' => Ok(State::SizeWhitespace { size }),
        b';' => Ok(State::Extension { size }),
        b'\r' => Ok(State::SizeLf { size }),
        b'\n' => Err(ChunkError::BareLf),
        _ => Err(ChunkError::InvalidSize),
    }
}

fn hex_value(byte: u8) -> Option<u64> {
    match byte {
        b'0'..=b'9' => Some(u64::from(byte - b'0')),
        b'a'..=b'f' => Some(u64::from(byte - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(byte - b'A' + 10)),
        _ => None,
    }
}
