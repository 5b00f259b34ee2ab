//! `path`: `http::normalize_path` (and `NormalizedPath`) on fuzzer-chosen paths, against a
//! reference resolver written here from the texts of RFC 3986 (§2.1, §2.3, §5.2.4) and
//! BEHAVIOUR.md §2, in the most literal form rather than the fastest.
//!
//! Input: the whole input is the path (any bytes; a path without a leading `/` is read as
//! rooted, as `normalize_path` documents).
//!
//! Invariants:
//! - `normalize_path` refuses exactly the paths the reference refuses (`%2F`, `%5C`, `%00`, a
//!   raw `\`, a `%` without two hex digits, a `..` above the root), with an error the
//!   reference also found;
//! - an accepted path's output equals the reference's byte for byte, and routing it gives the
//!   same answer as routing the reference's output (a fixed table: `/`, `/pub`, `/admin`,
//!   `/pets` with literal, `{param}` and `/*` resources, every method looked up);
//! - the output starts with `/`, has no `//`, no `.` or `..` segment, no percent-encoded
//!   unreserved character, no lower-case hex digit in an encoding, no `%2F`/`%5C`/`%00`, and
//!   is at most one byte longer than the input;
//! - normalising the output again gives the output (`Unchanged` exactly when the output has
//!   no `%`), and `Unchanged` is only returned for an input that is its own output;
//! - `NormalizedPath` (the connection's reused holder) answers the same as the function.

use std::sync::OnceLock;

use shardgate::http::{normalize_path, Method, Normalized, NormalizedPath, PathError};
use shardgate::ids::RouteId;
use shardgate::route::Router;

use crate::show;

pub fn check(data: &[u8]) {
    let mut out = Vec::new();
    let result = normalize_path(data, &mut out);
    let expected = reference(data);
    let output: &[u8] = match (&result, &expected) {
        (Ok(Normalized::Unchanged), Ok(want)) => {
            assert_eq!(data, &want[..], "Unchanged, but the reference differs");
            data
        }
        (Ok(Normalized::Rewritten), Ok(want)) => {
            assert_eq!(
                out,
                *want,
                "{}: got {}, reference {}",
                show(data),
                show(&out),
                show(want)
            );
            &out
        }
        (Err(error), Err(found)) => {
            assert!(
                found.contains(error),
                "{}: {error:?}, the reference found {found:?}",
                show(data)
            );
            check_holder(data, None);
            return;
        }
        (got, want) => panic!("{}: got {got:?}, reference {want:?}", show(data)),
    };
    assert_normal_form(data, output);
    assert_idempotent(output);
    assert_same_route(output, expected.as_ref().map_or(&[][..], Vec::as_slice));
    check_holder(data, Some(output));
}

fn assert_normal_form(input: &[u8], output: &[u8]) {
    assert_eq!(output.first(), Some(&b'/'), "{}", show(output));
    assert!(output.len() <= input.len() + 1, "{} grew", show(input));
    for segment in output[1..].split(|&b| b == b'/') {
        assert!(
            segment != b"." && segment != b"..",
            "dot segment in {}",
            show(output)
        );
    }
    assert!(
        !output.windows(2).any(|w| w == b"//"),
        "// in {}",
        show(output)
    );
    let mut i = 0;
    while i < output.len() {
        if output[i] == b'%' {
            let code = &output[i + 1..i + 3];
            assert!(
                code.iter()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)),
                "{}",
                show(output)
            );
            let value = u8::from_str_radix(std::str::from_utf8(code).unwrap(), 16).unwrap();
            assert!(
                !is_unreserved(value) && !matches!(value, 0 | b'/' | b'\\'),
                "%{} left in {}",
                show(code),
                show(output)
            );
            i += 3;
        } else {
            assert_ne!(output[i], b'\\');
            i += 1;
        }
    }
}

