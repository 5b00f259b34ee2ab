//! The security a definition asks for, as plain data: OpenAPI 3 `security` with
//! `components.securitySchemes`, Swagger 2 `security` with `securityDefinitions`, WSO2's
//! `x-scopes`, `x-auth-type`, `x-wso2-disable-security`, `x-wso2-application-security` and
//! `x-wso2-mutual-ssl`, and an apictl project's `securityScheme`. Anything the gateway would not
//! enforce is an error here, never a warning: a definition is served with every mechanism it
//! names, or not at all.

use std::collections::HashMap;

use serde_yaml::{Mapping, Value};

use super::document::{untagged, Reader};
use super::error::{ConfigError, FieldPath};

/// The header and query parameter of Choreo Connect's API keys when no scheme names one.
pub const DEFAULT_API_KEY_NAME: &str = "apikey";

/// One way to satisfy a resource.
#[derive(Clone, Debug)]
pub enum CredentialSpec {
    /// A JWT in the API's token header carrying every one of `scopes`.
    Bearer { scopes: Vec<String> },
    /// A JWT-format API key in a header or query parameter.
    ApiKey {
        location: ApiKeyIn,
        name: String,
        /// Where the definition asks for it, for errors found later (no API-key issuer).
        origin: ConfigError,
    },
}

/// Where an API key is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApiKeyIn {
    Header,
    Query,
}

/// A resource's security after precedence: any alternative suffices.
#[derive(Clone, Debug, Default)]
pub struct ResourceSecurity {
    pub alternatives: Vec<CredentialSpec>,
    /// Mandatory mutual TLS alone admits a request (`optional: true` application security).
    pub application_optional: bool,
}

/// `x-wso2-mutual-ssl` (or api.yaml's `mutualssl`, `mutualssl_mandatory`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MutualTls {
    Optional,
    Mandatory,
}

/// An API's mutual TLS and where it was asked for.
#[derive(Clone, Debug)]
pub struct MutualTlsSpec {
    pub mode: MutualTls,
    pub origin: ConfigError,
}

/// `x-wso2-application-security` (or the application types of api.yaml's `securityScheme`).
#[derive(Clone, Debug)]
pub struct ApplicationSecurity {
    pub oauth2: bool,
    pub api_key: bool,
    /// Application security may be skipped when mandatory mutual TLS succeeds.
    pub optional: bool,
    pub origin: ConfigError,
}

/// A security scheme as far as enforcement goes.
#[derive(Clone, Debug)]
enum Scheme {
    /// A JWT `Bearer` token; `scoped` for oauth2 and openIdConnect (other schemes carry no
    /// scopes).
    Bearer {
        scoped: bool,
    },
    ApiKey {
        location: ApiKeyIn,
        name: String,
    },
    /// Something the gateway does not enforce; the text says what and why.
    Unsupported(String),
}

/// The named schemes of a definition. A scheme only matters once a requirement names it:
/// an unsupported scheme nobody uses is no error.
#[derive(Clone, Debug, Default)]
pub struct Schemes(HashMap<String, Scheme>);

/// The security keys of one level (API root, path item or operation).
#[derive(Clone, Debug, Default)]
pub struct LevelSecurity {
    /// `security` or `x-scopes`; `None` when neither is given.
    requirements: Option<Vec<CredentialSpec>>,
    /// `Some(true)`: no credential needed; `Some(false)`: explicitly secured.
    disable: Option<bool>,
    application: Option<ApplicationSecurity>,
}

