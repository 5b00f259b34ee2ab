//! The WSO2 endpoint object (`urls`, `type`, `advanceEndpointConfig`, `securityConfig`) as
//! read from a definition, validated and normalised, before ids are assigned.

use std::collections::HashMap;

use serde_yaml::Value;

use super::document::{untagged, Reader};
use super::error::FieldPath;
use super::url::{parse_url, UpstreamUrl};

/// Longest upstream exchange a definition may ask for (BEHAVIOUR.md 1.4).
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// Most status-code retries a definition may ask for.
pub const MAX_RETRY_COUNT: u64 = 5;
/// Retried status codes when `retryConfig` names none (Choreo Connect's default).
pub const DEFAULT_RETRY_STATUS_CODES: &[u16] = &[504];

/// How a group spreads requests over its URLs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupKind {
    /// Round robin over the URLs that are not suspended.
    LoadBalance,
    /// The first URL in order that is not suspended.
    Failover,
}

impl GroupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupKind::LoadBalance => "load_balance",
            GroupKind::Failover => "failover",
        }
    }
}

/// Status-code retries (`advanceEndpointConfig.retryConfig`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RetrySpec {
    pub count: u8,
    pub status_codes: Vec<u16>,
}

/// Limits across all shards (`advanceEndpointConfig.circuitBreakers`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CircuitBreakerSpec {
    pub max_connections: Option<u32>,
    pub max_requests: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_retries: Option<u32>,
}

/// Basic credentials sent to the backend instead of the client's `Authorization`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BasicAuth({}, <redacted>)", self.username)
    }
}

/// One endpoint object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EndpointSpec {
    pub kind: GroupKind,
    pub urls: Vec<UpstreamUrl>,
    pub timeout_ms: Option<u32>,
    pub retry: Option<RetrySpec>,
    pub circuit_breakers: Option<CircuitBreakerSpec>,
    pub basic_auth: Option<BasicAuth>,
}

impl EndpointSpec {
    /// A round-robin group of `urls` with no advanced settings (the `servers`/`host`
    /// fallbacks).
    pub fn plain(urls: Vec<UpstreamUrl>) -> Self {
        Self {
            kind: GroupKind::LoadBalance,
            urls,
            timeout_ms: None,
            retry: None,
            circuit_breakers: None,
            basic_auth: None,
        }
    }
}

/// The API's `x-wso2-endpoints` entries by name; `None` for entries that failed validation
/// (already reported), so that references to them add no second error.
pub type NamedEndpoints = HashMap<String, Option<EndpointSpec>>;

const REFERENCE_PREFIX: &str = "#/x-wso2-endpoints/";

/// Reads an endpoint object, or a `#/x-wso2-endpoints/<name>` reference to one.
pub fn read_endpoint(
    r: &Reader<'_>,
    value: &Value,
    field: &FieldPath,
    named: &NamedEndpoints,
) -> Option<EndpointSpec> {
    if let Value::String(reference) = untagged(value) {
        let Some(name) = reference.strip_prefix(REFERENCE_PREFIX) else {
            r.error(
                field,
                format!("'{reference}' is neither an endpoint object nor a reference '{REFERENCE_PREFIX}<name>'"),
            );
            return None;
        };
        return match named.get(name) {
            Some(spec) => spec.clone(),
            None => {
                r.error(
                    field,
                    format!("refers to undefined x-wso2-endpoints entry '{name}'"),
                );
                None
            }
        };
    }
    read_endpoint_object(r, value, field)
}

/// Reads the API-level `x-wso2-endpoints` list (`- name: {endpoint object}` entries).
pub fn read_named_endpoints(r: &Reader<'_>, value: &Value, field: &FieldPath) -> NamedEndpoints {
    let mut named = NamedEndpoints::new();
    let mut add = |name: String, value: &Value, path: &FieldPath| {
        let spec = read_endpoint_object(r, value, path);
        if named.insert(name.clone(), spec).is_some() {
            r.error(
                path,
                format!("x-wso2-endpoints entry '{name}' is defined twice"),
            );
        }
    };
    match untagged(value) {
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = field.index(i);
                let Some(entry) = r.mapping(item, &item_path) else {
                    continue;
                };
                let entries = r.entries(entry, &item_path);
                if entries.len() != 1 {
                    r.error(
                        &item_path,
                        "each x-wso2-endpoints entry must be a single '<name>: {endpoint object}'",
                    );
                    continue;
                }
                for (name, path, value) in entries {
                    add(name, value, &path);
                }
            }
        }
        // A mapping of name -> object says the same thing; accept it.
        Value::Mapping(map) => {
            for (name, path, value) in r.entries(map, field) {
                add(name, value, &path);
            }
        }
        _ => {
            r.sequence(value, field);
        }
    }
    named
}

