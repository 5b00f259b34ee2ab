//! Pre-renders each URL's request once; the hot loop only writes these bytes.

use crate::args::Config;
use crate::url::Url;

pub const USER_AGENT: &str = concat!("shardgate-loadgen/", env!("CARGO_PKG_VERSION"));

/// The complete request (head and body) for `url` under `cfg`.
pub fn render(cfg: &Config, url: &Url) -> Vec<u8> {
    let has = |name: &str| {
        cfg.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    let version = if cfg.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
    let mut out = Vec::with_capacity(256 + cfg.body.as_ref().map_or(0, Vec::len));
    let mut line = |s: &str| {
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    line(&format!("{} {} {}", cfg.method, url.path, version));
    if !has("host") {
        line(&format!("Host: {}", url.host_header()));
    }
    if !has("user-agent") {
        line(&format!("User-Agent: {USER_AGENT}"));
    }
    for (n, v) in &cfg.headers {
        line(&format!("{n}: {v}"));
    }
    let needs_length =
        cfg.body.is_some() || matches!(cfg.method.as_str(), "POST" | "PUT" | "PATCH");
    if needs_length && !has("content-length") && !has("transfer-encoding") {
        line(&format!(
            "Content-Length: {}",
            cfg.body.as_ref().map_or(0, Vec::len)
        ));
    }
    if !has("connection") {
        if cfg.http10 {
            // HTTP/1.0 closes by default; say nothing.
        } else if !cfg.keepalive {
            line("Connection: close");
        }
    }
    line("");
    if let Some(body) = &cfg.body {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_defaults() {
        let cfg = Config::default();
        let url = Url::parse("http://127.0.0.1:8080/x?y").unwrap();
        let r = String::from_utf8(render(&cfg, &url)).unwrap();
        assert_eq!(
            r,
            format!(
                "GET /x?y HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: {USER_AGENT}\r\n\r\n"
            )
        );
    }

    #[test]
    fn host_override_body_and_close() {
        let cfg = Config {
            method: "POST".into(),
            headers: vec![
                ("host".into(), "api.example".into()),
                ("X-K".into(), "v".into()),
            ],
            body: Some(b"{}".to_vec()),
            keepalive: false,
            ..Config::default()
        };
        let url = Url::parse("http://127.0.0.1/").unwrap();
        let r = String::from_utf8(render(&cfg, &url)).unwrap();
        assert!(r.starts_with("POST / HTTP/1.1\r\n"));
        assert!(r.contains("\r\nhost: api.example\r\n"));
        assert!(!r.contains("Host: 127.0.0.1"));
        assert!(r.contains("\r\nContent-Length: 2\r\n"));
        assert!(r.contains("\r\nConnection: close\r\n"));
        assert!(r.ends_with("\r\n\r\n{}"));
    }

    #[test]
    fn http10() {
        let cfg = Config {
            http10: true,
            keepalive: false,
            ..Config::default()
        };
        let url = Url::parse("http://a/").unwrap();
        let r = String::from_utf8(render(&cfg, &url)).unwrap();
        assert!(r.starts_with("GET / HTTP/1.0\r\nHost: a\r\n"));
        assert!(!r.contains("Connection"));
    }
}
