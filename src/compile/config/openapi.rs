//! Reads one API definition (OpenAPI 3.x, Swagger 2.0, or an AsyncAPI 2.x WebSocket API;
//! YAML or JSON) with the `x-wso2-*` extensions and fallbacks of BEHAVIOUR.md 1.3 and 7, into
//! an [`ApiSpec`]: base path, resources and the endpoint objects that apply to each, after
//! precedence has been resolved.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_yaml::{Mapping, Value};

use super::cors::{read_wso2_cors, CorsSpec};
use super::document::{untagged, Document, Reader};
use super::endpoint::{read_endpoint, read_named_endpoints, EndpointSpec, NamedEndpoints};
use super::error::{ConfigError, ConfigWarning, FieldPath};
use super::locate::line_of;
use super::security::{
    read_level_security, read_mutual_tls, read_schemes, resolve, LevelSecurity, MutualTlsSpec,
    ProjectSecurity, ResourceSecurity, Schemes, SecurityLevels,
};
use super::url::{parse_url, Scheme};
use crate::http::Method;
use crate::route::uri_mapping::UriMapping;

/// One API, ready to be compiled into the snapshot.
#[derive(Clone, Debug)]
pub struct ApiSpec {
    pub file: PathBuf,
    pub name: String,
    pub version: String,
    /// `/` or a path without trailing slash; requests under it belong to this API.
    pub base_path: String,
    /// Where the base path came from, for errors that involve two APIs.
    pub base_path_origin: ConfigError,
    /// The header that carries the token (`x-wso2-auth-header`).
    pub auth_header: String,
    pub cors: Option<CorsSpec>,
    pub resources: Vec<ResourceSpec>,
    /// `x-wso2-mutual-ssl`, or api.yaml's `mutualssl` entries.
    pub mutual_tls: Option<MutualTlsSpec>,
    /// DER of the certificates in an apictl project's `Client-certificates/`: when there are
    /// any, the client certificate must be one of them.
    pub client_certificates: Vec<Vec<u8>>,
    /// `x-wso2-http2-backend-enabled: true`: the API's endpoints are reached with HTTP/2
    /// (ALPN `h2` on https, prior knowledge on http).
    pub http2_backend: bool,
    /// `x-wso2-throttling-tier` (or `x-throttling-tier`) at the root: limits the API as a
    /// whole.
    pub throttling_tier: Option<TierRef>,
}

/// A tier named in a definition, with where it was named (for the error when the gateway
/// config has no such tier).
#[derive(Clone, Debug)]
pub struct TierRef {
    pub name: String,
    pub origin: ConfigError,
}

/// One operation: a path template and a method, with its endpoints resolved.
#[derive(Clone, Debug)]
pub struct ResourceSpec {
    /// As written in the definition, minus a trailing slash (`/` stays `/`).
    pub template: String,
    pub method: Method,
    pub production: Option<EndpointSpec>,
    pub sandbox: Option<EndpointSpec>,
    pub secured: bool,
    /// What a secured resource accepts (empty alternatives when it is not secured).
    pub security: ResourceSecurity,
    /// `x-uri-mapping` of an AsyncAPI channel: the upstream path instead of the request's.
    pub uri_mapping: Option<UriMapping>,
    /// The operation's own tier: limits this operation alone, instead of the API's tier.
    pub throttling_tier: Option<TierRef>,
}

/// What an apictl project's `api.yaml` contributes; the definition's extensions win.
#[derive(Clone, Debug, Default)]
pub struct ProjectDefaults {
    pub name: Option<String>,
    pub context: Option<String>,
    pub version: Option<String>,
    pub production: Option<EndpointSpec>,
    pub sandbox: Option<EndpointSpec>,
    /// `data.securityScheme`.
    pub security: ProjectSecurity,
    /// The certificates of `Client-certificates/` (DER).
    pub client_certificates: Vec<Vec<u8>>,
}

const DEFAULT_AUTH_HEADER: &str = "Authorization";