/// Reads `components.securitySchemes` (OpenAPI 3) or `securityDefinitions` (Swagger 2).
pub fn read_schemes(r: &Reader<'_>, root: &Mapping, swagger2: bool) -> Schemes {
    let mut schemes = Schemes::default();
    let (value, field) = if swagger2 {
        (
            root.get("securityDefinitions"),
            FieldPath::root().key("securityDefinitions"),
        )
    } else {
        let components = root
            .get("components")
            .and_then(|c| untagged(c).as_mapping());
        (
            components.and_then(|c| c.get("securitySchemes")),
            FieldPath::root().key("components").key("securitySchemes"),
        )
    };
    let Some(map) = value.and_then(|v| r.mapping(v, &field)) else {
        return schemes;
    };
    for (name, path, value) in r.entries(map, &field) {
        let Some(scheme) = r.mapping(value, &path) else {
            continue;
        };
        let text = |key: &str| scheme.get(key).and_then(|v| untagged(v).as_str());
        let kind = text("type").unwrap_or("");
        let parsed = if scheme.contains_key("$ref") {
            Scheme::Unsupported(format!(
                "security scheme '{name}' is a $ref, which is not followed; define it inline"
            ))
        } else if kind == "oauth2" || kind == "openIdConnect" {
            Scheme::Bearer { scoped: true }
        } else if kind == "http" && text("scheme").is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
        {
            Scheme::Bearer { scoped: false }
        } else if kind == "apiKey" {
            let name = text("name").unwrap_or(DEFAULT_API_KEY_NAME).to_owned();
            match text("in").unwrap_or("header") {
                "header" => Scheme::ApiKey {
                    location: ApiKeyIn::Header,
                    name: name.to_ascii_lowercase(),
                },
                "query" => Scheme::ApiKey {
                    location: ApiKeyIn::Query,
                    name,
                },
                other => Scheme::Unsupported(format!(
                    "security scheme '{name}' sends its API key in '{other}'; only header and query API keys are enforced"
                )),
            }
        } else if kind == "http" || kind == "basic" {
            Scheme::Unsupported(format!(
                "security scheme '{name}' is HTTP {} authentication, which shardgate does not enforce (only JWT bearer tokens, API keys and mutual TLS)",
                text("scheme").unwrap_or("basic")
            ))
        } else if kind == "mutualTLS" {
            Scheme::Unsupported(format!(
                "security scheme '{name}' is of type mutualTLS; require client certificates with x-wso2-mutual-ssl instead"
            ))
        } else {
            Scheme::Unsupported(format!(
                "security scheme '{name}' has type '{kind}', which shardgate does not enforce"
            ))
        };
        schemes.0.insert(name, parsed);
    }
    schemes
}

/// Reads `security`, `x-scopes`, `x-auth-type`, `x-wso2-disable-security` and
/// `x-wso2-application-security` of one level. `operation`: an empty `security: []` opens
/// the resource (on the root it only means the root names no requirement).
pub fn read_level_security(
    r: &Reader<'_>,
    map: &Mapping,
    field: &FieldPath,
    schemes: &Schemes,
    operation: bool,
) -> LevelSecurity {
    let mut level = LevelSecurity::default();
    let security = map
        .get("security")
        .and_then(|v| read_requirements(r, v, &field.key("security"), schemes));
    if let Some(value) = map.get("x-scopes") {
        let x_field = field.key("x-scopes");
        if security.is_some() {
            r.error(
                &x_field,
                "x-scopes and security at the same level: give the scopes in one of them",
            );
        } else if let Some(scopes) = string_list(r, value, &x_field) {
            level.requirements = Some(vec![CredentialSpec::Bearer { scopes }]);
        }
    }
    let opened_by_empty_security = operation && security.as_ref().is_some_and(Vec::is_empty);
    if security.as_ref().is_some_and(|list| !list.is_empty()) {
        level.requirements = security;
    }
    let disable_security = map
        .get("x-wso2-disable-security")
        .and_then(|v| r.boolean(v, &field.key("x-wso2-disable-security")));
    // WSO2 API Manager exports `x-auth-type: None` for unsecured operations and an
    // `Application...` value for secured ones.
    let auth_type = map.get("x-auth-type").and_then(|v| {
        r.string(v, &field.key("x-auth-type"))
            .map(|t| t.eq_ignore_ascii_case("none"))
    });
    level.disable = disable_security
        .or(auth_type)
        .or(opened_by_empty_security.then_some(true));
    if let Some(value) = map.get("x-wso2-application-security") {
        level.application =
            read_application_security(r, value, &field.key("x-wso2-application-security"));
    }
    level
}

