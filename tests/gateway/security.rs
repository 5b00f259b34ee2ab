//! JWT security and environments through the data path (BEHAVIOUR.md 2 and 5), with tokens
//! minted by the dev key pair and real backends.

use crate::support;

use std::time::Duration;

use serde_json::json;
use shardgate::auth::{mint_token, KeyType, MintOptions};
use support::{Backend, Gateway};

const ISSUER: &str = "https://localhost/dev-only";

fn gateway_yaml(extra: &str) -> String {
    let cert = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-only/jwt-dev-only.cert.pem"
    );
    format!("jwt:\n  issuers:\n    - issuer: {ISSUER}\n      certificate: {cert}\n{extra}")
}

fn token(key_type: KeyType, ttl_secs: u64, issued_at: Option<u64>) -> String {
    let key = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-only/jwt-dev-only.key.pem"
    ))
    .unwrap();
    let mut options = MintOptions::new(ISSUER);
    options.key_type = key_type;
    options.ttl_secs = ttl_secs;
    options.issued_at = issued_at;
    mint_token(&key, &options).unwrap()
}

fn production_token() -> String {
    token(KeyType::Production, 3600, None)
}

/// `/svc` with production and sandbox endpoints at API level, `/open` without security,
/// `/prod-only` with no sandbox endpoint.
fn api(prod: &Backend, sand: &Backend) -> String {
    format!(
        "openapi: 3.0.1
x-wso2-basePath: /svc
x-wso2-production-endpoints: {{urls: ['{}']}}
paths:
  /secured:
    get:
      x-wso2-sandbox-endpoints: {{urls: ['{}']}}
  /prod-only:
    get: {{}}
  /open:
    get:
      x-wso2-disable-security: true
",
        prod.url(""),
        sand.url(""),
    )
}

fn get_with(
    client: &mut support::Client,
    path: &str,
    header: Option<(&str, &str)>,
) -> support::Response {
    let headers: Vec<(&str, &str)> = header.into_iter().collect();
    client.request("GET", path, &headers, b"")
}

#[test]
fn missing_token_gets_401_with_www_authenticate_and_cc_body() {
    let (prod, sand) = (Backend::echo("prod"), Backend::echo("sand"));
    let gateway = Gateway::start_with(&api(&prod, &sand), &gateway_yaml(""), 1);
    let mut client = gateway.client();
    let response = client.get("/svc/secured");
    assert_eq!(response.status, 401);
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer realm=\"shardgate\", error=\"invalid_token\"")
    );
    let body = response.json();
    assert_eq!(body["code"], "900901");
    assert_eq!(body["error_message"], "Invalid Credentials");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("Make sure you have provided the correct security credentials"));
    assert_eq!(prod.request_count(), 0);
    // The connection stays usable after a 401.
    let bearer = format!("Bearer {}", production_token());
    assert_eq!(
        get_with(
            &mut client,
            "/svc/secured",
            Some(("Authorization", &bearer))
        )
        .status,
        200
    );
}

#[test]
fn valid_token_reaches_production_and_the_token_header_is_removed() {
    let (prod, sand) = (Backend::echo("prod"), Backend::echo("sand"));
    let gateway = Gateway::start_with(&api(&prod, &sand), &gateway_yaml(""), 1);
    let mut client = gateway.client();
    let bearer = format!("Bearer {}", production_token());
    for _ in 0..3 {
        let response = get_with(
            &mut client,
            "/svc/secured",
            Some(("Authorization", &bearer)),
        );
        assert_eq!(response.status, 200);
        assert_eq!(response.json()["backend"], "prod");
    }
    assert_eq!(prod.received()[0].header("authorization"), None);
    assert_eq!(sand.request_count(), 0);
}

#[test]
fn keep_token_header_forwards_it() {
    let (prod, sand) = (Backend::echo("prod"), Backend::echo("sand"));
    let gateway = Gateway::start_with(
        &api(&prod, &sand),
        &gateway_yaml("  keep_token_header: true\n"),
        1,
    );
    let mut client = gateway.client();
    let bearer = format!("Bearer {}", production_token());
    assert_eq!(
        get_with(
            &mut client,
            "/svc/secured",
            Some(("Authorization", &bearer))
        )
        .status,
        200
    );
    assert_eq!(
        prod.received()[0].header("authorization"),
        Some(bearer.as_str())
    );
}

