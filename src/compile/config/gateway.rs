//! `gateway.yaml`: listeners, workers, admin, TLS, timeouts, limits, failure handling and
//! where the API definitions are. Plain data with defaults that work; every field is
//! documented in `config/README.md`, and an unknown field is an error.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::cors::CorsSpec;
use super::error::{ConfigError, FieldPath};
use super::jwt::JwtConfig;

/// The longest duration any `*_ms` setting accepts: 24 hours.
pub const MAX_DURATION_MS: u64 = 86_400_000;
pub(crate) const MAX_DURATION_PROBLEM: &str = "must be at most 86400000 (24 hours)";

/// The whole gateway configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub listeners: Listeners,
    /// Shards (threads, one per core); 0 means one per available core.
    pub workers: usize,
    /// Admin listener (health, metrics, reload); `null` turns it off.
    pub admin: Option<SocketAddr>,
    /// API definitions: files, directories, globs or apictl project directories, relative to
    /// this file's directory.
    pub apis: Vec<String>,
    pub tls: ServerTls,
    pub upstream: Upstream,
    pub timeouts: Timeouts,
    pub limits: Limits,
    /// Client request hygiene beyond the codec's fixed rules.
    pub http: Http,
    pub suspension: Suspension,
    pub health_check: HealthCheck,
    /// Per-API/resource/method overrides of `suspension` and `health_check`.
    pub group_overrides: Vec<super::failure::GroupOverride>,
    /// The CORS policy for APIs without `x-wso2-cors`; absent means no CORS handling.
    pub cors: Option<CorsSpec>,
    pub access_log: AccessLog,
    /// Trusted token issuers and token handling.
    pub jwt: JwtConfig,
    /// HTTP/2 on the listeners and to upstreams, its limits and defences.
    pub http2: super::http2::Http2,
    /// Throttling tiers and the store that makes them global (BEHAVIOUR.md §9).
    pub rate_limits: RateLimitsConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listeners: Listeners::default(),
            workers: 0,
            admin: Some(SocketAddr::from(([127, 0, 0, 1], 9000))),
            apis: Vec::new(),
            tls: ServerTls::default(),
            upstream: Upstream::default(),
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            http: Http::default(),
            suspension: Suspension::default(),
            health_check: HealthCheck::default(),
            group_overrides: Vec::new(),
            cors: None,
            access_log: AccessLog::default(),
            jwt: JwtConfig::default(),
            http2: super::http2::Http2::default(),
            rate_limits: RateLimitsConfig::default(),
        }
    }
}

/// Client-facing listeners. Each shard opens its own SO_REUSEPORT socket on every address.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Listeners {
    /// Plain HTTP addresses.
    pub http: Vec<SocketAddr>,
    /// HTTPS addresses (certificates from `tls`).
    pub https: Vec<SocketAddr>,
    /// Accept queue length of each listening socket.
    pub backlog: u32,
}

impl Default for Listeners {
    fn default() -> Self {
        Self {
            http: vec![SocketAddr::from(([0, 0, 0, 0], 9090))],
            https: vec![SocketAddr::from(([0, 0, 0, 0], 9095))],
            backlog: 4096,
        }
    }
}

/// Certificates of the HTTPS listeners.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerTls {
    /// Certificate chains with their keys; the SNI name picks one, the first is the default.
    /// Empty: a self-signed certificate is generated at start.
    pub certificates: Vec<CertificateFiles>,
    /// PEM bundle of the CAs that sign client certificates (mutual TLS, `x-wso2-mutual-ssl`).
    /// When set, every client is asked for a certificate; none is required by the listener,
    /// the APIs that make mutual TLS mandatory refuse requests without one.
    pub client_ca: Option<PathBuf>,
}

/// A PEM certificate chain and its private key.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CertificateFiles {
    pub certificate_chain: PathBuf,
    pub private_key: PathBuf,
}

/// How shardgate talks to upstreams.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Upstream {
    /// Idle keep-alive connections kept per endpoint, per shard.
    pub max_idle_per_endpoint: usize,
    /// How a pooled connection is known to be clean before it is reused.
    pub reuse_check: ReuseCheck,
    /// How a large response body goes from a plain upstream to a plain client.
    pub body_relay: BodyRelay,
    pub tls: UpstreamTls,
    /// How often endpoint host names are resolved again, off the data path; 0 resolves them
    /// once, at the load that first names them.
    pub dns_refresh_ms: u64,
    /// A hosts file (`ADDRESS NAME...`) consulted before the system resolver, re-read at
    /// every refresh.
    pub hosts_file: Option<PathBuf>,
}

