//! `chunked`: `ChunkedDecoder::scan`, `decode` and `scan_payload` on arbitrary bodies.
//!
//! Input: `flags, chunk line limit, trailer limit, split1 (u16 LE), split2 (u16 LE), split3
//! (u16 LE)`, then the body bytes. `flags` bit 0: small limits (else the defaults).
//!
//! Invariants:
//! - split invariance: feeding the input whole, or in pieces cut at the fuzzer's split points,
//!   or byte by byte (short inputs), gives the same outcome (error, or bytes consumed and
//!   whether the body is done) and the same decoded payload;
//! - `scan`, `decode` and `scan_payload` agree, and `decode`'s output is exactly the
//!   concatenation of the `scan_payload` ranges, which lie in order within the consumed bytes;
//! - a call consumes less than its input only when the body is done; after `done` nothing
//!   more is consumed; an error is reported again by every later call;
//! - a complete body re-scanned alone (without what followed it) is complete at the same byte.

use shardgate::http::{ChunkError, ChunkLimits, ChunkedDecoder};

use crate::{show, Input};

/// The outcome of feeding a body in pieces: the error, or (bytes consumed, done).
type Outcome = Result<(usize, bool), ChunkError>;

#[derive(Clone, Copy)]
enum Mode {
    Scan,
    Decode,
    Ranges,
}

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let (a, b) = (input.byte(), input.byte());
    let limits = if flags & 1 != 0 {
        ChunkLimits {
            max_chunk_line: 1 + usize::from(a % 64),
            max_trailer_section: 1 + usize::from(b),
        }
    } else {
        ChunkLimits::default()
    };
    let splits = [input.u16(), input.u16(), input.u16()];
    let body = input.rest();

    let whole = feed(limits, &[body], Mode::Decode);
    let mut cuts: Vec<usize> = splits
        .iter()
        .map(|&s| usize::from(s) % (body.len() + 1))
        .collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for cut in cuts {
        pieces.push(&body[start..cut]);
        start = cut;
    }
    pieces.push(&body[start..]);

    for mode in [Mode::Scan, Mode::Decode, Mode::Ranges] {
        let split = feed(limits, &pieces, mode);
        assert_eq!(
            split.0,
            whole.0,
            "outcome differs with pieces {} on {}",
            lens(&pieces),
            show(body)
        );
        if !matches!(mode, Mode::Scan) {
            assert_eq!(
                split.1,
                whole.1,
                "payload differs with pieces {}",
                lens(&pieces)
            );
        }
    }
    if body.len() <= 256 {
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        let by_byte = feed(limits, &bytes, Mode::Decode);
        assert_eq!(
            by_byte,
            whole,
            "byte-by-byte feed differs on {}",
            show(body)
        );
    }
    if let Ok((consumed, true)) = whole.0 {
        let alone = feed(limits, &[&body[..consumed]], Mode::Decode);
        assert_eq!(
            alone,
            whole,
            "the body alone ends elsewhere: {}",
            show(body)
        );
    }
}

fn lens(pieces: &[&[u8]]) -> String {
    format!("{:?}", pieces.iter().map(|p| p.len()).collect::<Vec<_>>())
}

/// Feeds `pieces` (as consecutive reads) to one decoder; returns the outcome and payload.
fn feed(limits: ChunkLimits, pieces: &[&[u8]], mode: Mode) -> (Outcome, Vec<u8>) {
    let mut decoder = ChunkedDecoder::new(limits);
    let mut payload = Vec::new();
    let mut consumed = 0;
    for piece in pieces {
        let result = match mode {
            Mode::Scan => decoder.scan(piece),
            Mode::Decode => decoder.decode(piece, &mut payload),
            Mode::Ranges => {
                let mut ranges = Vec::new();
                let result = decoder.scan_payload(piece, |range| ranges.push(range));
                let mut end = 0;
                for range in ranges {
                    assert!(
                        range.start >= end && range.start <= range.end,
                        "range {range:?} after {end}"
                    );
                    end = range.end;
                    payload.extend_from_slice(&piece[range]);
                }
                if let Ok(scan) = result {
                    assert!(end <= scan.consumed, "payload range beyond consumed bytes");
                }
                result
            }
        };
        let scan = match result {
            Ok(scan) => scan,
            Err(fault) => {
                // The fault sticks.
                assert_eq!(decoder.scan(b"0\r\n\r\n"), Err(fault));
                assert!(!decoder.is_done());
                return (Err(fault), payload);
            }
        };
        assert!(scan.consumed <= piece.len());
        assert_eq!(scan.done, decoder.is_done());
        if !scan.done {
            assert_eq!(
                scan.consumed,
                piece.len(),
                "stopped short without being done"
            );
        }
        consumed += scan.consumed;
        if scan.done {
            let again = decoder.scan(b"0\r\n\r\n").expect("done stays done");
            assert_eq!((again.consumed, again.done), (0, true));
            break;
        }
    }
    assert!(payload.len() <= consumed);
    (Ok((consumed, decoder.is_done())), payload)
}