#[test]
fn invalid_tokens_are_refused() {
    let (prod, sand) = (Backend::echo("prod"), Backend::echo("sand"));
    let gateway = Gateway::start_with(&api(&prod, &sand), &gateway_yaml(""), 1);
    let mut client = gateway.client();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = token(KeyType::Production, 60, Some(now - 3600));
    let good = production_token();
    let mut tampered = good.clone().into_bytes();
    let middle = good.find('.').unwrap() + 5;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for value in [
        format!("Bearer {expired}"),
        format!("Bearer {tampered}"),
        "Bearer not.a.token".to_owned(),
        "Bearer ".to_owned(),
        format!("Basic {good}"),
        format!("Bearer Bearer {good}"),
        "Bearer eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2xvY2FsaG9zdC9kZXYtb25seSJ9.".to_owned(),
    ] {
        let response = get_with(&mut client, "/svc/secured", Some(("Authorization", &value)));
        assert_eq!(response.status, 401, "{value}");
        assert_eq!(response.json()["code"], "900901");
    }
    assert_eq!(prod.request_count(), 0);
}

#[test]
fn sandbox_key_routes_to_sandbox_endpoints() {
    let (prod, sand) = (Backend::echo("prod"), Backend::echo("sand"));
    let gateway = Gateway::start_with(&api(&prod, &sand), &gateway_yaml(""), 1);
    let mut client = gateway.client();
    let bearer = format!("Bearer {}", token(KeyType::Sandbox, 3600, None));
    let response = get_with(
        &mut client,
        "/svc/secured",
        Some(("Authorization", &bearer)),
    );
    assert_eq!(response.json()["backend"], "sand");
}

#[test]
fn sandbox_key_on_a_resource_without_sandbox_gets_the_cc_401() {
    let (prod, sand) = (Backend::echo("prod"), Backend::echo("sand"));
    let gateway = Gateway::start_with(&api(&prod, &sand), &gateway_yaml(""), 1);
    let mut client = gateway.client();
    let bearer = format!("Bearer {}", token(KeyType::Sandbox, 3600, None));
    let response = get_with(
        &mut client,
        "/svc/prod-only",
        Some(("Authorization", &bearer)),
    );
    assert_eq!(response.status, 401);
    assert_eq!(
        response.json(),
        serde_json::json!({
            "error_message": "Invalid Credentials",
            "code": "900901",
            "error_description": "Sandbox key offered to an API with no sandbox endpoint. Make sure you have provided the correct security credentials"
        })
    );
    assert!(response.header("www-authenticate").is_some());
}

#[test]
fn production_key_on_a_sandbox_only_api_gets_the_cc_401() {
    let sand = Backend::echo("sand");
    let api = format!(
        "openapi: 3.0.1\nx-wso2-basePath: /sb\nx-wso2-sandbox-endpoints: {{urls: ['{}']}}\npaths: {{/x: {{get: {{}}}}}}\n",
        sand.url("")
    );
    let gateway = Gateway::start_with(&api, &gateway_yaml(""), 1);
    let mut client = gateway.client();
    let bearer = format!("Bearer {}", production_token());
    let response = get_with(&mut client, "/sb/x", Some(("Authorization", &bearer)));
    assert_eq!(response.status, 401);
    assert_eq!(
        response.json()["error_description"],
        "Production key offered to an API with no production endpoint. Make sure you have provided the correct security credentials"
    );
    let bearer = format!("Bearer {}", token(KeyType::Sandbox, 3600, None));
    assert_eq!(
        get_with(&mut client, "/sb/x", Some(("Authorization", &bearer))).status,
        200
    );
}