impl Default for Upstream {
    fn default() -> Self {
        Self {
            max_idle_per_endpoint: 64,
            reuse_check: ReuseCheck::default(),
            body_relay: BodyRelay::default(),
            tls: UpstreamTls::default(),
            dns_refresh_ms: 30_000,
            hosts_file: None,
        }
    }
}

/// How a pooled upstream connection is checked for bytes or a close that arrived while it
/// was idle, before a request is sent on it (docs/design-notes.md).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReuseCheck {
    /// One non-blocking `recv(MSG_PEEK)` per reuse: a syscall per reused connection, and the
    /// least CPU per request where syscalls are cheap (measured: bench/RESULTS.md).
    #[default]
    Peek,
    /// A readability poll on each idle connection through io_uring: no syscall per reuse,
    /// and a backend's close of an idle connection is answered at once; about 6 % more CPU
    /// per small request than `peek` on the benchmark machine. The epoll driver peeks.
    Watch,
}

/// How the body of a large response moves from the upstream socket to the client's
/// (docs/design-notes.md, measured in bench/RESULTS.md).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BodyRelay {
    /// Read into a pooled buffer and written from it: the kernel copies each byte in and out.
    /// The default: the upstream's socket pages are freed as soon as they are read, so the
    /// sender reuses them while they are hot in its cache.
    #[default]
    Copy,
    /// `splice(2)` through a pipe where both sides are plain TCP and the body is framed by
    /// its length or the upstream's close: page references move, no byte is copied by the
    /// gateway. Chunked bodies, TLS on either side and HTTP/2 streams are copied. Halves the
    /// gateway's own CPU for large bodies, but the pages stay referenced until the client
    /// has read them: a sender on the same machine writes into cold pages instead and pays
    /// back about what the gateway saved.
    Splice,
}

/// TLS towards `https://` endpoints.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTls {
    /// PEM bundle of trusted CAs; absent means the webpki (Mozilla) roots.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification. For test backends only; never the default.
    pub insecure_skip_verify: bool,
    /// Client certificate chain for mutual TLS to backends.
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// Timeouts in milliseconds.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Reading a request head, from its first byte (408, then close).
    pub client_head_ms: u64,
    /// An idle keep-alive client connection between requests.
    pub client_keepalive_ms: u64,
    /// Silence while reading a request body or writing a response to the client.
    pub client_io_ms: u64,
    /// The TLS handshake of a client connection (then closed).
    pub tls_handshake_ms: u64,
    /// Establishing an upstream connection (a failure of the endpoint).
    pub upstream_connect_ms: u64,
    /// The whole upstream exchange, retries included, unless the endpoint sets
    /// `timeoutInMillis` (504).
    pub upstream_route_ms: u64,
    /// One attempt on one endpoint, from sending to the response head; an endpoint that
    /// takes longer is failed and the request moves to the next member when it can.
    pub upstream_attempt_ms: u64,
    /// How long an idle pooled upstream connection is kept.
    pub upstream_idle_ms: u64,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    pub drain_ms: u64,
    /// A WebSocket tunnel with no byte in either direction for this long is closed.
    pub websocket_idle_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            client_head_ms: 30_000,
            client_keepalive_ms: 60_000,
            client_io_ms: 60_000,
            tls_handshake_ms: 10_000,
            upstream_connect_ms: 5_000,
            upstream_route_ms: 60_000,
            upstream_attempt_ms: 10_000,
            upstream_idle_ms: 60_000,
            drain_ms: 30_000,
            websocket_idle_ms: 3_600_000,
        }
    }
}

/// Request size limits.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Request line plus headers (431).
    pub max_request_head_bytes: usize,
    /// Request line (414).
    pub max_request_line_bytes: usize,
    /// Header count (431).
    pub max_headers: usize,
    /// Request body (413); absent means unlimited.
    pub max_body_bytes: Option<u64>,
    /// Upstream response head (502 beyond it).
    pub max_response_head_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_head_bytes: 60 * 1024,
            max_request_line_bytes: 8 * 1024,
            max_headers: 100,
            max_body_bytes: None,
            max_response_head_bytes: 64 * 1024,
        }
    }
}