/// `security`: a list of requirement objects, any one of which suffices; every scheme of
/// one object must be satisfied. `Some(empty)` for `security: []`.
fn read_requirements(
    r: &Reader<'_>,
    value: &Value,
    field: &FieldPath,
    schemes: &Schemes,
) -> Option<Vec<CredentialSpec>> {
    let items = r.sequence(value, field)?;
    let mut alternatives = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_field = field.index(i);
        let Some(object) = r.mapping(item, &item_field) else {
            continue;
        };
        if object.is_empty() {
            r.error(
                &item_field,
                "an empty requirement object makes security optional, which shardgate does not do: open the resource with security: [] or x-wso2-disable-security: true instead",
            );
            continue;
        }
        let mut bearer: Option<Vec<String>> = None;
        let mut api_key: Option<(ApiKeyIn, String)> = None;
        let mut credentials = 0;
        for (name, scheme_field, scopes) in r.entries(object, &item_field) {
            let Some(scopes) = string_list(r, scopes, &scheme_field) else {
                continue;
            };
            let Some(scheme) = schemes.0.get(&name) else {
                r.error(
                    &scheme_field,
                    format!("names no security scheme defined in this definition: '{name}'"),
                );
                continue;
            };
            match scheme {
                Scheme::Bearer { scoped } => {
                    if !scoped && !scopes.is_empty() {
                        r.error(
                            &scheme_field,
                            format!("'{name}' is not an oauth2 or openIdConnect scheme; the roles listed for it are not enforced"),
                        );
                        continue;
                    }
                    if bearer.is_none() {
                        credentials += 1;
                    }
                    // Several token schemes in one object are satisfied by the one token.
                    let all = bearer.get_or_insert_with(Vec::new);
                    for scope in scopes {
                        if !all.contains(&scope) {
                            all.push(scope);
                        }
                    }
                }
                Scheme::ApiKey {
                    location,
                    name: key,
                } => {
                    if !scopes.is_empty() {
                        r.error(
                            &scheme_field,
                            format!("'{name}' is an API key scheme; scopes listed for it are not enforced"),
                        );
                        continue;
                    }
                    if api_key.as_ref() != Some(&(*location, key.clone())) {
                        credentials += 1;
                    }
                    api_key = Some((*location, key.clone()));
                }
                Scheme::Unsupported(why) => r.error(&scheme_field, why.clone()),
            }
        }
        if credentials > 1 {
            r.error(
                &item_field,
                "this requirement object asks for two credentials together (an AND), which shardgate does not enforce; list them as separate requirement objects to accept either one",
            );
            continue;
        }
        if let Some(scopes) = bearer {
            alternatives.push(CredentialSpec::Bearer { scopes });
        } else if let Some((location, name)) = api_key {
            alternatives.push(CredentialSpec::ApiKey {
                location,
                name,
                origin: r.doc.error(&item_field, ""),
            });
        }
    }
    Some(alternatives)
}

/// `x-wso2-application-security: {security-types: [oauth2, api_key], optional: false}`.
fn read_application_security(
    r: &Reader<'_>,
    value: &Value,
    field: &FieldPath,
) -> Option<ApplicationSecurity> {
    let map = r.mapping(value, field)?;
    let mut security = ApplicationSecurity {
        oauth2: true,
        api_key: false,
        optional: false,
        origin: r.doc.error(field, ""),
    };
    for (key, key_field, value) in r.entries(map, field) {
        match key.as_str() {
            "optional" => security.optional = r.boolean(value, &key_field)?,
            "security-types" => {
                let types = string_list(r, value, &key_field)?;
                security.oauth2 = false;
                for (i, kind) in types.iter().enumerate() {
                    match kind.as_str() {
                        "oauth2" => security.oauth2 = true,
                        "api_key" => security.api_key = true,
                        "basic_auth" => r.error(
                            &key_field.index(i),
                            "basic_auth application security is not enforced by shardgate (only oauth2 and api_key)",
                        ),
                        other => r.error(
                            &key_field.index(i),
                            format!("unknown security type '{other}'; expected oauth2 or api_key"),
                        ),
                    }
                }
            }
            _ => r.error(
                &key_field,
                format!("unknown x-wso2-application-security field '{key}'; expected security-types and optional"),
            ),
        }
    }
    Some(security)
}

