//! Maps (method, path) to a route: longest base path on a segment boundary picks the API,
//! then that API's template trie picks the resource (literal > mixed > `{param}` > `/*`).
//! Lookup cost depends on the path's depth, not on how many APIs or templates exist, and a
//! lookup allocates nothing.

mod segment_map;
pub mod template;
pub mod upstream_path;
pub mod uri_mapping;

use crate::http::method::{Method, ROUTABLE_METHODS};
use crate::ids::{ApiId, RouteId};
pub use segment_map::FxHasher;
use segment_map::SegmentMap;
use template::{mixed_matches, parse_segment, Piece, SegmentPattern};
pub use upstream_path::write_upstream_target;

/// The methods defined for a path, for `Allow` headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MethodSet(u16);

impl MethodSet {
    pub fn insert(&mut self, method: Method) {
        if let Some(i) = method.route_index() {
            self.0 |= 1 << i;
        }
    }

    pub fn contains(self, method: Method) -> bool {
        method.route_index().is_some_and(|i| self.0 & (1 << i) != 0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Method> {
        Method::ROUTABLE
            .into_iter()
            .filter(move |m| self.contains(*m))
    }

    /// `GET, POST` as an `Allow` header value.
    pub fn write_allow(self, out: &mut Vec<u8>) {
        for (i, method) in self.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(method.as_str().as_bytes());
        }
    }
}

/// A successful lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteMatch {
    pub api: ApiId,
    pub route: RouteId,
    /// Offset in the path where the part after the base path starts.
    pub rest_start: usize,
}

/// The outcome of a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(RouteMatch),
    /// The path names a resource, but not with this method.
    MethodNotAllowed {
        api: ApiId,
        allowed: MethodSet,
    },
    NotFound,
}

/// Route table entries by method index; `NONE` where a method is not defined.
#[derive(Clone, Copy, Debug)]
struct MethodTable([u32; ROUTABLE_METHODS]);

const NONE: u32 = u32::MAX;

impl Default for MethodTable {
    fn default() -> Self {
        Self([NONE; ROUTABLE_METHODS])
    }
}

impl MethodTable {
    #[inline]
    fn get(&self, method: Option<usize>) -> Option<RouteId> {
        let id = self.0[method?];
        (id != NONE).then_some(RouteId(id))
    }

    fn methods(&self) -> MethodSet {
        let mut set = MethodSet::default();
        for (i, &id) in self.0.iter().enumerate() {
            if id != NONE {
                set.0 |= 1 << i;
            }
        }
        set
    }