/// Choices about client requests the HTTP/1.1 codec leaves open.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Header names containing `_`: dropped before forwarding, refused, or forwarded.
    pub underscores_in_headers: UnderscoresInHeaders,
}

/// What to do with a request header whose name contains `_` (CGI and WSGI origins read `_`
/// and `-` alike, so `X_Forwarded_Host` would pass for the gateway's `X-Forwarded-Host`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UnderscoresInHeaders {
    /// Not forwarded; the request goes on (nginx's default).
    #[default]
    Drop,
    /// `400`.
    Reject,
    /// Forwarded like any other field.
    Allow,
}

/// Suspension of failed endpoints (the WSO2 APIM model).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Suspension {
    /// First suspension after a failure.
    pub initial_ms: u64,
    /// Each consecutive failure after a probe multiplies the duration by this.
    pub progression_factor: f64,
    /// Upper bound of a suspension.
    pub max_ms: u64,
}

impl Default for Suspension {
    fn default() -> Self {
        Self {
            initial_ms: 2_000,
            progression_factor: 2.0,
            max_ms: 60_000,
        }
    }
}

/// Active health checks of groups with more than one URL.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheck {
    pub enabled: bool,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Consecutive failed checks that mark an endpoint down.
    pub unhealthy_threshold: u32,
    /// Consecutive good checks that mark it up again.
    pub healthy_threshold: u32,
    /// `GET` this path (expecting 2xx/3xx) instead of a TCP connect check.
    pub path: Option<String>,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: 10_000,
            timeout_ms: 1_000,
            unhealthy_threshold: 2,
            healthy_threshold: 2,
            path: None,
        }
    }
}

/// The access log (off by default).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLog {
    pub enabled: bool,
    /// File to append to; absent or `-` means standard output.
    pub path: Option<PathBuf>,
    /// `text` (one space-separated line) or `json` (one object per line).
    pub format: AccessLogFormat,
}

/// Access log line format.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    #[default]
    Text,
    Json,
}

/// Throttling tiers (`x-wso2-throttling-tier` names one) and the shared store.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// Tiers by name, added to WSO2's built-in ones (`Unlimited`, `Gold`, `Silver`,
    /// `Bronze`) or replacing them.
    pub tiers: BTreeMap<String, TierSpec>,
    /// `redis://host[:port]`: every tier becomes global to the gateways using this Redis.
    pub redis: Option<String>,
    /// Bound of one Redis exchange (connect, or one pipelined round trip).
    pub redis_timeout_ms: u64,
    /// Prefix of the Redis keys (`PREFIX:scope:per:window`).
    pub redis_key_prefix: String,
    /// Gateways expected to share the tiers through Redis: while Redis is unreachable each
    /// admits `ceil(requests / instances)` per window, and Redis batches are sized by it.
    pub instances: u32,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            tiers: BTreeMap::new(),
            redis: None,
            redis_timeout_ms: 100,
            redis_key_prefix: "shardgate".to_owned(),
            instances: 1,
        }
    }
}

/// One tier: `requests` per `per`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    pub requests: u32,
    pub per: Per,
}

/// A window length in whole seconds, written `30s`, `1m`, `1h` or `1d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Per(pub u32);

impl Per {
    pub fn secs(self) -> u32 {
        self.0
    }

    /// `2s`, `1m`, `1h`, `1d` (or a plain number of seconds); 1 s to 1 day.
    pub fn parse(text: &str) -> Result<Per, String> {
        let text = text.trim();
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let (number, unit) = text.split_at(digits);
        let unit_secs = match unit.trim() {
            "" | "s" | "sec" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => 0,
        };
        let secs = number
            .parse::<u64>()
            .ok()
            .filter(|_| unit_secs > 0)
            .and_then(|n| n.checked_mul(unit_secs))
            .ok_or_else(|| format!("'{text}' is not a window length: write 30s, 1m, 1h or 1d"))?;
        if !(1..=86_400).contains(&secs) {
            return Err(format!("'{text}' must be between 1s and 1d"));
        }
        Ok(Per(secs as u32))
    }
}

