//! CORS as the gateway applies it: an API's `x-wso2-cors` policy (or the gateway-wide one),
//! compiled at load into pre-rendered header lines, so a request pays only for matching its
//! `Origin`. Preflights are answered by the gateway; other responses get the allow headers.

use crate::compile::config::cors::{split_origin, CorsSpec};

/// A compiled, enabled CORS policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsPolicy {
    any_origin: bool,
    origins: Box<[OriginPattern]>,
    credentials: bool,
    /// `access-control-allow-methods`, `-allow-headers`, `-max-age` lines for preflights.
    preflight_lines: Box<[u8]>,
    /// `access-control-expose-headers` and `-allow-credentials` lines for responses.
    response_lines: Box<[u8]>,
}

impl CorsPolicy {
    /// Compiles a policy; `None` when it is disabled.
    pub fn compile(spec: &CorsSpec) -> Option<CorsPolicy> {
        if !spec.enabled {
            return None;
        }
        let mut preflight = Vec::new();
        push_list(
            &mut preflight,
            b"access-control-allow-methods",
            &spec.allow_methods,
        );
        push_list(
            &mut preflight,
            b"access-control-allow-headers",
            &spec.allow_headers,
        );
        if let Some(max_age) = spec.max_age_secs {
            preflight
                .extend_from_slice(format!("access-control-max-age: {max_age}\r\n").as_bytes());
        }
        let mut response = Vec::new();
        push_list(
            &mut response,
            b"access-control-expose-headers",
            &spec.expose_headers,
        );
        if spec.allow_credentials {
            response.extend_from_slice(b"access-control-allow-credentials: true\r\n");
        }
        Some(CorsPolicy {
            any_origin: spec.allow_origins.iter().any(|o| o == "*"),
            origins: spec
                .allow_origins
                .iter()
                .filter(|o| *o != "*")
                .map(|o| OriginPattern::compile(o.trim_end_matches('/')))
                .collect(),
            credentials: spec.allow_credentials,
            preflight_lines: preflight.into(),
            response_lines: response.into(),
        })
    }

    /// Whether `origin` may call the API.
    pub fn allows(&self, origin: &[u8]) -> bool {
        self.any_origin || self.origins.iter().any(|o| o.matches(origin))
    }

    /// Appends the headers of a preflight answer for an allowed `origin`.
    pub fn write_preflight(&self, out: &mut Vec<u8>, origin: &[u8]) {
        self.write_allow_origin(out, origin);
        out.extend_from_slice(&self.preflight_lines);
        out.extend_from_slice(&self.response_lines);
    }

    /// Appends the headers of an actual response for an allowed `origin`.
    pub fn write_response(&self, out: &mut Vec<u8>, origin: &[u8]) {
        self.write_allow_origin(out, origin);
        out.extend_from_slice(&self.response_lines);
    }

    fn write_allow_origin(&self, out: &mut Vec<u8>, origin: &[u8]) {
        // `*` cannot be combined with credentials: echo the origin then.
        if self.any_origin && !self.credentials {
            out.extend_from_slice(b"access-control-allow-origin: *\r\n");
        } else {
            out.extend_from_slice(b"access-control-allow-origin: ");
            out.extend_from_slice(origin);
            out.extend_from_slice(b"\r\nvary: Origin\r\n");
        }
    }
}