/// `x-wso2-mutual-ssl: mandatory | optional` (API level, any letter case as CC reads it).
pub fn read_mutual_tls(r: &Reader<'_>, value: &Value, field: &FieldPath) -> Option<MutualTlsSpec> {
    let text = r.string(value, field)?;
    let mode = if text.eq_ignore_ascii_case("mandatory") {
        MutualTls::Mandatory
    } else if text.eq_ignore_ascii_case("optional") {
        MutualTls::Optional
    } else {
        r.error(
            field,
            format!("unknown x-wso2-mutual-ssl value '{text}'; expected mandatory or optional"),
        );
        return None;
    };
    Some(MutualTlsSpec {
        mode,
        origin: r.doc.error(field, ""),
    })
}

/// What an apictl project's `api.yaml` `securityScheme` list asks for.
#[derive(Clone, Debug, Default)]
pub struct ProjectSecurity {
    pub application: Option<ApplicationSecurity>,
    pub mutual_tls: Option<MutualTlsSpec>,
}

/// Reads api.yaml's `data.securityScheme` (`oauth2`, `api_key`, `basic_auth`,
/// `oauth_basic_auth_api_key_mandatory`, `mutualssl`, `mutualssl_mandatory`), with Choreo
/// Connect's meaning: application security is mandatory unless mutual TLS is mandatory and
/// `oauth_basic_auth_api_key_mandatory` is absent.
pub fn read_project_security(
    r: &Reader<'_>,
    value: &Value,
    field: &FieldPath,
) -> Option<ProjectSecurity> {
    let names = string_list(r, value, field)?;
    let has = |name: &str| names.iter().any(|n| n == name);
    for (i, name) in names.iter().enumerate() {
        match name.as_str() {
            "oauth2" | "api_key" | "oauth_basic_auth_api_key_mandatory" | "mutualssl"
            | "mutualssl_mandatory" => {}
            "basic_auth" => r.error(
                &field.index(i),
                "basic_auth is not enforced by shardgate (only oauth2, api_key and mutual TLS)",
            ),
            other => r.error(
                &field.index(i),
                format!("unknown security scheme '{other}'; expected oauth2, api_key, oauth_basic_auth_api_key_mandatory, mutualssl or mutualssl_mandatory"),
            ),
        }
    }
    let origin = r.doc.error(field, "");
    let mutual_tls = match (has("mutualssl"), has("mutualssl_mandatory")) {
        (true, true) => Some(MutualTls::Mandatory),
        (true, false) => Some(MutualTls::Optional),
        (false, true) => {
            r.error(
                field,
                "mutualssl_mandatory without mutualssl: list both to make mutual TLS mandatory",
            );
            None
        }
        (false, false) => None,
    };
    let oauth2 = has("oauth2");
    let api_key = has("api_key");
    let application = (oauth2 || api_key || mutual_tls.is_some()).then(|| ApplicationSecurity {
        oauth2,
        api_key,
        optional: mutual_tls == Some(MutualTls::Mandatory)
            && !has("oauth_basic_auth_api_key_mandatory"),
        origin: origin.clone(),
    });
    Some(ProjectSecurity {
        application,
        mutual_tls: mutual_tls.map(|mode| MutualTlsSpec { mode, origin }),
    })
}

/// The levels that decide one resource's security.
pub struct SecurityLevels<'a> {
    pub operation: &'a LevelSecurity,
    pub path: &'a LevelSecurity,
    pub api: &'a LevelSecurity,
    /// From an apictl project's api.yaml, below the definition's own extensions.
    pub project: Option<&'a ApplicationSecurity>,
    pub mutual_tls: Option<MutualTls>,
}