impl<'de> Deserialize<'de> for Per {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Per;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a window length such as 30s, 1m, 1h or 1d")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Per, E> {
                Per::parse(text).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, secs: u64) -> Result<Per, E> {
                Per::parse(&secs.to_string()).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Where `rate_limits.redis` points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
}

impl RedisUrl {
    /// `redis://host[:port]` (port 6379 by default; IPv6 as `[::1]`). No user, password,
    /// database or TLS: what is refused here would otherwise be silently ignored.
    pub fn parse(text: &str) -> Result<RedisUrl, String> {
        let refuse = |why: &str| Err(format!("'{text}' {why}"));
        let Some(rest) = text.strip_prefix("redis://") else {
            return refuse("is not a redis://host:port URL");
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
            return refuse("must be redis://host[:port] (no credentials, database or path)");
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => match bracketed.split_once(']') {
                Some((host, "")) => (host, None),
                Some((host, port)) => (host, Some(port.strip_prefix(':').unwrap_or("x"))),
                None => return refuse("has an unclosed '['"),
            },
            None => match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let port = match port.map(str::parse::<u16>) {
            None => 6379,
            Some(Ok(port)) if port > 0 => port,
            Some(_) => return refuse("has an invalid port"),
        };
        if host.is_empty() {
            return refuse("has no host");
        }
        Ok(RedisUrl {
            host: host.to_owned(),
            port,
        })
    }
}

impl GatewayConfig {
    /// Reads `file`; relative paths inside it are made relative to its directory.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| ConfigError::file(file, format!("cannot read: {e}")))?;
        let mut config = Self::parse(file, &text)?;
        config.resolve_paths(file.parent().unwrap_or(Path::new("")));
        Ok(config)
    }

