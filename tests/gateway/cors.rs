//! CORS: preflights answered by the gateway, allow headers on responses (errors included),
//! per the API's `x-wso2-cors` or the gateway-wide policy.

use crate::support;

use support::{Backend, Gateway};

fn api(backend: &Backend, cors: &str) -> String {
    format!(
        "openapi: 3.0.1\nx-wso2-basePath: /c\n{cors}x-wso2-production-endpoints: {{urls: ['{}']}}\npaths:\n  /open:\n    get:\n      x-wso2-disable-security: true\n  /secured:\n    get: {{}}\n",
        backend.url("")
    )
}

const CORS: &str = "x-wso2-cors:\n  corsConfigurationEnabled: true\n  accessControlAllowOrigins: ['https://app.example']\n  accessControlAllowCredentials: true\n  accessControlAllowHeaders: [authorization, content-type]\n  accessControlAllowMethods: [GET, POST]\n  accessControlExposeHeaders: [x-request-id]\n";

fn issuer() -> String {
    let cert = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-only/jwt-dev-only.cert.pem"
    );
    format!(
        "jwt:\n  issuers:\n    - issuer: https://localhost/dev-only\n      certificate: {cert}\n"
    )
}

#[test]
fn preflight_is_answered_by_the_gateway_without_a_token() {
    let backend = Backend::echo("b");
    let gateway = Gateway::start_with(&api(&backend, CORS), &issuer(), 1);
    let mut client = gateway.client();
    let response = client.request(
        "OPTIONS",
        "/c/secured",
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
        b"",
    );
    assert_eq!(response.status, 204);
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        response.header("access-control-allow-methods"),
        Some("GET, POST")
    );
    assert_eq!(
        response.header("access-control-allow-headers"),
        Some("authorization, content-type")
    );
    assert_eq!(
        response.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(response.header("vary"), Some("Origin"));
    assert_eq!(backend.request_count(), 0);
}

#[test]
fn allowed_origins_get_allow_headers_on_responses_and_errors() {
    let backend = Backend::echo("b");
    let gateway = Gateway::start_with(&api(&backend, CORS), &issuer(), 1);
    let mut client = gateway.client();
    let ok = client.request("GET", "/c/open", &[("Origin", "https://app.example")], b"");
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        ok.header("access-control-expose-headers"),
        Some("x-request-id")
    );
    // A browser must be able to read the 401 too.
    let denied = client.request(
        "GET",
        "/c/secured",
        &[("Origin", "https://app.example")],
        b"",
    );
    assert_eq!(denied.status, 401);
    assert_eq!(
        denied.header("access-control-allow-origin"),
        Some("https://app.example")
    );
}

#[test]
fn other_origins_get_no_allow_headers() {
    let backend = Backend::echo("b");
    let gateway = Gateway::start_with(&api(&backend, CORS), &issuer(), 1);
    let mut client = gateway.client();
    let response = client.request("GET", "/c/open", &[("Origin", "https://evil.example")], b"");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("access-control-allow-origin"), None);
    let preflight = client.request(
        "OPTIONS",
        "/c/open",
        &[
            ("Origin", "https://evil.example"),
            ("Access-Control-Request-Method", "GET"),
        ],
        b"",
    );
    assert_eq!(preflight.header("access-control-allow-origin"), None);
}

#[test]
fn gateway_wide_policy_applies_to_apis_without_their_own() {
    let backend = Backend::echo("b");
    let global = format!("{}cors:\n  allow_origins: ['*']\n", issuer());
    let gateway = Gateway::start_with(&api(&backend, ""), &global, 1);
    let mut client = gateway.client();
    let response = client.request("GET", "/c/open", &[("Origin", "https://any.example")], b"");
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn without_a_policy_nothing_is_added() {
    let backend = Backend::echo("b");
    let gateway = Gateway::start_with(&api(&backend, ""), &issuer(), 1);
    let mut client = gateway.client();
    let response = client.request("GET", "/c/open", &[("Origin", "https://app.example")], b"");
    assert_eq!(response.header("access-control-allow-origin"), None);
}