/// The `x-wso2-*` keys shardgate reads; others are kept and ignored with a warning.
const KNOWN_API_EXTENSIONS: &[&str] = &[
    "x-wso2-basePath",
    "x-wso2-production-endpoints",
    "x-wso2-sandbox-endpoints",
    "x-wso2-endpoints",
    "x-wso2-disable-security",
    "x-wso2-auth-header",
    "x-wso2-cors",
    "x-wso2-application-security",
    "x-wso2-mutual-ssl",
    "x-wso2-transports",
    "x-wso2-http2-backend-enabled",
    "x-wso2-throttling-tier",
];
const KNOWN_RESOURCE_EXTENSIONS: &[&str] = &[
    "x-wso2-production-endpoints",
    "x-wso2-sandbox-endpoints",
    "x-wso2-disable-security",
    "x-wso2-application-security",
    // Refused below with its own error, not warned about.
    "x-wso2-mutual-ssl",
    "x-wso2-throttling-tier",
];

/// The tier extensions, in the order they are looked for: Choreo Connect's, then the older
/// Microgateway's.
const TIER_EXTENSIONS: [&str; 2] = ["x-wso2-throttling-tier", "x-throttling-tier"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    OpenApi3,
    Swagger2,
    /// WebSocket APIs: channels are `GET` resources (the opening handshake).
    AsyncApi2,
}

/// Keys of an AsyncAPI channel or operation that shardgate reads (others are ignored, as
/// message schemas and bindings are the endpoints' business).
const KNOWN_CHANNEL_EXTENSIONS: &[&str] = &["x-wso2-disable-security"];

/// Endpoint objects found at one level (API, path item or operation).
#[derive(Default)]
struct LevelEndpoints {
    production: Option<EndpointSpec>,
    sandbox: Option<EndpointSpec>,
    /// `servers` at this level (OpenAPI 3), as the production fallback.
    servers: Option<EndpointSpec>,
    security: LevelSecurity,
}

/// Reads a definition; `Err` carries every problem found.
pub fn read_definition(
    doc: &Document,
    project: Option<&ProjectDefaults>,
) -> (Result<ApiSpec, Vec<ConfigError>>, Vec<ConfigWarning>) {
    let r = Reader::new(doc);
    let api = read_api(&r, project);
    let (errors, warnings) = r.finish();
    match api {
        Some(api) if errors.is_empty() => (Ok(api), warnings),
        _ if errors.is_empty() => {
            // Every path that returns None records an error; keep that promise visible.
            let error = ConfigError::file(&doc.file, "could not be read as an API definition");
            (Err(vec![error]), warnings)
        }
        _ => (Err(errors), warnings),
    }
}

