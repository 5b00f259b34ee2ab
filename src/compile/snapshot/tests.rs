//! Definitions on disk -> Snapshot: every extension, fallback, precedence rule and error.

use std::path::PathBuf;

use super::*;
use crate::compile::config::endpoint::GroupKind;

struct Fixture {
    dir: tempfile::TempDir,
    /// A gateway file trusting the dev issuer, outside `dir` so it is not read as an API.
    gateway: tempfile::TempDir,
}

fn dev_issuer_gateway() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let cert = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-only/jwt-dev-only.cert.pem"
    );
    std::fs::write(
        dir.path().join("gateway.yaml"),
        format!("jwt:\n  issuers:\n    - issuer: https://localhost/dev-only\n      certificate: {cert}\n"),
    )
    .unwrap();
    dir
}

impl Fixture {
    fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        Self {
            dir,
            gateway: dev_issuer_gateway(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn load(&self) -> Result<Snapshot, String> {
        let options = LoadOptions {
            config: Some(self.gateway.path().join("gateway.yaml")),
            apis: vec![self.dir.path().to_owned()],
            resolve_hosts: false,
        };
        Snapshot::load(&options).map_err(|e| e.to_string())
    }
}

fn load(text: &str) -> Snapshot {
    Fixture::new(&[("api.yaml", text)])
        .load()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn load_err(text: &str) -> String {
    match Fixture::new(&[("api.yaml", text)]).load() {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

fn route<'s>(s: &'s Snapshot, method: Method, template: &str) -> &'s Route {
    s.routes
        .iter()
        .find(|r| r.method == method && &*r.template == template)
        .unwrap_or_else(|| panic!("no route {method:?} {template}"))
}

/// `kind url, url` of a route's group in an environment.
fn group_of(s: &Snapshot, group: Option<GroupId>) -> Option<(GroupKind, Vec<String>)> {
    let group = &s.groups[group?.index()];
    let urls = group
        .members
        .iter()
        .map(|m| {
            let e = &s.endpoints[m.endpoint.index()];
            format!("{}{}", e.origin(), String::from_utf8_lossy(&m.base_path))
        })
        .collect();
    Some((group.kind, urls))
}

fn production(s: &Snapshot, method: Method, template: &str) -> Option<(GroupKind, Vec<String>)> {
    group_of(s, route(s, method, template).production)
}

fn sandbox(s: &Snapshot, method: Method, template: &str) -> Option<(GroupKind, Vec<String>)> {
    group_of(s, route(s, method, template).sandbox)
}

fn lb(urls: &[&str]) -> Option<(GroupKind, Vec<String>)> {
    Some((
        GroupKind::LoadBalance,
        urls.iter().map(|u| u.to_string()).collect(),
    ))
}

fn fo(urls: &[&str]) -> Option<(GroupKind, Vec<String>)> {
    Some((
        GroupKind::Failover,
        urls.iter().map(|u| u.to_string()).collect(),
    ))
}

fn warnings(s: &Snapshot) -> Vec<String> {
    s.warnings.iter().map(|w| w.to_string()).collect()
}

const OAS3_HEAD: &str =
    "openapi: 3.0.1\ninfo: {title: Petstore, version: '1.0'}\nx-wso2-basePath: /petstore/v1\n";

#[test]
fn api_level_endpoints_apply_to_every_resource_and_base_path_is_used_as_given() {
    let s = load(&format!(
        "{OAS3_HEAD}x-wso2-production-endpoints:\n  urls: [http://localhost:2380/v2, http://localhost:2381/v2]\n  type: load_balance\npaths:\n  /pet:\n    get: {{}}\n    post: {{}}\n"
    ));
    assert_eq!(&*s.apis[0].base_path, "/petstore/v1");
    let expected = lb(&["http://localhost:2380/v2", "http://localhost:2381/v2"]);
    assert_eq!(production(&s, Method::Get, "/pet"), expected);
    assert_eq!(production(&s, Method::Post, "/pet"), expected);
    // One endpoint object -> one group, shared by both operations.
    assert_eq!(
        route(&s, Method::Get, "/pet").production,
        route(&s, Method::Post, "/pet").production
    );
    assert_eq!(s.groups.len(), 1);
}

#[test]
fn operation_beats_path_item_beats_api_for_endpoints() {
    let s = load(&format!(
        "{OAS3_HEAD}x-wso2-production-endpoints: {{urls: ['http://api:1']}}
paths:
  /a:
    x-wso2-production-endpoints: {{urls: ['http://path:2'], type: failover}}
    get:
      x-wso2-production-endpoints: {{urls: ['http://op:3/x']}}
    post: {{}}
  /b:
    get: {{}}
"
    ));
    assert_eq!(production(&s, Method::Get, "/a"), lb(&["http://op:3/x"]));
    assert_eq!(production(&s, Method::Post, "/a"), fo(&["http://path:2"]));
    assert_eq!(production(&s, Method::Get, "/b"), lb(&["http://api:1"]));
}

#[test]
fn sandbox_endpoints_resolve_per_level_and_never_borrow_production() {
    let s = load(&format!(
        "{OAS3_HEAD}x-wso2-production-endpoints: {{urls: ['http://prod:1']}}
paths:
  /a:
    get:
      x-wso2-sandbox-endpoints: {{urls: ['http://sand:2']}}
  /b:
    get: {{}}
"
    ));
    assert_eq!(sandbox(&s, Method::Get, "/a"), lb(&["http://sand:2"]));
    assert_eq!(production(&s, Method::Get, "/a"), lb(&["http://prod:1"]));
    assert_eq!(sandbox(&s, Method::Get, "/b"), None);
}

#[test]
fn endpoint_types_and_their_aliases() {
    for (text, kind) in [
        ("load_balance", GroupKind::LoadBalance),
        ("loadbalance", GroupKind::LoadBalance),
        ("http", GroupKind::LoadBalance),
        ("failover", GroupKind::Failover),
        ("Failover", GroupKind::Failover),
    ] {
        let s = load(&format!("{OAS3_HEAD}x-wso2-production-endpoints: {{urls: ['http://a:1'], type: {text}}}\npaths: {{/a: {{get: {{}}}}}}\n"));
        assert_eq!(production(&s, Method::Get, "/a").unwrap().0, kind, "{text}");
    }
    let s = load(&format!("{OAS3_HEAD}x-wso2-production-endpoints: {{urls: ['http://a:1']}}\npaths: {{/a: {{get: {{}}}}}}\n"));
    assert_eq!(
        production(&s, Method::Get, "/a").unwrap().0,
        GroupKind::LoadBalance
    );
}

#[test]
fn unknown_endpoint_type_is_an_error() {
    let e = load_err(&format!("{OAS3_HEAD}x-wso2-production-endpoints:\n  urls: ['http://a:1']\n  type: round_robin\npaths: {{/a: {{get: {{}}}}}}\n"));
    assert!(
        e.contains("x-wso2-production-endpoints.type: unknown endpoint type 'round_robin'"),
        "{e}"
    );
    assert!(e.ends_with("(line 6)"), "{e}");
}

#[test]
fn x_wso2_endpoints_references_resolve_at_every_level() {
    let s = load(&format!(
        "{OAS3_HEAD}x-wso2-endpoints:
  - primary:
      urls: ['http://p:1/v1', 'http://p:2/v1']
      type: failover
  - backup:
      urls: ['http://b:1']
x-wso2-production-endpoints: '#/x-wso2-endpoints/backup'
paths:
  /a:
    get:
      x-wso2-production-endpoints: '#/x-wso2-endpoints/primary'
      x-wso2-sandbox-endpoints: '#/x-wso2-endpoints/backup'
  /b:
    get: {{}}
"
    ));
    assert_eq!(
        production(&s, Method::Get, "/a"),
        fo(&["http://p:1/v1", "http://p:2/v1"])
    );
    assert_eq!(sandbox(&s, Method::Get, "/a"), lb(&["http://b:1"]));
    assert_eq!(production(&s, Method::Get, "/b"), lb(&["http://b:1"]));
}

#[test]
fn reference_to_an_undefined_entry_is_an_error() {
    let e = load_err(&format!(
        "{OAS3_HEAD}x-wso2-endpoints:\n  - one: {{urls: ['http://a:1']}}\npaths:\n  /a:\n    get:\n      x-wso2-production-endpoints: '#/x-wso2-endpoints/two'\n"
    ));
    assert!(
        e.contains("api.yaml: paths./a.get.x-wso2-production-endpoints: refers to undefined x-wso2-endpoints entry 'two' (line 9)"),
        "{e}"
    );
}

#[test]
fn a_string_that_is_not_a_reference_is_an_error() {
    let e = load_err(&format!(
        "{OAS3_HEAD}x-wso2-production-endpoints: http://a:1\npaths: {{/a: {{get: {{}}}}}}\n"
    ));
    assert!(e.contains("x-wso2-production-endpoints: 'http://a:1' is neither an endpoint object nor a reference"), "{e}");
}

#[test]
fn bad_url_error_names_file_field_path_and_line() {
    let fixture = Fixture::new(&[(
        "apis/petstore.yaml",
        &format!("{OAS3_HEAD}paths:\n  /pet/{{id}}:\n    get:\n      x-wso2-production-endpoints:\n        urls:\n          - http://localhost:2380/v2\n          - 'http:..host/v2'\n"),
    )]);
    let e = fixture.load().unwrap_err();
    let expected = format!(
        "{}: paths./pet/{{id}}.get.x-wso2-production-endpoints.urls[1]: 'http:..host/v2' is not a URL (line 10)",
        fixture.path("apis/petstore.yaml").display()
    );
    assert_eq!(e, expected);
}

#[test]
fn url_without_host_is_an_error() {
    let e = load_err(&format!("{OAS3_HEAD}x-wso2-production-endpoints: {{urls: ['http:///v2']}}\npaths: {{/a: {{get: {{}}}}}}\n"));
    assert!(
        e.contains("x-wso2-production-endpoints.urls[0]: 'http:///v2' has no host"),
        "{e}"
    );
}

#[test]
fn empty_or_missing_urls_are_errors() {
    let e = load_err(&format!(
        "{OAS3_HEAD}x-wso2-production-endpoints: {{urls: []}}\npaths: {{/a: {{get: {{}}}}}}\n"
    ));
    assert!(
        e.contains("x-wso2-production-endpoints.urls: needs at least one URL"),
        "{e}"
    );
    let e = load_err(&format!("{OAS3_HEAD}x-wso2-production-endpoints: {{type: failover}}\npaths: {{/a: {{get: {{}}}}}}\n"));
    assert!(
        e.contains("x-wso2-production-endpoints: an endpoint object needs 'urls'"),
        "{e}"
    );
}

#[test]
fn operation_without_endpoint_in_any_environment_is_an_error() {
    let e = load_err(&format!("{OAS3_HEAD}paths:\n  /a:\n    get: {{}}\n"));
    assert!(
        e.contains("paths./a.get: no endpoint in any environment"),
        "{e}"
    );
    assert!(e.ends_with("(line 6)"), "{e}");
}

#[test]
fn duplicate_base_paths_across_apis_name_both_files() {
    let api = format!("{OAS3_HEAD}x-wso2-production-endpoints: {{urls: ['http://a:1']}}\npaths: {{/a: {{get: {{}}}}}}\n");
    let fixture = Fixture::new(&[("one.yaml", &api), ("two.yaml", &api)]);
    let e = fixture.load().unwrap_err();
    assert_eq!(
        e,
        format!(
            "{}: x-wso2-basePath: base path '/petstore/v1' is already used by {}:3 (line 3)",
            fixture.path("two.yaml").display(),
            fixture.path("one.yaml").display()
        )
    );
}

#[test]
fn advanced_endpoint_config_is_clamped_with_warnings() {
    let s = load(&format!(
        "{OAS3_HEAD}x-wso2-production-endpoints:
  urls: ['http://a:1']
  advanceEndpointConfig:
    timeoutInMillis: 90000
    retryConfig: {{count: 9, statusCodes: [200, 502, 503, 599, 502]}}
    circuitBreakers: {{maxConnections: 5, maxRequests: 3, maxPendingRequests: 1, maxRetries: 3}}
paths: {{/a: {{get: {{}}}}}}
"
    ));
    let group = &s.groups[0];
    assert_eq!(group.timeout_ms, 60_000);
    assert_eq!(
        group.retry,
        Some(RetryPolicy {
            count: 5,
            status_codes: vec![502, 503].into()
        })
    );
    let cb = group.circuit_breakers.clone().unwrap();
    assert_eq!(
        (
            cb.max_connections,
            cb.max_requests,
            cb.max_pending_requests,
            cb.max_retries
        ),
        (Some(5), Some(3), Some(1), Some(3))
    );
    let w = warnings(&s).join("\n");
    assert!(
        w.contains("timeoutInMillis: 90000 ms is above the 60000 ms cap"),
        "{w}"
    );
    assert!(
        w.contains("retryConfig.count: retry count 9 is above 5"),
        "{w}"
    );
    assert!(
        w.contains("statusCodes[0]: status code 200 is outside 401..598; dropped"),
        "{w}"
    );
    assert!(
        w.contains("statusCodes[3]: status code 599 is outside 401..598; dropped"),
        "{w}"
    );
}

#[test]
fn negative_retry_count_clamps_to_zero_and_default_codes_apply() {
    let s = load(&format!(
        "{OAS3_HEAD}x-wso2-production-endpoints:\n  urls: ['http://a:1']\n  advanceEndpointConfig: {{retryConfig: {{count: -1}}}}\npaths: {{/a: {{get: {{}}}}}}\n"
    ));
    assert_eq!(
        s.groups[0].retry,
        Some(RetryPolicy {
            count: 0,
            status_codes: vec![504].into()
        })
    );
}

#[test]
fn default_route_timeout_applies_without_timeout_in_millis() {
    let s = load(&format!("{OAS3_HEAD}x-wso2-production-endpoints: {{urls: ['http://a:1']}}\npaths: {{/a: {{get: {{}}}}}}\n"));
    assert_eq!(s.groups[0].timeout_ms, 60_000);
}

#[test]
fn basic_security_config_becomes_an_authorization_value() {
    let s = load(&format!(
        "{OAS3_HEAD}x-wso2-production-endpoints:\n  urls: ['http://a:1']\n  securityConfig: {{type: basic, username: admin, password: admin}}\npaths: {{/a: {{get: {{}}}}}}\n"
    ));
    assert_eq!(
        s.groups[0].authorization.as_deref(),
        Some(&b"Basic YWRtaW46YWRtaW4="[..])
    );
}

#[test]
fn unsupported_security_config_type_is_an_error() {
    let e = load_err(&format!(
        "{OAS3_HEAD}x-wso2-production-endpoints:\n  urls: ['http://a:1']\n  securityConfig: {{type: digest, username: a, password: b}}\npaths: {{/a: {{get: {{}}}}}}\n"
    ));
    assert!(
        e.contains("securityConfig.type: unsupported securityConfig type 'digest'"),
        "{e}"
    );
}

#[test]
fn disable_security_operation_beats_path_beats_api() {
    let s = load(&format!(
        "{OAS3_HEAD}x-wso2-disable-security: true
x-wso2-production-endpoints: {{urls: ['http://a:1']}}
paths:
  /open:
    get: {{}}
  /path-secured:
    x-wso2-disable-security: false
    get: {{}}
    post:
      x-wso2-disable-security: true
"
    ));
    assert!(!route(&s, Method::Get, "/open").secured);
    assert!(route(&s, Method::Get, "/path-secured").secured);
    assert!(!route(&s, Method::Post, "/path-secured").secured);
    let s = load(&format!("{OAS3_HEAD}x-wso2-production-endpoints: {{urls: ['http://a:1']}}\npaths: {{/a: {{get: {{}}}}}}\n"));
    assert!(
        route(&s, Method::Get, "/a").secured,
        "secured is the default"
    );
}

#[test]
fn auth_header_and_cors_are_read() {
    let s = load(&format!(
        "{OAS3_HEAD}x-wso2-auth-header: X-Token
x-wso2-cors:
  corsConfigurationEnabled: true
  accessControlAllowOrigins: [https://app.example]
  accessControlAllowCredentials: true
  accessControlAllowHeaders: [authorization, x-token]
  accessControlAllowMethods: [GET, POST]
  accessControlExposeHeaders: [x-trace]
x-wso2-production-endpoints: {{urls: ['http://a:1']}}
paths: {{/a: {{get: {{}}}}}}
"
    ));
    let api = &s.apis[0];
    assert_eq!(&*api.auth_header, "X-Token");
    let cors = api.cors.clone().expect("x-wso2-cors is enabled");
    assert!(cors.allows(b"https://app.example"));
    assert!(!cors.allows(b"https://other.example"));
    let mut preflight = Vec::new();
    cors.write_preflight(&mut preflight, b"https://app.example");
    let preflight = String::from_utf8(preflight).unwrap();
    assert!(
        preflight.contains("access-control-allow-origin: https://app.example\r\n"),
        "{preflight}"
    );
    assert!(
        preflight.contains("access-control-allow-credentials: true"),
        "{preflight}"
    );
    assert!(
        preflight.contains("access-control-allow-methods: GET, POST"),
        "{preflight}"
    );
    assert!(
        preflight.contains("access-control-expose-headers: x-trace"),
        "{preflight}"
    );
}

#[test]
fn cors_wildcard_origins_match_subdomains_and_unclear_ones_are_refused() {
    let s = load(&format!(
        "{OAS3_HEAD}x-wso2-cors:\n  accessControlAllowOrigins: ['http://*.wildcard.com']\nx-wso2-production-endpoints: {{urls: ['http://a:1']}}\npaths: {{/a: {{get: {{}}}}}}\n"
    ));
    let cors = s.apis[0].cors.clone().unwrap();
    assert!(cors.allows(b"http://api.wildcard.com"));
    assert!(!cors.allows(b"http://wildcard.com.evil"));
    let e = load_err(&format!(
        "{OAS3_HEAD}x-wso2-cors:\n  accessControlAllowOrigins:\n    - 'https://ok.example'\n    - 'http://app*.example'\nx-wso2-production-endpoints: {{urls: ['http://a:1']}}\npaths: {{/a: {{get: {{}}}}}}\n"
    ));
    assert!(
        e.contains("api.yaml: x-wso2-cors.accessControlAllowOrigins[1]: origin 'http://app*.example': '*' is only allowed"),
        "{e}"
    );
    assert!(e.ends_with("(line 7)"), "{e}");
}

#[test]
fn default_auth_header_is_authorization_and_bad_names_are_errors() {
    let s = load(&format!("{OAS3_HEAD}x-wso2-production-endpoints: {{urls: ['http://a:1']}}\npaths: {{/a: {{get: {{}}}}}}\n"));
    assert_eq!(&*s.apis[0].auth_header, "Authorization");
    let e = load_err(&format!("{OAS3_HEAD}x-wso2-auth-header: 'X Token'\nx-wso2-production-endpoints: {{urls: ['http://a:1']}}\npaths: {{/a: {{get: {{}}}}}}\n"));
    assert!(
        e.contains("x-wso2-auth-header: 'X Token' is not a valid header name"),
        "{e}"
    );
}

#[test]
fn unknown_wso2_extensions_are_kept_with_a_warning() {
    let s = load(&format!(
        "{OAS3_HEAD}x-wso2-request-interceptor: {{}}\nx-wso2-production-endpoints: {{urls: ['http://a:1']}}\npaths:\n  /a:\n    get:\n      x-wso2-response-cache: {{}}\n"
    ));
    let w = warnings(&s).join("\n");
    assert!(w.contains("x-wso2-request-interceptor: extension not supported by shardgate; kept and ignored (line 4)"), "{w}");
    assert!(
        w.contains("paths./a.get.x-wso2-response-cache: extension not supported"),
        "{w}"
    );
}

#[test]
fn swagger2_host_base_path_and_schemes_are_the_fallback_with_https_preferred() {
    let s = load("swagger: '2.0'\ninfo: {title: P, version: v}\nhost: petstore.example:8443\nbasePath: /v2\nschemes: [http, https]\npaths: {/pet: {get: {}}}\n");
    assert_eq!(&*s.apis[0].base_path, "/v2");
    assert_eq!(
        production(&s, Method::Get, "/pet"),
        lb(&["https://petstore.example:8443/v2"])
    );
    let s = load("swagger: '2.0'\nhost: p.example\nbasePath: /v2\npaths: {/pet: {get: {}}}\n");
    assert_eq!(
        production(&s, Method::Get, "/pet"),
        lb(&["http://p.example/v2"])
    );
}

#[test]
fn x_wso2_base_path_beats_swagger2_base_path() {
    let s = load("swagger: '2.0'\nx-wso2-basePath: /pets\nhost: p.example\nbasePath: /v2\npaths: {/pet: {get: {}}}\n");
    assert_eq!(&*s.apis[0].base_path, "/pets");
    assert_eq!(
        production(&s, Method::Get, "/pet"),
        lb(&["http://p.example/v2"])
    );
}

#[test]
fn openapi3_absolute_servers_form_one_load_balance_group_and_give_the_base_path() {
    let s = load(
        "openapi: 3.0.0
servers:
  - url: /relative
  - url: http://localhost:2380/v2
  - url: 'https://{region}.example.com/v2'
    variables: {region: {default: eu}}
paths: {/pet: {get: {}}}
",
    );
    assert_eq!(&*s.apis[0].base_path, "/v2");
    assert_eq!(
        production(&s, Method::Get, "/pet"),
        lb(&["http://localhost:2380/v2", "https://eu.example.com/v2"])
    );
}

#[test]
fn path_item_and_operation_servers_are_resource_level_fallbacks() {
    let s = load(&format!(
        "{OAS3_HEAD}servers: [{{url: 'http://api:1'}}]
paths:
  /a:
    servers: [{{url: 'http://path:2/p'}}]
    get: {{}}
    post:
      servers: [{{url: 'http://op:3'}}]
  /b:
    get: {{}}
"
    ));
    assert_eq!(production(&s, Method::Get, "/a"), lb(&["http://path:2/p"]));
    assert_eq!(production(&s, Method::Post, "/a"), lb(&["http://op:3"]));
    assert_eq!(production(&s, Method::Get, "/b"), lb(&["http://api:1"]));
}

#[test]
fn explicit_wso2_endpoints_beat_servers_fallbacks() {
    let s = load(&format!(
        "{OAS3_HEAD}x-wso2-production-endpoints: {{urls: ['http://x:1']}}\npaths:\n  /a:\n    servers: [{{url: 'http://path:2'}}]\n    get: {{}}\n"
    ));
    assert_eq!(production(&s, Method::Get, "/a"), lb(&["http://x:1"]));
}

#[test]
fn root_with_only_sandbox_endpoints_gets_no_production_fallback() {
    let s = load(&format!(
        "{OAS3_HEAD}servers: [{{url: 'http://server:1'}}]\nx-wso2-sandbox-endpoints: {{urls: ['http://sand:2']}}\npaths:\n  /a:\n    servers: [{{url: 'http://path:3'}}]\n    get: {{}}\n"
    ));
    assert_eq!(production(&s, Method::Get, "/a"), None);
    assert_eq!(sandbox(&s, Method::Get, "/a"), lb(&["http://sand:2"]));
}

#[test]
fn server_variable_holding_scheme_and_host_makes_the_url_absolute() {
    // Choreo Connect's interceptor definitions write the URL this way.
    let s = load(
        "openapi: 3.0.0
servers:
  - url: '{base}/api/v1'
    variables: {base: {default: 'https://interceptor-service:8443'}}
paths: {/pet: {get: {x-wso2-disable-security: true}}}
",
    );
    assert_eq!(&*s.apis[0].base_path, "/api/v1");
    assert_eq!(
        production(&s, Method::Get, "/pet"),
        lb(&["https://interceptor-service:8443/api/v1"])
    );
    let e = load_err(&format!(
        "{OAS3_HEAD}servers: [{{url: '{{base}}/api/v1'}}]\npaths: {{/a: {{get: {{}}}}}}\n"
    ));
    assert!(
        e.contains("servers[0].url: '{base}/api/v1' has a variable without a default"),
        "{e}"
    );
}

#[test]
fn server_variable_without_default_is_an_error() {
    let e = load_err(&format!(
        "{OAS3_HEAD}servers: [{{url: 'http://{{host}}:1'}}]\npaths: {{/a: {{get: {{}}}}}}\n"
    ));
    assert!(
        e.contains("servers[0].url: 'http://{host}:1' has a variable without a default"),
        "{e}"
    );
}

#[test]
fn no_base_path_at_all_is_an_error() {
    let e = load_err("openapi: 3.0.0\nx-wso2-production-endpoints: {urls: ['http://a:1']}\npaths: {/a: {get: {}}}\n");
    assert!(e.contains("api.yaml: no base path"), "{e}");
}

#[test]
fn base_path_must_start_with_a_slash() {
    let e = load_err("openapi: 3.0.0\nx-wso2-basePath: petstore\nx-wso2-production-endpoints: {urls: ['http://a:1']}\npaths: {/a: {get: {}}}\n");
    assert!(
        e.contains("x-wso2-basePath: base path 'petstore' must start with '/' (line 2)"),
        "{e}"
    );
}

#[test]
fn templates_differing_only_in_parameter_names_are_duplicates() {
    let e = load_err(&format!(
        "{OAS3_HEAD}x-wso2-production-endpoints: {{urls: ['http://a:1']}}\npaths:\n  /pet/{{id}}:\n    get: {{}}\n  /pet/{{petId}}:\n    get: {{}}\n"
    ));
    assert!(
        e.contains("paths./pet/{petId}.get: duplicates the resource at paths./pet/{id}.get"),
        "{e}"
    );
}

#[test]
fn malformed_templates_are_errors() {
    for (template, message) in [
        ("pet", "must start with '/'"),
        ("/pet/{id", "unbalanced"),
        ("/a/*/b", "'*' is only allowed as the last segment"),
        ("/a//b", "empty segment"),
    ] {
        let e = load_err(&format!("{OAS3_HEAD}x-wso2-production-endpoints: {{urls: ['http://a:1']}}\npaths:\n  '{template}':\n    get: {{}}\n"));
        assert!(e.contains(message), "{template}: {e}");
    }
}

#[test]
fn json_definitions_are_read_with_line_numbers() {
    let json = r#"{
  "openapi": "3.0.0",
  "x-wso2-basePath": "/j",
  "x-wso2-production-endpoints": {"urls": ["http://a:1",
     "http://"]},
  "paths": {"/a": {"get": {}}}
}"#;
    let fixture = Fixture::new(&[("api.json", json)]);
    let e = fixture.load().unwrap_err();
    assert!(
        e.ends_with("x-wso2-production-endpoints.urls[1]: 'http://' has no host (line 5)"),
        "{e}"
    );
    let fixture = Fixture::new(&[("api.json", &json.replace("\"http://\"", "\"http://b:2\""))]);
    assert_eq!(fixture.load().unwrap().routes.len(), 1);
}

#[test]
fn syntax_errors_name_the_line() {
    let e = load_err("openapi: 3.0.0\npaths:\n  /a: [unclosed\n");
    assert!(e.contains("api.yaml: invalid YAML"), "{e}");
    assert!(e.contains("(line "), "{e}");
}

#[test]
fn a_file_that_is_not_a_definition_is_an_error() {
    let e = load_err("title: not an api\n");
    assert!(
        e.contains("not an OpenAPI 3.x, Swagger 2.0 or AsyncAPI 2.x definition"),
        "{e}"
    );
    let e = load_err("openapi: 2.5\npaths: {}\n");
    assert!(
        e.contains("openapi: unsupported OpenAPI version '2.5'"),
        "{e}"
    );
}

#[test]
fn every_problem_of_a_file_is_reported_at_once() {
    let e = load_err(&format!(
        "{OAS3_HEAD}paths:\n  /a:\n    get:\n      x-wso2-production-endpoints: {{urls: ['ftp://a']}}\n  /b:\n    get:\n      x-wso2-production-endpoints: {{urls: ['http://b:1'], type: nope}}\n"
    ));
    assert!(e.contains("has scheme 'ftp'"), "{e}");
    assert!(e.contains("unknown endpoint type 'nope'"), "{e}");
}

#[test]
fn identical_upstreams_share_one_endpoint_id() {
    let s = load(&format!(
        "{OAS3_HEAD}x-wso2-production-endpoints: {{urls: ['http://a:1/v1']}}\npaths:\n  /a:\n    get:\n      x-wso2-production-endpoints: {{urls: ['http://A:1/v2', 'http://b:1'], type: failover}}\n  /b:\n    get: {{}}\n"
    ));
    assert_eq!(s.endpoints.len(), 2, "{:?}", s.endpoints);
    assert_eq!(s.groups.len(), 2);
}

const API_YAML: &str = "type: api
version: v4.2.0
data:
  name: PizzaShack
  context: /pizzashack
  version: 1.0.0
  endpointConfig:
    endpoint_type: failover
    production_endpoints: {url: 'http://primary:8080/api'}
    production_failovers:
      - {url: 'http://backup:8080/api'}
    sandbox_endpoints: {url: 'http://sandbox:8080/api'}
    endpoint_security:
      production: {enabled: true, type: BASIC, username: u, password: p}
";

#[test]
fn apictl_project_gives_base_path_and_endpoints() {
    let fixture = Fixture::new(&[
        ("PizzaShack/api.yaml", API_YAML),
        (
            "PizzaShack/Definitions/swagger.yaml",
            "openapi: 3.0.1\ninfo: {title: Pizza, version: 1.0.0}\npaths: {/menu: {get: {}}}\n",
        ),
    ]);
    let s = fixture.load().unwrap();
    assert_eq!(&*s.apis[0].base_path, "/pizzashack/1.0.0");
    assert_eq!(s.apis[0].name, "PizzaShack");
    assert_eq!(
        production(&s, Method::Get, "/menu"),
        fo(&["http://primary:8080/api", "http://backup:8080/api"])
    );
    assert_eq!(
        sandbox(&s, Method::Get, "/menu"),
        fo(&["http://sandbox:8080/api"])
    );
    assert_eq!(
        s.groups[route(&s, Method::Get, "/menu").production.unwrap().index()]
            .authorization
            .as_deref(),
        Some(&b"Basic dTpw"[..])
    );
}

#[test]
fn definition_extensions_override_api_yaml() {
    let fixture = Fixture::new(&[
        ("PizzaShack/api.yaml", API_YAML),
        (
            "PizzaShack/Definitions/swagger.yaml",
            "openapi: 3.0.1\nx-wso2-basePath: /pizza\nx-wso2-production-endpoints: {urls: ['http://mine:1']}\npaths: {/menu: {get: {}}}\n",
        ),
    ]);
    let s = fixture.load().unwrap();
    assert_eq!(&*s.apis[0].base_path, "/pizza");
    assert_eq!(production(&s, Method::Get, "/menu"), lb(&["http://mine:1"]));
    assert_eq!(
        sandbox(&s, Method::Get, "/menu"),
        fo(&["http://sandbox:8080/api"])
    );
}

#[test]
fn apictl_project_without_definition_is_an_error() {
    let fixture = Fixture::new(&[
        ("P/api.yaml", API_YAML),
        ("P/Definitions/README.md", "no definition here"),
    ]);
    let e = fixture.load().unwrap_err();
    assert!(
        e.contains("apictl project without a definition (Definitions/swagger.yaml"),
        "{e}"
    );
}

#[test]
fn gateway_config_lists_files_directories_and_globs_relative_to_itself() {
    let api = |base: &str| {
        format!("openapi: 3.0.0\nx-wso2-basePath: {base}\nx-wso2-production-endpoints: {{urls: ['http://a:1']}}\npaths: {{/a: {{get: {{}}}}}}\n")
    };
    let gateway = format!(
        "{}apis:\n  - apis/one.yaml\n  - more/\n  - 'globbed/*.json'\n",
        std::fs::read_to_string(dev_issuer_gateway().path().join("gateway.yaml")).unwrap()
    );
    let fixture = Fixture::new(&[
        ("conf/gateway.yaml", &gateway),
        ("conf/apis/one.yaml", &api("/one")),
        ("conf/more/nested/two.yml", &api("/two")),
        ("conf/more/.hidden.yaml", "not: read"),
        ("conf/more/notes.txt", "not read"),
        (
            "conf/globbed/three.json",
            r#"{"openapi": "3.0.0", "x-wso2-basePath": "/three", "servers": [{"url": "http://a:1"}], "paths": {"/a": {"get": {}}}}"#,
        ),
    ]);
    let options = LoadOptions {
        config: Some(fixture.path("conf/gateway.yaml")),
        apis: vec![],
        resolve_hosts: false,
    };
    let s = Snapshot::load(&options).unwrap_or_else(|e| panic!("{e}"));
    let mut bases: Vec<_> = s.apis.iter().map(|a| a.base_path.to_string()).collect();
    bases.sort();
    assert_eq!(bases, ["/one", "/three", "/two"]);
}

#[test]
fn missing_api_path_names_the_config_field() {
    let fixture = Fixture::new(&[("gateway.yaml", "apis:\n  - nowhere.yaml\n")]);
    let options = LoadOptions {
        config: Some(fixture.path("gateway.yaml")),
        apis: vec![],
        resolve_hosts: false,
    };
    let e = Snapshot::load(&options).unwrap_err().to_string();
    assert!(
        e.contains("gateway.yaml: apis[0]: '") && e.contains("nowhere.yaml' does not exist"),
        "{e}"
    );
}

#[test]
fn secured_api_without_an_issuer_is_refused_with_a_fix() {
    let fixture = Fixture::new(&[("api.yaml", &format!("{OAS3_HEAD}x-wso2-production-endpoints: {{urls: ['http://a:1']}}\npaths: {{/a: {{get: {{}}}}}}\n"))]);
    let options = LoadOptions {
        config: None,
        apis: vec![fixture.dir.path().to_owned()],
        resolve_hosts: false,
    };
    let e = Snapshot::load(&options).unwrap_err().to_string();
    assert!(e.contains("api.yaml: API '/petstore/v1' has secured resources but no JWT issuer is configured: add one under jwt.issuers"), "{e}");
    // The same API with security disabled needs no issuer.
    let open = Fixture::new(&[("api.yaml", &format!("{OAS3_HEAD}x-wso2-disable-security: true\nx-wso2-production-endpoints: {{urls: ['http://a:1']}}\npaths: {{/a: {{get: {{}}}}}}\n"))]);
    let options = LoadOptions {
        config: None,
        apis: vec![open.dir.path().to_owned()],
        resolve_hosts: false,
    };
    assert!(Snapshot::load(&options).is_ok());
}

#[test]
fn unreadable_issuer_key_names_the_gateway_field() {
    let fixture = Fixture::new(&[(
        "gw/gateway.yaml",
        "jwt:\n  issuers:\n    - issuer: x\n      certificate: missing.pem\n",
    )]);
    let options = LoadOptions {
        config: Some(fixture.path("gw/gateway.yaml")),
        apis: vec![],
        resolve_hosts: false,
    };
    let e = Snapshot::load(&options).unwrap_err().to_string();
    assert!(
        e.contains("gateway.yaml: jwt.issuers[0].certificate: cannot read"),
        "{e}"
    );
}

#[test]
fn no_definitions_at_all_is_an_error() {
    let e = Snapshot::load(&LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no API definitions"), "{e}");
}

#[test]
fn route_table_lists_every_environment() {
    let s = load(&format!(
        "{OAS3_HEAD}x-wso2-production-endpoints: {{urls: ['http://localhost:2380/v2']}}\nx-wso2-sandbox-endpoints: {{urls: ['http://localhost:2390/v2']}}\npaths:\n  /pet:\n    get:\n      x-wso2-disable-security: true\n"
    ));
    let table = s.route_table();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("API"));
    assert!(
        lines[1].contains("GET")
            && lines[1].contains("production")
            && lines[1].contains("http://localhost:2380/v2")
            && lines[1].contains(" off ")
            && lines[1].ends_with("-"),
        "{table}"
    );
    assert!(
        lines[2].contains("sandbox") && lines[2].contains("http://localhost:2390/v2"),
        "{table}"
    );
}

#[test]
fn router_and_upstream_path_work_end_to_end() {
    let s = load(&format!("{OAS3_HEAD}x-wso2-production-endpoints: {{urls: ['http://localhost:2380/v2']}}\npaths: {{/pet/findByStatus: {{get: {{}}}}}}\n"));
    let path = b"/petstore/v1/pet/findByStatus";
    let crate::route::Lookup::Found(m) = s.router.lookup(Method::Get, path) else {
        panic!()
    };
    let group = &s.groups[s.routes[m.route.index()].production.unwrap().index()];
    let mut target = Vec::new();
    crate::route::write_upstream_target(
        &mut target,
        &group.members[0].base_path,
        &path[m.rest_start..],
        Some(b"status=sold"),
    );
    assert_eq!(target, b"/v2/pet/findByStatus?status=sold");
}

/// Loads `api` with `rate_limits` added to the dev-issuer gateway file.
fn load_with_tiers(rate_limits: &str, api: &str) -> Result<Snapshot, String> {
    let fixture = Fixture::new(&[("api.yaml", api)]);
    let gateway = fixture.gateway.path().join("gateway.yaml");
    let mut text = std::fs::read_to_string(&gateway).unwrap();
    text.push_str(rate_limits);
    std::fs::write(&gateway, text).unwrap();
    fixture.load()
}

const TIERS: &str =
    "rate_limits:\n  tiers:\n    Tiny: {requests: 3, per: 2s}\n    Gold: {requests: 7, per: 1h}\n";

#[test]
fn throttling_tiers_limit_the_api_unless_the_operation_names_its_own() {
    let s = load_with_tiers(
        TIERS,
        &format!(
            "{OAS3_HEAD}x-wso2-throttling-tier: Tiny\nx-wso2-production-endpoints: {{urls: ['http://a:1']}}\nx-wso2-disable-security: true\npaths:\n  /a:\n    get: {{}}\n    post: {{}}\n  /b:\n    get:\n      x-wso2-throttling-tier: Gold\n    put:\n      x-throttling-tier: Silver\n    delete:\n      x-wso2-throttling-tier: Unlimited\n"
        ),
    )
    .unwrap();
    let limit = |method, template| {
        route(&s, method, template)
            .rate_limit
            .map(|id| &s.rate_limits.limits[id.index()])
    };
    let api = limit(Method::Get, "/a").unwrap();
    assert_eq!((&*api.tier, api.requests, api.per_secs), ("Tiny", 3, 2));
    assert_eq!(&*api.scope, "/petstore/v1");
    assert_eq!(
        route(&s, Method::Get, "/a").rate_limit,
        route(&s, Method::Post, "/a").rate_limit,
        "one limit for the API as a whole"
    );
    let own = limit(Method::Get, "/b").unwrap();
    assert_eq!(
        (&*own.tier, own.requests, own.per_secs),
        ("Gold", 7, 3600),
        "a configured tier overrides the built-in one"
    );
    assert_eq!(&*own.scope, "/petstore/v1 GET /b");
    let silver = limit(Method::Put, "/b").unwrap();
    assert_eq!(
        (&*silver.tier, silver.requests, silver.per_secs),
        ("Silver", 2000, 60),
        "x-throttling-tier is read too"
    );
    assert!(
        limit(Method::Delete, "/b").is_none(),
        "Unlimited at the operation wins over the API's tier"
    );
    assert!(!s.rate_limits.distributed);
    let table = s.route_table();
    assert!(table.contains("TIER"), "{table}");
    assert!(table.contains("Tiny (3/2s, api)"), "{table}");
    assert!(table.contains("Gold (7/3600s, operation)"), "{table}");
}

#[test]
fn an_unknown_tier_is_a_load_error_naming_file_field_and_line() {
    let e = load_with_tiers(
        TIERS,
        &format!(
            "{OAS3_HEAD}x-wso2-production-endpoints: {{urls: ['http://a:1']}}\npaths:\n  /a:\n    get:\n      x-wso2-throttling-tier: Platinum\n"
        ),
    )
    .unwrap_err();
    assert!(
        e.contains("api.yaml: paths./a.get.x-wso2-throttling-tier: unknown throttling tier 'Platinum'; the gateway config defines Bronze, Gold, Silver, Tiny, Unlimited"),
        "{e}"
    );
    assert!(e.contains("(line 8)"), "{e}");
    let e = load_with_tiers(
        "",
        &format!("{OAS3_HEAD}x-throttling-tier: Tiny\nx-wso2-production-endpoints: {{urls: ['http://a:1']}}\npaths:\n  /a:\n    get: {{}}\n"),
    )
    .unwrap_err();
    assert!(
        e.contains("api.yaml: x-throttling-tier: unknown throttling tier 'Tiny'"),
        "{e}"
    );
    assert!(e.contains("(line 4)"), "{e}");
}

#[test]
fn a_tier_on_a_path_item_is_refused() {
    let e = load_with_tiers(
        TIERS,
        &format!("{OAS3_HEAD}x-wso2-production-endpoints: {{urls: ['http://a:1']}}\npaths:\n  /a:\n    x-wso2-throttling-tier: Gold\n    get: {{}}\n"),
    )
    .unwrap_err();
    assert!(
        e.contains("paths./a.x-wso2-throttling-tier: a throttling tier applies to the API"),
        "{e}"
    );
}

#[test]
fn a_reload_keeps_the_pools_of_limits_still_present() {
    let api = format!("{OAS3_HEAD}x-wso2-throttling-tier: Gold\nx-wso2-production-endpoints: {{urls: ['http://a:1']}}\nx-wso2-disable-security: true\npaths:\n  /a:\n    get: {{}}\n");
    let fixture = Fixture::new(&[("api.yaml", &api)]);
    let first = fixture.load().unwrap();
    let options = LoadOptions {
        config: Some(fixture.gateway.path().join("gateway.yaml")),
        apis: vec![fixture.dir.path().to_owned()],
        resolve_hosts: false,
    };
    let next = Snapshot::load_next(&options, &first).unwrap();
    assert!(Arc::ptr_eq(
        &first.rate_limits.limits[0].pool,
        &next.rate_limits.limits[0].pool
    ));
}