/// One allowed origin: exact, or with the wildcards `config::cors::check_origin` accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
enum OriginPattern {
    Exact(Box<[u8]>),
    Wildcard {
        /// `https://`
        scheme: Box<[u8]>,
        /// The host, or with `*.` what must follow one or more labels (`.example.com`).
        host: Box<[u8]>,
        any_subdomain: bool,
        port: PortPattern,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PortPattern {
    None,
    Exact(Box<[u8]>),
    Any,
}

impl OriginPattern {
    fn compile(text: &str) -> OriginPattern {
        let exact = || OriginPattern::Exact(text.as_bytes().into());
        if !text.contains('*') {
            return exact();
        }
        let Some((scheme, host, port)) = split_origin(text.as_bytes()) else {
            // Refused at load; never matching is the safe reading of what slipped through.
            return exact();
        };
        let (host, any_subdomain) = match host.strip_prefix(b"*") {
            Some(rest) => (rest, true),
            None => (host, false),
        };
        OriginPattern::Wildcard {
            scheme: scheme.into(),
            host: host.into(),
            any_subdomain,
            port: match port {
                None => PortPattern::None,
                Some(b"*") => PortPattern::Any,
                Some(p) => PortPattern::Exact(p.into()),
            },
        }
    }

    /// Case-insensitive, as origins' scheme and host are.
    fn matches(&self, origin: &[u8]) -> bool {
        let (pattern_scheme, pattern_host, any_subdomain, pattern_port) = match self {
            OriginPattern::Exact(exact) => return exact.eq_ignore_ascii_case(origin),
            OriginPattern::Wildcard {
                scheme,
                host,
                any_subdomain,
                port,
            } => (scheme, host, *any_subdomain, port),
        };
        let Some((scheme, host, port)) = split_origin(origin) else {
            return false;
        };
        let port_ok = match (pattern_port, port) {
            (PortPattern::None, None) => true,
            (PortPattern::Exact(want), Some(port)) => **want == *port,
            (PortPattern::Any, Some(port)) => {
                port.len() <= 5 && port.iter().all(u8::is_ascii_digit)
            }
            _ => false,
        };
        let host_ok = if any_subdomain {
            // `pattern_host` is `.example.com`: one or more DNS labels must come before it.
            host.len() > pattern_host.len()
                && host[host.len() - pattern_host.len()..].eq_ignore_ascii_case(pattern_host)
                && is_dns_labels(&host[..host.len() - pattern_host.len()])
        } else {
            host.eq_ignore_ascii_case(pattern_host)
        };
        port_ok && host_ok && scheme.eq_ignore_ascii_case(pattern_scheme)
    }
}

/// `a`, `a.b-c`: non-empty labels of letters, digits and hyphens separated by single dots.
fn is_dns_labels(text: &[u8]) -> bool {
    !text.is_empty()
        && text.split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn push_list(out: &mut Vec<u8>, name: &[u8], values: &[String]) {
    if values.is_empty() {
        return;
    }
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(values.join(", ").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Whether a header value may be copied into a response line (no CR, LF or NUL).
pub fn is_safe_header_value(value: &[u8]) -> bool {
    value.iter().all(|&b| b >= 0x20 || b == b'\t') && !value.contains(&0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(origins: &[&str], credentials: bool) -> CorsSpec {
        CorsSpec {
            allow_origins: origins.iter().map(|o| o.to_string()).collect(),
            allow_credentials: credentials,
            expose_headers: vec!["x-trace".into()],
            max_age_secs: Some(600),
            ..CorsSpec::default()
        }
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn disabled_policies_compile_to_nothing() {
        assert_eq!(
            CorsPolicy::compile(&CorsSpec {
                enabled: false,
                ..CorsSpec::default()
            }),
            None
        );
    }

    #[test]
    fn wildcard_without_credentials_answers_star() {
        let policy = CorsPolicy::compile(&spec(&["*"], false)).unwrap();
        assert!(policy.allows(b"https://anything.example"));
        let mut out = Vec::new();
        policy.write_response(&mut out, b"https://anything.example");
        assert_eq!(
            text(out),
            "access-control-allow-origin: *\r\naccess-control-expose-headers: x-trace\r\n"
        );
    }

    #[test]
    fn credentials_echo_the_origin_with_vary() {
        let policy = CorsPolicy::compile(&spec(&["*"], true)).unwrap();
        let mut out = Vec::new();
        policy.write_response(&mut out, b"https://app.example");
        let out = text(out);
        assert!(
            out.starts_with("access-control-allow-origin: https://app.example\r\nvary: Origin\r\n"),
            "{out}"
        );
        assert!(
            out.contains("access-control-allow-credentials: true\r\n"),
            "{out}"
        );
    }

    #[test]
    fn listed_origins_match_case_insensitively_and_others_do_not() {
        let policy = CorsPolicy::compile(&spec(&["https://App.example/"], false)).unwrap();
        assert!(policy.allows(b"https://app.example"));
        assert!(!policy.allows(b"https://evil.example"));
        assert!(!policy.allows(b"https://app.example.evil"));
    }

    #[test]
    fn wildcard_host_label_matches_subdomains_as_choreo_connect_does() {
        let policy = CorsPolicy::compile(&spec(&["http://*.wildcard.com"], true)).unwrap();
        for allowed in [
            &b"http://a.wildcard.com"[..],
            b"http://A.B.Wildcard.COM",
            b"http://x-1.wildcard.com",
        ] {
            assert!(
                policy.allows(allowed),
                "{}",
                String::from_utf8_lossy(allowed)
            );
        }
        for refused in [
            &b"http://wildcard.com"[..],
            b"http://.wildcard.com",
            b"https://a.wildcard.com",
            b"http://a.wildcard.com:8080",
            b"http://awildcard.com",
            b"http://a.wildcard.com.evil.example",
            b"http://evil.example/.wildcard.com",
            b"http://a..wildcard.com",
            b"http://a_b.wildcard.com",
        ] {
            assert!(
                !policy.allows(refused),
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
        let mut out = Vec::new();
        policy.write_response(&mut out, b"http://a.wildcard.com");
        assert!(text(out)
            .starts_with("access-control-allow-origin: http://a.wildcard.com\r\nvary: Origin\r\n"));
    }

    #[test]
    fn wildcard_port_matches_any_port_of_that_host() {
        let policy = CorsPolicy::compile(&spec(&["http://localhost:*"], false)).unwrap();
        assert!(policy.allows(b"http://localhost:3000"));
        assert!(!policy.allows(b"http://localhost"));
        assert!(!policy.allows(b"http://localhost:30a"));
        assert!(!policy.allows(b"http://localhost.evil:3000"));
    }

    #[test]
    fn unclear_wildcards_are_refused_at_load() {
        use crate::compile::config::cors::check_origin;
        for ok in [
            "*",
            "https://a.example",
            "http://*.wildcard.com",
            "https://*.a.b:*",
            "http://[::1]:*",
        ] {
            assert_eq!(check_origin(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://a*.example",
            "http://*",
            "http://*.",
            "*.example.com",
            "http://x.*.com",
            "http://*.a.com/p",
            "http://h:8*",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn preflight_lists_methods_headers_and_max_age() {
        let policy = CorsPolicy::compile(&spec(&["https://a.example"], false)).unwrap();
        let mut out = Vec::new();
        policy.write_preflight(&mut out, b"https://a.example");
        let out = text(out);
        assert!(
            out.contains(
                "access-control-allow-methods: GET, PUT, POST, DELETE, PATCH, OPTIONS\r\n"
            ),
            "{out}"
        );
        assert!(out.contains("access-control-allow-headers: authorization, Access-Control-Allow-Origin, Content-Type"), "{out}");
        assert!(out.contains("access-control-max-age: 600\r\n"), "{out}");
    }

    #[test]
    fn unsafe_header_values_are_detected() {
        assert!(is_safe_header_value(b"https://a.example"));
        assert!(!is_safe_header_value(b"https://a\r\nx: y"));
        assert!(!is_safe_header_value(b"a\0"));
    }
}