#[test]
fn security_disabled_resource_ignores_the_token_and_uses_production() {
    let (prod, sand) = (Backend::echo("prod"), Backend::echo("sand"));
    let gateway = Gateway::start_with(&api(&prod, &sand), &gateway_yaml(""), 1);
    let mut client = gateway.client();
    assert_eq!(client.get("/svc/open").json()["backend"], "prod");
    let sandbox = format!("Bearer {}", token(KeyType::Sandbox, 3600, None));
    let response = get_with(&mut client, "/svc/open", Some(("Authorization", &sandbox)));
    assert_eq!(response.json()["backend"], "prod");
    let garbage = get_with(
        &mut client,
        "/svc/open",
        Some(("Authorization", "Bearer garbage")),
    );
    assert_eq!(garbage.status, 200);
}

#[test]
fn custom_auth_header_carries_the_token() {
    let backend = Backend::echo("prod");
    let api = format!(
        "openapi: 3.0.1\nx-wso2-basePath: /c\nx-wso2-auth-header: X-API-Token\nx-wso2-production-endpoints: {{urls: ['{}']}}\npaths: {{/x: {{get: {{}}}}}}\n",
        backend.url("")
    );
    let gateway = Gateway::start_with(&api, &gateway_yaml(""), 1);
    let mut client = gateway.client();
    let bearer = format!("Bearer {}", production_token());
    assert_eq!(
        get_with(&mut client, "/c/x", Some(("Authorization", &bearer))).status,
        401
    );
    let response = get_with(&mut client, "/c/x", Some(("x-api-token", &bearer)));
    assert_eq!(response.status, 200);
    assert_eq!(backend.received()[0].header("x-api-token"), None);
}

#[test]
fn endpoint_basic_auth_replaces_authorization() {
    let backend = Backend::echo("prod");
    let api = format!(
        "openapi: 3.0.1\nx-wso2-basePath: /b\nx-wso2-disable-security: true\nx-wso2-production-endpoints:\n  urls: ['{}']\n  securityConfig: {{type: basic, username: admin, password: s3cret}}\npaths: {{/x: {{get: {{}}}}}}\n",
        backend.url("")
    );
    let gateway = Gateway::start_with(&api, &gateway_yaml(""), 1);
    let mut client = gateway.client();
    let response = get_with(
        &mut client,
        "/b/x",
        Some(("Authorization", "Bearer client-token")),
    );
    assert_eq!(response.status, 200);
    let received = &backend.received()[0];
    assert_eq!(
        received.header("authorization"),
        Some("Basic YWRtaW46czNjcmV0")
    );
    assert_eq!(received.header_count("authorization"), 1);
}

// ---------------------------------------------------------------- scopes (BEHAVIOUR.md 5)

fn token_with(issuer: &str, extra: &[(&str, serde_json::Value)]) -> String {
    let key = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-only/jwt-dev-only.key.pem"
    ))
    .unwrap();
    let mut options = MintOptions::new(issuer);
    options.extra_claims = extra
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    mint_token(&key, &options).unwrap()
}

