//! Where a head ends, with its line endings checked on the way: the one byte-level pass shared
//! by request and response parsing. Every line must end in CRLF (httparse alone would accept a
//! bare LF), so httparse only ever sees a complete head with proper lines.

use super::header::HeaderError;

/// Finds the end of a head, the index just past its blank line, and checks every line ending
/// before it: a CR not followed by LF or a LF not preceded by CR is an error at once, even
/// before the head is complete.
///
/// RFC 9112 §2.2 lets a server accept bare-LF lines, but a proxy must not: an upstream that
/// splits lines differently could see other headers than the ones we validated.
///
/// `scanned_from` is how much of `buf` an earlier call already scanned and found `Ok(None)` (pass
/// the previous `buf.len()`, or 0): the scan resumes there, stepping back only over a trailing
/// CR that was still waiting for its LF, so a head arriving a byte at a time costs O(n) in all,
/// not O(n²). Empty lines before the first line (RFC 9112 §2.2 lets a client send a stray CRLF
/// after a body) do not end the head.
pub fn find_head_end(buf: &[u8], scanned_from: usize) -> Result<Option<usize>, HeaderError> {
    let mut from = scanned_from.min(buf.len());
    if from > 0 && buf[from - 1] == b'\r' {
        from -= 1;
    }
    // Jumps from line ending to line ending; a proper one is consumed as a pair, so any LF
    // found is bare.
    let mut line_ends = LineEnds::new(buf, from);
    while let Some(cr) = line_ends.next_from(from) {
        if buf[cr] == b'\n' {
            return Err(HeaderError::BareLf);
        }
        match buf.get(cr + 1) {
            None => return Ok(None),
            Some(b'\n') => {}
            Some(_) => return Err(HeaderError::BareCr),
        }
        if closes_head(buf, cr) {
            return Ok(Some(cr + 2));
        }
        from = cr + 2;
    }
    Ok(None)
}

/// The positions of CR and LF bytes in a buffer, in order, found sixteen bytes at a time: one
/// compare per block and then one bit per line ending, where a search per line paid its setup
/// a dozen times per head.
struct LineEnds<'b> {
    buf: &'b [u8],
    /// Start of the current block.
    base: usize,
    /// Bit `i`: `buf[base + i]` is a CR or LF not yet returned.
    mask: u32,
}

impl<'b> LineEnds<'b> {
    fn new(buf: &'b [u8], from: usize) -> Self {
        LineEnds {
            buf,
            base: from,
            mask: cr_lf_mask(buf, from),
        }
    }

    /// The first CR or LF at or after `at` (which never moves backwards).
    #[inline]
    fn next_from(&mut self, at: usize) -> Option<usize> {
        loop {
            let skip = at.saturating_sub(self.base);
            self.mask &= u32::MAX.checked_shl(skip as u32).unwrap_or(0);
            if self.mask != 0 {
                return Some(self.base + self.mask.trailing_zeros() as usize);
            }
            self.base += BLOCK;
            if self.base >= self.buf.len() {
                return None;
            }
            self.mask = cr_lf_mask(self.buf, self.base);
        }
    }
}

const BLOCK: usize = 16;

/// Bit `i` set where `buf[base + i]` is CR or LF, for the (up to) sixteen bytes from `base`.
#[inline]
fn cr_lf_mask(buf: &[u8], base: usize) -> u32 {
    let rest = buf.get(base..).unwrap_or_default();
    match rest.get(..BLOCK) {
        Some(block) => block_mask(block.try_into().expect("a block is sixteen bytes")),
        None => {
            // The last partial block, padded with zeros (neither CR nor LF).
            let mut block = [0; BLOCK];
            block[..rest.len()].copy_from_slice(rest);
            block_mask(&block)
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn block_mask(block: &[u8; BLOCK]) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86_64 baseline, so these intrinsics are always available;
    // the one load reads exactly the sixteen bytes of `block` and `loadu` needs no alignment.
    // Checked against a byte loop in `block_masks_match_a_byte_loop`.
    unsafe {
        let bytes = _mm_loadu_si128(block.as_ptr().cast());
        let cr = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'\r' as i8));
        let lf = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'\n' as i8));
        _mm_movemask_epi8(_mm_or_si128(cr, lf)) as u32
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn block_mask(block: &[u8; BLOCK]) -> u32 {
    block.iter().enumerate().fold(0, |mask, (i, &b)| {
        mask | (u32::from(b == b'\r' || b == b'\n') << i)
    })
}

/// Whether the CRLF at `cr` ends an empty line that follows a non-empty one. Every earlier line
/// ending is a checked CRLF, so the line is empty when a LF precedes `cr`, and the line before it
/// is non-empty when the byte before that LF's CR is not a LF either. The first such line ends
/// the head: empty lines before any non-empty one are leading empty lines.
fn closes_head(buf: &[u8], cr: usize) -> bool {
    cr >= 3 && buf[cr - 1] == b'\n' && buf[cr - 3] != b'\n'
}

