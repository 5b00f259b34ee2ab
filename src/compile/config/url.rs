//! Endpoint URLs: `http[s]://host[:port][/path]`. Parsed once at load; the data path only sees
//! the resulting host, port and base path.

use std::fmt;

/// How shardgate talks to an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A validated endpoint URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamUrl {
    pub scheme: Scheme,
    /// Lower-cased; IPv6 literals without brackets.
    pub host: String,
    pub port: u16,
    /// The endpoint's base path: empty, or starting with `/`.
    pub path: String,
}

impl UpstreamUrl {
    /// The `Host` header value for this upstream: the port is omitted when it is the default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.path
        )
    }
}

/// Why a string is not an endpoint URL; rendered after `'<url>' `.
#[derive(Debug, PartialEq, Eq)]
pub enum UrlError {
    NotAUrl,
    UnsupportedScheme(String),
    NoHost,
    BadHost(String),
    BadPort(String),
    HasUserInfo,
    HasQueryOrFragment,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::NotAUrl => f.write_str("is not a URL"),
            UrlError::UnsupportedScheme(s) => {
                write!(f, "has scheme '{s}'; only http and https are supported")
            }
            UrlError::NoHost => f.write_str("has no host"),
            UrlError::BadHost(h) => write!(f, "has an invalid host '{h}'"),
            UrlError::BadPort(p) => write!(f, "has an invalid port '{p}'"),
            UrlError::HasUserInfo => {
                f.write_str("carries credentials; use securityConfig for backend authentication")
            }
            UrlError::HasQueryOrFragment => f.write_str(
                "has a query or fragment; an endpoint URL is scheme, host, port and path",
            ),
        }
    }
}

/// Parses an endpoint URL.
pub fn parse_url(text: &str) -> Result<UpstreamUrl, UrlError> {
    let text = text.trim();
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(UrlError::NotAUrl);
    };
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        // A WebSocket endpoint is reached with an HTTP/1.1 upgrade over the same transports.
        "http" | "ws" => Scheme::Http,
        "https" | "wss" => Scheme::Https,
        "" => return Err(UrlError::NotAUrl),
        other
            if other
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
        {
            return Err(UrlError::UnsupportedScheme(other.to_owned()))
        }
        _ => return Err(UrlError::NotAUrl),
    };
    if rest.contains(['?', '#']) {
        return Err(UrlError::HasQueryOrFragment);
    }
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(UrlError::HasUserInfo);
    }
    if authority.is_empty() {
        return Err(UrlError::NoHost);
    }
    let (host, port) = split_host_port(authority)?;
    let port = match port {
        None => scheme.default_port(),
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port != 0 && p.bytes().all(|b| b.is_ascii_digit()) => port,
            _ => return Err(UrlError::BadPort(p.to_owned())),
        },
    };
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(UrlError::NotAUrl);
    }
    Ok(UpstreamUrl {
        scheme,
        host,
        port,
        path: path.to_owned(),
    })
}

fn split_host_port(authority: &str) -> Result<(String, Option<&str>), UrlError> {
    if let Some(rest) = authority.strip_prefix('[') {
        let Some((literal, after)) = rest.split_once(']') else {
            return Err(UrlError::BadHost(authority.to_owned()));
        };
        if literal.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(UrlError::BadHost(literal.to_owned()));
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| UrlError::BadHost(authority.to_owned()))?,
            ),
        };
        return Ok((literal.to_ascii_lowercase(), port));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    let valid = host.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !valid {
        return Err(if host.bytes().all(|b| b == b'.') {
            UrlError::NotAUrl
        } else {
            UrlError::BadHost(host.to_owned())
        });
    }
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> UpstreamUrl {
        parse_url(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn parses_host_port_and_path() {
        let u = url("http://localhost:2380/v2");
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.path.as_str()),
            (Scheme::Http, "localhost", 2380, "/v2")
        );
    }

    #[test]
    fn default_ports_follow_the_scheme() {
        assert_eq!(url("http://a.example").port, 80);
        assert_eq!(url("https://a.example/x").port, 443);
    }

    #[test]
    fn websocket_urls_use_the_http_transports() {
        let ws = url("ws://chat.example/rooms");
        assert_eq!(
            (ws.scheme, ws.port, ws.path.as_str()),
            (Scheme::Http, 80, "/rooms")
        );
        let wss = url("WSS://chat.example:8443");
        assert_eq!((wss.scheme, wss.port), (Scheme::Https, 8443));
    }

    #[test]
    fn path_is_kept_exactly_including_trailing_slash() {
        assert_eq!(url("http://a:1/v2/").path, "/v2/");
        assert_eq!(url("http://a:1").path, "");
        assert_eq!(url("http://a:1/").path, "/");
    }

    #[test]
    fn host_is_lower_cased_and_scheme_is_case_insensitive() {
        let u = url("HTTPS://API.Example.COM:8443");
        assert_eq!(
            (u.scheme, u.host.as_str()),
            (Scheme::Https, "api.example.com")
        );
    }

    #[test]
    fn ipv6_literals_are_bracketed_in_the_authority() {
        let u = url("http://[::1]:8080/v1");
        assert_eq!(u.host, "::1");
        assert_eq!(u.authority(), "[::1]:8080");
        assert_eq!(url("http://[::1]").authority(), "[::1]");
    }

    #[test]
    fn authority_omits_default_port() {
        assert_eq!(url("http://a:80/x").authority(), "a");
        assert_eq!(url("https://a:443").authority(), "a");
        assert_eq!(url("http://a:8080").authority(), "a:8080");
        assert_eq!(url("https://a:80").authority(), "a:80");
    }

    #[test]
    fn rejects_what_is_not_a_url() {
        assert_eq!(parse_url("http:..host/v2"), Err(UrlError::NotAUrl));
        assert_eq!(parse_url("localhost:2380"), Err(UrlError::NotAUrl));
        assert_eq!(parse_url("://a"), Err(UrlError::NotAUrl));
        assert_eq!(parse_url("http://a/b c"), Err(UrlError::NotAUrl));
    }

    #[test]
    fn rejects_urls_without_host() {
        assert_eq!(parse_url("http://"), Err(UrlError::NoHost));
        assert_eq!(parse_url("http:///v2"), Err(UrlError::NoHost));
        assert_eq!(parse_url("http://:8080/v2"), Err(UrlError::NoHost));
    }

    #[test]
    fn rejects_other_schemes_bad_ports_and_credentials() {
        assert_eq!(
            parse_url("ftp://a"),
            Err(UrlError::UnsupportedScheme("ftp".into()))
        );
        assert_eq!(parse_url("http://a:0"), Err(UrlError::BadPort("0".into())));
        assert_eq!(
            parse_url("http://a:70000"),
            Err(UrlError::BadPort("70000".into()))
        );
        assert_eq!(
            parse_url("http://a:+80"),
            Err(UrlError::BadPort("+80".into()))
        );
        assert_eq!(parse_url("http://a:"), Err(UrlError::BadPort("".into())));
        assert_eq!(parse_url("http://u:p@a"), Err(UrlError::HasUserInfo));
        assert_eq!(
            parse_url("http://a/x?y=1"),
            Err(UrlError::HasQueryOrFragment)
        );
        assert_eq!(
            parse_url("http://a..b"),
            Err(UrlError::BadHost("a..b".into()))
        );
        assert_eq!(
            parse_url("http://[zz]:1"),
            Err(UrlError::BadHost("zz".into()))
        );
    }
}
