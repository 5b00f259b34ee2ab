//! Request path normalisation (BEHAVIOUR.md §2): the one function that turns the path a client
//! sent into the path the gateway routes, authorises and forwards, so that no spelling of a
//! path can reach a resource outside the API that authorised it. Pure byte code; a path that
//! needs no change is not copied, and a rewrite only grows the caller's reused vector.

/// Why a path was refused. Every one of them is a `400`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.reason())]
pub enum PathError {
    /// `%2F`: a `/` that is not a segment boundary means one thing to us and another to an
    /// origin that decodes before splitting.
    EncodedSlash,
    /// `%5C`: Windows origins (IIS, some frameworks) treat `\` as a separator.
    EncodedBackslash,
    /// `%00`: C-string origins truncate at it.
    EncodedNul,
    /// A raw `\`, for the same reason as `%5C`.
    Backslash,
    /// `%` not followed by two hex digits.
    InvalidPercentEncoding,
    /// A `..` segment with nothing left to remove: an attempt to leave the root.
    AboveRoot,
}

impl PathError {
    /// Short static text for logs and error bodies.
    pub const fn reason(self) -> &'static str {
        match self {
            PathError::EncodedSlash => "encoded slash (%2F) in path",
            PathError::EncodedBackslash => "encoded backslash (%5C) in path",
            PathError::EncodedNul => "encoded NUL (%00) in path",
            PathError::Backslash => "backslash in path",
            PathError::InvalidPercentEncoding => "invalid percent-encoding in path",
            PathError::AboveRoot => "path climbs above the root",
        }
    }
}

/// Where [`normalize_path`] left its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalized {
    /// The input is already normal: use it as it is (`out` was not touched).
    Unchanged,
    /// `out` holds the normalised path.
    Rewritten,
}

/// Normalises a request path (the target up to `?`; the query is never passed here):
///
/// 1. percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, every other
///    percent-encoding is kept with upper-case hex digits;
/// 2. runs of `/` are merged into one (before dot segments are resolved, as nginx does, so
///    `/a//../b` is `/b`);
/// 3. `.` and `..` segments are removed (RFC 3986 §5.2.4), a decoded `%2e` counting as `.`;
///    a trailing `/`, or a final `.`/`..` segment, leaves a trailing `/`.
///
/// Refused: `%2F`, `%5C`, `%00`, a raw `\`, a `%` without two hex digits, and a `..` that
/// would climb above `/`. The result always starts with `/` (a path that does not is read as
/// if it did), never contains `//` or a dot segment, and normalising it again changes nothing.
///
/// A path with no `%`, no `\`, no `//` and no dot segment is [`Normalized::Unchanged`] after a
/// single scan; any other is rewritten into `out` (cleared first), which never needs more
/// than `path.len() + 1` bytes.
pub fn normalize_path(path: &[u8], out: &mut Vec<u8>) -> Result<Normalized, PathError> {
    if is_normal(path) {
        return Ok(Normalized::Unchanged);
    }
    out.clear();
    out.reserve(path.len() + 1);
    out.push(b'/');
    let body = path.strip_prefix(b"/").unwrap_or(path);
    let mut segments = body.split(|&b| b == b'/').peekable();
    // Invariant: before each segment, `out` ends with `/`.
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        let start = out.len();
        decode_segment(segment, out)?;
        match &out[start..] {
            // An empty segment is a merged slash (or the trailing one, already written).
            b"" => {}
            b"." => out.truncate(start),
            b".." => {
                if start == 1 {
                    return Err(PathError::AboveRoot);
                }
                // `out` is `.../previous/`: cut back to the `/` before `previous`. Found
                // because `out[0]` is `/`.
                let parent = out[..start - 1]
                    .iter()
                    .rposition(|&b| b == b'/')
                    .unwrap_or(0);
                out.truncate(parent + 1);
            }
            _ if !last => out.push(b'/'),
            _ => {}
        }
    }
    Ok(Normalized::Rewritten)
}