const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `word` that equals `byte`, and possibly in bytes above the
/// first such one (borrows propagate upwards only), so the lowest set bit is exact.
fn byte_matches(word: u64, byte: u8) -> u64 {
    let diff = word ^ (LOW_BITS * u64::from(byte));
    diff.wrapping_sub(LOW_BITS) & !diff & HIGH_BITS
}

/// First index where `matches` flags a byte, eight bytes at a time: a byte loop here cost more
/// than httparse's whole SIMD parse of the same head.
fn find_word_match(haystack: &[u8], matches: impl Fn(u64) -> u64) -> Option<usize> {
    let mut words = haystack.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let Ok(bytes) = <[u8; 8]>::try_from(word) else {
            break;
        };
        let found = matches(u64::from_le_bytes(bytes));
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    // The last partial word, padded: a match in the padding means none in the tail, since
    // the lowest flagged byte is exact.
    let tail = words.remainder();
    let mut bytes = [0; 8];
    bytes[..tail.len()].copy_from_slice(tail);
    let first = (matches(u64::from_le_bytes(bytes)).trailing_zeros() / 8) as usize;
    (first < tail.len()).then_some(offset + first)
}

/// Index of the first `byte` in `haystack`.
pub(crate) fn find_byte(haystack: &[u8], byte: u8) -> Option<usize> {
    find_word_match(haystack, |word| byte_matches(word, byte))
}

/// The first line of a head after leading empty lines: its start, and the index of its LF if
/// it has arrived.
pub(crate) fn first_line(buf: &[u8]) -> (usize, Option<usize>) {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let lf = find_byte(&buf[start..], b'\n').map(|offset| start + offset);
    (start, lf)
}

