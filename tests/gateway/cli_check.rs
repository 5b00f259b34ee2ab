//! `shardgate check` as a user runs it: the binary, real files, exit codes and messages.

use std::path::Path;
use std::process::Command;

fn shardgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run shardgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_prints_the_example_route_table_and_exits_zero() {
    let (code, stdout, stderr) = shardgate(&["check", "--config", "config/gateway.yaml"]);
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<&str> = stdout.lines().collect();
    assert!(
        rows[0].starts_with("API") && rows[0].contains("SECURITY"),
        "{stdout}"
    );
    let has = |needle: &[&str]| {
        rows.iter()
            .any(|row| needle.iter().all(|n| row.contains(n)))
    };
    assert!(
        has(&[
            "GET",
            "/pet/findByStatus",
            "production",
            "load_balance",
            "http://localhost:2380/v2, http://localhost:2381/v2",
            "on"
        ]),
        "{stdout}"
    );
    assert!(
        has(&[
            "GET",
            "/pet/{petId}",
            "production",
            "failover",
            "http://localhost:2380/v2, http://localhost:2381/v2"
        ]),
        "{stdout}"
    );
    assert!(
        has(&[
            "GET",
            "/pet/findByStatus",
            "sandbox",
            "http://localhost:2390/v2"
        ]),
        "{stdout}"
    );
    assert!(
        has(&["GET", "/store/inventory", "production", "failover", "off"]),
        "{stdout}"
    );
    assert!(stdout.contains("OK: 1 APIs, 5 routes"), "{stdout}");
}

#[test]
fn check_fails_with_file_field_and_line_on_a_bad_definition() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("petstore.yaml");
    std::fs::write(
        &file,
        "openapi: 3.0.0\nx-wso2-basePath: /p\nx-wso2-disable-security: true\npaths:\n  /pet/{id}:\n    get:\n      x-wso2-production-endpoints:\n        urls: [http://localhost:2380/v2, 'http:..host/v2']\n",
    )
    .unwrap();
    let (code, stdout, stderr) = shardgate(&["check", "--api", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    let expected = format!(
        "{}: paths./pet/{{id}}.get.x-wso2-production-endpoints.urls[1]: 'http:..host/v2' is not a URL (line 8)",
        file.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn check_fails_on_an_unknown_gateway_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    std::fs::write(&file, "listeners:\n  http: ['127.0.0.1:1']\nworkerz: 2\n").unwrap();
    let (code, _, stderr) = shardgate(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("gateway.yaml: unknown field `workerz`"),
        "{stderr}"
    );
    assert!(stderr.contains("(line 3)"), "{stderr}");
}

#[test]
fn check_reports_a_missing_definition_path() {
    let (code, _, stderr) = shardgate(&["check", "--api", "no/such/dir"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--api: 'no/such/dir' does not exist"),
        "{stderr}"
    );
}

#[test]
fn token_mints_a_verifiable_dev_token() {
    let (code, stdout, stderr) = shardgate(&[
        "token",
        "--key",
        "config/dev-only/jwt-dev-only.key.pem",
        "--issuer",
        "https://localhost/dev-only",
        "--keytype",
        "SANDBOX",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let token = stdout.trim();
    assert_eq!(token.split('.').count(), 3, "{token}");
    let snapshot =
        shardgate::compile::snapshot::Snapshot::load(&shardgate::compile::snapshot::LoadOptions {
            config: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gateway.yaml")),
            apis: vec![],
            resolve_hosts: false,
        })
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = snapshot.verifier.verify(token.as_bytes(), now).unwrap();
    assert_eq!(claims.key_type, shardgate::auth::KeyType::Sandbox);
}