fn read_api(r: &Reader<'_>, project: Option<&ProjectDefaults>) -> Option<ApiSpec> {
    let root_path = FieldPath::root();
    let root = r.mapping(&r.doc.root, &root_path)?;
    let flavor = flavor(r, root)?;

    let named = match root.get("x-wso2-endpoints") {
        Some(value) => read_named_endpoints(r, value, &root_path.key("x-wso2-endpoints")),
        None => NamedEndpoints::new(),
    };
    warn_unknown_extensions(r, root, &root_path, KNOWN_API_EXTENSIONS);

    if let Some(value) = root.get("x-wso2-transports") {
        check_transports(r, value, &root_path.key("x-wso2-transports"));
    }
    let schemes = read_schemes(r, root, flavor == Flavor::Swagger2);
    let mut api_level = read_level(r, root, &root_path, flavor, &named, &schemes, false);
    // The definition's own extension wins over api.yaml.
    let mutual_tls = match root.get("x-wso2-mutual-ssl") {
        Some(value) => read_mutual_tls(r, value, &root_path.key("x-wso2-mutual-ssl")),
        None => project.and_then(|p| p.security.mutual_tls.clone()),
    };
    let auth_header = match root.get("x-wso2-auth-header") {
        Some(value) => read_header_name(r, value, &root_path.key("x-wso2-auth-header"))?,
        None => DEFAULT_AUTH_HEADER.to_owned(),
    };
    let cors = root
        .get("x-wso2-cors")
        .and_then(|v| read_wso2_cors(r, v, &root_path.key("x-wso2-cors")));
    let http2_backend = root
        .get("x-wso2-http2-backend-enabled")
        .and_then(|v| r.boolean(v, &root_path.key("x-wso2-http2-backend-enabled")))
        .unwrap_or(false);
    let throttling_tier = read_tier(r, root, &root_path);

    // apictl's api.yaml endpoints stand in for absent API-level extensions.
    if let Some(project) = project {
        if api_level.production.is_none() {
            api_level.production = project.production.clone();
        }
        if api_level.sandbox.is_none() {
            api_level.sandbox = project.sandbox.clone();
        }
    }
    // A root that names only sandbox endpoints gets no production endpoint from fallbacks.
    let root_sandbox_only = root.contains_key("x-wso2-sandbox-endpoints")
        && !root.contains_key("x-wso2-production-endpoints");
    let fallbacks_allowed = !root_sandbox_only;
    let api_fallback = match flavor {
        Flavor::Swagger2 => swagger2_endpoint(r, root),
        Flavor::OpenApi3 => api_level.servers.take(),
        Flavor::AsyncApi2 => {
            // Choreo Connect reads `servers.production.url` and `servers.sandbox.url`.
            let (production, sandbox) = asyncapi_servers(r, root);
            if api_level.sandbox.is_none() {
                api_level.sandbox = sandbox;
            }
            production
        }
    };

    let (base_path, base_path_field) = base_path(r, root, flavor, project)?;
    let base_path_origin = ConfigError::new(&r.doc.file, &base_path_field, "").at_line(line_of(
        &r.doc.text,
        r.doc.syntax,
        base_path_field.segments(),
    ));

    let info = root.get("info").and_then(|v| untagged(v).as_mapping());
    let text_of = |key: &str| {
        info.and_then(|i| i.get(key))
            .and_then(|v| match untagged(v) {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
    };
    let name = project
        .and_then(|p| p.name.clone())
        .or_else(|| text_of("title"))
        .unwrap_or_else(|| {
            r.doc
                .file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let version = text_of("version")
        .or_else(|| project.and_then(|p| p.version.clone()))
        .unwrap_or_default();

    let context = Context {
        api: &api_level,
        api_fallback: api_fallback.as_ref().filter(|_| fallbacks_allowed),
        fallbacks_allowed,
        flavor,
        named: &named,
        schemes: &schemes,
        project: project.and_then(|p| p.security.application.as_ref()),
        mutual_tls: mutual_tls.as_ref().map(|m| m.mode),
    };
    let resources = match flavor {
        Flavor::AsyncApi2 => read_channels(r, root, &context),
        Flavor::OpenApi3 | Flavor::Swagger2 => read_paths(r, root, &context),
    };

    Some(ApiSpec {
        file: r.doc.file.clone(),
        name,
        version,
        base_path,
        base_path_origin,
        auth_header,
        cors,
        resources,
        mutual_tls,
        http2_backend,
        client_certificates: project
            .map(|p| p.client_certificates.clone())
            .unwrap_or_default(),
        throttling_tier,
    })
}

/// The tier a level names (`x-wso2-throttling-tier`, else `x-throttling-tier`).
fn read_tier(r: &Reader<'_>, map: &Mapping, field: &FieldPath) -> Option<TierRef> {
    let (key, value) = TIER_EXTENSIONS
        .iter()
        .find_map(|key| map.get(*key).map(|value| (*key, value)))?;
    let field = field.key(key);
    let name = r.string(value, &field)?.trim();
    if name.is_empty() {
        r.error(&field, "names no tier");
        return None;
    }
    Some(TierRef {
        name: name.to_owned(),
        origin: r.doc.error(&field, ""),
    })
}

/// A tier limits an API or one operation; on a path item it would be ambiguous (one limit
/// for all its operations, or one each?), and ignoring it would leave them unlimited.
fn refuse_path_item_tier(r: &Reader<'_>, item: &Mapping, field: &FieldPath) {
    for key in TIER_EXTENSIONS {
        if item.contains_key(key) {
            r.error(
                &field.key(key),
                "a throttling tier applies to the API (root) or to an operation, not to a path item",
            );
        }
    }
}

struct Context<'a> {
    api: &'a LevelEndpoints,
    api_fallback: Option<&'a EndpointSpec>,
    fallbacks_allowed: bool,
    flavor: Flavor,
    named: &'a NamedEndpoints,
    schemes: &'a Schemes,
    project: Option<&'a super::security::ApplicationSecurity>,
    mutual_tls: Option<super::security::MutualTls>,
}

fn flavor(r: &Reader<'_>, root: &Mapping) -> Option<Flavor> {
    let version_text = |key: &str| {
        root.get(key).map(|v| match untagged(v) {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        })
    };
    if let Some(version) = version_text("openapi") {
        if version.starts_with("3.") {
            return Some(Flavor::OpenApi3);
        }
        r.error(
            &FieldPath::root().key("openapi"),
            format!("unsupported OpenAPI version '{version}'; expected 3.x"),
        );
        return None;
    }
    if let Some(version) = version_text("asyncapi") {
        if version.starts_with("2.") {
            return Some(Flavor::AsyncApi2);
        }
        r.error(
            &FieldPath::root().key("asyncapi"),
            format!("unsupported AsyncAPI version '{version}'; expected 2.x"),
        );
        return None;
    }
    if let Some(version) = version_text("swagger") {
        if version == "2.0" {
            return Some(Flavor::Swagger2);
        }
        r.error(
            &FieldPath::root().key("swagger"),
            format!("unsupported Swagger version '{version}'; expected 2.0"),
        );
        return None;
    }
    r.error(
        &FieldPath::root(),
        "not an OpenAPI 3.x, Swagger 2.0 or AsyncAPI 2.x definition (no 'openapi', 'swagger' or 'asyncapi' field)",
    );
    None
}

fn warn_unknown_extensions(r: &Reader<'_>, map: &Mapping, field: &FieldPath, known: &[&str]) {
    for (key, _) in map {
        if let Some(key) = key.as_str() {
            if key.starts_with("x-wso2-") && !known.contains(&key) {
                r.warn(
                    &field.key(key),
                    "extension not supported by shardgate; kept and ignored",
                );
            }
        }
    }
}

/// The x-wso2 endpoint extensions, `servers` and the security keys of one level.
fn read_level(
    r: &Reader<'_>,
    map: &Mapping,
    field: &FieldPath,
    flavor: Flavor,
    named: &NamedEndpoints,
    schemes: &Schemes,
    operation: bool,
) -> LevelEndpoints {
    let endpoint = |key: &str| {
        map.get(key)
            .and_then(|value| read_endpoint(r, value, &field.key(key), named))
    };
    LevelEndpoints {
        production: endpoint("x-wso2-production-endpoints"),
        sandbox: endpoint("x-wso2-sandbox-endpoints"),
        servers: match (flavor, map.get("servers")) {
            (Flavor::OpenApi3, Some(servers)) => {
                servers_endpoint(r, servers, &field.key("servers"))
            }
            _ => None,
        },
        security: read_level_security(r, map, field, schemes, operation),
    }
}

/// OpenAPI 3 `servers`: every absolute URL, as one load_balance group. Relative URLs name
/// no upstream and are skipped.
fn servers_endpoint(r: &Reader<'_>, value: &Value, field: &FieldPath) -> Option<EndpointSpec> {
    let items = r.sequence(value, field)?;
    let mut urls = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = field.index(i);
        let Some(url) = absolute_server_url(r, item, &path) else {
            continue;
        };
        match parse_url(&url) {
            Ok(url) => urls.push(url),
            Err(e) => r.error(&path.key("url"), format!("'{url}' {e}")),
        }
    }
    (!urls.is_empty()).then_some(EndpointSpec::plain(urls))
}

/// A server object's URL with `{variables}` replaced by their defaults, when it is absolute.
/// Whether it is absolute is decided after the substitution: a variable may hold the scheme
/// and host (`{base}/api/v1` with `base` defaulting to `https://host:8443`, as Choreo
/// Connect's own definitions write it).
fn absolute_server_url(r: &Reader<'_>, item: &Value, field: &FieldPath) -> Option<String> {
    let server = r.mapping(item, field)?;
    let url = r.string(server.get("url")?, &field.key("url"))?;
    let mut resolved = url.to_owned();
    if let Some(Value::Mapping(variables)) = server.get("variables").map(untagged) {
        for (name, variable) in variables {
            let (Some(name), Some(default)) = (
                name.as_str(),
                untagged(variable)
                    .get("default")
                    .and_then(|d| untagged(d).as_str()),
            ) else {
                continue;
            };
            resolved = resolved.replace(&format!("{{{name}}}"), default);
        }
    }
    // A relative URL names no upstream, unless an unresolved variable at its start could
    // have held the scheme and host: that one cannot be classified, so it is an error.
    if !resolved.contains("://") && !resolved.starts_with('{') {
        return None;
    }
    if resolved.contains('{') {
        r.error(
            &field.key("url"),
            format!("'{url}' has a variable without a default"),
        );
        return None;
    }
    Some(resolved)
}

/// Swagger 2 `schemes` + `host` + `basePath` as a one-URL group (https wins if listed).
fn swagger2_endpoint(r: &Reader<'_>, root: &Mapping) -> Option<EndpointSpec> {
    let host = root.get("host").and_then(|h| untagged(h).as_str())?;
    let schemes: Vec<String> = root
        .get("schemes")
        .and_then(|s| untagged(s).as_sequence())
        .map(|s| {
            s.iter()
                .filter_map(|v| v.as_str().map(str::to_ascii_lowercase))
                .collect()
        })
        .unwrap_or_default();
    let scheme = if schemes.iter().any(|s| s == "https")
        || (!schemes.is_empty() && !schemes.iter().any(|s| s == "http"))
    {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let base = root
        .get("basePath")
        .and_then(|b| untagged(b).as_str())
        .unwrap_or("");
    let text = format!("{}://{host}{base}", scheme.as_str());
    match parse_url(&text) {
        Ok(url) => Some(EndpointSpec::plain(vec![url])),
        Err(e) => {
            r.error(
                &FieldPath::root().key("host"),
                format!("'{text}' (from host, basePath and schemes) {e}"),
            );
            None
        }
    }
}

/// The gateway base path and the field it came from.
fn base_path(
    r: &Reader<'_>,
    root: &Mapping,
    flavor: Flavor,
    project: Option<&ProjectDefaults>,
) -> Option<(String, FieldPath)> {
    let root_path = FieldPath::root();
    if let Some(value) = root.get("x-wso2-basePath") {
        let field = root_path.key("x-wso2-basePath");
        let text = r.string(value, &field)?;
        return normalize_base_path(r, text, &field).map(|b| (b, field));
    }
    if flavor == Flavor::Swagger2 {
        if let Some(value) = root.get("basePath") {
            let field = root_path.key("basePath");
            let text = r.string(value, &field)?;
            return normalize_base_path(r, text, &field).map(|b| (b, field));
        }
    } else if let Some(Value::Sequence(servers)) = root.get("servers").map(untagged) {
        for (i, server) in servers.iter().enumerate() {
            let field = root_path.key("servers").index(i);
            let Some(url) = absolute_server_url(r, server, &field) else {
                continue;
            };
            let Ok(url) = parse_url(&url) else { break };
            if url.path.is_empty() {
                break;
            }
            return normalize_base_path(r, &url.path, &field.key("url"))
                .map(|b| (b, field.key("url")));
        }
    }
    if let Some(context) = project.and_then(|p| p.context.as_deref()) {
        let version = project.and_then(|p| p.version.as_deref()).unwrap_or("");
        let joined = if context.contains("{version}") {
            context.replace("{version}", version)
        } else if version.is_empty() {
            context.to_owned()
        } else {
            format!("{}/{version}", context.trim_end_matches('/'))
        };
        return normalize_base_path(r, &joined, &root_path).map(|b| (b, root_path));
    }
    r.error(
        &root_path,
        "no base path: set x-wso2-basePath (or Swagger 2 basePath, or an absolute OpenAPI 3 server URL with a path)",
    );
    None
}

fn normalize_base_path(r: &Reader<'_>, text: &str, field: &FieldPath) -> Option<String> {
    if !text.starts_with('/') {
        r.error(field, format!("base path '{text}' must start with '/'"));
        return None;
    }
    if text
        .bytes()
        .any(|b| b <= b' ' || b"?#{}*".contains(&b) || b == 0x7f)
        || text.contains("//")
    {
        r.error(
            field,
            format!("base path '{text}' must be plain path segments"),
        );
        return None;
    }
    let trimmed = text.trim_end_matches('/');
    Some(if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    })
}

fn read_header_name(r: &Reader<'_>, value: &Value, field: &FieldPath) -> Option<String> {
    let name = r.string(value, field)?;
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        r.error(field, format!("'{name}' is not a valid header name"));
        return None;
    }
    Some(name.to_owned())
}

fn read_paths(r: &Reader<'_>, root: &Mapping, cx: &Context<'_>) -> Vec<ResourceSpec> {
    let paths_field = FieldPath::root().key("paths");
    let Some(paths_value) = root.get("paths") else {
        r.error(&FieldPath::root(), "the definition has no 'paths'");
        return Vec::new();
    };
    let Some(paths) = r.mapping(paths_value, &paths_field) else {
        return Vec::new();
    };
    let mut resources = Vec::new();
    // Canonical template + method -> first field that defined it.
    let mut seen: HashMap<(String, Method), FieldPath> = HashMap::new();
    for (template, field, item) in r.entries(paths, &paths_field) {
        if template.starts_with("x-") {
            continue;
        }
        let Some(canonical) = check_template(r, &template, &field) else {
            continue;
        };
        let Some(item) = r.mapping(item, &field) else {
            continue;
        };
        if item.contains_key("$ref") {
            r.warn(
                &field.key("$ref"),
                "path item references are not followed; define the operations inline",
            );
        }
        refuse_resource_mutual_tls(r, item, &field);
        refuse_path_item_tier(r, item, &field);
        warn_unknown_extensions(r, item, &field, KNOWN_RESOURCE_EXTENSIONS);
        let path_level = read_level(r, item, &field, cx.flavor, cx.named, cx.schemes, false);
        for (key, op_field, op) in r.entries(item, &field) {
            let Some(method) = Method::from_operation_key(&key) else {
                continue;
            };
            let Some(op) = r.mapping(op, &op_field) else {
                continue;
            };
            refuse_resource_mutual_tls(r, op, &op_field);
            warn_unknown_extensions(r, op, &op_field, KNOWN_RESOURCE_EXTENSIONS);
            let op_level = read_level(r, op, &op_field, cx.flavor, cx.named, cx.schemes, true);
            if let Some(first) = seen.insert((canonical.clone(), method), op_field.clone()) {
                r.error(&op_field, format!("duplicates the resource at {first} (templates differ only in parameter names)"));
                continue;
            }
            if let Some(mut resource) =
                resolve_resource(r, &template, method, &op_field, &op_level, &path_level, cx)
            {
                resource.throttling_tier = read_tier(r, op, &op_field);
                resources.push(resource);
            }
        }
    }
    resources
}

/// Applies the precedence rules: operation > path item > API for each environment, then the
/// fallbacks for production only.
fn resolve_resource(
    r: &Reader<'_>,
    template: &str,
    method: Method,
    field: &FieldPath,
    op: &LevelEndpoints,
    path: &LevelEndpoints,
    cx: &Context<'_>,
) -> Option<ResourceSpec> {
    let explicit_production = op
        .production
        .as_ref()
        .or(path.production.as_ref())
        .or(cx.api.production.as_ref());
    let fallback = || {
        if !cx.fallbacks_allowed {
            return None;
        }
        op.servers
            .as_ref()
            .or(path.servers.as_ref())
            .or(cx.api_fallback)
    };
    let production = explicit_production.or_else(fallback).cloned();
    let sandbox = op
        .sandbox
        .as_ref()
        .or(path.sandbox.as_ref())
        .or(cx.api.sandbox.as_ref())
        .cloned();
    if production.is_none() && sandbox.is_none() {
        if !r.has_errors() {
            r.error(field, "no endpoint in any environment: add x-wso2-production-endpoints (operation, path or API level) or servers");
        }
        return None;
    }
    let (secured, security) = resolve(
        r,
        &SecurityLevels {
            operation: &op.security,
            path: &path.security,
            api: &cx.api.security,
            project: cx.project,
            mutual_tls: cx.mutual_tls,
        },
    )?;
    Some(ResourceSpec {
        template: trim_template(template).to_owned(),
        method,
        production,
        sandbox,
        secured,
        security,
        uri_mapping: None,
        throttling_tier: None,
    })
}

/// AsyncAPI `servers.production` / `servers.sandbox`: one-URL groups (ws, wss, http, https).
fn asyncapi_servers(
    r: &Reader<'_>,
    root: &Mapping,
) -> (Option<EndpointSpec>, Option<EndpointSpec>) {
    let field = FieldPath::root().key("servers");
    let Some(servers) = root.get("servers").and_then(|v| r.mapping(v, &field)) else {
        return (None, None);
    };
    let server = |name: &str| {
        let path = field.key(name);
        let server = r.mapping(servers.get(name)?, &path)?;
        let url_field = path.key("url");
        let url = r.string(server.get("url")?, &url_field)?;
        match parse_url(url) {
            Ok(url) => Some(EndpointSpec::plain(vec![url])),
            Err(e) => {
                r.error(&url_field, format!("'{url}' {e}"));
                None
            }
        }
    };
    (server("production"), server("sandbox"))
}

/// AsyncAPI channels: each is a `GET` resource (the WebSocket handshake) at the channel's
/// path, with the extensions of its `publish` operation, else of its `subscribe` one (Choreo
/// Connect's order): `x-scopes`, `x-uri-mapping`; the channel's `x-auth-type: None` or
/// `x-wso2-disable-security: true` opens it.
fn read_channels(r: &Reader<'_>, root: &Mapping, cx: &Context<'_>) -> Vec<ResourceSpec> {
    let channels_field = FieldPath::root().key("channels");
    let Some(channels) = root
        .get("channels")
        .and_then(|v| r.mapping(v, &channels_field))
    else {
        r.error(
            &FieldPath::root(),
            "the AsyncAPI definition has no 'channels'",
        );
        return Vec::new();
    };
    let mut resources = Vec::new();
    let mut seen: HashMap<String, FieldPath> = HashMap::new();
    for (channel, field, item) in r.entries(channels, &channels_field) {
        let Some(canonical) = check_template(r, &channel, &field) else {
            continue;
        };
        let Some(item) = r.mapping(item, &field) else {
            continue;
        };
        if item.contains_key("$ref") {
            r.error(
                &field.key("$ref"),
                "channel references are not followed; define the channel inline",
            );
            continue;
        }
        warn_unknown_extensions(r, item, &field, KNOWN_CHANNEL_EXTENSIONS);
        let operation = ["publish", "subscribe"]
            .into_iter()
            .find_map(|key| item.get(key).map(|op| (field.key(key), op)));
        let Some((op_field, op)) = operation else {
            r.warn(
                &field,
                "a channel with neither publish nor subscribe is not served",
            );
            continue;
        };
        let Some(op) = r.mapping(op, &op_field) else {
            continue;
        };
        if let Some(first) = seen.insert(canonical, field.clone()) {
            r.error(
                &field,
                format!("duplicates the channel at {first} (they differ only in parameter names)"),
            );
            continue;
        }
        // Channel-level keys (x-auth-type, x-wso2-disable-security) act as a path item's;
        // the operation's (x-scopes) as an operation's.
        let path_level = read_level(r, item, &field, cx.flavor, cx.named, cx.schemes, false);
        let op_level = read_level(r, op, &op_field, cx.flavor, cx.named, cx.schemes, true);
        let Some(mut resource) =
            resolve_resource(r, &channel, Method::Get, &field, &op_level, &path_level, cx)
        else {
            continue;
        };
        if let Some(value) = op.get("x-uri-mapping") {
            let mapping_field = op_field.key("x-uri-mapping");
            if let Some(text) = r.string(value, &mapping_field) {
                match UriMapping::compile(&resource.template, text) {
                    Ok(mapping) => resource.uri_mapping = Some(mapping),
                    Err(e) => r.error(&mapping_field, e),
                }
            }
        }
        resources.push(resource);
    }
    resources
}

/// `x-wso2-transports`: every API is served on every listener (Choreo Connect does not read
/// the key either), so a list with `http` changes nothing; one without it asks for a
/// restriction to HTTPS that would not be enforced, and is refused.
fn check_transports(r: &Reader<'_>, value: &Value, field: &FieldPath) {
    let Some(items) = r.sequence(value, field) else {
        return;
    };
    let mut http = false;
    for (i, item) in items.iter().enumerate() {
        match r.string(item, &field.index(i)) {
            Some(t) if t.eq_ignore_ascii_case("http") => http = true,
            Some(t) if t.eq_ignore_ascii_case("https") => {}
            Some(t) => r.error(
                &field.index(i),
                format!("unknown transport '{t}'; expected http or https"),
            ),
            None => {}
        }
    }
    if !http {
        r.error(
            field,
            "restricting an API to HTTPS is not enforced by shardgate (every API is served on every listener); remove x-wso2-transports or list http too",
        );
    }
}

/// Client certificates are checked per connection and API, so a resource cannot ask for its
/// own mode; ignoring the key would serve the resource without what it asks for.
fn refuse_resource_mutual_tls(r: &Reader<'_>, map: &Mapping, field: &FieldPath) {
    if map.contains_key("x-wso2-mutual-ssl") {
        r.error(
            &field.key("x-wso2-mutual-ssl"),
            "x-wso2-mutual-ssl applies to a whole API: set it at the root of the definition",
        );
    }
}

fn trim_template(template: &str) -> &str {
    let trimmed = template.trim_end_matches('/');
    if trimmed.is_empty() {
        "/"
    } else {
        trimmed
    }
}

/// Validates a path template and returns its canonical form (parameter names erased), so
/// that `/pet/{id}` and `/pet/{petId}` are known to be the same resource.
fn check_template(r: &Reader<'_>, template: &str, field: &FieldPath) -> Option<String> {
    if !template.starts_with('/') {
        r.error(field, format!("path '{template}' must start with '/'"));
        return None;
    }
    if template
        .bytes()
        .any(|b| b <= b' ' || b == b'?' || b == b'#' || b == 0x7f)
    {
        r.error(
            field,
            format!("path '{template}' contains a character not allowed in a path template"),
        );
        return None;
    }
    let trimmed = trim_template(template);
    let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
    let mut canonical = String::with_capacity(trimmed.len());
    for (i, segment) in segments.iter().enumerate() {
        if trimmed == "/" {
            break;
        }
        canonical.push('/');
        if segment.is_empty() {
            r.error(field, format!("path '{template}' has an empty segment"));
            return None;
        }
        if *segment == "*" {
            if i + 1 != segments.len() {
                r.error(
                    field,
                    format!("path '{template}': '*' is only allowed as the last segment"),
                );
                return None;
            }
            canonical.push('*');
            continue;
        }
        match crate::route::template::erase_params(segment) {
            Some(erased) => canonical.push_str(&erased),
            None => {
                r.error(
                    field,
                    format!(
                        "path '{template}': segment '{segment}' has unbalanced or empty '{{}}'"
                    ),
                );
                return None;
            }
        }
    }
    if canonical.is_empty() {
        canonical.push('/');
    }
    Some(canonical)
}
