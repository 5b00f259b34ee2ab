//! `x-uri-mapping` (AsyncAPI channels, as Choreo Connect reads them): the upstream path of a
//! resource given as a template over the resource's own parameters, e.g. channel
//! `/rooms/{roomID}` with mapping `/rooms?room={uri.var.roomID}`. Compiled at load (an unknown
//! parameter is a load error), rendered per request into the reused target buffer.

/// One piece of a compiled mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(Box<[u8]>),
    /// The request path's segment at this index (after the base path).
    Segment(usize),
}

/// A compiled mapping: its path (and optional query) as literal pieces and segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UriMapping {
    parts: Box<[Part]>,
    has_query: bool,
}

const VARIABLE_PREFIX: &str = "{uri.var.";

impl UriMapping {
    /// Compiles `mapping` for the resource `template`. Only whole-segment parameters
    /// (`/{id}/`) can be referenced.
    pub fn compile(template: &str, mapping: &str) -> Result<UriMapping, String> {
        if !mapping.starts_with('/') {
            return Err(format!("'{mapping}' must start with '/'"));
        }
        if mapping.bytes().any(|b| b <= b' ' || b == b'#' || b == 0x7f) {
            return Err(format!("'{mapping}' is not a path and query"));
        }
        let params: Vec<(usize, &str)> = template
            .split('/')
            .skip(1)
            .enumerate()
            .filter_map(|(i, segment)| {
                segment
                    .strip_prefix('{')
                    .and_then(|s| s.strip_suffix('}'))
                    .map(|name| (i, name))
            })
            .collect();
        let mut parts = Vec::new();
        let mut rest = mapping;
        while let Some(start) = rest.find(VARIABLE_PREFIX) {
            if start > 0 {
                parts.push(Part::Literal(rest.as_bytes()[..start].into()));
            }
            let after = &rest[start + VARIABLE_PREFIX.len()..];
            let Some(end) = after.find('}') else {
                return Err(format!("'{mapping}' has an unclosed '{{uri.var.'"));
            };
            let name = &after[..end];
            let Some(&(segment, _)) = params.iter().find(|(_, p)| *p == name) else {
                return Err(format!(
                    "'{mapping}' names '{name}', which is not a whole-segment parameter of '{template}'"
                ));
            };
            parts.push(Part::Segment(segment));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.as_bytes().into()));
        }
        if mapping.contains(['{', '}']) && !parts.iter().any(|p| matches!(p, Part::Segment(_))) {
            return Err(format!(
                "'{mapping}' has a variable shardgate does not know"
            ));
        }
        Ok(UriMapping {
            parts: parts.into(),
            has_query: mapping.contains('?'),
        })
    }

    /// Appends the upstream target: `endpoint_path` (without its trailing `/`), the mapping
    /// rendered with the segments of `rest` (the request path after the base path), then
    /// the client's query (after the mapping's own, joined with `&`).
    pub fn write_target(
        &self,
        out: &mut Vec<u8>,
        endpoint_path: &[u8],
        rest: &[u8],
        query: Option<&[u8]>,
    ) {
        let mut prefix = endpoint_path;
        while let [head @ .., b'/'] = prefix {
            prefix = head;
        }
        out.extend_from_slice(prefix);
        for part in self.parts.iter() {
            match part {
                Part::Literal(bytes) => out.extend_from_slice(bytes),
                Part::Segment(index) => {
                    if let Some(segment) = rest.split(|&b| b == b'/').nth(index + 1) {
                        out.extend_from_slice(segment);
                    }
                }
            }
        }
        if let Some(query) = query.filter(|q| !q.is_empty()) {
            out.push(if self.has_query { b'&' } else { b'?' });
            out.extend_from_slice(query);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(
        template: &str,
        mapping: &str,
        endpoint: &str,
        rest: &str,
        query: Option<&str>,
    ) -> String {
        let mapping = UriMapping::compile(template, mapping).unwrap();
        let mut out = Vec::new();
        mapping.write_target(
            &mut out,
            endpoint.as_bytes(),
            rest.as_bytes(),
            query.map(str::as_bytes),
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn parameters_move_into_the_mapped_path_and_query() {
        assert_eq!(
            target(
                "/rooms/{roomID}",
                "/rooms?room={uri.var.roomID}",
                "/v2",
                "/rooms/r1",
                None
            ),
            "/v2/rooms?room=r1"
        );
        assert_eq!(
            target(
                "/rooms/{roomID}",
                "/rooms?room={uri.var.roomID}",
                "/v2/",
                "/rooms/r1",
                Some("x=1")
            ),
            "/v2/rooms?room=r1&x=1"
        );
        assert_eq!(
            target(
                "/notifications",
                "/notifications",
                "",
                "/notifications",
                Some("a=b")
            ),
            "/notifications?a=b"
        );
        assert_eq!(
            target(
                "/a/{x}/b/{y}",
                "/y/{uri.var.y}/x/{uri.var.x}",
                "/base",
                "/a/1/b/2",
                None
            ),
            "/base/y/2/x/1"
        );
    }

    #[test]
    fn unknown_or_partial_parameters_are_refused() {
        assert!(UriMapping::compile("/rooms/{id}", "/r/{uri.var.other}").is_err());
        assert!(UriMapping::compile("/rooms/x{id}", "/r/{uri.var.id}").is_err());
        assert!(UriMapping::compile("/rooms/{id}", "/r/{uri.var.id").is_err());
        assert!(UriMapping::compile("/rooms/{id}", "rooms").is_err());
        assert!(UriMapping::compile("/rooms/{id}", "/r/{id}").is_err());
    }
}