fn scoped(scope: serde_json::Value) -> String {
    token_with(ISSUER, &[("scope", scope)])
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The exact 403 of BEHAVIOUR.md 5 for a request to `path`.
fn scope_403(path: &str) -> serde_json::Value {
    serde_json::json!({
        "error_message": "The access token does not allow you to access the requested resource",
        "code": "900910",
        "error_description": format!("User is NOT authorized to access the Resource: {path}. Scope validation failed."),
    })
}

#[test]
fn scopes_are_an_or_of_ands_in_string_and_array_claims() {
    let backend = Backend::echo("b");
    let api = format!(
        "openapi: 3.0.1
x-wso2-basePath: /s
x-wso2-production-endpoints: {{urls: ['{}']}}
components:
  securitySchemes:
    oauth: {{type: oauth2, flows: {{}}}}
paths:
  /items:
    get:
      security:
        - oauth: [read, write]
        - oauth: [admin]
",
        backend.url("")
    );
    let gateway = Gateway::start_with(&api, &gateway_yaml(""), 1);
    let mut client = gateway.client();
    for (scope, status) in [
        (json!("read write"), 200),
        (json!(["write", "read"]), 200),
        (json!("other admin"), 200),
        (json!(["admin"]), 200),
        (json!("read"), 403),
        (json!(["write", "other"]), 403),
        (json!(""), 403),
        (json!([]), 403),
    ] {
        let response = get_with(
            &mut client,
            "/s/items",
            Some(("Authorization", &bearer(&scoped(scope.clone())))),
        );
        assert_eq!(response.status, status, "scope {scope}");
        if status == 403 {
            assert_eq!(response.json(), scope_403("/s/items"), "scope {scope}");
            assert_eq!(
                response.header("www-authenticate"),
                Some("Bearer realm=\"shardgate\", error=\"insufficient_scope\"")
            );
        }
    }
    // No scope claim at all is a 403 too; no token stays a 401.
    let no_claim = get_with(
        &mut client,
        "/s/items",
        Some(("Authorization", &bearer(&production_token()))),
    );
    assert_eq!(no_claim.status, 403);
    assert_eq!(client.get("/s/items").status, 401);
    assert_eq!(backend.request_count(), 4);
}

/// Choreo Connect's `ScopeTest` definition (integration/test-integration/.../openAPIs/
/// scopes_openAPI.yaml), trimmed to what the gateway reads.
fn cc_scopes_api(backend: &Backend) -> String {
    format!(
        "swagger: '2.0'
info: {{version: 1.0.5, title: SwaggerPetstoreScopes}}
security:
  - petstore_auth:
      - 'write:scopes'
host: 'mockBackend:2383'
x-wso2-production-endpoints:
  urls:
    - '{}'
x-wso2-basePath: /scopes/v2
schemes: [http]
paths:
  /pet/findByStatus:
    get:
      responses: {{'200': {{description: ok}}}}
  '/pet/{{petId}}':
    get:
      security:
        - petstore_auth: []
  '/pets/findByTags':
    get:
      security:
        - petstore_auth:
            - 'write:scopes'
            - 'read:scopes'
securityDefinitions:
  api_key: {{type: apiKey, name: api_key, in: header}}
  petstore_auth:
    type: oauth2
    authorizationUrl: 'http://mockBackend:2380/oauth/authorize'
    flow: implicit
    scopes:
      'read:scopes': read your pets
      'write:scopes': modify pets in your account
",
        backend.url("/v2")
    )
}

#[test]
fn cc_scope_test_token_without_the_api_scope_gets_403() {
    let backend = Backend::echo("b");
    let gateway = Gateway::start_with(&cc_scopes_api(&backend), &gateway_yaml(""), 1);
    let mut client = gateway.client();
    let without = bearer(&production_token());
    let with = bearer(&scoped(serde_json::json!("write:scopes")));
    let response = get_with(
        &mut client,
        "/scopes/v2/pet/findByStatus",
        Some(("Authorization", &without)),
    );
    assert_eq!(response.status, 403);
    assert_eq!(response.json(), scope_403("/scopes/v2/pet/findByStatus"));
    let response = get_with(
        &mut client,
        "/scopes/v2/pet/findByStatus",
        Some(("Authorization", &with)),
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["target"], "/v2/pet/findByStatus");
    // `petstore_auth: []` on the operation overrides the root's scope.
    let response = get_with(
        &mut client,
        "/scopes/v2/pet/1",
        Some(("Authorization", &without)),
    );
    assert_eq!(response.status, 200);
    // Both scopes of one requirement object are needed (CC accepts either one; BEHAVIOUR.md
    // 5 asks for OpenAPI's AND).
    let response = get_with(
        &mut client,
        "/scopes/v2/pets/findByTags",
        Some(("Authorization", &with)),
    );
    assert_eq!(response.status, 403);
    let both = bearer(&scoped(serde_json::json!(["read:scopes", "write:scopes"])));
    let response = get_with(
        &mut client,
        "/scopes/v2/pets/findByTags",
        Some(("Authorization", &both)),
    );
    assert_eq!(response.status, 200);
}

/// Choreo Connect's `DisableSecurityTestCase` definition (disable_security_openAPI.yaml).
fn cc_disable_security_api(backend: &Backend) -> String {
    format!(
        "openapi: '3.0.0'
info: {{version: 1.0.0, title: Swagger Petstore Disable Security}}
servers:
  - url: http://mockBackend:2383
x-wso2-production-endpoints:
  urls:
    - '{}'
x-wso2-basePath: /disable_security
paths:
  /pet/findByStatus:
    get:
      operationId: findPetsByStatus
  /echo-full:
    x-wso2-disable-security: true
    post:
      operationId: findPets
  /echo:
    post:
      operationId: findPetsByInventory
      x-wso2-disable-security: true
  /pet/findByTags:
    get:
      operationId: findPetsByInventory
      x-auth-type: None
",
        backend.url("/v2")
    )
}

#[test]
fn cc_disable_security_test_case_expectations() {
    let backend = Backend::echo("b");
    let gateway = Gateway::start_with(&cc_disable_security_api(&backend), &gateway_yaml(""), 1);
    let mut client = gateway.client();
    assert_eq!(client.get("/disable_security/pet/findByStatus").status, 401);
    let response = client.get("/disable_security/pet/findByTags");
    assert_eq!(response.status, 200, "x-auth-type: None needs no token");
    assert_eq!(response.json()["target"], "/v2/pet/findByTags");
    for path in ["/disable_security/echo-full", "/disable_security/echo"] {
        let token = "Bearer dGVzdHRva2VuIC1uCg==";
        let response = client.request("POST", path, &[("Authorization", token)], b"12345");
        assert_eq!(response.status, 200, "{path}");
        // The client's Authorization reaches the backend of an unsecured resource.
        assert_eq!(response.json()["headers"]["authorization"], token, "{path}");
    }
}

#[test]
fn empty_operation_security_needs_no_token() {
    let backend = Backend::echo("b");
    let api = format!(
        "openapi: 3.0.1\nx-wso2-basePath: /e\nx-wso2-production-endpoints: {{urls: ['{}']}}\ncomponents: {{securitySchemes: {{oauth: {{type: oauth2, flows: {{}}}}}}}}\nsecurity: [{{oauth: [read]}}]\npaths:\n  /open: {{get: {{security: []}}}}\n  /closed: {{get: {{}}}}\n",
        backend.url("")
    );
    let gateway = Gateway::start_with(&api, &gateway_yaml(""), 1);
    let mut client = gateway.client();
    assert_eq!(client.get("/e/open").status, 200);
    assert_eq!(client.get("/e/closed").status, 401);
}

// ---------------------------------------------------------------- API keys

const KEY_ISSUER: &str = "https://localhost/dev-only-api-keys";

/// The dev issuer for bearer tokens plus an API-key issuer (same dev key pair).
fn api_key_gateway_yaml() -> String {
    let cert = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-only/jwt-dev-only.cert.pem"
    );
    gateway_yaml(&format!(
        "    - issuer: {KEY_ISSUER}\n      certificate: {cert}\n      api_key: true\n"
    ))
}

