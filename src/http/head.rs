//! Where a head ends and whether its lines end properly: the byte-level checks shared by request
//! and response parsing. Runs before httparse so that httparse only ever sees a complete head
//! whose every line ends in CRLF (httparse itself would accept bare LF).

use super::header::HeaderError;

/// Finds the end of a head: the index just past the blank line that closes it.
///
/// `scanned_from` is how much of `buf` an earlier call already searched (pass the previous
/// `buf.len()`, or 0): only LFs at or after it are examined, so a head arriving a byte at a time
/// costs O(n) in total, not O(n²). No overlap has to be rescanned because whether a LF closes the
/// head depends only on the up to four bytes before it, which were already there.
///
/// Empty lines before the first line (RFC 9112 §2.2 allows a client to send a stray CRLF after
/// a body) do not end the head. Bare-LF blank lines (`\n\n`, `\n\r\n`) are found too, so that a
/// LF-only client gets a quick `400` from the parser instead of waiting for a timeout.
pub fn find_head_end(buf: &[u8], scanned_from: usize) -> Option<usize> {
    let mut from = scanned_from.min(buf.len());
    while let Some(offset) = buf[from..].iter().position(|&b| b == b'\n') {
        let lf = from + offset;
        if closes_head(buf, lf) {
            return Some(lf + 1);
        }
        from = lf + 1;
    }
    None
}

/// Whether the LF at `lf` ends an empty line that follows a non-empty one. The first such line
/// is the head's end: any empty line before a non-empty one is a leading empty line.
fn closes_head(buf: &[u8], lf: usize) -> bool {
    let previous_lf = match empty_line_start(buf, lf) {
        Some(start) if start > 0 => start - 1,
        _ => return false,
    };
    empty_line_start(buf, previous_lf).is_none()
}

/// If the line ending with the LF at `lf` is empty (`\n` or `\r\n`), where that line starts.
fn empty_line_start(buf: &[u8], lf: usize) -> Option<usize> {
    let line_start = match lf.checked_sub(1).map(|i| buf[i]) {
        Some(b'\r') => lf - 1,
        _ => lf,
    };
    match line_start.checked_sub(1).map(|i| buf[i]) {
        None | Some(b'\n') => Some(line_start),
        Some(_) => None,
    }
}

/// Rejects a bare CR (not followed by LF) and a bare LF (not preceded by CR) anywhere in a head.
///
/// RFC 9112 §2.2 lets a server accept LF-only lines, but a proxy must not: an upstream that
/// splits lines differently could see different headers than we validated.
pub(crate) fn check_line_endings(head: &[u8]) -> Result<(), HeaderError> {
    let mut after_cr = false;
    for &byte in head {
        if after_cr {
            if byte != b'\n' {
                return Err(HeaderError::BareCr);
            }
            after_cr = false;
        } else if byte == b'\r' {
            after_cr = true;
        } else if byte == b'\n' {
            return Err(HeaderError::BareLf);
        }
    }
    if after_cr {
        return Err(HeaderError::BareCr);
    }
    Ok(())
}

/// The first line of a head after leading empty lines: its start, and the index of its LF if
/// it has arrived.
pub(crate) fn first_line(buf: &[u8]) -> (usize, Option<usize>) {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let lf = buf[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|offset| start + offset);
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
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
        assert_eq!(find_head_end(head, 0), Some(head.len() - 4));
    }

    #[test]
    fn no_end_without_blank_line() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0), None);
        assert_eq!(find_head_end(b"", 0), None);
    }

    #[test]
    fn leading_empty_lines_do_not_end_the_head() {
        assert_eq!(find_head_end(b"\r\n\r\n\r\n", 0), None);
        assert_eq!(find_head_end(b"\n\n", 0), None);
        let head = b"\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(find_head_end(head, 0), Some(head.len()));
    }

    #[test]
    fn bare_lf_blank_lines_are_found_for_the_parser_to_reject() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nX", 0), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\r\nX", 0), Some(17));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\nX", 0), Some(17));
    }

    #[test]
    fn incremental_scan_matches_one_shot_scan_at_every_split() {
        let fixtures: [&[u8]; 4] = [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nNEXT",
            b"\r\nGET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\n\n",
            b"HTTP/1.1 200 OK\r\nA: b\r\nC: d\r\n\r\n",
        ];
        for buf in fixtures {
            let expected = find_head_end(buf, 0);
            assert!(expected.is_some());
            // Feed one byte at a time, passing the previous length as already scanned.
            let mut found = None;
            for len in 0..=buf.len() {
                let scanned = len.saturating_sub(1);
                if let Some(end) = find_head_end(&buf[..len], scanned) {
                    found = Some(end);
                    break;
                }
            }
            assert_eq!(found, expected, "{:?}", String::from_utf8_lossy(buf));
        }
    }

    #[test]
    fn scanned_from_past_the_end_is_clamped() {
        assert_eq!(find_head_end(b"abc", 10), None);
    }

    #[test]
    fn line_endings_accept_crlf_only() {
        assert_eq!(
            check_line_endings(b"GET / HTTP/1.1\r\nA: b\r\n\r\n"),
            Ok(())
        );
    }

    #[test]
    fn line_endings_reject_bare_cr() {
        assert_eq!(
            check_line_endings(b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n"),
            Err(HeaderError::BareCr)
        );
        assert_eq!(check_line_endings(b"A\r"), Err(HeaderError::BareCr));
        assert_eq!(check_line_endings(b"A\r\r\n"), Err(HeaderError::BareCr));
    }

    #[test]
    fn line_endings_reject_bare_lf() {
        assert_eq!(
            check_line_endings(b"GET / HTTP/1.1\nA: b\r\n\r\n"),
            Err(HeaderError::BareLf)
        );
        assert_eq!(
            check_line_endings(b"GET / HTTP/1.1\r\n\n"),
            Err(HeaderError::BareLf)
        );
    }

    #[test]
    fn first_line_skips_leading_empty_lines() {
        assert_eq!(first_line(b"\r\n\r\nGET / HTTP/1.1\r\n"), (4, Some(19)));
        assert_eq!(first_line(b"GET / HT"), (0, None));
        assert_eq!(first_line(b"\r\n"), (2, None));
        assert_eq!(line_len(b"GET\r\n", 0, 4), 3);
        assert_eq!(line_len(b"GET\n", 0, 3), 3);
    }
}
