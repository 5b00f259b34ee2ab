//! Inputs that the fuzz targets in `fuzz/` (see docs/fuzzing.md) found to break an invariant,
//! replayed through the same public functions as plain tests, with the fixed behaviour
//! asserted. Each test names the target and the minimised input it came from.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use shardgate::auth::{AuthError, Verifier};
use shardgate::compile::config::document::Document;
use shardgate::compile::config::error::Segment;
use shardgate::compile::config::jwt::{JwtConfig, JwtIssuerConfig, SharedSecret};
use shardgate::compile::config::locate::{line_of, Syntax};
use shardgate::compile::config::openapi::{read_definition, ProjectDefaults};
use shardgate::http::Method;
use shardgate::ids::RouteId;
use shardgate::route::{Lookup, Router};

/// The HMAC issuer of the `jwt` fuzz target (fuzz/src/jwt.rs), with the same secret.
const FUZZ_ISSUER: &str = "https://fuzz.invalid/hmac";
const FUZZ_SECRET: &str = "fuzz-only-hmac-secret-0123456789-0123456789-0123456789-abcdefghi";

fn fuzz_verifier() -> Verifier {
    let cfg = JwtConfig {
        issuers: vec![JwtIssuerConfig {
            name: Some("fuzz-hmac".into()),
            issuer: FUZZ_ISSUER.into(),
            certificate: None,
            public_key: None,
            jwks: None,
            audience: vec!["fuzz-aud".into(), "other-aud".into()],
            shared_secret: Some(SharedSecret::new(FUZZ_SECRET)),
            api_key: false,
        }],
        ..JwtConfig::default()
    };
    Verifier::from_config(&cfg, Path::new(".")).expect("valid jwt config")
}

/// A compact JWS over the exact `header` and `payload` bytes, signed HS384 as the fuzz target
/// signs it.
fn hs384_token(header: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut token = URL_SAFE_NO_PAD.encode(header).into_bytes();
    token.push(b'.');
    token.extend_from_slice(URL_SAFE_NO_PAD.encode(payload).as_bytes());
    let key = hmac::Key::new(hmac::HMAC_SHA384, FUZZ_SECRET.as_bytes());
    let tag = hmac::sign(&key, &token);
    token.push(b'.');
    token.extend_from_slice(URL_SAFE_NO_PAD.encode(tag.as_ref()).as_bytes());
    token
}

const HEADER: &[u8] = br#"{"alg":"HS384"}"#;
const CLAIMS_PREFIX: &[u8] = br#"{"iss":"https://fuzz.invalid/hmac","exp":1,"aud":["other-aud"],"#;

/// jwt target, fuzz/artifacts/jwt/minimized-from-f78d735012c3a414dbfeb395f8eedcef852999bf:
/// a correctly signed claims set whose unread member `""` holds the byte 0xAA. RFC 7519 §7.2
/// wants a UTF-8 JSON object; serde_json checks UTF-8 only in the members it decodes, so the
/// verifier accepted it (any JSON parser downstream refuses it).
#[test]
fn jwt_claims_with_invalid_utf8_in_an_unread_member_are_malformed() {
    let verifier = fuzz_verifier();
    let mut payload = CLAIMS_PREFIX.to_vec();
    payload.extend_from_slice(b"\"\":\"\xaa\"}");
    let token = hs384_token(HEADER, &payload);
    assert!(
        matches!(verifier.verify(&token, 0), Err(AuthError::Malformed(_))),
        "{:?}",
        verifier.verify(&token, 0)
    );

    // The same claims set in UTF-8 is accepted.
    let mut payload = CLAIMS_PREFIX.to_vec();
    payload.extend_from_slice("\"\":\"\u{aa}\"}".as_bytes());
    let token = hs384_token(HEADER, &payload);
    assert!(verifier.verify(&token, 0).is_ok());
}

