//! Just enough URL parsing for `http://` and `https://` targets, and curl's `--connect-to`.

use crate::args::ArgError;

/// A parsed target URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    /// Host as written, without brackets for IPv6 literals.
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, ArgError> {
        let bad = |why: &str| ArgError(format!("invalid URL '{s}': {why}"));
        let (tls, rest) = if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(bad("only http:// and https:// are supported"));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let mut path = rest[end..].to_string();
        if let Some(i) = path.find('#') {
            path.truncate(i);
        }
        if path.is_empty() || path.starts_with('?') {
            path.insert(0, '/');
        }
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad(
                "spaces or control characters in the path (percent-encode them)",
            ));
        }
        if authority.contains('@') {
            return Err(bad(
                "user info is not supported (send an Authorization header)",
            ));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = split_host_port(authority).ok_or_else(|| bad("bad host or port"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None | Some("") => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("bad port"))?,
        };
        Ok(Url {
            tls,
            host: host.to_string(),
            port,
            path,
        })
    }

    pub fn default_port(&self) -> u16 {
        if self.tls {
            443
        } else {
            80
        }
    }

    /// The `Host` header value: host, plus the port when it is not the scheme's default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Splits `host[:port]` or `[v6][:port]`.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']')?;
        let host = &rest[..close];
        let after = &rest[close + 1..];
        if after.is_empty() {
            Some((host, None))
        } else {
            Some((host, Some(after.strip_prefix(':')?)))
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => None, // unbracketed IPv6
            Some((h, p)) => Some((h, Some(p))),
            None => Some((s, None)),
        }
    }
}

/// One `--connect-to HOST:PORT:TARGET_HOST:TARGET_PORT` rule (curl semantics: an empty
/// HOST or PORT matches any; an empty TARGET_HOST or TARGET_PORT keeps the original).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectTo {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub target_host: Option<String>,
    pub target_port: Option<u16>,
}

impl ConnectTo {
    pub fn parse(s: &str) -> Result<ConnectTo, ArgError> {
        let bad = || {
            ArgError(format!(
                "invalid --connect-to '{s}': expected HOST:PORT:TARGET_HOST:TARGET_PORT \
                 (IPv6 hosts in brackets)"
            ))
        };
        let mut parts = Vec::with_capacity(4);
        let mut rest = s;
        for i in 0..4 {
            let (field, tail) = if rest.starts_with('[') {
                let close = rest.find(']').ok_or_else(bad)?;
                let field = &rest[1..close];
                let tail = &rest[close + 1..];
                (field, tail)
            } else if i == 3 {
                (rest, "")
            } else {
                let colon = rest.find(':').ok_or_else(bad)?;
                (&rest[..colon], &rest[colon..])
            };
            parts.push(field);
            rest = if i < 3 {
                tail.strip_prefix(':').ok_or_else(bad)?
            } else {
                if !tail.is_empty() {
                    return Err(bad());
                }
                tail
            };
        }
        let port = |p: &str| -> Result<Option<u16>, ArgError> {
            if p.is_empty() {
                Ok(None)
            } else {
                p.parse::<u16>().map(Some).map_err(|_| bad())
            }
        };
        let host = |h: &str| (!h.is_empty()).then(|| h.to_string());
        Ok(ConnectTo {
            host: host(parts[0]),
            port: port(parts[1])?,
            target_host: host(parts[2]),
            target_port: port(parts[3])?,
        })
    }

    /// Where to connect for `url`: the first matching rule wins, otherwise the URL's own.
    pub fn resolve<'a>(rules: &'a [ConnectTo], url: &'a Url) -> (&'a str, u16) {
        for r in rules {
            let host_ok = r
                .host
                .as_deref()
                .is_none_or(|h| h.eq_ignore_ascii_case(&url.host));
            let port_ok = r.port.is_none_or(|p| p == url.port);
            if host_ok && port_ok {
                return (
                    r.target_host.as_deref().unwrap_or(&url.host),
                    r.target_port.unwrap_or(url.port),
                );
            }
        }
        (&url.host, url.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = Url::parse("http://127.0.0.1:8080/a/b?x=1#frag").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "127.0.0.1", 8080));
        assert_eq!(u.path, "/a/b?x=1");
        assert_eq!(u.host_header(), "127.0.0.1:8080");

        let u = Url::parse("https://example.org").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (true, 443, "/"));
        assert_eq!(u.host_header(), "example.org");

        let u = Url::parse("http://example.org?q").unwrap();
        assert_eq!(u.path, "/?q");

        let u = Url::parse("http://[::1]:9000/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9000));
        assert_eq!(u.host_header(), "[::1]:9000");

        for bad in [
            "ftp://a/",
            "http://",
            "http://a:0/",
            "http://a:99999/",
            "http://u@a/",
            "http://a/b c",
            "http://::1/",
            "example.org",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn connect_to_rules() {
        let r = ConnectTo::parse("example.org:443:127.0.0.1:8443").unwrap();
        assert_eq!(r.host.as_deref(), Some("example.org"));
        assert_eq!(r.port, Some(443));
        assert_eq!(r.target_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(r.target_port, Some(8443));

        let any = ConnectTo::parse("::127.0.0.1:").unwrap();
        assert_eq!((any.host.clone(), any.port), (None, None));
        assert_eq!(any.target_port, None);

        let v6 = ConnectTo::parse("[::1]:80:[::1]:8080").unwrap();
        assert_eq!(v6.host.as_deref(), Some("::1"));
        assert_eq!(v6.target_host.as_deref(), Some("::1"));
        assert_eq!(v6.target_port, Some(8080));

        assert!(ConnectTo::parse("a:b").is_err());
        assert!(ConnectTo::parse("a:x:b:1").is_err());

        let url = Url::parse("https://example.org/").unwrap();
        assert_eq!(
            ConnectTo::resolve(std::slice::from_ref(&r), &url),
            ("127.0.0.1", 8443)
        );
        assert_eq!(ConnectTo::resolve(&[any], &url), ("127.0.0.1", 443));
        let other = Url::parse("http://other.org/").unwrap();
        assert_eq!(ConnectTo::resolve(&[r], &other), ("other.org", 80));
    }
}
