//! apictl project directories: `api.yaml` (`data.context`, `data.version`,
//! `data.endpointConfig`) beside `Definitions/swagger.yaml` (or `openapi.yaml`, or
//! `asyncapi.yaml` for a WebSocket API). The definition's own x-wso2
//! extensions override what `api.yaml` says.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::document::{untagged, Document, Reader};
use super::endpoint::{BasicAuth, EndpointSpec, GroupKind};
use super::error::{ConfigError, ConfigWarning, FieldPath};
use super::openapi::ProjectDefaults;
use super::security::read_project_security;
use super::url::parse_url;

/// Where apictl exports an API's mutual TLS client certificates.
const CLIENT_CERTIFICATES_DIR: &str = "Client-certificates";

const PROJECT_FILES: &[&str] = &["api.yaml", "api.yml", "api.json"];
const DEFINITION_FILES: &[&str] = &[
    "Definitions/swagger.yaml",
    "Definitions/swagger.yml",
    "Definitions/swagger.json",
    "Definitions/openapi.yaml",
    "Definitions/openapi.yml",
    "Definitions/openapi.json",
    "Definitions/asyncapi.yaml",
    "Definitions/asyncapi.yml",
    "Definitions/asyncapi.json",
];

/// The `api.yaml` of a directory, if the directory is an apictl project: an `api.yaml`
/// beside a `Definitions` folder (a lone `api.yaml` may just be a definition's file name).
pub fn project_file(dir: &Path) -> Option<PathBuf> {
    if !dir.join("Definitions").is_dir() {
        return None;
    }
    PROJECT_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// A project's definition document and the defaults its `api.yaml` gives.
pub struct Project {
    pub definition: Document,
    pub defaults: ProjectDefaults,
}

/// Reads an apictl project directory.
pub fn read_project(dir: &Path) -> (Result<Project, Vec<ConfigError>>, Vec<ConfigWarning>) {
    let Some(api_file) = project_file(dir) else {
        let error = ConfigError::file(dir, "not an apictl project (no api.yaml)");
        return (Err(vec![error]), Vec::new());
    };
    let Some(definition_file) = DEFINITION_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
    else {
        let error = ConfigError::file(dir, "apictl project without a definition (Definitions/swagger.yaml, openapi.yaml or asyncapi.yaml)");
        return (Err(vec![error]), Vec::new());
    };
    let api_doc = match Document::read(&api_file) {
        Ok(doc) => doc,
        Err(e) => return (Err(vec![e]), Vec::new()),
    };
    let r = Reader::new(&api_doc);
    let defaults = read_api_yaml(&r);
    let (mut errors, warnings) = r.finish();
    let defaults = defaults.map(|mut defaults| {
        match read_client_certificates(&dir.join(CLIENT_CERTIFICATES_DIR)) {
            Ok(certificates) => defaults.client_certificates = certificates,
            Err(mut problems) => errors.append(&mut problems),
        }
        defaults
    });
    let definition = Document::read(&definition_file).map_err(|e| errors.push(e));
    match (definition, defaults) {
        (Ok(definition), Some(defaults)) if errors.is_empty() => (
            Ok(Project {
                definition,
                defaults,
            }),
            warnings,
        ),
        _ => (Err(errors), warnings),
    }
}

fn read_api_yaml(r: &Reader<'_>) -> Option<ProjectDefaults> {
    let root = r.mapping(&r.doc.root, &FieldPath::root())?;
    let data_field = FieldPath::root().key("data");
    let Some(data) = root.get("data") else {
        r.error(&FieldPath::root(), "api.yaml has no 'data' section");
        return None;
    };
    let data = r.mapping(data, &data_field)?;
    let text = |key: &str| data.get(key).and_then(|v| r.text(v, &data_field.key(key)));
    let mut defaults = ProjectDefaults {
        name: text("name"),
        context: text("context"),
        version: text("version"),
        ..ProjectDefaults::default()
    };
    if let Some(value) = data.get("securityScheme") {
        defaults.security =
            read_project_security(r, value, &data_field.key("securityScheme")).unwrap_or_default();
    }
    if let Some(config) = data.get("endpointConfig") {
        let field = data_field.key("endpointConfig");
        let config = r.mapping(config, &field)?;
        let kind = match config
            .get("endpoint_type")
            .map(|v| r.string(v, &field.key("endpoint_type")))
        {
            Some(Some(t)) if t.eq_ignore_ascii_case("failover") => GroupKind::Failover,
            Some(Some(t))
                if [
                    "http",
                    "ws",
                    "load_balance",
                    "loadbalance",
                    "address",
                    "default",
                ]
                .iter()
                .any(|k| t.eq_ignore_ascii_case(k)) =>
            {
                GroupKind::LoadBalance
            }
            Some(Some(t)) => {
                r.error(
                    &field.key("endpoint_type"),
                    format!(
                        "unsupported endpoint_type '{t}'; expected http, load_balance or failover"
                    ),
                );
                return None;
            }
            Some(None) => return None,
            None => GroupKind::LoadBalance,
        };
        let security = config.get("endpoint_security");
        for (env, slot) in [
            ("production", &mut defaults.production),
            ("sandbox", &mut defaults.sandbox),
        ] {
            let mut urls = Vec::new();
            let endpoints_key = format!("{env}_endpoints");
            if let Some(value) = config.get(endpoints_key.as_str()) {
                collect_urls(r, value, &field.key(&endpoints_key), &mut urls);
            }
            if kind == GroupKind::Failover {
                let failovers_key = format!("{env}_failovers");
                if let Some(value) = config.get(failovers_key.as_str()) {
                    collect_urls(r, value, &field.key(&failovers_key), &mut urls);
                }
            }
            if urls.is_empty() {
                continue;
            }
            let basic_auth = security.and_then(|s| untagged(s).get(env)).and_then(|s| {
                read_endpoint_security(r, s, &field.key("endpoint_security").key(env))
            });
            *slot = Some(EndpointSpec {
                kind,
                urls,
                timeout_ms: None,
                retry: None,
                circuit_breakers: None,
                basic_auth,
            });
        }
    }
    Some(defaults)
}

/// `{url: ...}` or a list of them.
fn collect_urls(
    r: &Reader<'_>,
    value: &Value,
    field: &FieldPath,
    urls: &mut Vec<super::url::UpstreamUrl>,
) {
    let mut one = |item: &Value, field: &FieldPath| {
        let Some(map) = r.mapping(item, field) else {
            return;
        };
        let Some(url) = map.get("url") else {
            r.error(field, "endpoint entry needs 'url'");
            return;
        };
        let Some(text) = r.string(url, &field.key("url")) else {
            return;
        };
        match parse_url(text) {
            Ok(url) => urls.push(url),
            Err(e) => r.error(&field.key("url"), format!("'{text}' {e}")),
        }
    };
    match untagged(value) {
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                one(item, &field.index(i));
            }
        }
        _ => one(value, field),
    }
}

