//! HTTP/2 downstream (BEHAVIOUR.md §8): h2 over TLS (ALPN) and h2c with prior knowledge, each
//! stream through the HTTP/1.1 lifecycle. Real clients: curl (built with nghttp2) and python's
//! `h2` package for the scripted ones (tests/http2/*.py).

mod support;

use std::process::Command;

use support::*;

/// curl with HTTP/2 support, or a clear failure: CI installs it (`.ci/run`).
fn curl() -> Command {
    let version = Command::new("curl")
        .arg("-V")
        .output()
        .expect("curl is required (installed by .ci/run)");
    assert!(
        String::from_utf8_lossy(&version.stdout).contains("HTTP2"),
        "curl without HTTP/2 support; install Debian's curl (nghttp2)"
    );
    Command::new("curl")
}

#[test]
fn h2c_prior_knowledge_and_http11_share_the_plain_listener() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start(&open_api(&[backend.url("/base")], "load_balance"));
    let out = curl()
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-o",
            "-",
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .arg(format!("http://{}/svc/pets?x=1", gateway.addr))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.ends_with("\n2 200"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = curl()
        .args([
            "-sS",
            "--http1.1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .arg(format!("http://{}/svc/pets", gateway.addr))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1.1 200");
    let received = backend.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].target, "/base/pets?x=1");
}