/// The same fault in the JOSE header (RFC 7515 §5.2 step 4): an unread `typ` holding 0xFF.
#[test]
fn jwt_header_with_invalid_utf8_in_an_unread_member_is_malformed() {
    let verifier = fuzz_verifier();
    let mut payload = CLAIMS_PREFIX.to_vec();
    payload.extend_from_slice(br#""sub":"s"}"#);
    let token = hs384_token(b"{\"alg\":\"HS384\",\"typ\":\"\xff\"}", &payload);
    assert!(
        matches!(verifier.verify(&token, 0), Err(AuthError::Malformed(_))),
        "{:?}",
        verifier.verify(&token, 0)
    );
    let token = hs384_token(br#"{"alg":"HS384","typ":"JWT"}"#, &payload);
    assert!(verifier.verify(&token, 0).is_ok());
}

/// config target, fuzz/artifacts/config/minimized-from-af9bc1d637c0a0f0a846b946ec07d5ebb4f29f9b
/// (a definition read with apictl project defaults): `paths` is a mapping behind a YAML tag
/// (`!`). The definition reader looks through tags, finds a bad resource under it and asks
/// `line_of` for its line; the locating walk stopped at the tag without consuming the tagged
/// mapping, and serde_yaml then panicked ("unexpected end of mapping") instead of the file
/// getting an error.
#[test]
fn definition_with_a_tagged_mapping_is_refused_with_located_errors() {
    let file = Path::new("project/Definitions/swagger.yaml");
    let project = ProjectDefaults {
        name: Some("FuzzProject".into()),
        context: Some("/fuzz/{version}".into()),
        version: Some("1.0.0".into()),
        production: None,
        sandbox: None,
        ..ProjectDefaults::default()
    };
    let doc = Document::parse(file, "openapi: 3.\npaths: !\n o:\n".to_owned()).unwrap();
    let (result, _) = read_definition(&doc, Some(&project));
    let errors = result.expect_err("'o' is not a path");
    assert!(errors.iter().all(|e| e.file == file), "{errors:?}");
    let at_o: Vec<_> = errors.iter().filter(|e| e.field == "paths.o").collect();
    assert!(!at_o.is_empty(), "{errors:?}");
    assert!(at_o.iter().all(|e| e.line == Some(3)), "{at_o:?}");
}

/// The same walk, directly: fields under tagged values are located through the tag, and a
/// path deeper than a tagged scalar finds nothing.
#[test]
fn line_of_looks_through_yaml_tags() {
    let key = |k: &str| Segment::Key(k.to_owned());
    let text = "a: !t\n  b:\n    c: 1\nd: !s 5\ne: 2\n";
    assert_eq!(
        line_of(text, Syntax::Yaml, &[key("a"), key("b"), key("c")]),
        Some(3)
    );
    assert_eq!(line_of(text, Syntax::Yaml, &[key("a"), key("x")]), None);
    assert_eq!(line_of(text, Syntax::Yaml, &[key("d"), key("x")]), None);
    assert_eq!(line_of(text, Syntax::Yaml, &[key("e")]), Some(5));
    assert_eq!(line_of(text, Syntax::Yaml, &[key("d")]), Some(4));
}

/// router target (noticed while writing its reference matcher, then timed): a segment with
/// several parameters, such as `{a}-{b}-{c}.json`, was matched by trying every occurrence of
/// each literal, so a lookup cost O(n^k) for k parameters in a segment of n bytes. A client
/// sending one path segment of 2000 dashes made a shard spend ~5 s (release build) on one
/// lookup, 4000 dashes ~45 s, well within the default 8 KiB request line.
#[test]
fn lookup_of_a_long_segment_against_a_multi_parameter_template_is_fast() {
    let mut router = Router::new();
    let api = router.add_api("/").unwrap();
    router
        .add_route(api, "/{a}-{b}-{c}.json", Method::Get, RouteId(0))
        .unwrap();
    let dashes = "-".repeat(2000);
    let start = Instant::now();
    let miss = router.lookup(Method::Get, format!("/{dashes}").as_bytes());
    let hit = router.lookup(Method::Get, format!("/{dashes}.json").as_bytes());
    let elapsed = start.elapsed();
    assert_eq!(miss, Lookup::NotFound);
    assert!(matches!(hit, Lookup::Found(_)), "{hit:?}");
    assert!(
        elapsed < Duration::from_secs(2),
        "two lookups took {elapsed:?}"
    );

    // What matches is unchanged: every parameter takes at least one byte, literals in order,
    // the last literal ends the segment.
    for (path, found) in [
        ("/x-y-z.json", true),
        ("/x-y-z-w.json", true),
        ("/x-y-z.json.json", true),
        ("/a--b-.json", false),
        ("/x-y.json", false),
        ("/x-y-z.jso", false),
        ("/-y-z.json", false),
        ("/x--z.json", false),
        ("/x---z.json", true),
    ] {
        let lookup = router.lookup(Method::Get, path.as_bytes());
        assert_eq!(
            matches!(lookup, Lookup::Found(_)),
            found,
            "{path}: {lookup:?}"
        );
    }
}
