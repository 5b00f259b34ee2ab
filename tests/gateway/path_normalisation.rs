//! Path normalisation before routing and authorization (BEHAVIOUR.md §2, issue 14), on real
//! loopback sockets: every traversal spelling of the issue, checked on what each backend
//! received. A request never reaches a path outside its endpoint's base path, and the API that
//! authorised a request is the API whose backend got it.

use crate::support;

use shardgate::auth::{mint_token, KeyType, MintOptions};
use shardgate::metrics::Rejection;
use support::hostile::{panics, ScriptedBackend};
use support::{admin_request, api_file, Client, Gateway, GatewayProcess, Response};

const ISSUER: &str = "https://localhost/dev-only";

fn jwt_yaml() -> String {
    let cert = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-only/jwt-dev-only.cert.pem"
    );
    format!("jwt:\n  issuers:\n    - issuer: {ISSUER}\n      certificate: {cert}\n")
}

fn bearer() -> String {
    let key = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-only/jwt-dev-only.key.pem"
    ))
    .unwrap();
    let mut options = MintOptions::new(ISSUER);
    options.key_type = KeyType::Production;
    options.ttl_secs = 3600;
    format!("Bearer {}", mint_token(&key, &options).unwrap())
}

/// An API at `base` over `url` whose every path (`/*`) takes GET; open or secured.
fn api(title: &str, base: &str, url: &str, secured: bool) -> String {
    let security = if secured {
        ""
    } else {
        "x-wso2-disable-security: true\n"
    };
    format!(
        "openapi: 3.0.1\ninfo: {{title: {title}, version: '1'}}\nx-wso2-basePath: {base}\n{security}x-wso2-production-endpoints:\n  urls: ['{url}']\npaths:\n  /*:\n    get: {{}}\n"
    )
}

/// Two APIs side by side, each with its own echoing backend.
struct Rig {
    open: ScriptedBackend,
    admin: ScriptedBackend,
    gateway: Gateway,
}

/// Open `open_base` -> `open backend + open_endpoint_path`, secured `/admin` -> `admin
/// backend + /admin`.
fn rig(open_base: &str, open_endpoint_path: &str) -> Rig {
    let open = ScriptedBackend::echo_targets();
    let admin = ScriptedBackend::echo_targets();
    let gateway = Gateway::start_apis(
        &[
            &api("open", open_base, &open.url(open_endpoint_path), false),
            &api("admin", "/admin", &admin.url("/admin"), true),
        ],
        &jwt_yaml(),
        1,
    );
    Rig {
        open,
        admin,
        gateway,
    }
}

fn send(client: &mut Client, target: &str, token: Option<&str>) -> Response {
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: gateway.test\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: {token}\r\n"));
    }
    request.push_str("\r\n");
    client.send(request.as_bytes());
    client
        .read_response(false)
        .unwrap_or_else(|e| panic!("{target}: no response: {e}"))
}

/// The targets a backend received, in order.
fn targets(backend: &ScriptedBackend) -> Vec<String> {
    backend.requests().into_iter().map(|r| r.target).collect()
}

/// Without a token: 401 and neither backend saw anything. With one: 200, and only the admin
/// backend got the request, at `expected`.
fn assert_needs_the_admin_token(rig: &Rig, target: &str, expected: &str) {
    let (open_before, admin_before) = (rig.open.requests().len(), rig.admin.requests().len());
    let response = send(&mut rig.gateway.client(), target, None);
    assert_eq!(response.status, 401, "{target} without a token");
    assert_eq!(response.json()["code"], "900901", "{target}");
    assert_eq!(rig.open.requests().len(), open_before, "{target}");
    assert_eq!(rig.admin.requests().len(), admin_before, "{target}");

    let response = send(&mut rig.gateway.client(), target, Some(&bearer()));
    assert_eq!(response.status, 200, "{target} with a token");
    assert_eq!(response.text(), expected, "{target}");
    assert_eq!(
        rig.open.requests().len(),
        open_before,
        "{target} reached the open backend"
    );
    assert_eq!(targets(&rig.admin)[admin_before..], [expected], "{target}");
}

