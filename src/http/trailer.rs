//! Trailer sections of chunked bodies on their way through the gateway, in both directions:
//! the fields RFC 9110 §6.5.1 forbids in a trailer (framing, routing, credentials, request
//! modifiers) are removed; everything else passes verbatim. The payload keeps streaming as it
//! is; only the trailer section, which [`super::ChunkLimits::max_trailer_section`] bounds, is
//! held back until its end has arrived, because a field's name may be split across reads.

use super::ChunkedDecoder;

/// Whether a field named `name` must not be forwarded in a trailer section. `token_header` is
/// the API's token header (a credential wherever it appears); empty for none.
pub fn is_forbidden_trailer(name: &[u8], token_header: &[u8]) -> bool {
    const FORBIDDEN: [&[u8]; 10] = [
        b"content-length",
        b"transfer-encoding",
        b"host",
        b"authorization",
        b"proxy-authorization",
        b"trailer",
        b"te",
        b"expect",
        b"range",
        b"cache-control",
    ];
    FORBIDDEN
        .iter()
        .any(|forbidden| name.eq_ignore_ascii_case(forbidden))
        || (!token_header.is_empty() && name.eq_ignore_ascii_case(token_header))
}

/// The filter one connection keeps for the chunked body it is relaying (a request body towards
/// the upstream, then a response body towards the client). Its vectors are reused from body to
/// body.
#[derive(Debug, Default)]
pub struct TrailerGate {
    /// The beginning of a trailer section whose end has not arrived yet.
    held: Vec<u8>,
    /// The API's token header, forbidden as well.
    token_header: Vec<u8>,
}

impl TrailerGate {
    /// Prepares for a new body; `token_header` is the API's token header name (empty: none).
    pub fn start(&mut self, token_header: &[u8]) {
        self.held.clear();
        self.token_header.clear();
        self.token_header.extend_from_slice(token_header);
    }

    /// Prepares for a new body with the same token header.
    pub fn restart(&mut self) {
        self.held.clear();
    }

    /// `buf[start..end]` is what `decoder` has just scanned in pass-through mode, to be
    /// forwarded as it is. Takes the trailer bytes among them out of the way: held back while
    /// the section is incomplete, put back filtered once it is complete. Returns the new end:
    /// `buf[start..new_end]` is what to forward now, and the bytes that followed `end` (the
    /// next message) now follow `new_end`.
    pub fn pass(
        &mut self,
        decoder: &ChunkedDecoder,
        buf: &mut Vec<u8>,
        start: usize,
        end: usize,
    ) -> usize {
        let fresh = decoder
            .trailer_section_len()
            .saturating_sub(self.held.len())
            .min(end - start);
        let trailer_start = end - fresh;
        if !decoder.is_done() {
            if fresh > 0 {
                self.held.extend_from_slice(&buf[trailer_start..end]);
                buf.drain(trailer_start..end);
            }
            return trailer_start;
        }
        if self.held.is_empty() {
            // The usual case: the whole section arrived with this read; filter it in place.
            let kept = filter_section(&mut buf[trailer_start..end], &self.token_header);
            buf.drain(trailer_start + kept..end);
            return trailer_start + kept;
        }
        self.held.extend_from_slice(&buf[trailer_start..end]);
        let kept = filter_section(&mut self.held, &self.token_header);
        self.held.truncate(kept);
        buf.splice(trailer_start..end, self.held.drain(..));
        trailer_start + kept
    }
}