    /// Parses and validates the text of a gateway file (paths left as written).
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        // An empty file (or only comments) means all defaults.
        let config: Self = if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            Self::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| serde_error(file, &e))?
        };
        config.validate(file, text)?;
        Ok(config)
    }

    fn validate(&self, file: &Path, text: &str) -> Result<(), ConfigError> {
        // Durations past a day are typos, and far larger ones overflow the runtime's timer.
        let field_error = |field: &str, message: &str| {
            let path = FieldPath::parse(field);
            let line = super::locate::line_of(text, super::locate::Syntax::Yaml, path.segments());
            Err(ConfigError::new(file, &path, message).at_line(line))
        };
        if let Err(e) = self.jwt.validate() {
            return field_error(&e.field, &e.problem);
        }
        if let Err((field, problem)) = self.http2.validate() {
            return field_error(field, problem);
        }
        // (field, value, whether 0 is meaningful): every duration is capped, most must be set.
        let durations = [
            (
                "timeouts.client_head_ms",
                self.timeouts.client_head_ms,
                false,
            ),
            (
                "timeouts.client_keepalive_ms",
                self.timeouts.client_keepalive_ms,
                false,
            ),
            ("timeouts.client_io_ms", self.timeouts.client_io_ms, false),
            (
                "timeouts.tls_handshake_ms",
                self.timeouts.tls_handshake_ms,
                false,
            ),
            (
                "timeouts.upstream_connect_ms",
                self.timeouts.upstream_connect_ms,
                false,
            ),
            (
                "timeouts.upstream_route_ms",
                self.timeouts.upstream_route_ms,
                false,
            ),
            (
                "timeouts.upstream_attempt_ms",
                self.timeouts.upstream_attempt_ms,
                false,
            ),
            (
                "timeouts.upstream_idle_ms",
                self.timeouts.upstream_idle_ms,
                false,
            ),
            (
                "upstream.dns_refresh_ms",
                self.upstream.dns_refresh_ms,
                true,
            ),
            ("timeouts.drain_ms", self.timeouts.drain_ms, true),
            (
                "timeouts.websocket_idle_ms",
                self.timeouts.websocket_idle_ms,
                false,
            ),
            ("suspension.initial_ms", self.suspension.initial_ms, false),
            // Checked against suspension.initial_ms below.
            ("suspension.max_ms", self.suspension.max_ms, true),
            (
                "health_check.interval_ms",
                self.health_check.interval_ms,
                false,
            ),
            (
                "health_check.timeout_ms",
                self.health_check.timeout_ms,
                false,
            ),
        ];
        for (field, value, zero_allowed) in durations {
            if value == 0 && !zero_allowed {
                return field_error(field, "must be greater than 0");
            }
            if value > MAX_DURATION_MS {
                return field_error(field, MAX_DURATION_PROBLEM);
            }
        }
        let counts = [
            (
                "limits.max_request_head_bytes",
                self.limits.max_request_head_bytes as u64,
            ),
            (
                "limits.max_request_line_bytes",
                self.limits.max_request_line_bytes as u64,
            ),
            ("limits.max_headers", self.limits.max_headers as u64),
            (
                "limits.max_response_head_bytes",
                self.limits.max_response_head_bytes as u64,
            ),
            (
                "health_check.unhealthy_threshold",
                u64::from(self.health_check.unhealthy_threshold),
            ),
            (
                "health_check.healthy_threshold",
                u64::from(self.health_check.healthy_threshold),
            ),
        ];
        for (field, value) in counts {
            if value == 0 {
                return field_error(field, "must be greater than 0");
            }
        }
        if self.limits.max_request_line_bytes > self.limits.max_request_head_bytes {
            return field_error(
                "limits.max_request_line_bytes",
                "cannot exceed limits.max_request_head_bytes",
            );
        }
        if !(self.suspension.progression_factor >= 1.0
            && self.suspension.progression_factor.is_finite())
        {
            return field_error("suspension.progression_factor", "must be a number >= 1.0");
        }
        if self.suspension.max_ms < self.suspension.initial_ms {
            return field_error("suspension.max_ms", "must be >= suspension.initial_ms");
        }
        if let Some(path) = &self.health_check.path {
            if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return field_error(
                    "health_check.path",
                    "must be a request path starting with '/'",
                );
            }
        }
        if let Some(cors) = &self.cors {
            for (i, origin) in cors.allow_origins.iter().enumerate() {
                if let Err(problem) = super::cors::check_origin(origin) {
                    return field_error(&format!("cors.allow_origins[{i}]"), &problem);
                }
            }
        }
        if let Err(e) = super::failure::validate(&self.group_overrides, &self.suspension) {
            return field_error(&e.field, &e.problem);
        }
        let rate_limits = &self.rate_limits;
        for (name, tier) in &rate_limits.tiers {
            if tier.requests == 0 {
                return field_error(
                    &format!("rate_limits.tiers.{name}.requests"),
                    "must be greater than 0 (a tier that admits nothing would refuse every request; Unlimited has no limit)",
                );
            }
        }
        if let Some(redis) = &rate_limits.redis {
            if let Err(problem) = RedisUrl::parse(redis) {
                return field_error("rate_limits.redis", &problem);
            }
        }
        if rate_limits.redis_timeout_ms == 0 || rate_limits.redis_timeout_ms > 10_000 {
            return field_error(
                "rate_limits.redis_timeout_ms",
                "must be between 1 and 10000",
            );
        }
        if rate_limits.instances == 0 {
            return field_error("rate_limits.instances", "must be greater than 0");
        }
        if rate_limits.redis_key_prefix.is_empty()
            || rate_limits
                .redis_key_prefix
                .bytes()
                .any(|b| b <= b' ' || b == 0x7f)
        {
            return field_error(
                "rate_limits.redis_key_prefix",
                "must be non-empty, without spaces or control characters",
            );
        }
        if self.upstream.tls.client_certificate.is_some() != self.upstream.tls.client_key.is_some()
        {
            return field_error(
                "upstream.tls",
                "client_certificate and client_key go together",
            );
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for pair in &mut self.tls.certificates {
            resolve(&mut pair.certificate_chain);
            resolve(&mut pair.private_key);
        }
        if let Some(ca) = &mut self.tls.client_ca {
            resolve(ca);
        }
        if let Some(p) = &mut self.upstream.hosts_file {
            resolve(p);
        }
        let tls = &mut self.upstream.tls;
        for p in [
            &mut tls.ca_file,
            &mut tls.client_certificate,
            &mut tls.client_key,
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
        if let Some(p) = &mut self.access_log.path {
            if p.as_os_str() != "-" {
                resolve(p);
            }
        }
    }

    /// Shards to run: `workers`, or one per available core.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// serde_yaml says `listeners: unknown field \`htp\`, expected ... at line 3 column 3`;
/// we keep its field path and message and report the line our way.
fn serde_error(file: &Path, error: &serde_yaml::Error) -> ConfigError {
    let text = error.to_string();
    let message = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => &text,
    };
    ConfigError::file(file, message).at_line(error.location().map(|l| l.line()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GatewayConfig, String> {
        GatewayConfig::parse(Path::new("config/gateway.yaml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_means_defaults() {
        let config = parse("# nothing\n").unwrap();
        assert_eq!(config, GatewayConfig::default());
        assert_eq!(config.listeners.http, vec!["0.0.0.0:9090".parse().unwrap()]);
        assert_eq!(
            config.listeners.https,
            vec!["0.0.0.0:9095".parse().unwrap()]
        );
        assert_eq!(config.admin, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(
            config.suspension,
            Suspension {
                initial_ms: 2000,
                progression_factor: 2.0,
                max_ms: 60000
            }
        );
        assert_eq!(config.limits.max_request_head_bytes, 61440);
    }

    #[test]
    fn unknown_field_names_file_field_and_line() {
        let error =
            parse("workers: 2\nlisteners:\n  http: [\"127.0.0.1:1\"]\n  htp: []\n").unwrap_err();
        assert!(
            error.starts_with("config/gateway.yaml: listeners: unknown field `htp`"),
            "{error}"
        );
        assert!(error.ends_with("(line 4)"), "{error}");
    }

    #[test]
    fn unknown_top_level_field_is_an_error() {
        let error = parse("wrokers: 2\n").unwrap_err();
        assert!(error.contains("unknown field `wrokers`"), "{error}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let error = parse("listeners:\n  http: [\"localhost\"]\n").unwrap_err();
        assert!(error.contains("listeners.http[0]"), "{error}");
        let error = parse("timeouts:\n  upstream_connect_ms: 0\n").unwrap_err();
        assert_eq!(
            error,
            "config/gateway.yaml: timeouts.upstream_connect_ms: must be greater than 0 (line 2)"
        );
        let error = parse("suspension:\n  progression_factor: 0.5\n").unwrap_err();
        assert!(error.contains("suspension.progression_factor"), "{error}");
    }

    #[test]
    fn durations_past_a_day_are_refused_before_they_reach_a_timer() {
        let error = parse("timeouts:\n  upstream_route_ms: 18446744073709551615\n").unwrap_err();
        assert_eq!(
            error,
            "config/gateway.yaml: timeouts.upstream_route_ms: must be at most 86400000 (24 hours) (line 2)"
        );
        assert!(parse("timeouts:\n  drain_ms: 86400000\n").is_ok());
        let error =
            parse("group_overrides:\n  - api: /a\n    health_check: {interval_ms: 86400001}\n")
                .unwrap_err();
        assert!(
            error.contains("group_overrides[0].health_check.interval_ms: must be at most"),
            "{error}"
        );
    }

    #[test]
    fn jwt_section_errors_name_their_field_and_line() {
        let error = parse("jwt:\n  issuers:\n    - issuer: a\n      certificate: a.pem\n    - issuer: a\n      certificate: b.pem\n").unwrap_err();
        assert!(
            error.starts_with(
                "config/gateway.yaml: jwt.issuers[1].issuer: 'a' is already configured"
            ),
            "{error}"
        );
        assert!(error.ends_with("(line 5)"), "{error}");
    }

    #[test]
    fn underscores_in_headers_defaults_to_drop_and_takes_three_values() {
        assert_eq!(
            parse("# defaults\n").unwrap().http.underscores_in_headers,
            UnderscoresInHeaders::Drop
        );
        for (text, value) in [
            ("drop", UnderscoresInHeaders::Drop),
            ("reject", UnderscoresInHeaders::Reject),
            ("allow", UnderscoresInHeaders::Allow),
        ] {
            let config = parse(&format!("http:\n  underscores_in_headers: {text}\n")).unwrap();
            assert_eq!(config.http.underscores_in_headers, value);
        }
        let error = parse("http:\n  underscores_in_headers: ignore\n").unwrap_err();
        assert!(error.contains("http.underscores_in_headers"), "{error}");
        let error = parse("http:\n  underscore: drop\n").unwrap_err();
        assert!(error.contains("unknown field `underscore`"), "{error}");
    }

    #[test]
    fn gateway_cors_origins_with_unclear_wildcards_are_refused() {
        assert!(parse("cors:\n  allow_origins: ['http://*.example.com']\n").is_ok());
        let error =
            parse("cors:\n  allow_origins: ['http://*.example.com', 'https://a*']\n").unwrap_err();
        assert!(
            error.starts_with("config/gateway.yaml: cors.allow_origins[1]: origin 'https://a*'"),
            "{error}"
        );
    }

    #[test]
    fn rate_limit_tiers_parse_their_windows_and_name_bad_fields() {
        let config = parse(
            "rate_limits:\n  tiers:\n    Gold: {requests: 10, per: 2s}\n    Hourly: {requests: 5, per: 1h}\n  redis: redis://127.0.0.1:6390\n  instances: 2\n",
        )
        .unwrap();
        let tiers = &config.rate_limits.tiers;
        assert_eq!(tiers["Gold"].per, Per(2));
        assert_eq!(tiers["Hourly"].per, Per(3600));
        assert_eq!(config.rate_limits.instances, 2);
        assert_eq!(
            RedisUrl::parse(config.rate_limits.redis.as_deref().unwrap()),
            Ok(RedisUrl {
                host: "127.0.0.1".into(),
                port: 6390
            })
        );
        let error =
            parse("rate_limits:\n  tiers:\n    Gold: {requests: 10, per: 2 weeks}\n").unwrap_err();
        assert!(error.contains("rate_limits.tiers"), "{error}");
        assert!(error.contains("not a window length"), "{error}");
        let error =
            parse("rate_limits:\n  tiers:\n    Gold: {requests: 0, per: 1m}\n").unwrap_err();
        assert!(
            error.starts_with(
                "config/gateway.yaml: rate_limits.tiers.Gold.requests: must be greater than 0"
            ),
            "{error}"
        );
        let error = parse("rate_limits:\n  redis: http://x:1\n").unwrap_err();
        assert!(
            error.starts_with("config/gateway.yaml: rate_limits.redis: 'http://x:1' is not a redis://host:port URL (line 2)"),
            "{error}"
        );
        let error = parse("rate_limits:\n  tier: {}\n").unwrap_err();
        assert!(error.contains("unknown field `tier`"), "{error}");
    }

    #[test]
    fn window_lengths_and_redis_urls() {
        assert_eq!(Per::parse("30s"), Ok(Per(30)));
        assert_eq!(Per::parse("1m"), Ok(Per(60)));
        assert_eq!(Per::parse("1d"), Ok(Per(86_400)));
        assert_eq!(Per::parse("45"), Ok(Per(45)));
        assert!(Per::parse("0s").is_err());
        assert!(Per::parse("2d").is_err());
        assert!(Per::parse("500ms").is_err());
        assert!(Per::parse("m").is_err());
        assert_eq!(
            RedisUrl::parse("redis://cache"),
            Ok(RedisUrl {
                host: "cache".into(),
                port: 6379
            })
        );
        assert_eq!(
            RedisUrl::parse("redis://[::1]:7000/"),
            Ok(RedisUrl {
                host: "::1".into(),
                port: 7000
            })
        );
        assert!(RedisUrl::parse("redis://user:pw@cache:1").is_err());
        assert!(RedisUrl::parse("redis://cache:1/2").is_err());
        assert!(RedisUrl::parse("redis://cache:0").is_err());
        assert!(RedisUrl::parse("rediss://cache").is_err());
    }

    #[test]
    fn admin_can_be_turned_off() {
        assert_eq!(parse("admin: null\n").unwrap().admin, None);
    }

    #[test]
    fn relative_paths_are_resolved_against_the_config_directory() {
        let mut config = parse(
            "tls:\n  certificates:\n    - {certificate_chain: c.pem, private_key: /abs/k.pem}\n",
        )
        .unwrap();
        config.resolve_paths(Path::new("/etc/shardgate"));
        assert_eq!(
            config.tls.certificates[0].certificate_chain,
            PathBuf::from("/etc/shardgate/c.pem")
        );
        assert_eq!(
            config.tls.certificates[0].private_key,
            PathBuf::from("/abs/k.pem")
        );
    }
}