fn api_key() -> String {
    token_with(KEY_ISSUER, &[])
}

#[test]
fn api_key_in_the_apikey_header_is_verified_and_not_forwarded() {
    let backend = Backend::echo("b");
    let api = format!(
        "openapi: 3.0.1\nx-wso2-basePath: /k\nx-wso2-production-endpoints: {{urls: ['{}']}}\nx-wso2-application-security:\n  security-types: [oauth2, api_key]\n  optional: false\npaths: {{/x: {{get: {{}}}}}}\n",
        backend.url("")
    );
    let gateway = Gateway::start_with(&api, &api_key_gateway_yaml(), 1);
    let mut client = gateway.client();
    let key = api_key();
    let response = get_with(&mut client, "/k/x", Some(("ApiKey", &key)));
    assert_eq!(response.status, 200);
    let received = backend.received();
    assert_eq!(received[0].header("apikey"), None, "the key is removed");
    // Any one of the listed types suffices: a bearer token too.
    let response = get_with(
        &mut client,
        "/k/x",
        Some(("Authorization", &bearer(&production_token()))),
    );
    assert_eq!(response.status, 200);
    // An API key is no bearer token, and a bearer token no API key.
    let response = get_with(&mut client, "/k/x", Some(("Authorization", &bearer(&key))));
    assert_eq!(response.status, 401);
    let response = get_with(&mut client, "/k/x", Some(("apikey", &production_token())));
    assert_eq!(response.status, 401);
    assert_eq!(response.json()["code"], "900901");
    let response = get_with(&mut client, "/k/x", Some(("apikey", "not-a-jwt")));
    assert_eq!(response.status, 401);
    assert_eq!(backend.request_count(), 2);
}

