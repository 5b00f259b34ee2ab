//! The request target sent upstream: the endpoint URL's path joined with the part of the
//! request path after the API's base path, query passed through (BEHAVIOUR.md 2).

/// Appends the upstream target to `out`. `rest` is the request path after the base path
/// (empty, or starting with `/`); `query` is everything after `?` when the client sent one.
pub fn write_upstream_target(
    out: &mut Vec<u8>,
    endpoint_path: &[u8],
    rest: &[u8],
    query: Option<&[u8]>,
) {
    if rest.is_empty() {
        // Nothing after the base path: the endpoint path as configured, or `/`.
        out.extend_from_slice(if endpoint_path.is_empty() {
            b"/"
        } else {
            endpoint_path
        });
    } else {
        // Exactly one `/` at the join: the rest brings its own.
        let mut prefix = endpoint_path;
        while let [head @ .., b'/'] = prefix {
            prefix = head;
        }
        out.extend_from_slice(prefix);
        out.extend_from_slice(rest);
    }
    if let Some(query) = query {
        out.push(b'?');
        out.extend_from_slice(query);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(endpoint: &str, rest: &str, query: Option<&str>) -> String {
        let mut out = Vec::new();
        write_upstream_target(
            &mut out,
            endpoint.as_bytes(),
            rest.as_bytes(),
            query.map(str::as_bytes),
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn endpoint_path_prefixes_the_resource_path() {
        assert_eq!(
            target("/v2", "/pet/findByStatus", Some("status=sold")),
            "/v2/pet/findByStatus?status=sold"
        );
    }

    #[test]
    fn joins_with_exactly_one_slash() {
        assert_eq!(target("/v2/", "/pet", None), "/v2/pet");
        assert_eq!(target("/", "/pet", None), "/pet");
        assert_eq!(target("", "/pet", None), "/pet");
    }

    #[test]
    fn client_trailing_slash_is_kept() {
        assert_eq!(target("/v2", "/pet/", None), "/v2/pet/");
        assert_eq!(target("/v2", "/", None), "/v2/");
    }

    #[test]
    fn empty_result_becomes_slash() {
        assert_eq!(target("", "", None), "/");
        assert_eq!(target("", "", Some("a=1")), "/?a=1");
    }

    #[test]
    fn nothing_after_base_path_sends_the_endpoint_path() {
        assert_eq!(target("/v2", "", None), "/v2");
        assert_eq!(target("/v2/", "", None), "/v2/");
    }

    #[test]
    fn query_passes_through_unchanged_even_when_empty() {
        assert_eq!(target("/v2", "/p", Some("a=%20&b")), "/v2/p?a=%20&b");
        assert_eq!(target("/v2", "/p", Some("")), "/v2/p?");
    }
}