/// Applies precedence (operation > path item > API > api.yaml) and returns whether the
/// resource is secured and how. Errors go to the reader; `None` after one.
pub fn resolve(r: &Reader<'_>, levels: &SecurityLevels<'_>) -> Option<(bool, ResourceSecurity)> {
    let disabled = levels
        .operation
        .disable
        .or(levels.path.disable)
        .or(levels.api.disable)
        .unwrap_or(false);
    if disabled {
        return Some((false, ResourceSecurity::default()));
    }
    let requirements = levels
        .operation
        .requirements
        .as_ref()
        .or(levels.path.requirements.as_ref())
        .or(levels.api.requirements.as_ref());
    // Secured by default: a token, no scopes (as Choreo Connect).
    let base = requirements
        .cloned()
        .unwrap_or_else(|| vec![CredentialSpec::Bearer { scopes: Vec::new() }]);
    let application = levels
        .operation
        .application
        .as_ref()
        .or(levels.path.application.as_ref())
        .or(levels.api.application.as_ref())
        .or(levels.project);
    let Some(application) = application else {
        return Some((
            true,
            ResourceSecurity {
                alternatives: base,
                application_optional: false,
            },
        ));
    };
    let mut alternatives = Vec::with_capacity(base.len() + 2);
    for credential in base {
        match credential {
            CredentialSpec::Bearer { scopes } if !application.oauth2 => {
                if !scopes.is_empty() {
                    push_error(
                        r,
                        &application.origin,
                        format!(
                            "the security requirements ask for the scopes {scopes:?}, but oauth2 is not among the security types, so nothing would check them"
                        ),
                    );
                    return None;
                }
            }
            other => alternatives.push(other),
        }
    }
    let has_bearer = alternatives
        .iter()
        .any(|c| matches!(c, CredentialSpec::Bearer { .. }));
    if application.oauth2 && !has_bearer {
        alternatives.insert(0, CredentialSpec::Bearer { scopes: Vec::new() });
    }
    if application.api_key {
        // Choreo Connect's API-Manager flow: the key in the `apikey` header or query parameter.
        for location in [ApiKeyIn::Header, ApiKeyIn::Query] {
            let present = alternatives.iter().any(|c| {
                matches!(c, CredentialSpec::ApiKey { location: l, name, .. }
                    if *l == location && name == DEFAULT_API_KEY_NAME)
            });
            if !present {
                alternatives.push(CredentialSpec::ApiKey {
                    location,
                    name: DEFAULT_API_KEY_NAME.to_owned(),
                    origin: application.origin.clone(),
                });
            }
        }
    }
    let mandatory_mtls = levels.mutual_tls == Some(MutualTls::Mandatory);
    if application.optional && !mandatory_mtls {
        push_error(
            r,
            &application.origin,
            "optional application security needs x-wso2-mutual-ssl: mandatory (otherwise nothing would authenticate the request)",
        );
        return None;
    }
    if alternatives.is_empty() && !application.optional {
        push_error(
            r,
            &application.origin,
            "lists no security type, so no request could be authenticated; add oauth2 or api_key",
        );
        return None;
    }
    Some((
        true,
        ResourceSecurity {
            alternatives,
            application_optional: application.optional,
        },
    ))
}

/// An error at a place found earlier (possibly in another file, such as api.yaml).
fn push_error(r: &Reader<'_>, origin: &ConfigError, message: impl Into<String>) {
    let mut error = origin.clone();
    error.message = message.into();
    r.push(error);
}

