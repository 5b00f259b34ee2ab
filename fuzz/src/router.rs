//! `router`: a `Router` built from fuzzer-chosen base paths and templates, looked up with
//! fuzzer-chosen methods and paths, against a small reference model written here.
//!
//! Input: text lines (bytes; invalid UTF-8 only matters in `A` and `R` lines):
//! - `A /base/path` registers an API (base paths as the definition reader normalises them;
//!   others are skipped);
//! - `R get /pet/{id}.json` adds a route to the last API (templates valid as the reader checks
//!   them: leading `/`, no empty segment, `*` only last, balanced non-empty `{}`; others are
//!   skipped, after `parse_segment` has seen every segment);
//! - `L GET /base/path/pet/1.json` looks a path up (any method token, any bytes).
//!
//! Invariants:
//! - `add_route` succeeds unless the same method is already defined for a template with the
//!   same shape (parameter names aside), and then reports that first route;
//! - lookups never panic, are deterministic (twice, and on a clone), and a found route has
//!   `rest_start <= path.len()`;
//! - lookups agree with the reference: the API is the one with the longest base path that
//!   prefixes the path on a segment boundary; `Found` names a route of that API with the
//!   request's method whose template matches the rest of the path, the first such route in the
//!   lookup order (segment by segment: the template ends here > literal > mixed, in the order
//!   first defined > `{param}` > `*`); `NotFound` means no route matches; `MethodNotAllowed`
//!   lists exactly the methods of the matching routes.

use std::collections::HashMap;

use shardgate::http::Method;
use shardgate::ids::{ApiId, RouteId};
use shardgate::route::template::parse_segment;
use shardgate::route::{Lookup, MethodSet, RouteConflict, Router};

const MAX_APIS: usize = 32;
const MAX_ROUTES: usize = 128;
const MAX_LOOKUPS: usize = 64;
/// Paths longer than this are looked up but not checked against the reference (whose mixed
/// segment matcher is quadratic).
const MAX_REFERENCE_PATH: usize = 1024;

/// One template segment in the reference model.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Literal(Vec<u8>),
    Param,
    Mixed(Vec<Piece>),
    Wildcard,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Param,
}

struct RefRoute {
    api: ApiId,
    id: RouteId,
    method: Method,
    segs: Vec<Seg>,
    /// Lookup priority, smaller first (see [`priority`]).
    key: Vec<(u8, usize)>,
}

pub fn check(data: &[u8]) {
    let mut router = Router::new();
    let mut bases: Vec<(ApiId, Vec<Vec<u8>>)> = Vec::new();
    let mut routes: Vec<RefRoute> = Vec::new();
    let mut shapes: HashMap<(ApiId, String, Method), RouteId> = HashMap::new();
    let mut mixed_order: HashMap<(ApiId, String), Vec<String>> = HashMap::new();
    let mut current: Option<ApiId> = None;
    let mut lookups: Vec<(Method, &[u8])> = Vec::new();
    let mut next_id = 0u32;

    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match line {
            [b'A', b' ', base @ ..] if bases.len() < MAX_APIS => {
                current = None;
                let Some(base) = std::str::from_utf8(base).ok().and_then(normalize_base) else {
                    continue;
                };
                match router.add_api(&base) {
                    Ok(api) => {
                        let segs = base.split('/').filter(|s| !s.is_empty());
                        bases.push((api, segs.map(|s| s.as_bytes().to_vec()).collect()));
                        current = Some(api);
                    }
                    Err(RouteConflict::BasePath(other)) => {
                        let same = bases
                            .iter()
                            .find(|(id, _)| *id == other)
                            .expect("known api");
                        let segs: Vec<Vec<u8>> = base
                            .split('/')
                            .filter(|s| !s.is_empty())
                            .map(|s| s.as_bytes().to_vec())
                            .collect();
                        assert_eq!(same.1, segs, "base path conflict with a different base");
                    }
                    Err(other) => panic!("add_api({base:?}): {other:?}"),
                }
            }
            [b'R', b' ', rest @ ..] if routes.len() < MAX_ROUTES => {
                let Some(api) = current else { continue };
                let Ok(rest) = std::str::from_utf8(rest) else {
                    continue;
                };
                let Some((method, template)) = rest.split_once(' ') else {
                    continue;
                };
                let Some(method) = Method::from_operation_key(method) else {
                    continue;
                };
                for segment in template.split('/') {
                    let _ = parse_segment(segment);
                }
                let Some(segs) = reference_template(template) else {
                    continue;
                };
                let id = RouteId(next_id);
                next_id += 1;
                let shape = (api, shape_of(&segs), method);
                let added = router.add_route(api, template, method, id);
                let key = priority(&mut mixed_order, api, &segs);
                match shapes.get(&shape) {
                    Some(&first) => assert_eq!(
                        added,
                        Err(RouteConflict::Resource(first)),
                        "duplicate {method:?} {template:?}"
                    ),
                    None => {
                        assert_eq!(added, Ok(()), "add_route({method:?} {template:?})");
                        shapes.insert(shape, id);
                        routes.push(RefRoute {
                            api,
                            id,
                            method,
                            segs,
                            key,
                        });
                    }
                }
            }
            [b'L', b' ', rest @ ..] if lookups.len() < MAX_LOOKUPS => {
                let (method, path) = match rest.iter().position(|&b| b == b' ') {
                    Some(space) => (&rest[..space], &rest[space + 1..]),
                    None => (&b"GET"[..], rest),
                };
                lookups.push((Method::from_bytes(method), path));
            }
            _ => {}
        }
    }

    let copy = router.clone();
    for (method, path) in lookups {
        let found = router.lookup(method, path);
        assert_eq!(
            router.lookup(method, path),
            found,
            "lookup is not deterministic"
        );
        assert_eq!(
            copy.lookup(method, path),
            found,
            "a clone looks up differently"
        );
        if let Lookup::Found(m) = found {
            assert!(
                m.rest_start <= path.len(),
                "rest_start {} > {}",
                m.rest_start,
                path.len()
            );
        }
        if path.len() <= MAX_REFERENCE_PATH {
            check_reference(&bases, &routes, method, path, found);
        }
    }
}