#[test]
fn api_key_in_the_query_is_verified_and_removed_from_the_forwarded_query() {
    let backend = Backend::echo("b");
    let api = format!(
        "openapi: 3.0.1\nx-wso2-basePath: /k\nx-wso2-production-endpoints: {{urls: ['{}/v1']}}\nx-wso2-application-security: {{security-types: [api_key]}}\npaths: {{/x: {{get: {{}}}}}}\n",
        backend.url("")
    );
    let gateway = Gateway::start_with(&api, &api_key_gateway_yaml(), 1);
    let mut client = gateway.client();
    let key = api_key();
    let response = client.get(&format!("/k/x?status=sold&apikey={key}&page=2"));
    assert_eq!(response.status, 200);
    let response = client.get(&format!("/k/x?apikey={key}"));
    assert_eq!(response.status, 200);
    let targets: Vec<String> = backend
        .received()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(targets, ["/v1/x?status=sold&page=2", "/v1/x"]);
    // Only API keys are accepted here: a bearer token is not enough.
    let response = get_with(
        &mut client,
        "/k/x",
        Some(("Authorization", &bearer(&production_token()))),
    );
    assert_eq!(response.status, 401);
}

#[test]
fn api_key_schemes_name_their_header_or_query_parameter() {
    let backend = Backend::echo("b");
    let api = format!(
        "openapi: 3.0.1
x-wso2-basePath: /k
x-wso2-production-endpoints: {{urls: ['{}']}}
components:
  securitySchemes:
    header_key: {{type: apiKey, in: header, name: X-Api-Key}}
    query_key: {{type: apiKey, in: query, name: key}}
security: [{{header_key: []}}, {{query_key: []}}]
paths: {{/x: {{get: {{}}}}}}
",
        backend.url("")
    );
    let gateway = Gateway::start_with(&api, &api_key_gateway_yaml(), 1);
    let mut client = gateway.client();
    let key = api_key();
    let response = get_with(&mut client, "/k/x?a=1", Some(("x-api-key", &key)));
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["headers"].get("x-api-key"), None);
    let response = client.get(&format!("/k/x?key={key}&a=1"));
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["target"], "/x?a=1");
    // The default `apikey` header is not one of this API's.
    let response = get_with(&mut client, "/k/x", Some(("apikey", &key)));
    assert_eq!(response.status, 401);
}

// ---------------------------------------------------------------- load errors