fn read_endpoint_security(r: &Reader<'_>, value: &Value, field: &FieldPath) -> Option<BasicAuth> {
    let map = r.mapping(value, field)?;
    let enabled = map
        .get("enabled")
        .and_then(|v| r.boolean(v, &field.key("enabled")))
        .unwrap_or(false);
    if !enabled {
        return None;
    }
    let kind = map
        .get("type")
        .and_then(|v| r.string(v, &field.key("type")))
        .unwrap_or("");
    if !kind.eq_ignore_ascii_case("basic") {
        r.error(
            &field.key("type"),
            format!("unsupported endpoint security type '{kind}'; only BASIC is supported"),
        );
        return None;
    }
    let username = map
        .get("username")
        .and_then(|v| r.text(v, &field.key("username")))?;
    let password = map
        .get("password")
        .and_then(|v| r.text(v, &field.key("password")))?;
    Some(BasicAuth { username, password })
}

/// Every certificate of the `.pem`, `.crt` and `.cer` files in `Client-certificates/`, in
/// file name order (`client_certificates.yaml`, with aliases and throttling tiers, is not
/// needed to match a certificate). No directory: none.
fn read_client_certificates(dir: &Path) -> Result<Vec<Vec<u8>>, Vec<ConfigError>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| {
                ["pem", "crt", "cer"]
                    .iter()
                    .any(|x| e.eq_ignore_ascii_case(x))
            })
        })
        .collect();
    files.sort();
    let mut certificates = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let bytes = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(e) => {
                errors.push(ConfigError::file(&file, format!("cannot read: {e}")));
                continue;
            }
        };
        match CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>() {
            Ok(found) if found.is_empty() => errors.push(ConfigError::file(
                &file,
                "no PEM certificate in this client certificate file",
            )),
            Ok(found) => certificates.extend(found.into_iter().map(|c| c.to_vec())),
            Err(e) => errors.push(ConfigError::file(
                &file,
                format!("not a PEM client certificate: {e}"),
            )),
        }
    }
    if errors.is_empty() {
        Ok(certificates)
    } else {
        Err(errors)
    }
}