/// A base path as `openapi::normalize_base_path` accepts and normalises it.
fn normalize_base(text: &str) -> Option<String> {
    if !text.starts_with('/')
        || text
            .bytes()
            .any(|b| b <= b' ' || b"?#{}*".contains(&b) || b == 0x7f)
        || text.contains("//")
    {
        return None;
    }
    let trimmed = text.trim_end_matches('/');
    Some(if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    })
}

/// A template as the definition reader accepts it, as reference segments.
fn reference_template(template: &str) -> Option<Vec<Seg>> {
    if !template.starts_with('/')
        || template
            .bytes()
            .any(|b| b <= b' ' || b == b'?' || b == b'#' || b == 0x7f)
    {
        return None;
    }
    let trimmed = template.trim_end_matches('/');
    if trimmed.is_empty() {
        return Some(Vec::new());
    }
    let parts: Vec<&str> = trimmed.split('/').skip(1).collect();
    let mut segs = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            return None;
        }
        if *part == "*" {
            if i + 1 != parts.len() {
                return None;
            }
            segs.push(Seg::Wildcard);
            continue;
        }
        segs.push(reference_segment(part.as_bytes())?);
    }
    Some(segs)
}

/// `{name}` pieces, written independently of `route::template`.
fn reference_segment(text: &[u8]) -> Option<Seg> {
    let mut pieces: Vec<Piece> = Vec::new();
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'}' => return None,
            b'{' => {
                let close = i + 1 + text[i + 1..].iter().position(|&b| b == b'}')?;
                let name = &text[i + 1..close];
                if name.is_empty() || name.contains(&b'{') || pieces.last() == Some(&Piece::Param) {
                    return None;
                }
                pieces.push(Piece::Param);
                i = close + 1;
            }
            _ => {
                let end = text[i..]
                    .iter()
                    .position(|&b| b == b'{' || b == b'}')
                    .map_or(text.len(), |p| i + p);
                pieces.push(Piece::Literal(text[i..end].to_vec()));
                i = end;
            }
        }
    }
    Some(match pieces.as_slice() {
        [Piece::Param] => Seg::Param,
        [Piece::Literal(text)] => Seg::Literal(text.clone()),
        _ => Seg::Mixed(pieces),
    })
}

/// The template with parameter names erased: two templates of one shape are one resource.
fn shape_of(segs: &[Seg]) -> String {
    let mut out = String::new();
    for seg in segs {
        out.push('/');
        match seg {
            Seg::Literal(text) => out.push_str(&format!("L{text:?}")),
            Seg::Param => out.push('P'),
            Seg::Wildcard => out.push('*'),
            Seg::Mixed(pieces) => {
                out.push('M');
                for piece in pieces {
                    match piece {
                        Piece::Literal(text) => out.push_str(&format!("{text:?}")),
                        Piece::Param => out.push_str("{}"),
                    }
                }
            }
        }
    }
    out
}

/// Does one path segment (non-empty) match a mixed segment? Dynamic programming over
/// (piece, offset); every parameter takes at least one byte.
fn mixed_matches(pieces: &[Piece], text: &[u8]) -> bool {
    // reachable[i] = the first `piece` pieces can consume exactly text[..i].
    let mut reachable = vec![false; text.len() + 1];
    reachable[0] = true;
    for piece in pieces {
        let mut next = vec![false; text.len() + 1];
        for start in 0..=text.len() {
            if !reachable[start] {
                continue;
            }
            match piece {
                Piece::Literal(lit) => {
                    if text[start..].starts_with(lit) {
                        next[start + lit.len()] = true;
                    }
                }
                Piece::Param => next[start + 1..].iter_mut().for_each(|r| *r = true),
            }
        }
        reachable = next;
    }
    reachable[text.len()]
}