/// 400 with a JSON body and `connection: close`; neither backend saw anything.
fn assert_bad_request(rig: &Rig, target: &str, token: Option<&str>) {
    let (open_before, admin_before) = (rig.open.raw_total(), rig.admin.raw_total());
    let mut client = rig.gateway.client();
    let response = send(&mut client, target, token);
    assert_eq!(response.status, 400, "{target}");
    assert_eq!(response.json()["code"], "400", "{target}");
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.header("connection"), Some("close"), "{target}");
    assert!(response.header("date").is_some(), "{target}");
    assert_eq!(rig.open.raw_total(), open_before, "{target}");
    assert_eq!(rig.admin.raw_total(), admin_before, "{target}");
}

fn path_rejections(gateway: &Gateway) -> u64 {
    gateway.shard_sum(|m| m.rejections(Rejection::Path))
}

#[test]
fn traversal_out_of_an_open_api_into_a_secured_one_needs_the_token() {
    let rig = rig("/pub", "/v2");
    // The issue's spellings: encoded dots, raw dots (curl --path-as-is), encoded slash.
    assert_needs_the_admin_token(&rig, "/pub/%2e%2e/admin/", "/admin/");
    assert_needs_the_admin_token(&rig, "/pub/../admin/", "/admin/");
    assert_needs_the_admin_token(&rig, "/pub/%2E./admin/secret", "/admin/secret");
    assert_bad_request(&rig, "/pub/..%2fadmin/", None);
    assert_bad_request(&rig, "/pub/..%2fadmin/", Some(&bearer()));
    assert_bad_request(&rig, "/pub/..%5cadmin/", None);
    assert_bad_request(&rig, "/pub/..\\admin/", None);
    assert_eq!(path_rejections(&rig.gateway), 4);
    // Dots that stay inside the open API stay inside its endpoint's base path.
    let response = send(&mut rig.gateway.client(), "/pub/a/../b/./c", None);
    assert_eq!(response.status, 200);
    assert_eq!(targets(&rig.open), ["/v2/b/c"]);
    assert_eq!(panics(&rig.gateway), 0);
}

#[test]
fn a_catch_all_open_api_cannot_be_used_to_skip_the_admin_token() {
    let rig = rig("/", "");
    for target in [
        "//admin/",
        "/%61dmin/",
        "/./admin/",
        "/x/../admin/",
        "/%2e/admin/",
    ] {
        assert_needs_the_admin_token(&rig, target, "/admin/");
    }
    assert_needs_the_admin_token(&rig, "///admin//users", "/admin/users");
    // An encoded slash is refused outright (§2), token or not: it never reaches `/`'s backend.
    assert_bad_request(&rig, "/admin%2f", None);
    assert_bad_request(&rig, "/admin%2F", Some(&bearer()));
    // Climbing above the root is refused, not clamped at `/`.
    assert_bad_request(&rig, "/../admin/", None);
    assert_bad_request(&rig, "/x/../../admin/", None);
    // The catch-all still gets what is really its own, normalised.
    let response = send(&mut rig.gateway.client(), "/docs/%7euser/./a%3ab", None);
    assert_eq!(response.status, 200);
    assert_eq!(targets(&rig.open), ["/docs/~user/a%3Ab"]);
    assert!(targets(&rig.admin).iter().all(|t| t.starts_with("/admin")));
    assert_eq!(panics(&rig.gateway), 0);
}

#[test]
fn an_encoded_slash_cannot_stretch_a_param_over_two_segments() {
    let backend = ScriptedBackend::echo_targets();
    let definition = format!(
        "openapi: 3.0.1\ninfo: {{title: pets, version: '1'}}\nx-wso2-basePath: /pets\nx-wso2-disable-security: true\nx-wso2-production-endpoints:\n  urls: ['{}']\npaths:\n  /pet/{{id}}:\n    get: {{}}\n",
        backend.url("/v2")
    );
    let gateway = Gateway::start(&definition);
    let mut client = gateway.client();
    let response = send(&mut client, "/pets/pet/..%2F..%2Fsecret", None);
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json()["description"],
        "encoded slash (%2F) in path"
    );
    assert!(client.is_closed(std::time::Duration::from_secs(5)));
    // Decoded dots that would leave the resource land on another path, which is not defined.
    let response = send(
        &mut gateway.client(),
        "/pets/pet/%2e%2e/%2e%2e/secret",
        None,
    );
    assert_eq!(response.status, 404);
    let response = send(&mut gateway.client(), "/pets/pet/%34%32", None);
    assert_eq!(response.status, 200);
    assert_eq!(targets(&backend), ["/v2/pet/42"]);
}