/// Removes the forbidden field lines from a complete, validated trailer section (field lines,
/// then the empty line) by moving the kept lines forward; returns the kept length.
fn filter_section(section: &mut [u8], token_header: &[u8]) -> usize {
    let (mut read, mut write) = (0, 0);
    while read < section.len() {
        let line_end = section[read..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(section.len(), |lf| read + lf + 1);
        let line = &section[read..line_end];
        // The decoder validated the section: a field name runs up to its colon; the final
        // empty line has none.
        let forbidden = line
            .iter()
            .position(|&b| b == b':')
            .is_some_and(|colon| is_forbidden_trailer(&line[..colon], token_header));
        if !forbidden {
            section.copy_within(read..line_end, write);
            write += line_end - read;
        }
        read = line_end;
    }
    write
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` (a chunked body, then whatever follows it) to a decoder and a gate in
    /// pieces cut at `splits`, the way the proxy does; returns what would be forwarded and the
    /// bytes left after the body.
    fn relay(body: &[u8], splits: &[usize], token: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut decoder = ChunkedDecoder::default();
        let mut gate = TrailerGate::default();
        gate.start(token);
        let mut forwarded = Vec::new();
        let mut cuts = splits.to_vec();
        cuts.push(body.len());
        let mut from = 0;
        for cut in cuts {
            let mut buf = body[from..cut.max(from)].to_vec();
            from = cut.max(from);
            let scan = decoder.scan(&buf).expect("valid body");
            let end = gate.pass(&decoder, &mut buf, 0, scan.consumed);
            forwarded.extend_from_slice(&buf[..end]);
            if scan.done {
                let mut rest = buf[end..].to_vec();
                rest.extend_from_slice(&body[from..]);
                return (forwarded, rest);
            }
        }
        panic!("body incomplete: {}", String::from_utf8_lossy(body));
    }

    const BODY: &[u8] = b"5\r\nhello\r\n0\r\nX-Sum: 1\r\nContent-Length: 5\r\nhost: evil\r\n\
TRANSFER-ENCODING: chunked\r\nAuthorization: Bearer x\r\nProxy-Authorization: Basic eA==\r\n\
Trailer: X\r\nTE: trailers\r\nExpect: 100-continue\r\nRange: bytes=0-1\r\n\
Cache-Control: no-cache\r\nX-Api-Key: k\r\nX-After: 2\r\n\r\nGET /next HTTP/1.1\r\n";

    const FILTERED: &[u8] = b"5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-After: 2\r\n\r\n";

    #[test]
    fn forbidden_trailer_fields_are_removed_whatever_their_case() {
        let (forwarded, rest) = relay(BODY, &[], b"x-api-key");
        assert_eq!(
            String::from_utf8_lossy(&forwarded),
            String::from_utf8_lossy(FILTERED)
        );
        assert_eq!(rest, b"GET /next HTTP/1.1\r\n");
    }

    #[test]
    fn the_token_header_is_forbidden_only_when_named() {
        let (forwarded, _) = relay(BODY, &[], b"");
        assert!(forwarded.windows(10).any(|w| w == b"X-Api-Key:"));
    }

    #[test]
    fn every_split_of_the_input_forwards_the_same_bytes() {
        let end = BODY.len();
        for first in 0..end {
            let (forwarded, rest) = relay(BODY, &[first], b"x-api-key");
            assert_eq!(forwarded, FILTERED, "split at {first}");
            assert_eq!(rest, b"GET /next HTTP/1.1\r\n", "split at {first}");
        }
        // Byte by byte.
        let splits: Vec<usize> = (1..end).collect();
        assert_eq!(relay(BODY, &splits, b"x-api-key").0, FILTERED);
    }

    #[test]
    fn allowed_trailers_and_empty_sections_pass_verbatim() {
        let body = b"4\r\nwiki\r\n0\r\nX-Trailer: GET /svc/smuggled\r\n\r\n";
        assert_eq!(relay(body, &[], b"").0, body);
        assert_eq!(relay(b"0\r\n\r\n", &[], b"").0, b"0\r\n\r\n");
        assert_eq!(relay(b"0\r\n\r\n", &[3], b"").0, b"0\r\n\r\n");
        // Names that merely start like a forbidden one are kept.
        let body = b"0\r\nHosts: 1\r\nTE2: 2\r\nX-Host: 3\r\n\r\n";
        assert_eq!(relay(body, &[], b"").0, body);
    }

    #[test]
    fn only_forbidden_fields_leave_an_empty_section() {
        assert_eq!(
            relay(b"0\r\nHost: a\r\nContent-Length: 1\r\n\r\n", &[5], b"").0,
            b"0\r\n\r\n"
        );
    }

    #[test]
    fn payload_before_the_trailer_section_is_never_held() {
        let body = b"5\r\nhello\r\n0\r\nX-A: 1\r\n\r\n";
        let mut decoder = ChunkedDecoder::default();
        let mut gate = TrailerGate::default();
        gate.start(b"");
        // The first read ends inside the trailer section: the payload goes, the field waits.
        let mut buf = body[..17].to_vec();
        let scan = decoder.scan(&buf).unwrap();
        assert_eq!(gate.pass(&decoder, &mut buf, 0, scan.consumed), 13);
        assert_eq!(&buf, b"5\r\nhello\r\n0\r\n");
        let mut buf = body[17..].to_vec();
        let scan = decoder.scan(&buf).unwrap();
        let end = gate.pass(&decoder, &mut buf, 0, scan.consumed);
        assert_eq!(&buf[..end], b"X-A: 1\r\n\r\n");
    }

    #[test]
    fn a_region_in_the_middle_of_a_buffer_is_filtered_in_place() {
        let mut decoder = ChunkedDecoder::default();
        let mut gate = TrailerGate::default();
        gate.start(b"");
        let mut buf = b"HEAD\r\n0\r\nHost: x\r\nX: 1\r\n\r\nNEXT".to_vec();
        let scan = decoder.scan(&buf[6..]).unwrap();
        assert!(scan.done);
        let end = gate.pass(&decoder, &mut buf, 6, 6 + scan.consumed);
        assert_eq!(&buf[..end], b"HEAD\r\n0\r\nX: 1\r\n\r\n");
        assert_eq!(&buf[end..], b"NEXT");
    }

    #[test]
    fn restart_keeps_the_token_header() {
        let mut gate = TrailerGate::default();
        gate.start(b"x-token");
        gate.restart();
        let mut decoder = ChunkedDecoder::default();
        let mut buf = b"0\r\nx-token: t\r\n\r\n".to_vec();
        let scan = decoder.scan(&buf).unwrap();
        let end = gate.pass(&decoder, &mut buf, 0, scan.consumed);
        assert_eq!(&buf[..end], b"0\r\n\r\n");
    }
}
