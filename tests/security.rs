//! JWT security and environments through the data path (BEHAVIOUR.md 2 and 5), with tokens
//! minted by the dev key pair and real backends.

mod support;

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