fn read_endpoint_object(r: &Reader<'_>, value: &Value, field: &FieldPath) -> Option<EndpointSpec> {
    let map = r.mapping(value, field)?;
    let mut urls = None;
    let mut kind = GroupKind::LoadBalance;
    let mut timeout_ms = None;
    let mut retry = None;
    let mut circuit_breakers = None;
    let mut basic_auth = None;
    let mut ok = true;
    for (key, path, value) in r.entries(map, field) {
        match key.as_str() {
            "urls" => {
                urls = read_urls(r, value, &path);
                ok &= urls.is_some();
            }
            "type" => match r.string(value, &path).map(parse_kind) {
                Some(Some(k)) => kind = k,
                Some(None) => {
                    r.error(
                        &path,
                        format!(
                            "unknown endpoint type '{}'; expected load_balance (also loadbalance, http) or failover",
                            r.string(value, &path).unwrap_or_default()
                        ),
                    );
                    ok = false;
                }
                None => ok = false,
            },
            "advanceEndpointConfig" => {
                let Some(advanced) = r.mapping(value, &path) else {
                    ok = false;
                    continue;
                };
                for (key, path, value) in r.entries(advanced, &path) {
                    match key.as_str() {
                        "timeoutInMillis" => timeout_ms = read_timeout(r, value, &path),
                        "retryConfig" => retry = read_retry(r, value, &path),
                        "circuitBreakers" => {
                            circuit_breakers = read_circuit_breakers(r, value, &path)
                        }
                        _ => r.warn(&path, "unknown advanceEndpointConfig field, ignored"),
                    }
                }
            }
            "securityConfig" => basic_auth = read_security_config(r, value, &path),
            _ => r.warn(&path, "unknown endpoint field, ignored"),
        }
    }
    if urls.is_none() && ok && !map.contains_key("urls") {
        r.error(
            field,
            "an endpoint object needs 'urls' (a list of at least one URL)",
        );
    }
    Some(EndpointSpec {
        kind,
        urls: urls?,
        timeout_ms,
        retry,
        circuit_breakers,
        basic_auth,
    })
    .filter(|_| ok)
}

/// `load_balance`, `loadbalance`, `http` (and absent) mean round robin, as in Choreo Connect;
/// unlike Choreo Connect, anything else is rejected instead of silently balanced.
fn parse_kind(text: &str) -> Option<GroupKind> {
    match text.to_ascii_lowercase().as_str() {
        "load_balance" | "loadbalance" | "http" => Some(GroupKind::LoadBalance),
        "failover" => Some(GroupKind::Failover),
        _ => None,
    }
}

fn read_urls(r: &Reader<'_>, value: &Value, field: &FieldPath) -> Option<Vec<UpstreamUrl>> {
    let items = r.sequence(value, field)?;
    if items.is_empty() {
        r.error(field, "needs at least one URL");
        return None;
    }
    let mut urls = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = field.index(i);
        let Some(text) = r.string(item, &path) else {
            ok = false;
            continue;
        };
        match parse_url(text) {
            Ok(url) => urls.push(url),
            Err(e) => {
                r.error(&path, format!("'{text}' {e}"));
                ok = false;
            }
        }
    }
    ok.then_some(urls)
}

fn read_timeout(r: &Reader<'_>, value: &Value, field: &FieldPath) -> Option<u32> {
    match r.unsigned(value, field)? {
        0 => {
            r.error(field, "must be a positive number of milliseconds");
            None
        }
        ms if ms > MAX_TIMEOUT_MS => {
            r.warn(
                field,
                format!("{ms} ms is above the {MAX_TIMEOUT_MS} ms cap; using {MAX_TIMEOUT_MS}"),
            );
            Some(MAX_TIMEOUT_MS as u32)
        }
        ms => Some(ms as u32),
    }
}

