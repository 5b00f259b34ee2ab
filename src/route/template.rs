//! Path-template segments as written in definitions: literals, `{param}`, segments that mix
//! both (`{name}.json`), and the trailing `*`.

/// One segment of a resource path template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SegmentPattern {
    Literal(Box<[u8]>),
    /// `{name}`: one non-empty segment.
    Param,
    /// Literal text and parameters in one segment, e.g. `{id}.json`.
    Mixed(Box<[Piece]>),
    /// A trailing `*`: any rest of the path, including none.
    Wildcard,
}

/// A part of a [`SegmentPattern::Mixed`] segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Literal(Box<[u8]>),
    Param,
}

/// Parses one template segment; `None` when its braces are unbalanced or a name is empty.
pub fn parse_segment(segment: &str) -> Option<SegmentPattern> {
    if segment == "*" {
        return Some(SegmentPattern::Wildcard);
    }
    let pieces = pieces(segment)?;
    Some(match pieces.as_slice() {
        [] => SegmentPattern::Literal(Box::default()),
        [Piece::Param] => SegmentPattern::Param,
        [Piece::Literal(text)] => SegmentPattern::Literal(text.clone()),
        _ => SegmentPattern::Mixed(pieces.into_boxed_slice()),
    })
}

/// The segment with parameter names erased (`{id}.json` -> `{}.json`), for duplicate checks.
pub fn erase_params(segment: &str) -> Option<String> {
    let mut out = String::with_capacity(segment.len());
    for piece in pieces(segment)? {
        match piece {
            Piece::Param => out.push_str("{}"),
            Piece::Literal(text) => out.push_str(&String::from_utf8_lossy(&text)),
        }
    }
    Some(out)
}

fn pieces(segment: &str) -> Option<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut rest = segment;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            None => {
                pieces.push(Piece::Literal(rest.as_bytes().into()));
                break;
            }
            Some(at) if rest.as_bytes()[at] == b'}' => return None,
            Some(open) => {
                if open > 0 {
                    pieces.push(Piece::Literal(rest.as_bytes()[..open].into()));
                }
                let after = &rest[open + 1..];
                let close = after.find('}')?;
                let name = &after[..close];
                if name.is_empty() || name.contains('{') {
                    return None;
                }
                // Two parameters in a row could split the text anywhere: ambiguous.
                if matches!(pieces.last(), Some(Piece::Param)) {
                    return None;
                }
                pieces.push(Piece::Param);
                rest = &after[close + 1..];
            }
        }
    }
    Some(pieces)
}

/// Whether `text` (one request path segment) matches a mixed segment. Each parameter takes
/// at least one byte; literal pieces must appear in order.
///
/// A literal after a parameter is matched at its first occurrence only (after at least one
/// byte): what follows it starts with a parameter, which can also take any bytes a later
/// occurrence would have skipped, so no later one can match where the first does not. Trying
/// every occurrence cost O(n^k) for k parameters; this is O(k * n * literal length).
pub fn mixed_matches(pieces: &[Piece], text: &[u8]) -> bool {
    match pieces.split_first() {
        None => text.is_empty(),
        Some((Piece::Literal(lit), rest)) => {
            text.starts_with(lit) && mixed_matches(rest, &text[lit.len()..])
        }
        Some((Piece::Param, rest)) => match rest {
            [] => !text.is_empty(),
            // The last piece: the literal ends the text, after at least one byte.
            [Piece::Literal(lit)] => text.len() > lit.len() && text.ends_with(lit),
            // The next piece is a literal (two params in a row are rejected at parse).
            [Piece::Literal(lit), ..] => find(text.get(1..).unwrap_or_default(), lit)
                .is_some_and(|at| mixed_matches(rest, &text[1 + at..])),
            [Piece::Param, ..] => false,
        },
    }
}

/// Index of the first occurrence of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_segments() {
        assert_eq!(
            parse_segment("pet"),
            Some(SegmentPattern::Literal((*b"pet").into()))
        );
        assert_eq!(parse_segment("{petId}"), Some(SegmentPattern::Param));
        assert_eq!(parse_segment("*"), Some(SegmentPattern::Wildcard));
        assert!(matches!(
            parse_segment("{id}.json"),
            Some(SegmentPattern::Mixed(_))
        ));
    }

    #[test]
    fn rejects_unbalanced_empty_and_adjacent_params() {
        for bad in ["{id", "id}", "{}", "{a}{b}", "{a{b}}"] {
            assert_eq!(parse_segment(bad), None, "{bad}");
        }
    }

    #[test]
    fn erases_parameter_names() {
        assert_eq!(erase_params("{petId}").as_deref(), Some("{}"));
        assert_eq!(erase_params("v{n}.json").as_deref(), Some("v{}.json"));
    }

    #[test]
    fn mixed_segments_need_a_non_empty_value_per_param() {
        let Some(SegmentPattern::Mixed(p)) = parse_segment("{id}.json") else {
            panic!()
        };
        assert!(mixed_matches(&p, b"12.json"));
        assert!(mixed_matches(&p, b"a.b.json"));
        assert!(!mixed_matches(&p, b".json"));
        assert!(!mixed_matches(&p, b"12.xml"));
        let Some(SegmentPattern::Mixed(p)) = parse_segment("v{n}") else {
            panic!()
        };
        assert!(mixed_matches(&p, b"v2"));
        assert!(!mixed_matches(&p, b"v"));
    }
}
