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

    /// Payload bytes of the current chunk still to come (its size line announced them); 0
    /// outside chunk data. Lets a caller hold a body limit against announced sizes.
    pub fn chunk_remaining(&self) -> u64 {
        match self.state {
            State::Data { remaining } => remaining,
            _ => 0,
        }
    }

    /// The rest of the current chunk's payload went past the decoder (spliced from socket to
    /// socket, never seen): it counts as scanned, and the chunk's CRLF comes next. Returns how
    /// many bytes that was (0 outside chunk data, where nothing changes).
    pub fn skip_payload(&mut self) -> u64 {
        let State::Data { remaining } = self.state else {
            return 0;
        };
        self.state = State::DataCr;
        remaining
    }

    /// Bytes of the trailer section scanned so far (the field lines and the final empty line,
    /// not the last chunk's size line): the last this many bytes of a pass-through body.
    pub fn trailer_section_len(&self) -> usize {
        self.trailer_len
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What feeding a body in `parts` produced: total consumed and done, or the fault; and the
    /// decoded payload.
    #[derive(Debug, PartialEq, Eq)]
    struct Outcome {
        result: Result<(usize, bool), ChunkError>,
        payload: Vec<u8>,
    }

    fn decode_parts(parts: &[&[u8]], limits: ChunkLimits) -> Outcome {
        let mut decoder = ChunkedDecoder::new(limits);
        let mut payload = Vec::new();
        let mut consumed = 0;
        for part in parts {
            match decoder.decode(part, &mut payload) {
                Ok(scan) => {
                    consumed += scan.consumed;
                    if scan.done {
                        return Outcome {
                            result: Ok((consumed, true)),
                            payload,
                        };
                    }
                    // Until the body is complete every byte belongs to it.
                    assert_eq!(scan.consumed, part.len());
                }
                Err(fault) => {
                    return Outcome {
                        result: Err(fault),
                        payload,
                    }
                }
            }
        }
        Outcome {
            result: Ok((consumed, false)),
            payload,
        }
    }

    /// Pass-through scan over `parts`: consumed and done, or the fault.
    fn scan_parts(parts: &[&[u8]], limits: ChunkLimits) -> Result<(usize, bool), ChunkError> {
        let mut decoder = ChunkedDecoder::new(limits);
        let mut consumed = 0;
        for part in parts {
            let scan = decoder.scan(part)?;
            consumed += scan.consumed;
            if scan.done {
                return Ok((consumed, true));
            }
        }
        Ok((consumed, false))
    }

    fn decode(input: &[u8]) -> Outcome {
        decode_parts(&[input], ChunkLimits::default())
    }

    fn done(consumed: usize, payload: &[u8]) -> Outcome {
        Outcome {
            result: Ok((consumed, true)),
            payload: payload.to_vec(),
        }
    }

    fn fault(input: &[u8]) -> ChunkError {
        match decode(input).result {
            Err(fault) => fault,
            Ok(progress) => panic!(
                "{:?} accepted: {progress:?}",
                String::from_utf8_lossy(input)
            ),
        }
    }

    const VALID: [(&[u8], &[u8]); 9] = [
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
        (
            b"5;name=value;q=\"quoted ; str\"\r\nhello\r\n0;last\r\n\r\n",
            b"hello",
        ),
        (
            b"3\r\nabc\r\n0\r\nX-Checksum: 123\r\nX-Other:\tv \xff\r\nEmpty:\r\n\r\n",
            b"abc",
        ),
        (
            b"000A\r\n0123456789\r\na\r\nabcdefghij\r\n00\r\n\r\n",
            b"0123456789abcdefghij",
        ),
        (b"0\r\n\r\n", b""),
        (b"3 \t;x\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"00000000000000000000000000000001\r\nx\r\n0\r\n\r\n", b"x"),
        (b"1\r\n\r\r\n1\r\n\n\r\n0\r\n\r\n", b"\r\n"),
    ];

    const INVALID: [(&[u8], ChunkError); 31] = [
        (b"z\r\n", ChunkError::InvalidSize),
        (b"5x\r\n", ChunkError::InvalidSize),
        (b"-5\r\n", ChunkError::InvalidSize),
        (b"+5\r\n", ChunkError::InvalidSize),
        (b"0x5\r\nhello\r\n", ChunkError::InvalidSize),
        (b"5 \r\nhello\r\n", ChunkError::InvalidSize),
        (b"5 5\r\n", ChunkError::InvalidSize),
        (b"\r\nhello\r\n", ChunkError::EmptySize),
        (b";ext\r\n", ChunkError::EmptySize),
        (b" 5\r\nhello\r\n", ChunkError::WhitespaceBeforeSize),
        (b"\t5\r\nhello\r\n", ChunkError::WhitespaceBeforeSize),
        (b"10000000000000000\r\n", ChunkError::SizeOverflow),
        (b"5\nhello\r\n", ChunkError::BareLf),
        (b"5;ext\nhello\r\n", ChunkError::BareLf),
        (b"5 \nhello\r\n", ChunkError::BareLf),
        (b"\n", ChunkError::BareLf),
        (b"0\r\n\n", ChunkError::BareLf),
        (b"0\r\nX: 1\n\r\n", ChunkError::BareLf),
        (b"0\r\nX\n\r\n", ChunkError::BareLf),
        (b"5\rhello\r\n", ChunkError::BareCr),
        (b"0\r\nX: 1\rY\r\n\r\n", ChunkError::BareCr),
        (b"0\r\n\rX", ChunkError::BareCr),
        (b"5\r\nhelloX\r\n0\r\n\r\n", ChunkError::MissingDataCrlf),
        (b"5\r\nhello\n0\r\n\r\n", ChunkError::MissingDataCrlf),
        (b"5\r\nhello\rX", ChunkError::MissingDataCrlf),
        (b"5;a\x01b\r\nhello\r\n", ChunkError::InvalidExtension),
        (b"0\r\n X: 1\r\n\r\n", ChunkError::InvalidTrailer),
        (b"0\r\nX : 1\r\n\r\n", ChunkError::InvalidTrailer),
        (b"0\r\n: 1\r\n\r\n", ChunkError::InvalidTrailer),
        (b"0\r\nX\r\n\r\n", ChunkError::InvalidTrailer),
        (b"0\r\nX: \x00\r\n\r\n", ChunkError::InvalidTrailer),
    ];

    #[test]
    fn decodes_valid_bodies() {
        for (input, payload) in VALID {
            assert_eq!(
                decode(input),
                done(input.len(), payload),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn rejects_each_invalid_body_with_its_fault() {
        for (input, expected) in INVALID {
            assert_eq!(
                decode(input).result,
                Err(expected),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn bytes_after_the_last_chunk_belong_to_the_next_message() {
        let input = b"2\r\nhi\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\n";
        let body_len = input.len() - b"GET / HTTP/1.1\r\n".len();
        assert_eq!(decode(input), done(body_len, b"hi"));
        let mut decoder = ChunkedDecoder::default();
        assert_eq!(
            decoder.scan(input),
            Ok(Scan {
                consumed: body_len,
                done: true
            })
        );
        assert!(decoder.is_done());
        // A finished decoder takes nothing more.
        assert_eq!(
            decoder.scan(b"more"),
            Ok(Scan {
                consumed: 0,
                done: true
            })
        );
    }

    #[test]
    fn incomplete_body_consumes_everything_and_is_not_done() {
        assert_eq!(
            decode(b"5\r\nhel"),
            Outcome {
                result: Ok((6, false)),
                payload: b"hel".to_vec()
            }
        );
        assert_eq!(decode(b"0\r\nX: 1\r\n").result, Ok((9, false)));
        assert_eq!(decode(b"FFFFFFFFFFFFFFFF\r\n").result, Ok((18, false)));
    }

    #[test]
    fn sixteen_significant_hex_digits_fit_and_seventeen_overflow() {
        let mut decoder = ChunkedDecoder::default();
        assert!(decoder.scan(b"0000ffffffffffffffff;x\r\n").is_ok());
        assert_eq!(
            ChunkedDecoder::default().scan(b"1ffffffffffffffff"),
            Err(ChunkError::SizeOverflow)
        );
    }

    #[test]
    fn a_fault_is_reported_again_on_every_later_call() {
        let mut decoder = ChunkedDecoder::default();
        assert_eq!(
            decoder.scan(b"5\r\nhelloX"),
            Err(ChunkError::MissingDataCrlf)
        );
        assert_eq!(
            decoder.scan(b"\r\n0\r\n\r\n"),
            Err(ChunkError::MissingDataCrlf)
        );
        assert_eq!(decoder.scan(b""), Err(ChunkError::MissingDataCrlf));
    }

    fn tight_limits() -> ChunkLimits {
        ChunkLimits {
            max_chunk_line: 8,
            max_trailer_section: 16,
        }
    }

    #[test]
    fn chunk_line_up_to_the_limit_is_accepted_and_beyond_is_refused() {
        let limits = tight_limits();
        // "5;abcd\r\n" is exactly 8 bytes.
        let at_limit = b"5;abcd\r\nhello\r\n0\r\n\r\n";
        assert_eq!(
            decode_parts(&[at_limit], limits).result,
            Ok((at_limit.len(), true))
        );
        assert_eq!(
            decode_parts(&[b"5;abcde\r\nhello\r\n0\r\n\r\n"], limits).result,
            Err(ChunkError::ChunkLineTooLong)
        );
        // Leading zeros count towards the line too.
        assert_eq!(
            decode_parts(&[b"000000005\r\n"], limits).result,
            Err(ChunkError::ChunkLineTooLong)
        );
        let mut long_extension = b"1;".to_vec();
        long_extension.resize(5000, b'a');
        assert_eq!(fault(&long_extension), ChunkError::ChunkLineTooLong);
    }

    #[test]
    fn trailer_section_up_to_the_limit_is_accepted_and_beyond_is_refused() {
        let limits = tight_limits();
        // "X: 123456789\r\n" + "\r\n" is exactly 16 bytes.
        let at_limit = b"0\r\nX: 123456789\r\n\r\n";
        assert_eq!(
            decode_parts(&[at_limit], limits).result,
            Ok((at_limit.len(), true))
        );
        assert_eq!(
            decode_parts(&[b"0\r\nX: 1234567890\r\n\r\n"], limits).result,
            Err(ChunkError::TrailerTooLarge)
        );
        let mut huge_trailer = b"0\r\nX: ".to_vec();
        huge_trailer.resize(9000, b'v');
        assert_eq!(fault(&huge_trailer), ChunkError::TrailerTooLarge);
    }

    #[test]
    fn payload_ranges_point_at_the_data_only() {
        let input = b"3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n";
        let mut ranges = Vec::new();
        let scan = ChunkedDecoder::default()
            .scan_payload(input, |range| ranges.push(range))
            .unwrap();
        assert!(scan.done);
        assert_eq!(ranges, [3..6, 13..15]);
    }

    /// Every fixture, valid or not, gives the same outcome (consumed, done, payload, fault)
    /// whether it arrives whole, split at any one point, at any two points, or byte by byte;
    /// and pass-through scanning agrees with decoding.
    #[test]
    fn chunked_scan_is_split_invariant() {
        let limits = ChunkLimits::default();
        let fixtures = VALID
            .iter()
            .map(|(input, _)| *input)
            .chain(INVALID.iter().map(|(input, _)| *input))
            .chain([&b"5\r\nhel"[..], b"2\r\nhi\r\n0\r\n\r\nNEXT"]);
        for input in fixtures {
            let whole = decode_parts(&[input], limits);
            let name = String::from_utf8_lossy(input);
            assert_eq!(scan_parts(&[input], limits), whole.result, "{name}");
            for split in 0..=input.len() {
                let (a, b) = input.split_at(split);
                assert_eq!(
                    decode_parts(&[a, b], limits),
                    whole,
                    "{name} split at {split}"
                );
                assert_eq!(
                    scan_parts(&[a, b], limits),
                    whole.result,
                    "{name} at {split}"
                );
                for second in split..=input.len() {
                    let (b, c) = input[split..].split_at(second - split);
                    assert_eq!(
                        decode_parts(&[a, b, c], limits),
                        whole,
                        "{name} split at {split} and {second}"
                    );
                }
            }
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(decode_parts(&bytes, limits), whole, "{name} byte by byte");
        }
    }

    #[test]
    fn chunk_remaining_is_what_the_size_line_announced_minus_what_arrived() {
        let mut decoder = ChunkedDecoder::default();
        assert_eq!(decoder.chunk_remaining(), 0);
        decoder.scan(b"ffffffffffffffff\r\nhel").unwrap();
        assert_eq!(decoder.chunk_remaining(), u64::MAX - 3);
        let mut decoder = ChunkedDecoder::default();
        decoder.scan(b"5\r\nhello").unwrap();
        assert_eq!(decoder.chunk_remaining(), 0, "the chunk's data is complete");
        decoder.scan(b"\r\n1").unwrap();
        assert_eq!(decoder.chunk_remaining(), 0, "size line not finished");
    }

    #[test]
    fn skipped_payload_leaves_the_chunk_crlf_and_the_rest_of_the_framing_checked() {
        let mut decoder = ChunkedDecoder::default();
        decoder.scan(b"10\r\nabc").unwrap();
        assert_eq!(decoder.skip_payload(), 13);
        assert_eq!(
            decoder.skip_payload(),
            0,
            "nothing left of the chunk to skip"
        );
        let scan = decoder.scan(b"\r\n0\r\n\r\n").unwrap();
        assert!(scan.done);

        let mut decoder = ChunkedDecoder::default();
        decoder.scan(b"10\r\n").unwrap();
        decoder.skip_payload();
        assert_eq!(
            decoder.scan(b"X\r\n0\r\n\r\n").unwrap_err(),
            ChunkError::MissingDataCrlf,
            "the byte after the skipped payload must be the chunk's CR"
        );

        let mut decoder = ChunkedDecoder::default();
        decoder.scan(b"1").unwrap();
        assert_eq!(decoder.skip_payload(), 0, "inside a size line");
        assert_eq!(
            decoder.scan(b"0\r\n").unwrap().consumed,
            3,
            "the size line goes on"
        );
        assert_eq!(decoder.chunk_remaining(), 16);
    }
}
