//! The binary: output files, exit codes, messages.

mod common;

use std::process::Command;

use common::TestServer;

fn loadgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn writes_json_hgrm_and_svg_that_parse() {
    let server = TestServer::start();
    let (json, hgrm, svg) = (tmp("out.json"), tmp("out.hgrm"), tmp("out.svg"));
    let out = loadgen()
        .args([
            "--rate",
            "500",
            "-c",
            "2",
            "-t",
            "1",
            "-d",
            "2s",
            "--latency",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--hgrm")
        .arg(&hgrm)
        .arg("--svg")
        .arg(&svg)
        .arg(server.url("/"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not a terminal: no progress line.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "open loop at 500 req/s",
        "1000 completed, 0 errors",
        "99.999%",
        "Timeline",
        "Detailed Percentile spectrum",
        "1/(1-Percentile)",
        "#[Mean",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }

    // JSON: oha's field names where they overlap, plus ours.
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for key in [
        "summary",
        "responseTimeHistogram",
        "latencyPercentiles",
        "rps",
        "statusCodeDistribution",
        "errorDistribution",
        "latencyPercentilesUncorrected",
        "timeline",
        "honesty",
        "scheduleLag",
    ] {
        assert!(v.get(key).is_some(), "no {key} in JSON");
    }
    for key in [
        "successRate",
        "total",
        "slowest",
        "fastest",
        "average",
        "requestsPerSec",
        "totalData",
        "sizePerRequest",
        "sizePerSec",
    ] {
        assert!(v["summary"].get(key).is_some(), "no summary.{key}");
    }
    for key in [
        "p10", "p25", "p50", "p75", "p90", "p95", "p99", "p99.9", "p99.99",
    ] {
        assert!(
            v["latencyPercentiles"][key].is_f64(),
            "no latencyPercentiles.{key}"
        );
    }
    assert_eq!(v["statusCodeDistribution"]["200"], 1000);
    assert_eq!(v["summary"]["successRate"], 1.0);
    assert_eq!(v["summary"]["totalData"], 5000);
    assert_eq!(v["requests"]["completed"], 1000);
    // Rows count sends when they happened: a loaded machine may push the 500th request of
    // the first second into the next one, but the schedule never sends one early.
    let sent: Vec<u64> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["sent"].as_u64().unwrap())
        .collect();
    assert!(sent.len() >= 2, "{sent:?}");
    assert!((1..=500).contains(&sent[0]), "{sent:?}");
    assert_eq!(
        sent.iter().sum::<u64>(),
        v["requests"]["issued"],
        "{sent:?}"
    );
    assert!(v["honesty"]["couldNotKeepUp"].is_boolean());
    let hist_total: u64 = v["responseTimeHistogram"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(hist_total, 1000);

    // .hgrm: the percentile distribution, ending at 100% with every count.
    let text = std::fs::read_to_string(&hgrm).unwrap();
    let rows = loadgen::hgrm::parse(&text);
    assert!(rows.len() > 10);
    let last = rows.last().unwrap();
    assert_eq!((last.1, last.2), (1.0, 1000));
    let max_ms = v["latencyPercentiles"]["p100"].as_f64().unwrap() * 1000.0;
    assert!(
        (last.0 - max_ms).abs() < 0.001 + max_ms * 0.001,
        "{} vs {max_ms}",
        last.0
    );
    assert!(text.contains("#[Max     ="));

    // SVG: well-formed XML with the three panels.
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&svg_text).expect("SVG is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let polylines = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .count();
    assert!(polylines >= 6, "{polylines} polylines");
    assert!(svg_text.contains("99.9%"));
    assert!(svg_text.contains("Requests per second"));
    assert!(svg_text.contains("Latency per second"));
}

#[test]
fn exit_codes_and_messages() {
    let out = loadgen().arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--connect-to"));

    let out = loadgen()
        .args(["-c", "zero", "http://127.0.0.1:1/"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-c needs a positive integer"));

    let out = loadgen().arg("ftp://127.0.0.1/").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only http:// and https://"));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = loadgen()
        .args(["-d", "1s", "-c", "1"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("could not connect at all"), "{err}");

    // HTTP errors still make a completed run.
    let server = TestServer::start();
    let out = loadgen()
        .args(["-d", "300ms", "-c", "1", "-q"])
        .arg(server.url("/status/500"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
}