/// One scan: true when [`normalize_path`] would return the path as it is.
fn is_normal(path: &[u8]) -> bool {
    if path.first() != Some(&b'/') {
        return false;
    }
    let mut i = 0;
    while i < path.len() {
        match path[i] {
            b'%' | b'\\' => return false,
            b'/' => {
                if let [b'/', ..]
                | [b'.']
                | [b'.', b'/', ..]
                | [b'.', b'.']
                | [b'.', b'.', b'/', ..] = &path[i + 1..]
                {
                    return false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    true
}

/// Appends one segment to `out` with its percent-encodings normalised (rule 1).
fn decode_segment(segment: &[u8], out: &mut Vec<u8>) -> Result<(), PathError> {
    let mut rest = segment;
    loop {
        let plain = rest
            .iter()
            .position(|&b| b == b'%' || b == b'\\')
            .unwrap_or(rest.len());
        out.extend_from_slice(&rest[..plain]);
        rest = &rest[plain..];
        let Some((&marker, after)) = rest.split_first() else {
            return Ok(());
        };
        if marker == b'\\' {
            return Err(PathError::Backslash);
        }
        let (Some(high), Some(low)) = (
            after.first().copied().and_then(hex_value),
            after.get(1).copied().and_then(hex_value),
        ) else {
            return Err(PathError::InvalidPercentEncoding);
        };
        match high << 4 | low {
            0 => return Err(PathError::EncodedNul),
            b'/' => return Err(PathError::EncodedSlash),
            b'\\' => return Err(PathError::EncodedBackslash),
            byte if is_unreserved(byte) => out.push(byte),
            _ => out.extend_from_slice(&[b'%', HEX_UPPER[high as usize], HEX_UPPER[low as usize]]),
        }
        rest = &after[2..];
    }
}

const HEX_UPPER: [u8; 16] = *b"0123456789ABCDEF";

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// `unreserved` of RFC 3986 §2.3: the characters whose encoded and plain forms are equivalent.
pub fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// A connection's normalised request path: the client's own bytes when they needed no change,
/// otherwise a rewritten copy in a vector reused from request to request (it grows to the
/// longest path the connection has seen, then never again).
#[derive(Debug, Default)]
pub struct NormalizedPath {
    rewritten: Vec<u8>,
    is_rewritten: bool,
}

impl NormalizedPath {
    /// Normalises the path of the request just parsed; on error the path is unusable.
    pub fn normalize(&mut self, raw: &[u8]) -> Result<(), PathError> {
        self.is_rewritten = normalize_path(raw, &mut self.rewritten)? == Normalized::Rewritten;
        Ok(())
    }

    /// The normalised path of `head`, parsed from `buf`: what is routed, authorised and
    /// forwarded.
    pub fn of<'a>(&'a self, head: &super::RequestHead, buf: &'a [u8]) -> &'a [u8] {
        if self.is_rewritten {
            &self.rewritten
        } else {
            head.path.slice(buf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The normalised form of `path`, or its error.
    fn normal(path: &[u8]) -> Result<Vec<u8>, PathError> {
        let mut out = b"stale".to_vec();
        Ok(match normalize_path(path, &mut out)? {
            Normalized::Unchanged => path.to_vec(),
            Normalized::Rewritten => out,
        })
    }

    #[track_caller]
    fn assert_normal(path: &[u8], expected: &[u8]) {
        assert_eq!(
            normal(path).map(|p| String::from_utf8_lossy(&p).into_owned()),
            Ok(String::from_utf8_lossy(expected).into_owned()),
            "{}",
            String::from_utf8_lossy(path)
        );
    }

    #[track_caller]
    fn assert_refused(path: &[u8], error: PathError) {
        assert_eq!(
            normal(path),
            Err(error),
            "{}",
            String::from_utf8_lossy(path)
        );
    }

    #[test]
    fn normal_paths_pass_through_without_being_copied() {
        for path in [
            &b"/"[..],
            b"/petstore/v1/pet/findByStatus",
            b"/a/b/",
            b"/.well-known/openid-configuration",
            b"/a/..b/c.",
            b"/a/...",
            b"/file.tar.gz",
            b"/caf\xc3\xa9",
        ] {
            let mut out = Vec::new();
            assert_eq!(normalize_path(path, &mut out), Ok(Normalized::Unchanged));
            assert!(out.is_empty());
            assert_eq!(out.capacity(), 0, "no allocation for a normal path");
        }
    }

    #[test]
    fn unreserved_characters_are_decoded() {
        assert_normal(b"/%61dmin/", b"/admin/");
        assert_normal(b"/%41%5A%30%39%2D%2E%5F%7E", b"/AZ09-._~");
        assert_normal(b"/%7e%5f", b"/~_");
        assert_normal(b"/pets/%31%32", b"/pets/12");
    }

    #[test]
    fn other_encodings_are_kept_with_upper_case_hex() {
        assert_normal(b"/a%20b", b"/a%20b");
        assert_normal(b"/a%3ab%3F", b"/a%3Ab%3F");
        assert_normal(b"/%c3%a9", b"/%C3%A9");
        assert_normal(b"/%25", b"/%25");
        // An encoded percent sign is not decoded, so it never starts a second decoding.
        assert_normal(b"/%2561", b"/%2561");
        assert_normal(b"/%0a%7F", b"/%0A%7F");
    }

    #[test]
    fn runs_of_slashes_are_merged() {
        assert_normal(b"//admin/", b"/admin/");
        assert_normal(b"/a///b", b"/a/b");
        assert_normal(b"/a//", b"/a/");
        assert_normal(b"//", b"/");
        // Merged before dot segments are resolved (nginx's order).
        assert_normal(b"/a//../b", b"/b");
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_normal(b"/./admin/", b"/admin/");
        assert_normal(b"/x/../admin/", b"/admin/");
        assert_normal(b"/a/b/c/./../../g", b"/a/g");
        assert_normal(b"/a/./b", b"/a/b");
        assert_normal(b"/a/.", b"/a/");
        assert_normal(b"/a/..", b"/");
        assert_normal(b"/a/b/..", b"/a/");
        assert_normal(b"/a/../", b"/");
        assert_normal(b"/.", b"/");
        assert_normal(b"/./", b"/");
        assert_normal(b"/mid/content=5/../6", b"/mid/6");
    }

    #[test]
    fn encoded_dots_are_dot_segments() {
        assert_normal(b"/pub/%2e%2e/admin/", b"/admin/");
        assert_normal(b"/pub/%2E./admin", b"/admin");
        assert_normal(b"/pub/.%2e/admin", b"/admin");
        assert_normal(b"/a/%2e/b", b"/a/b");
        assert_normal(b"/a/%2e%2e%2e", b"/a/...");
    }

    #[test]
    fn encoded_slash_backslash_and_nul_are_refused() {
        assert_refused(b"/admin%2f", PathError::EncodedSlash);
        assert_refused(b"/pub/..%2fadmin/", PathError::EncodedSlash);
        assert_refused(b"/pets/pet/..%2F..%2Fsecret", PathError::EncodedSlash);
        assert_refused(b"/a%5cb", PathError::EncodedBackslash);
        assert_refused(b"/a%5Cb", PathError::EncodedBackslash);
        assert_refused(b"/a%00.json", PathError::EncodedNul);
    }

    #[test]
    fn raw_backslash_is_refused() {
        assert_refused(b"/a\\b", PathError::Backslash);
        assert_refused(b"/..\\admin", PathError::Backslash);
        assert_refused(b"\\", PathError::Backslash);
    }

    #[test]
    fn invalid_percent_encoding_is_refused() {
        for path in [
            &b"/%"[..],
            b"/a%",
            b"/a%2",
            b"/%G1",
            b"/%1G",
            b"/%%41",
            b"/%2/",
            b"/% 1",
        ] {
            assert_refused(path, PathError::InvalidPercentEncoding);
        }
    }

    #[test]
    fn climbing_above_the_root_is_refused() {
        assert_refused(b"/..", PathError::AboveRoot);
        assert_refused(b"/../admin", PathError::AboveRoot);
        assert_refused(b"/a/../..", PathError::AboveRoot);
        assert_refused(b"/a/../../b", PathError::AboveRoot);
        assert_refused(b"/%2e%2e/etc/passwd", PathError::AboveRoot);
        assert_refused(b"//../a", PathError::AboveRoot);
        assert_refused(b"/./../a", PathError::AboveRoot);
    }

    #[test]
    fn the_first_error_in_the_path_is_reported() {
        assert_refused(b"/../%2f", PathError::AboveRoot);
        assert_refused(b"/%2f/..", PathError::EncodedSlash);
    }

    #[test]
    fn a_path_without_leading_slash_is_read_as_rooted() {
        assert_normal(b"a/b", b"/a/b");
        assert_normal(b".", b"/");
        assert_normal(b"", b"/");
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for path in [
            &b"/pub/%2e%2e/admin/"[..],
            b"/a%3ab/./c//d/..",
            b"/%2561",
            b"/a/%2e%2e%2e/",
            b"//x/../y/.",
        ] {
            let once = normal(path).unwrap();
            assert_eq!(
                normal(&once),
                Ok(once.clone()),
                "{}",
                String::from_utf8_lossy(&once)
            );
        }
    }

    #[test]
    fn the_reused_buffer_keeps_its_allocation() {
        let mut path = NormalizedPath::default();
        path.normalize(b"/a/./b/c/d/e/f").unwrap();
        let capacity = path.rewritten.capacity();
        let pointer = path.rewritten.as_ptr();
        for raw in [&b"/x/../y"[..], b"//z", b"/%61"] {
            path.normalize(raw).unwrap();
            assert_eq!(path.rewritten.capacity(), capacity);
            assert_eq!(path.rewritten.as_ptr(), pointer);
        }
    }

    #[test]
    fn the_path_of_a_head_is_the_raw_span_or_the_rewrite() {
        let limits = crate::http::HeadLimits::default();
        let mut head = crate::http::RequestHead::default();
        let buf = b"GET /a/./b?x=/../ HTTP/1.1\r\nHost: h\r\n\r\n";
        crate::http::parse_request(buf, &limits, &mut head).unwrap();
        let mut path = NormalizedPath::default();
        path.normalize(head.path.slice(buf)).unwrap();
        assert_eq!(path.of(&head, buf), b"/a/b");
        let buf = b"GET /a/b?x HTTP/1.1\r\nHost: h\r\n\r\n";
        crate::http::parse_request(buf, &limits, &mut head).unwrap();
        path.normalize(head.path.slice(buf)).unwrap();
        assert_eq!(path.of(&head, buf), b"/a/b");
        assert!(std::ptr::eq(
            path.of(&head, buf).as_ptr(),
            buf[4..].as_ptr()
        ));
    }

    #[test]
    fn every_error_has_a_distinct_reason() {
        let errors = [
            PathError::EncodedSlash,
            PathError::EncodedBackslash,
            PathError::EncodedNul,
            PathError::Backslash,
            PathError::InvalidPercentEncoding,
            PathError::AboveRoot,
        ];
        let mut reasons: Vec<&str> = errors.iter().map(|e| e.reason()).collect();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), errors.len());
    }
}
