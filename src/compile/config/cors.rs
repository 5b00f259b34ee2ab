//! CORS policy data: the API's `x-wso2-cors` object and the gateway-wide default share it.

use serde::Deserialize;
use serde_yaml::Value;

use super::document::Reader;
use super::error::FieldPath;

/// A CORS policy. The gateway answers preflights and decorates responses from it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsSpec {
    /// Off means the policy is ignored (CC's `corsConfigurationEnabled`).
    pub enabled: bool,
    /// Origins allowed; `*` allows any.
    pub allow_origins: Vec<String>,
    pub allow_credentials: bool,
    pub allow_headers: Vec<String>,
    pub allow_methods: Vec<String>,
    pub expose_headers: Vec<String>,
    /// `Access-Control-Max-Age` on preflight answers; absent means not sent.
    pub max_age_secs: Option<u64>,
}

impl Default for CorsSpec {
    /// Choreo Connect's default policy.
    fn default() -> Self {
        Self {
            enabled: true,
            allow_origins: vec!["*".to_owned()],
            allow_credentials: false,
            allow_headers: [
                "authorization",
                "Access-Control-Allow-Origin",
                "Content-Type",
                "SOAPAction",
                "apikey",
                "Internal-Key",
            ]
            .map(str::to_owned)
            .to_vec(),
            allow_methods: ["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"]
                .map(str::to_owned)
                .to_vec(),
            expose_headers: Vec::new(),
            max_age_secs: None,
        }
    }
}

/// Reads `x-wso2-cors` (camelCase keys, as Choreo Connect writes them).
pub fn read_wso2_cors(r: &Reader<'_>, value: &Value, field: &FieldPath) -> Option<CorsSpec> {
    let map = r.mapping(value, field)?;
    let mut spec = CorsSpec::default();
    for (key, path, value) in r.entries(map, field) {
        match key.as_str() {
            "corsConfigurationEnabled" => spec.enabled = r.boolean(value, &path)?,
            "accessControlAllowCredentials" => spec.allow_credentials = r.boolean(value, &path)?,
            "accessControlAllowOrigins" => {
                let origins = strings(r, value, &path)?;
                for (i, origin) in origins.iter().enumerate() {
                    if let Err(problem) = check_origin(origin) {
                        r.error(&path.index(i), problem);
                    }
                }
                spec.allow_origins = origins;
            }
            "accessControlAllowHeaders" => spec.allow_headers = strings(r, value, &path)?,
            "accessControlAllowMethods" => spec.allow_methods = strings(r, value, &path)?,
            "accessControlExposeHeaders" => spec.expose_headers = strings(r, value, &path)?,
            "accessControlMaxAge" => spec.max_age_secs = Some(r.unsigned(value, &path)?),
            _ => r.warn(&path, "unknown x-wso2-cors field, ignored"),
        }
    }
    Some(spec)
}

/// Checks one allowed origin: `*`, an exact `scheme://host[:port]`, or one with wildcards
/// where their meaning is plain. `*.` at the start of the host matches one or more labels
/// (`http://*.wildcard.com` allows `http://a.b.wildcard.com`, as Choreo Connect does), and a
/// port of `*` matches any port. Choreo Connect turns every `*` into the regular expression
/// `.*`, which also lets `http://a*` match `http://attacker.example`; a `*` anywhere else
/// is refused here instead of being guessed at.
pub fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" || !origin.contains('*') {
        return Ok(());
    }
    let refuse = || {
        Err(format!(
            "origin '{origin}': '*' is only allowed as the whole origin, as the first host label \
             ('https://*.example.com') or as the port ('http://localhost:*')"
        ))
    };
    let Some((_, host, port)) = split_origin(origin.as_bytes()) else {
        return refuse();
    };
    let host_ok = match host.strip_prefix(b"*.") {
        Some(rest) => !rest.is_empty() && !rest.contains(&b'*'),
        None => !host.contains(&b'*'),
    };
    let port_ok = port.is_none_or(|p| p == b"*" || !p.contains(&b'*'));
    if host_ok && port_ok {
        Ok(())
    } else {
        refuse()
    }
}

/// The parts of `scheme://host[:port]`: the scheme with `://`, the host (IPv6 hosts keep
/// their brackets) and the port.
pub type OriginParts<'a> = (&'a [u8], &'a [u8], Option<&'a [u8]>);

/// Splits an origin; `None` when it is not of that shape (a path, user info, no scheme).
pub fn split_origin(origin: &[u8]) -> Option<OriginParts<'_>> {
    let separator = origin.windows(3).position(|w| w == b"://")?;
    let (scheme, authority) = origin.split_at(separator + 3);
    if authority.is_empty()
        || authority
            .iter()
            .any(|&b| matches!(b, b'/' | b'@' | b'?' | b'#'))
    {
        return None;
    }
    let host_end = if authority[0] == b'[' {
        authority.iter().position(|&b| b == b']')? + 1
    } else {
        authority
            .iter()
            .position(|&b| b == b':')
            .unwrap_or(authority.len())
    };
    let (host, rest) = authority.split_at(host_end);
    match rest {
        [] => Some((scheme, host, None)),
        [b':', port @ ..] if !port.is_empty() => Some((scheme, host, Some(port))),
        _ => None,
    }
}

fn strings(r: &Reader<'_>, value: &Value, field: &FieldPath) -> Option<Vec<String>> {
    let items = r.sequence(value, field)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        out.push(r.text(item, &field.index(i))?);
    }
    Some(out)
}