    fn set(&mut self, method: Method, route: RouteId) -> Result<(), RouteId> {
        let i = method.route_index().expect("routes have routable methods");
        match self.0[i] {
            NONE => {
                self.0[i] = route.0;
                Ok(())
            }
            existing => Err(RouteId(existing)),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct ResourceNode {
    literals: SegmentMap,
    mixed: Vec<(Box<[Piece]>, u32)>,
    param: Option<u32>,
    /// Routes whose template ends at this node.
    here: MethodTable,
    /// Routes whose template ends with `/*` at this node.
    wildcard: MethodTable,
}

#[derive(Clone, Debug)]
struct ResourceTrie {
    nodes: Vec<ResourceNode>,
}

#[derive(Clone, Debug, Default)]
struct BaseNode {
    children: SegmentMap,
    api: Option<ApiId>,
}

/// The compiled route table. Immutable once built; shared by all shards.
#[derive(Clone, Debug)]
pub struct Router {
    bases: Vec<BaseNode>,
    apis: Vec<ResourceTrie>,
}

/// Why a route could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteConflict {
    /// Another API already has this base path.
    BasePath(ApiId),
    /// The same method is already defined for an equivalent template.
    Resource(RouteId),
    /// The template has a segment that cannot be parsed.
    BadTemplate,
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

impl Router {
    pub fn new() -> Self {
        Self {
            bases: vec![BaseNode::default()],
            apis: Vec::new(),
        }
    }

    /// Registers an API by base path (`/` or `/a/b`, no trailing slash); ids are handed out in
    /// order, so the n-th API added is `ApiId(n)`.
    pub fn add_api(&mut self, base_path: &str) -> Result<ApiId, RouteConflict> {
        let mut node = 0usize;
        for segment in segments(base_path) {
            let next = self.bases.len() as u32;
            let child = self.bases[node]
                .children
                .get_or_insert(segment.as_bytes(), || next);
            if child == next {
                self.bases.push(BaseNode::default());
            }
            node = child as usize;
        }
        if let Some(existing) = self.bases[node].api {
            return Err(RouteConflict::BasePath(existing));
        }
        let api = ApiId::next(&self.apis);
        self.bases[node].api = Some(api);
        self.apis.push(ResourceTrie {
            nodes: vec![ResourceNode::default()],
        });
        Ok(api)
    }

    /// Adds `method template` of `api` as `route`.
    pub fn add_route(
        &mut self,
        api: ApiId,
        template: &str,
        method: Method,
        route: RouteId,
    ) -> Result<(), RouteConflict> {
        let trie = &mut self.apis[api.index()];
        let mut node = 0usize;
        for segment in segments(template) {
            let pattern = parse_segment(segment).ok_or(RouteConflict::BadTemplate)?;
            let next = trie.nodes.len() as u32;
            let child = match pattern {
                SegmentPattern::Wildcard => {
                    return trie.nodes[node]
                        .wildcard
                        .set(method, route)
                        .map_err(RouteConflict::Resource);
                }
                SegmentPattern::Literal(text) => {
                    trie.nodes[node].literals.get_or_insert(&text, || next)
                }
                SegmentPattern::Param => *trie.nodes[node].param.get_or_insert(next),
                SegmentPattern::Mixed(pieces) => {
                    let existing = trie.nodes[node].mixed.iter().find(|(p, _)| *p == pieces);
                    match existing {
                        Some(&(_, child)) => child,
                        None => {
                            trie.nodes[node].mixed.push((pieces, next));
                            next
                        }
                    }
                }
            };
            if child == next {
                trie.nodes.push(ResourceNode::default());
            }
            node = child as usize;
        }
        trie.nodes[node]
            .here
            .set(method, route)
            .map_err(RouteConflict::Resource)
    }

    /// Finds the route for a request. `path` is the request target's path (origin form,
    /// without the query).
    pub fn lookup(&self, method: Method, path: &[u8]) -> Lookup {
        let Some((api, rest_start)) = self.match_base(path) else {
            return Lookup::NotFound;
        };
        let trie = &self.apis[api.index()];
        let mut allowed = MethodSet::default();
        match walk(
            trie,
            0,
            path,
            rest_start,
            method.route_index(),
            &mut allowed,
        ) {
            Some(route) => Lookup::Found(RouteMatch {
                api,
                route,
                rest_start,
            }),
            None if allowed.is_empty() => Lookup::NotFound,
            None => Lookup::MethodNotAllowed { api, allowed },
        }
    }

    /// The API with the longest base path that prefixes `path` on a segment boundary.
    fn match_base(&self, path: &[u8]) -> Option<(ApiId, usize)> {
        let mut node = &self.bases[0];
        let mut best = node.api.map(|api| (api, 0));
        let mut pos = 0;
        while pos < path.len() {
            let (segment, next) = next_segment(path, pos)?;
            if segment.is_empty() {
                break;
            }
            let Some(child) = node.children.get(segment) else {
                break;
            };
            node = &self.bases[child as usize];
            pos = next;
            if let Some(api) = node.api {
                best = Some((api, pos));
            }
        }
        best
    }
}

/// The segment starting at `pos` (which must be a `/`) and the offset after it.
#[inline]
fn next_segment(path: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = path.get(pos..)?.strip_prefix(b"/")?;
    let len = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
    Some((&rest[..len], pos + 1 + len))
}

fn walk(
    trie: &ResourceTrie,
    node: usize,
    path: &[u8],
    pos: usize,
    method: Option<usize>,
    allowed: &mut MethodSet,
) -> Option<RouteId> {
    let n = &trie.nodes[node];
    let rest = &path[pos..];
    // The end of the path, or a single trailing slash (tolerated).
    if rest.is_empty() || rest == b"/" {
        if let Some(route) = n.here.get(method) {
            return Some(route);
        }
        allowed.0 |= n.here.methods().0;
    } else if let Some((segment, next)) = next_segment(path, pos) {
        if !segment.is_empty() {
            if let Some(child) = n.literals.get(segment) {
                if let Some(route) = walk(trie, child as usize, path, next, method, allowed) {
                    return Some(route);
                }
            }
            for (pieces, child) in &n.mixed {
                if mixed_matches(pieces, segment) {
                    if let Some(route) = walk(trie, *child as usize, path, next, method, allowed) {
                        return Some(route);
                    }
                }
            }
            if let Some(child) = n.param {
                if let Some(route) = walk(trie, child as usize, path, next, method, allowed) {
                    return Some(route);
                }
            }
        }
    }
    // `/*` matches any rest, including none.
    if let Some(route) = n.wildcard.get(method) {
        return Some(route);
    }
    allowed.0 |= n.wildcard.methods().0;
    None
}

/// The segments of a base path or template (`/` has none).
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests;