/// Does a template match `rest`, the path after the base path?
fn template_matches(segs: &[Seg], rest: &[u8]) -> bool {
    let Some((seg, more)) = segs.split_first() else {
        return rest.is_empty() || rest == b"/";
    };
    if *seg == Seg::Wildcard {
        return true;
    }
    let Some(after) = rest.strip_prefix(b"/") else {
        return false;
    };
    let len = after.iter().position(|&b| b == b'/').unwrap_or(after.len());
    let text = &after[..len];
    if text.is_empty() {
        return false;
    }
    let ok = match seg {
        Seg::Literal(lit) => lit == text,
        Seg::Param => true,
        Seg::Mixed(pieces) => mixed_matches(pieces, text),
        Seg::Wildcard => unreachable!(),
    };
    ok && template_matches(more, &after[len..])
}

/// Lookup priority, segment by segment (lexicographically smaller wins): a template that ends
/// here, then a literal, then mixed segments in the order they were first defined at that
/// point of the tree, then `{param}`, then `*`. Records the mixed segments' order.
fn priority(
    mixed_order: &mut HashMap<(ApiId, String), Vec<String>>,
    api: ApiId,
    segs: &[Seg],
) -> Vec<(u8, usize)> {
    let mut key: Vec<(u8, usize)> = segs
        .iter()
        .enumerate()
        .map(|(i, s)| match s {
            Seg::Literal(_) => (1, 0),
            Seg::Mixed(_) => {
                let siblings = mixed_order.entry((api, shape_of(&segs[..i]))).or_default();
                let shape = shape_of(&segs[i..=i]);
                let at = siblings
                    .iter()
                    .position(|s| *s == shape)
                    .unwrap_or_else(|| {
                        siblings.push(shape);
                        siblings.len() - 1
                    });
                (2, at)
            }
            Seg::Param => (3, 0),
            Seg::Wildcard => (4, 0),
        })
        .collect();
    if segs.last() != Some(&Seg::Wildcard) {
        key.push((0, 0));
    }
    key
}

/// The API of the longest base path that prefixes `path` on a segment boundary.
fn reference_base(bases: &[(ApiId, Vec<Vec<u8>>)], path: &[u8]) -> Option<(ApiId, usize)> {
    if !path.is_empty() && !path.starts_with(b"/") {
        return None;
    }
    let mut best: Option<(ApiId, usize, usize)> = None;
    for (api, segs) in bases {
        let mut prefix = Vec::new();
        for seg in segs {
            prefix.push(b'/');
            prefix.extend_from_slice(seg);
        }
        let matches =
            path.starts_with(&prefix) && matches!(path.get(prefix.len()), None | Some(b'/'));
        if matches && best.is_none_or(|(_, depth, _)| segs.len() > depth) {
            best = Some((*api, segs.len(), prefix.len()));
        }
    }
    best.map(|(api, _, rest_start)| (api, rest_start))
}

fn check_reference(
    bases: &[(ApiId, Vec<Vec<u8>>)],
    routes: &[RefRoute],
    method: Method,
    path: &[u8],
    found: Lookup,
) {
    let Some((api, rest_start)) = reference_base(bases, path) else {
        assert_eq!(
            found,
            Lookup::NotFound,
            "no base path prefixes {:?}",
            crate::show(path)
        );
        return;
    };
    let rest = &path[rest_start..];
    let matching: Vec<&RefRoute> = routes
        .iter()
        .filter(|r| r.api == api && template_matches(&r.segs, rest))
        .collect();
    let with_method: Vec<&&RefRoute> = matching.iter().filter(|r| r.method == method).collect();
    let mut allowed = MethodSet::default();
    for r in &matching {
        allowed.insert(r.method);
    }
    match found {
        Lookup::Found(m) => {
            assert_eq!(
                (m.api, m.rest_start),
                (api, rest_start),
                "base of {}",
                crate::show(path)
            );
            let Some(route) = with_method.iter().find(|r| r.id == m.route) else {
                panic!(
                    "{method:?} {}: found {:?}, which does not match",
                    crate::show(path),
                    m.route
                )
            };
            let best = with_method
                .iter()
                .min_by_key(|r| &r.key)
                .expect("one matches");
            assert_eq!(
                route.id,
                best.id,
                "{method:?} {}: found {:?} but {:?} comes first",
                crate::show(path),
                route.segs,
                best.segs
            );
        }
        Lookup::MethodNotAllowed {
            api: got,
            allowed: got_allowed,
        } => {
            assert_eq!(got, api);
            assert!(
                with_method.is_empty(),
                "{method:?} {}: a route matches",
                crate::show(path)
            );
            assert_eq!(
                got_allowed,
                allowed,
                "{method:?} {}: Allow set",
                crate::show(path)
            );
            assert!(!got_allowed.is_empty());
        }
        Lookup::NotFound => assert!(
            matching.is_empty(),
            "{method:?} {}: NotFound, but {} route(s) match",
            crate::show(path),
            matching.len()
        ),
    }
}