fn read_retry(r: &Reader<'_>, value: &Value, field: &FieldPath) -> Option<RetrySpec> {
    let map = r.mapping(value, field)?;
    let mut count = 0u8;
    let mut status_codes = None;
    for (key, path, value) in r.entries(map, field) {
        match key.as_str() {
            "count" => {
                count = match untagged(value) {
                    Value::Number(n) if n.as_i64().is_some_and(|c| c < 0) => {
                        r.warn(&path, format!("retry count {n} is below 0; using 0"));
                        0
                    }
                    _ => match r.unsigned(value, &path) {
                        Some(c) if c > MAX_RETRY_COUNT => {
                            r.warn(&path, format!("retry count {c} is above {MAX_RETRY_COUNT}; using {MAX_RETRY_COUNT}"));
                            MAX_RETRY_COUNT as u8
                        }
                        Some(c) => c as u8,
                        None => return None,
                    },
                }
            }
            "statusCodes" => {
                let items = r.sequence(value, &path)?;
                let mut codes = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let code_path = path.index(i);
                    match r.unsigned(item, &code_path) {
                        Some(code) if (401..=598).contains(&code) => {
                            if !codes.contains(&(code as u16)) {
                                codes.push(code as u16);
                            }
                        }
                        Some(code) => r.warn(
                            &code_path,
                            format!("status code {code} is outside 401..598; dropped"),
                        ),
                        None => return None,
                    }
                }
                // An empty list, or one whose codes were all dropped, means the default (as
                // Choreo Connect reads it), not "retry on nothing".
                status_codes = (!codes.is_empty()).then_some(codes);
            }
            _ => r.warn(&path, "unknown retryConfig field, ignored"),
        }
    }
    Some(RetrySpec {
        count,
        status_codes: status_codes.unwrap_or_else(|| DEFAULT_RETRY_STATUS_CODES.to_vec()),
    })
}

fn read_circuit_breakers(
    r: &Reader<'_>,
    value: &Value,
    field: &FieldPath,
) -> Option<CircuitBreakerSpec> {
    let map = r.mapping(value, field)?;
    let mut spec = CircuitBreakerSpec::default();
    for (key, path, value) in r.entries(map, field) {
        let slot = match key.as_str() {
            "maxConnections" => &mut spec.max_connections,
            "maxRequests" => &mut spec.max_requests,
            "maxPendingRequests" => &mut spec.max_pending_requests,
            "maxRetries" => &mut spec.max_retries,
            _ => {
                r.warn(&path, "unknown circuitBreakers field, ignored");
                continue;
            }
        };
        match r.unsigned(value, &path)? {
            n if n > u64::from(u32::MAX) => {
                r.error(&path, format!("{n} is too large"));
                return None;
            }
            n => *slot = Some(n as u32),
        }
    }
    Some(spec)
}

fn read_security_config(r: &Reader<'_>, value: &Value, field: &FieldPath) -> Option<BasicAuth> {
    let map = r.mapping(value, field)?;
    let mut kind = None;
    let mut username = None;
    let mut password = None;
    for (key, path, value) in r.entries(map, field) {
        match key.as_str() {
            "type" => kind = Some((r.string(value, &path)?.to_owned(), path)),
            "username" => username = Some(r.text(value, &path)?),
            "password" => password = Some(r.text(value, &path)?),
            _ => r.warn(&path, "unknown securityConfig field, ignored"),
        }
    }
    match kind {
        Some((k, _)) if k.eq_ignore_ascii_case("basic") => {}
        Some((k, path)) => {
            r.error(
                &path,
                format!("unsupported securityConfig type '{k}'; only 'basic' is supported"),
            );
            return None;
        }
        None => {
            r.error(field, "securityConfig needs 'type: basic'");
            return None;
        }
    }
    match (username, password) {
        (Some(username), Some(password)) => {
            if username.contains(':') {
                r.error(
                    &field.key("username"),
                    "a basic-auth username cannot contain ':'",
                );
                return None;
            }
            Some(BasicAuth { username, password })
        }
        _ => {
            r.error(
                field,
                "basic securityConfig needs 'username' and 'password'",
            );
            None
        }
    }
}