fn assert_idempotent(output: &[u8]) {
    let mut again = Vec::new();
    match normalize_path(output, &mut again) {
        Ok(Normalized::Unchanged) => assert!(!output.contains(&b'%'), "{}", show(output)),
        Ok(Normalized::Rewritten) => {
            assert!(output.contains(&b'%'), "{} rewritten again", show(output));
            assert_eq!(again, output, "not idempotent: {}", show(output));
        }
        Err(e) => panic!("{} refused on the second pass: {e:?}", show(output)),
    }
}

fn check_holder(input: &[u8], output: Option<&[u8]>) {
    let mut holder = NormalizedPath::default();
    // A stale rewrite from an earlier request must not leak into this one.
    let _ = holder.normalize(b"/stale/./x");
    let mut buf = b"GET ".to_vec();
    let start = buf.len();
    let rooted: Vec<u8> = if input.first() == Some(&b'/') {
        input.to_vec()
    } else {
        [b"/", input].concat()
    };
    // Only inputs that can be a request target go through a real parsed head.
    if !rooted
        .iter()
        .all(|&b| b > b' ' && b != 0x7f && b != b'?' && b != b'#')
        || std::str::from_utf8(&rooted).is_err()
    {
        return;
    }
    buf.extend_from_slice(&rooted);
    buf.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\n\r\n");
    let mut head = shardgate::http::RequestHead::default();
    let limits = crate::roomy_limits();
    if shardgate::http::parse_request(&buf, &limits, &mut head).is_err() {
        return;
    }
    assert_eq!(head.path.start as usize, start);
    let result = holder.normalize(head.path.slice(&buf));
    // With or without the `/` added for the parser, the normal form is the same.
    match output {
        None => assert!(result.is_err(), "{}", show(&rooted)),
        Some(output) => {
            assert!(result.is_ok(), "{}", show(&rooted));
            assert_eq!(holder.of(&head, &buf), output, "{}", show(&rooted));
        }
    }
}

/// The fixed route table both outputs are looked up in.
fn router() -> &'static Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let mut router = Router::new();
        let mut id = 0;
        let mut add = |router: &mut Router, base: &str, routes: &[(&str, Method)]| {
            let api = router.add_api(base).expect("distinct base paths");
            for (template, method) in routes {
                router
                    .add_route(api, template, *method, RouteId(id))
                    .expect("distinct routes");
                id += 1;
            }
        };
        add(
            &mut router,
            "/",
            &[("/*", Method::Get), ("/docs/{page}", Method::Post)],
        );
        add(&mut router, "/pub", &[("/*", Method::Get)]);
        add(
            &mut router,
            "/admin",
            &[("/*", Method::Get), ("/users/{id}", Method::Delete)],
        );
        add(
            &mut router,
            "/pets",
            &[
                ("/pet/{id}", Method::Get),
                ("/pet/findByStatus", Method::Get),
                ("/store/*", Method::Put),
            ],
        );
        router
    })
}

fn assert_same_route(output: &[u8], reference_output: &[u8]) {
    for method in [Method::Get, Method::Post, Method::Delete, Method::Put] {
        assert_eq!(
            router().lookup(method, output),
            router().lookup(method, reference_output),
            "{method:?} {}",
            show(output)
        );
    }
}

// ---------------------------------------------------------------- the reference resolver

