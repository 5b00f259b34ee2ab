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
            "accessControlAllowOrigins" => spec.allow_origins = strings(r, value, &path)?,
            "accessControlAllowHeaders" => spec.allow_headers = strings(r, value, &path)?,
            "accessControlAllowMethods" => spec.allow_methods = strings(r, value, &path)?,
            "accessControlExposeHeaders" => spec.expose_headers = strings(r, value, &path)?,
            "accessControlMaxAge" => spec.max_age_secs = Some(r.unsigned(value, &path)?),
            _ => r.warn(&path, "unknown x-wso2-cors field, ignored"),
        }
    }
    Some(spec)
}

fn strings(r: &Reader<'_>, value: &Value, field: &FieldPath) -> Option<Vec<String>> {
    let items = r.sequence(value, field)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        out.push(r.text(item, &field.index(i))?);
    }
    Some(out)
}
