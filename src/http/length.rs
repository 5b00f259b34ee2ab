//! Content-Length bodies: counts down the declared length so the caller knows which bytes of a
//! read belong to the body and which to the next message.

use super::Scan;

/// Remaining bytes of a body framed by `Content-Length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthDecoder {
    remaining: u64,
}

impl LengthDecoder {
    pub fn new(length: u64) -> LengthDecoder {
        LengthDecoder { remaining: length }
    }

    /// Bytes still expected. A connection that ends while this is non-zero ended mid-body.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    pub fn is_done(&self) -> bool {
        self.remaining == 0
    }

    /// Takes the body's share of `input`: forward `input[..consumed]`; once `done`, the rest
    /// belongs to the next message.
    pub fn scan(&mut self, input: &[u8]) -> Scan {
        let take = self.remaining.min(input.len() as u64);
        self.remaining -= take;
        Scan {
            consumed: take as usize,
            done: self.remaining == 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_length_is_done_at_once_and_takes_nothing() {
        let mut body = LengthDecoder::new(0);
        assert!(body.is_done());
        assert_eq!(
            body.scan(b"GET / HTTP/1.1\r\n"),
            Scan {
                consumed: 0,
                done: true
            }
        );
    }

    #[test]
    fn takes_exactly_the_declared_length_across_reads() {
        let mut body = LengthDecoder::new(5);
        assert_eq!(
            body.scan(b"abc"),
            Scan {
                consumed: 3,
                done: false
            }
        );
        assert_eq!(body.remaining(), 2);
        assert_eq!(
            body.scan(b"deNEXT"),
            Scan {
                consumed: 2,
                done: true
            }
        );
        assert_eq!(
            body.scan(b"more"),
            Scan {
                consumed: 0,
                done: true
            }
        );
    }

    #[test]
    fn empty_input_makes_no_progress() {
        let mut body = LengthDecoder::new(1);
        assert_eq!(
            body.scan(b""),
            Scan {
                consumed: 0,
                done: false
            }
        );
        assert_eq!(body.remaining(), 1);
    }

    #[test]
    fn lengths_beyond_usize_ranges_do_not_overflow() {
        let mut body = LengthDecoder::new(u64::MAX);
        let scan = body.scan(&[0; 64]);
        assert_eq!(scan.consumed, 64);
        assert_eq!(body.remaining(), u64::MAX - 64);
    }
}