/// The normal form of `path` by the rules as written, one rule at a time over whole strings:
/// every error the path holds, or the result.
fn reference(path: &[u8]) -> Result<Vec<u8>, Vec<PathError>> {
    let rooted: Vec<u8> = if path.first() == Some(&b'/') {
        path.to_vec()
    } else {
        [b"/", path].concat()
    };
    let mut errors = Vec::new();
    // Rule 1 (RFC 3986 §2.1, §2.3): pct-encoded = "%" HEXDIG HEXDIG; unreserved ones are
    // decoded, the rest kept with upper-case digits. Refusals as BEHAVIOUR.md §2 lists them.
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < rooted.len() {
        let byte = rooted[i];
        if byte == b'\\' {
            errors.push(PathError::Backslash);
            decoded.push(byte);
            i += 1;
            continue;
        }
        if byte != b'%' {
            decoded.push(byte);
            i += 1;
            continue;
        }
        let digits = rooted.get(i + 1..i + 3);
        let value = digits
            .filter(|d| d.iter().all(u8::is_ascii_hexdigit))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 16).ok());
        let Some(value) = value else {
            errors.push(PathError::InvalidPercentEncoding);
            decoded.push(byte);
            i += 1;
            continue;
        };
        match value {
            0 => errors.push(PathError::EncodedNul),
            b'/' => errors.push(PathError::EncodedSlash),
            b'\\' => errors.push(PathError::EncodedBackslash),
            _ => {}
        }
        if is_unreserved(value) {
            decoded.push(value);
        } else {
            decoded.extend_from_slice(format!("%{value:02X}").as_bytes());
        }
        i += 3;
    }
    // Rule 2: runs of `/` become one.
    let mut merged: Vec<u8> = Vec::new();
    for &byte in &decoded {
        if !(byte == b'/' && merged.last() == Some(&b'/')) {
            merged.push(byte);
        }
    }
    // Climbing above the root, counted on a stack of segments.
    let mut depth = 0usize;
    let segments: Vec<&[u8]> = merged[1..].split(|&b| b == b'/').collect();
    for segment in &segments {
        match *segment {
            b"." | b"" => {}
            b".." if depth == 0 => errors.push(PathError::AboveRoot),
            b".." => depth -= 1,
            _ => depth += 1,
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Rule 3: RFC 3986 §5.2.4 remove_dot_segments, step by step as the RFC writes it.
    Ok(remove_dot_segments(&merged))
}

/// RFC 3986 §5.2.4, literally: an input buffer consumed from the left, an output buffer.
fn remove_dot_segments(path: &[u8]) -> Vec<u8> {
    let mut input = path.to_vec();
    let mut output: Vec<u8> = Vec::new();
    while !input.is_empty() {
        if input.starts_with(b"../") {
            input.drain(..3);
        } else if input.starts_with(b"./") {
            input.drain(..2);
        } else if input.starts_with(b"/./") {
            input.drain(..2);
        } else if input == b"/." {
            input = b"/".to_vec();
        } else if input.starts_with(b"/../") {
            input.drain(..3);
            remove_last_segment(&mut output);
        } else if input == b"/.." {
            input = b"/".to_vec();
            remove_last_segment(&mut output);
        } else if input == b"." || input == b".." {
            input.clear();
        } else {
            // The first path segment, with its leading "/" if any, up to the next "/".
            let start = usize::from(input[0] == b'/');
            let end = input[start..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(input.len(), |p| start + p);
            output.extend(input.drain(..end));
        }
    }
    output
}

/// "removing the last segment and its preceding "/" (if any) from the output buffer".
fn remove_last_segment(output: &mut Vec<u8>) {
    let cut = output.iter().rposition(|&b| b == b'/').unwrap_or(0);
    output.truncate(cut);
}

/// RFC 3986 §2.3: ALPHA / DIGIT / "-" / "." / "_" / "~".
fn is_unreserved(byte: u8) -> bool {
    matches!(byte, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_follows_the_rfc_examples() {
        // RFC 3986 §5.2.4's own examples.
        assert_eq!(remove_dot_segments(b"/a/b/c/./../../g"), b"/a/g");
        assert_eq!(remove_dot_segments(b"mid/content=5/../6"), b"mid/6");
        assert_eq!(reference(b"/pub/%2e%2e/admin/"), Ok(b"/admin/".to_vec()));
        assert_eq!(reference(b"//admin/"), Ok(b"/admin/".to_vec()));
        assert_eq!(reference(b"/a/.."), Ok(b"/".to_vec()));
        assert!(reference(b"/../a").is_err());
        assert!(reference(b"/a%2fb").is_err());
    }
}