fn string_list(r: &Reader<'_>, value: &Value, field: &FieldPath) -> Option<Vec<String>> {
    // API Manager exports some lists (an AsyncAPI channel's `x-scopes`) as a mapping from
    // index to value: `{"0": creator}`.
    if let Value::Mapping(map) = untagged(value) {
        let mut out = Vec::with_capacity(map.len());
        for (key, item) in map {
            let key_text = key
                .as_str()
                .map(str::to_owned)
                .or_else(|| key.as_u64().map(|n| n.to_string()));
            let item_field = field.key(key_text.as_deref().unwrap_or("?"));
            out.push(r.text(item, &item_field)?);
        }
        return Some(out);
    }
    let items = r.sequence(value, field)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        out.push(r.text(item, &field.index(i))?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::compile::config::document::Document;
    use crate::compile::config::openapi::{read_definition, ApiSpec};
    use crate::http::Method;

    const HEAD: &str = "openapi: 3.0.1\ninfo: {title: t, version: '1'}\nx-wso2-basePath: /t\nx-wso2-production-endpoints: {urls: ['http://a:1']}\n";
    const SCHEMES: &str = "components:\n  securitySchemes:\n    oauth: {type: oauth2, flows: {}}\n    oidc: {type: openIdConnect, openIdConnectUrl: 'https://idp'}\n    jwt: {type: http, scheme: bearer}\n    basic: {type: http, scheme: basic}\n    key: {type: apiKey, in: header, name: X-Api-Key}\n    qkey: {type: apiKey, in: query, name: key}\n    cookie: {type: apiKey, in: cookie, name: sid}\n";

    fn read(text: &str) -> Result<ApiSpec, String> {
        let doc = Document::parse(Path::new("apis/t.yaml"), text.to_owned()).unwrap();
        read_definition(&doc, None).0.map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    fn ok(text: &str) -> ApiSpec {
        read(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(text: &str) -> String {
        match read(text) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }

    fn resource<'a>(spec: &'a ApiSpec, method: Method, template: &str) -> &'a ResourceSpec {
        spec.resources
            .iter()
            .find(|r| r.method == method && r.template == template)
            .unwrap()
    }

    use crate::compile::config::openapi::ResourceSpec;

    /// `bearer[scopes]`, `header:name`, `query:name` per alternative.
    fn shape(resource: &ResourceSpec) -> Vec<String> {
        resource
            .security
            .alternatives
            .iter()
            .map(|c| match c {
                CredentialSpec::Bearer { scopes } => format!("bearer{scopes:?}"),
                CredentialSpec::ApiKey { location, name, .. } => {
                    format!("{location:?}:{name}").to_lowercase()
                }
            })
            .collect()
    }

    #[test]
    fn secured_by_default_with_a_token_and_no_scopes() {
        let spec = ok(&format!("{HEAD}paths: {{/a: {{get: {{}}}}}}\n"));
        let a = resource(&spec, Method::Get, "/a");
        assert!(a.secured);
        assert_eq!(shape(a), ["bearer[]"]);
    }

    #[test]
    fn operation_security_overrides_the_root_and_keeps_or_of_and() {
        let spec = ok(&format!(
            "{HEAD}{SCHEMES}security: [{{oauth: [read]}}]\npaths:\n  /a:\n    get: {{}}\n    post:\n      security:\n        - {{oauth: [write, admin], oidc: [audit]}}\n        - {{key: []}}\n        - {{qkey: []}}\n        - {{jwt: []}}\n"
        ));
        assert_eq!(
            shape(resource(&spec, Method::Get, "/a")),
            ["bearer[\"read\"]"]
        );
        assert_eq!(
            shape(resource(&spec, Method::Post, "/a")),
            [
                "bearer[\"write\", \"admin\", \"audit\"]",
                "header:x-api-key",
                "query:key",
                "bearer[]"
            ]
        );
    }

    #[test]
    fn swagger2_oauth2_definitions_carry_scopes() {
        let spec = ok(
            "swagger: '2.0'\ninfo: {title: s, version: '1'}\nx-wso2-basePath: /scopes/v2\nhost: 'b:2383'\nsecurity:\n  - petstore_auth: ['write:scopes']\npaths:\n  /pet/findByStatus: {get: {}}\n  '/pet/{petId}':\n    get:\n      security: [{petstore_auth: []}]\nsecurityDefinitions:\n  api_key: {type: apiKey, name: api_key, in: header}\n  petstore_auth: {type: oauth2, flow: implicit, authorizationUrl: 'http://x', scopes: {}}\n",
        );
        assert_eq!(
            shape(resource(&spec, Method::Get, "/pet/findByStatus")),
            ["bearer[\"write:scopes\"]"]
        );
        assert_eq!(
            shape(resource(&spec, Method::Get, "/pet/{petId}")),
            ["bearer[]"]
        );
    }

    #[test]
    fn x_scopes_require_a_token_with_those_scopes() {
        let spec = ok(&format!(
            "{HEAD}x-scopes: [admin]\npaths:\n  /a: {{get: {{}}}}\n  /b:\n    x-scopes: [read]\n    get: {{}}\n  /c:\n    get: {{x-scopes: [read, write]}}\n"
        ));
        assert_eq!(
            shape(resource(&spec, Method::Get, "/a")),
            ["bearer[\"admin\"]"]
        );
        assert_eq!(
            shape(resource(&spec, Method::Get, "/b")),
            ["bearer[\"read\"]"]
        );
        assert_eq!(
            shape(resource(&spec, Method::Get, "/c")),
            ["bearer[\"read\", \"write\"]"]
        );
    }

    #[test]
    fn empty_operation_security_and_x_auth_type_none_open_the_resource() {
        let spec = ok(&format!(
            "{HEAD}{SCHEMES}security: [{{oauth: [read]}}]\npaths:\n  /open: {{get: {{security: []}}}}\n  /none: {{get: {{x-auth-type: None}}}}\n  /lower: {{get: {{x-auth-type: none}}}}\n  /app: {{get: {{x-auth-type: 'Application & Application User'}}}}\n  /kept:\n    get:\n      security: []\n      x-wso2-disable-security: false\n"
        ));
        for open in ["/open", "/none", "/lower"] {
            assert!(!resource(&spec, Method::Get, open).secured, "{open}");
        }
        assert!(resource(&spec, Method::Get, "/app").secured);
        assert!(resource(&spec, Method::Get, "/kept").secured);
        // On the root, `security: []` names no requirement: still secured by default.
        let spec = ok(&format!(
            "{HEAD}security: []\npaths: {{/a: {{get: {{}}}}}}\n"
        ));
        assert!(resource(&spec, Method::Get, "/a").secured);
        // An API-level x-auth-type: None opens every operation that does not say otherwise.
        let spec = ok(&format!(
            "{HEAD}x-auth-type: None\npaths:\n  /a: {{get: {{}}}}\n  /b: {{get: {{x-auth-type: Application}}}}\n"
        ));
        assert!(!resource(&spec, Method::Get, "/a").secured);
        assert!(resource(&spec, Method::Get, "/b").secured);
    }

    #[test]
    fn application_security_types_are_alternatives() {
        let spec = ok(&format!(
            "{HEAD}x-wso2-application-security: {{security-types: [oauth2, api_key], optional: false}}\npaths:\n  /a: {{get: {{}}}}\n  /k:\n    get:\n      x-wso2-application-security: {{security-types: [api_key]}}\n"
        ));
        assert_eq!(
            shape(resource(&spec, Method::Get, "/a")),
            ["bearer[]", "header:apikey", "query:apikey"]
        );
        assert_eq!(
            shape(resource(&spec, Method::Get, "/k")),
            ["header:apikey", "query:apikey"]
        );
    }

    #[test]
    fn mutual_tls_is_read_and_optional_application_security_needs_it_mandatory() {
        let spec = ok(&format!(
            "{HEAD}x-wso2-mutual-ssl: Mandatory\nx-wso2-application-security: {{security-types: [oauth2], optional: true}}\npaths: {{/a: {{get: {{}}}}}}\n"
        ));
        assert_eq!(spec.mutual_tls.as_ref().unwrap().mode, MutualTls::Mandatory);
        assert!(
            resource(&spec, Method::Get, "/a")
                .security
                .application_optional
        );
        let e = err(&format!(
            "{HEAD}x-wso2-mutual-ssl: optional\nx-wso2-application-security:\n  security-types: [oauth2]\n  optional: true\npaths: {{/a: {{get: {{}}}}}}\n"
        ));
        assert_eq!(e, "apis/t.yaml: x-wso2-application-security: optional application security needs x-wso2-mutual-ssl: mandatory (otherwise nothing would authenticate the request) (line 7)");
    }

    #[test]
    fn unenforceable_requirements_are_errors_naming_file_field_and_line() {
        let cases: &[(&str, &str)] = &[
            (
                "security: [{basic: []}]",
                "apis/t.yaml: paths./a.get.security[0].basic: security scheme 'basic' is HTTP basic authentication, which shardgate does not enforce",
            ),
            (
                "security: [{cookie: []}]",
                "apis/t.yaml: paths./a.get.security[0].cookie: security scheme 'sid' sends its API key in 'cookie'",
            ),
            (
                "security: [{nope: []}]",
                "apis/t.yaml: paths./a.get.security[0].nope: names no security scheme defined in this definition: 'nope'",
            ),
            (
                "security: [{oauth: [], key: []}]",
                "apis/t.yaml: paths./a.get.security[0]: this requirement object asks for two credentials together",
            ),
            (
                "security: [{}]",
                "apis/t.yaml: paths./a.get.security[0]: an empty requirement object makes security optional",
            ),
            (
                "security: [{jwt: [admin]}]",
                "apis/t.yaml: paths./a.get.security[0].jwt: 'jwt' is not an oauth2 or openIdConnect scheme",
            ),
            (
                "security: [{key: [admin]}]",
                "apis/t.yaml: paths./a.get.security[0].key: 'key' is an API key scheme; scopes listed for it are not enforced",
            ),
            (
                "x-wso2-application-security: {security-types: [basic_auth]}",
                "apis/t.yaml: paths./a.get.x-wso2-application-security.security-types[0]: basic_auth application security is not enforced",
            ),
            (
                "x-wso2-application-security: {security-type: [oauth2]}",
                "apis/t.yaml: paths./a.get.x-wso2-application-security.security-type: unknown x-wso2-application-security field",
            ),
            (
                "x-wso2-mutual-ssl: mandatory",
                "apis/t.yaml: paths./a.get.x-wso2-mutual-ssl: x-wso2-mutual-ssl applies to a whole API",
            ),
        ];
        for (operation, expected) in cases {
            let text = format!("{HEAD}{SCHEMES}paths:\n  /a:\n    get:\n      {operation}\n");
            let e = err(&text);
            assert!(e.starts_with(expected), "{operation}:\n{e}");
            let line = text.lines().count();
            assert!(e.ends_with(&format!("(line {line})")), "{operation}: {e}");
        }
        let e = err(&format!(
            "{HEAD}x-wso2-mutual-ssl: sometimes\npaths: {{/a: {{get: {{}}}}}}\n"
        ));
        assert_eq!(e, "apis/t.yaml: x-wso2-mutual-ssl: unknown x-wso2-mutual-ssl value 'sometimes'; expected mandatory or optional (line 5)");
        // An unsupported scheme nobody names is no error.
        ok(&format!("{HEAD}{SCHEMES}paths: {{/a: {{get: {{}}}}}}\n"));
    }

    #[test]
    fn scopes_that_no_listed_security_type_would_check_are_refused() {
        let e = err(&format!(
            "{HEAD}{SCHEMES}security: [{{oauth: [read]}}]\nx-wso2-application-security: {{security-types: [api_key]}}\npaths: {{/a: {{get: {{}}}}}}\n"
        ));
        assert!(
            e.starts_with("apis/t.yaml: x-wso2-application-security: the security requirements ask for the scopes [\"read\"], but oauth2 is not among the security types"),
            "{e}"
        );
    }
}