/// Length of the line `start..lf` without its line ending.
pub(crate) fn line_len(buf: &[u8], start: usize, lf: usize) -> usize {
    if lf > start && buf[lf - 1] == b'\r' {
        lf - 1 - start
    } else {
        lf - start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_end_after_blank_line() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY\n\r";
        assert_eq!(find_head_end(head, 0), Ok(Some(head.len() - 6)));
        assert_eq!(find_head_end(b"X\r\n\r\n", 0), Ok(Some(5)));
    }

    #[test]
    fn no_end_without_blank_line() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), Ok(None));
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0),
            Ok(None)
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r", 0), Ok(None));
        assert_eq!(find_head_end(b"", 0), Ok(None));
    }

    #[test]
    fn leading_empty_lines_do_not_end_the_head() {
        assert_eq!(find_head_end(b"\r\n\r\n\r\n", 0), Ok(None));
        let head = b"\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(find_head_end(head, 0), Ok(Some(head.len())));
    }

    #[test]
    fn rejects_bare_lf_before_the_head_is_complete() {
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\n", 0),
            Err(HeaderError::BareLf)
        );
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nA: b\n", 0),
            Err(HeaderError::BareLf)
        );
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\n\n", 0),
            Err(HeaderError::BareLf)
        );
        assert_eq!(find_head_end(b"\nGET", 0), Err(HeaderError::BareLf));
        assert_eq!(find_head_end(b"A\r\n\r\r\n", 0), Err(HeaderError::BareCr));
    }

    #[test]
    fn rejects_bare_cr_as_soon_as_the_next_byte_arrives() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r", 0), Ok(None));
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\rH", 0),
            Err(HeaderError::BareCr)
        );
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", 0),
            Err(HeaderError::BareCr)
        );
        assert_eq!(find_head_end(b"A\r\r\n", 0), Err(HeaderError::BareCr));
    }

    #[test]
    fn bytes_after_the_head_are_not_checked() {
        assert_eq!(find_head_end(b"A\r\n\r\n\n\r\rX", 0), Ok(Some(5)));
    }

    /// Feeding a buffer one byte at a time, passing the previous length as already scanned,
    /// gives the same verdict at the same byte as scanning every prefix from scratch.
    #[test]
    fn incremental_scan_matches_one_shot_scan_at_every_prefix() {
        let fixtures: [&[u8]; 7] = [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nNEXT",
            b"\r\nGET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\n\n",
            b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",
            b"GET / HTTP/1.1\r\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: b\r\nC: d\r\n\r\n",
            b"\r\n\r\n\r\n\r",
        ];
        for buf in fixtures {
            let mut scanned = 0;
            for len in 0..=buf.len() {
                let prefix = &buf[..len];
                let incremental = find_head_end(prefix, scanned);
                assert_eq!(
                    incremental,
                    find_head_end(prefix, 0),
                    "{:?} at {len}",
                    String::from_utf8_lossy(buf)
                );
                if incremental != Ok(None) {
                    break;
                }
                scanned = len;
            }
        }
    }

    #[test]
    fn scanned_from_past_the_end_is_clamped() {
        assert_eq!(find_head_end(b"abc", 10), Ok(None));
    }

    fn first_cr_or_lf(hay: &[u8]) -> Option<usize> {
        LineEnds::new(hay, 0).next_from(0)
    }

    #[test]
    fn word_search_finds_the_first_match_at_every_position() {
        for len in 0..40 {
            for at in 0..len {
                // Filler one bit away from the needle, and a second match further on.
                let mut hay = vec![b'\n' ^ 0x80; len];
                hay[at] = b'\n';
                if at + 3 < len {
                    hay[at + 3] = b'\n';
                }
                assert_eq!(find_byte(&hay, b'\n'), Some(at), "len {len} at {at}");
                hay[at] = b'\r';
                let expected = hay.iter().position(|&b| b == b'\r' || b == b'\n');
                assert_eq!(first_cr_or_lf(&hay), expected, "len {len} at {at}");
            }
            assert_eq!(find_byte(&vec![b'a'; len], b'\n'), None);
            assert_eq!(find_byte(&vec![0; len], b'\n'), None);
            assert_eq!(first_cr_or_lf(&vec![0x0b; len]), None);
        }
        // A zero needle must not be found in the zero padding of the tail.
        assert_eq!(find_byte(b"abc", 0), None);
        assert_eq!(find_byte(b"ab\0", 0), Some(2));
    }

    #[test]
    fn word_search_agrees_with_a_byte_loop_on_all_byte_pairs() {
        for a in 0..=255u8 {
            for b in [0u8, 9, 10, 11, 12, 13, 14, 0x7f, 0x80, 0x8a, 0x8d, 0xff] {
                let hay = [a, b, a, b, a, b, a, b, a, b, a];
                for needle in [b'\n', b'\r', b':'] {
                    assert_eq!(
                        find_byte(&hay, needle),
                        hay.iter().position(|&x| x == needle)
                    );
                }
                assert_eq!(
                    first_cr_or_lf(&hay),
                    hay.iter().position(|&x| x == b'\r' || x == b'\n')
                );
            }
        }
    }

    #[test]
    fn first_line_skips_leading_empty_lines() {
        assert_eq!(first_line(b"\r\n\r\nGET / HTTP/1.1\r\n"), (4, Some(19)));
        assert_eq!(first_line(b"GET / HT"), (0, None));
        assert_eq!(first_line(b"\r\n"), (2, None));
        assert_eq!(line_len(b"GET\r\n", 0, 4), 3);
        assert_eq!(line_len(b"GET\n", 0, 3), 3);
    }

    #[test]
    fn block_masks_match_a_byte_loop() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut block = [0u8; BLOCK];
            for b in &mut block {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = [b'\r', b'\n', b'a', (x >> 32) as u8][(x % 4) as usize];
            }
            let expected = (0..BLOCK)
                .filter(|&i| block[i] == b'\r' || block[i] == b'\n')
                .fold(0u32, |m, i| m | 1 << i);
            assert_eq!(block_mask(&block), expected, "{block:?}");
        }
    }

    /// The specification of `find_head_end`, one byte at a time.
    fn head_end_by_bytes(buf: &[u8]) -> Result<Option<usize>, HeaderError> {
        let mut i = 0;
        while i < buf.len() {
            match buf[i] {
                b'\n' => return Err(HeaderError::BareLf),
                b'\r' => match buf.get(i + 1) {
                    None => return Ok(None),
                    Some(b'\n') => {
                        if closes_head(buf, i) {
                            return Ok(Some(i + 2));
                        }
                        i += 2;
                        continue;
                    }
                    Some(_) => return Err(HeaderError::BareCr),
                },
                _ => {}
            }
            i += 1;
        }
        Ok(None)
    }

    #[test]
    fn block_scan_agrees_with_a_byte_loop_whole_and_resumed() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let pieces: [&[u8]; 6] = [b"\r\n", b"\r\n\r\n", b"GET / HTTP/1.1", b"\r", b"\n", b"x"];
        for _ in 0..20_000 {
            let mut buf = Vec::new();
            while buf.len() < (next() % 70) as usize {
                // Mostly proper lines, sometimes a stray CR or LF.
                let piece = match next() % 10 {
                    0..=3 => pieces[0],
                    4 => pieces[1],
                    5 | 6 => pieces[2],
                    7 => pieces[(3 + next() % 3) as usize],
                    _ => b"Host: a",
                };
                buf.extend_from_slice(piece);
            }
            let expected = head_end_by_bytes(&buf);
            assert_eq!(
                find_head_end(&buf, 0),
                expected,
                "{:?}",
                String::from_utf8_lossy(&buf)
            );
            // Resumed where an earlier call on a prefix found nothing yet.
            let split = (next() as usize) % (buf.len() + 1);
            if find_head_end(&buf[..split], 0) == Ok(None) {
                assert_eq!(
                    find_head_end(&buf, split),
                    expected,
                    "{:?} resumed at {split}",
                    String::from_utf8_lossy(&buf)
                );
            }
        }
    }
}