#[test]
fn the_query_is_forwarded_untouched() {
    let rig = rig("/pub", "/v2");
    let response = send(
        &mut rig.gateway.client(),
        "/pub/a/./b?next=/../admin/%2f&x=%2e%2e",
        None,
    );
    assert_eq!(response.status, 200);
    assert_eq!(targets(&rig.open), ["/v2/a/b?next=/../admin/%2f&x=%2e%2e"]);
    // The raw head bytes: normalised path, verbatim query.
    let raw = rig.open.requests()[0].raw_head.clone();
    assert!(
        raw.starts_with(b"GET /v2/a/b?next=/../admin/%2f&x=%2e%2e HTTP/1.1\r\n"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
}

#[test]
fn pipelined_requests_each_get_their_own_normalised_path() {
    let rig = rig("/pub", "/v2");
    let mut client = rig.gateway.client();
    client.send(
        b"GET /pub/a/../b HTTP/1.1\r\nHost: h\r\n\r\n\
GET /pub/plain HTTP/1.1\r\nHost: h\r\n\r\n\
GET /pub//c/%2e/d HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    for expected in ["/v2/b", "/v2/plain", "/v2/c/d"] {
        let response = client.read_response(false).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), expected);
    }
    assert_eq!(targets(&rig.open), ["/v2/b", "/v2/plain", "/v2/c/d"]);
}

#[test]
fn path_rejections_show_in_the_metrics_endpoint() {
    let backend = ScriptedBackend::echo_targets();
    let (_dir, api) = api_file(&api("open", "/pub", &backend.url("/v2"), false));
    let gateway = GatewayProcess::start(&[
        "--api",
        &api,
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--admin",
        "127.0.0.1:0",
    ]);
    let admin = gateway.admin_addr();
    for target in ["/pub/%2f", "/../x", "/pub/%zz"] {
        assert_eq!(send(&mut gateway.client(), target, None).status, 400);
    }
    let mut client = gateway.client();
    client.send(b"POST /pub/a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(client.read_response(false).unwrap().status, 400);
    assert_eq!(
        send(&mut gateway.client(), "/pub/a?%2f", None).status,
        200,
        "the query is not the path"
    );
    let (status, text) = admin_request(admin, "GET", "/metrics");
    assert_eq!(status, 200);
    let value = |reason: &str| {
        let series = format!("shardgate_request_rejections_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {series} in {text}"))
    };
    assert_eq!(value("path"), 3);
    assert_eq!(value("framing"), 1);
    assert_eq!(value("syntax"), 0);
    assert_eq!(backend.requests().len(), 1);
}

/// nginx's own URI normalisation vectors (nginx-tests `http_uri.t` and `merge_slashes.t`, read
/// for their facts: request, then the `$uri` nginx computed), sent through the gateway to a
/// catch-all API; the backend must receive the path nginx would have normalised to. Where
/// shardgate deliberately answers otherwise, the case says so.
#[test]
fn nginx_uri_normalisation_vectors_give_nginx_paths() {
    let backend = ScriptedBackend::echo_targets();
    let gateway = Gateway::start(&api("all", "/", &backend.url(""), false));
    let forwarded = [
        // (request target, what the backend receives)
        ("/foo/bar/.?args", "/foo/bar/?args"),
        ("/foo/bar/..?args", "/foo/?args"),
        ("/foo/bar/.", "/foo/bar/"),
        ("/foo/bar/..", "/foo/"),
        // merge_slashes on (nginx's default): merged before `..` is applied.
        ("/foo//../bar", "/bar"),
        ("/foo///../bar", "/bar"),
        // nginx decodes `%02` into its internal `$uri`; what goes upstream stays encoded.
        ("/%02", "/%02"),
    ];
    for (target, expected) in forwarded {
        let before = backend.requests().len();
        let response = send(&mut gateway.client(), target, None);
        assert_eq!(response.status, 200, "{target}");
        assert_eq!(targets(&backend)[before..], [expected], "{target}");
    }
    // Refused by nginx and here alike.
    for target in ["/foo/bar%", "/foo/bar%1"] {
        let response = send(&mut gateway.client(), target, None);
        assert_eq!(response.status, 400, "{target}");
    }
    // nginx strips a fragment and accepts an absolute-form target without a path; shardgate
    // refuses both (a fragment is never sent by a real client; see http::request).
    for target in ["/foo/bar/.#frag", "http://localhost"] {
        let response = send(&mut gateway.client(), target, None);
        assert_eq!(response.status, 400, "{target}");
    }
    assert_eq!(panics(&gateway), 0);
}