fn load_errors(api: &str, gateway: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("apis")).unwrap();
    std::fs::write(dir.path().join("apis/api.yaml"), api).unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, format!("apis: [apis/]\n{gateway}")).unwrap();
    match shardgate::compile::snapshot::Snapshot::load(&shardgate::compile::snapshot::LoadOptions {
        config: Some(config),
        apis: vec![],
        resolve_hosts: false,
    }) {
        Ok(_) => panic!("expected a load error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unenforceable_security_is_a_load_error_naming_file_field_and_line() {
    let head = "openapi: 3.0.1\nx-wso2-basePath: /l\nx-wso2-production-endpoints: {urls: ['http://127.0.0.1:1']}\n";
    let cases = [
        (
            format!("{head}components:\n  securitySchemes:\n    basic: {{type: http, scheme: basic}}\npaths:\n  /x:\n    get:\n      security: [{{basic: []}}]\n"),
            gateway_yaml(""),
            "apis/api.yaml: paths./x.get.security[0].basic: security scheme 'basic' is HTTP basic authentication, which shardgate does not enforce",
            10,
        ),
        (
            format!("{head}components:\n  securitySchemes:\n    c: {{type: apiKey, in: cookie, name: sid}}\npaths:\n  /x:\n    get:\n      security:\n        - c: []\n"),
            api_key_gateway_yaml(),
            "apis/api.yaml: paths./x.get.security[0].c: security scheme 'sid' sends its API key in 'cookie'",
            11,
        ),
        (
            format!("{head}x-wso2-mutual-ssl: required\npaths: {{/x: {{get: {{}}}}}}\n"),
            gateway_yaml(""),
            "apis/api.yaml: x-wso2-mutual-ssl: unknown x-wso2-mutual-ssl value 'required'",
            4,
        ),
        (
            format!("{head}x-wso2-mutual-ssl: mandatory\npaths: {{/x: {{get: {{}}}}}}\n"),
            gateway_yaml(""),
            "apis/api.yaml: x-wso2-mutual-ssl: mutual TLS, but there is nothing to verify client certificates against: set tls.client_ca",
            4,
        ),
        (
            format!("{head}paths:\n  /x:\n    get:\n      x-wso2-application-security: {{security-types: [api_key]}}\n"),
            gateway_yaml(""),
            "apis/api.yaml: paths./x.get.x-wso2-application-security: accepts API keys, but no jwt.issuers entry has api_key: true",
            7,
        ),
    ];
    for (api, gateway, expected, line) in cases {
        let error = load_errors(&api, &gateway);
        let error = error
            .lines()
            .find(|l| l.contains("apis/api.yaml"))
            .unwrap_or(&error);
        let shown = error
            .split_once("apis/api.yaml")
            .map(|(_, rest)| format!("apis/api.yaml{rest}"))
            .unwrap();
        assert!(shown.starts_with(expected), "{shown}");
        assert!(shown.ends_with(&format!("(line {line})")), "{shown}");
    }
}

// ---------------------------------------------------------------- failures by reason

#[test]
fn auth_failures_are_counted_by_reason_in_metrics_and_logged_at_debug() {
    let backend = Backend::echo("b");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("api.yaml"),
        format!(
            "openapi: 3.0.1\nx-wso2-basePath: /m\nx-wso2-production-endpoints: {{urls: ['{}']}}\npaths:\n  /x: {{get: {{x-scopes: [admin]}}}}\n",
            backend.url("")
        ),
    )
    .unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, format!("apis: [api.yaml]\n{}", gateway_yaml(""))).unwrap();
    let config_arg = config.to_string_lossy().into_owned();
    let gateway = support::GatewayProcess::start(&[
        "--config",
        &config_arg,
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--log-level",
        "debug",
    ]);
    let mut client = gateway.client();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = token(KeyType::Production, 60, Some(now - 3600));
    let good = scoped(json!("admin"));
    let mut tampered = good.clone().into_bytes();
    let at = good.rfind('.').unwrap() + 3;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let stranger = token_with("https://unknown.example", &[]);
    for (header, status) in [
        (None, 401),
        (Some(bearer(&expired)), 401),
        (Some(bearer(&expired)), 401),
        (Some(bearer(&tampered)), 401),
        (Some(bearer(&stranger)), 401),
        (Some("Bearer a.b".to_owned()), 401),
        (Some(bearer(&production_token())), 403),
        (Some(bearer(&good)), 200),
    ] {
        let response = get_with(
            &mut client,
            "/m/x",
            header.as_deref().map(|h| ("Authorization", h)),
        );
        assert_eq!(response.status, status, "{header:?}");
    }
    let (status, text) = support::admin_request(gateway.admin_addr(), "GET", "/metrics");
    assert_eq!(status, 200);
    for (reason, count) in [
        ("missing", 1),
        ("expired", 2),
        ("bad_signature", 1),
        ("unknown_issuer", 1),
        ("malformed", 1),
        ("missing_scope", 1),
        ("no_client_certificate", 0),
    ] {
        let line = format!("shardgate_auth_failures_total{{reason=\"{reason}\"}} {count}\n");
        assert!(text.contains(&line), "{line}in:\n{text}");
    }
    assert!(
        support::eventually(Duration::from_secs(10), || {
            let log = gateway.log_text();
            [
                "missing",
                "expired",
                "bad_signature",
                "unknown_issuer",
                "missing_scope",
            ]
            .iter()
            .all(|reason| log.contains(&format!("GET /m/x refused ({reason})")))
        }),
        "{}",
        gateway.log_text()
    );
}
