//! Prometheus text exposition (format 0.0.4) of the merged shard metrics.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::data::shared::Shared;
use crate::metrics::{EndpointCounters, Rejection, ShardMetrics, METHOD_SLOTS, STATUS_CLASSES};

const METHODS: [&str; METHOD_SLOTS] = [
    "GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE", "CONNECT", "OTHER",
];
const CLASSES: [&str; STATUS_CLASSES] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Histogram bucket bounds in seconds.
const BUCKETS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// A counter or gauge read from an endpoint's counters: (name, help, read).
type EndpointSeries<T> = (&'static str, &'static str, fn(&EndpointCounters) -> T);
/// A shard-wide value: (name, type, help, read).
type ShardSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ShardMetrics) -> i64,
);

/// Renders every metric, summed over shards.
pub fn render(shared: &Shared) -> String {
    let shards = shared.metrics.shard_metrics();
    let labels = shared.metrics.labels();
    let mut out = String::with_capacity(16 * 1024);

    header(
        &mut out,
        "shardgate_build_info",
        "gauge",
        "Version of the running binary.",
    );
    let _ = writeln!(
        out,
        "shardgate_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    header(
        &mut out,
        "shardgate_config_generation",
        "gauge",
        "Generation of the configuration being served (1 at start, +1 per reload).",
    );
    let _ = writeln!(out, "shardgate_config_generation {}", shared.generation());
    header(
        &mut out,
        "shardgate_workers",
        "gauge",
        "Shards (one thread per core).",
    );
    let _ = writeln!(out, "shardgate_workers {}", shared.workers);
    header(
        &mut out,
        "shardgate_dns_failures_total",
        "counter",
        "Endpoint host lookups that failed (the last good addresses were kept).",
    );
    let _ = writeln!(
        out,
        "shardgate_dns_failures_total {}",
        shared.snapshot().0.upstreams.dns_failures()
    );

    header(
        &mut out,
        "shardgate_requests_total",
        "counter",
        "Requests answered, by API base path (empty: no API matched), method and status class.",
    );
    for (api, name) in labels.apis().iter().enumerate() {
        for (m, method) in METHODS.iter().enumerate() {
            for (c, class) in CLASSES.iter().enumerate() {
                let total: u64 = shards
                    .iter()
                    .filter(|s| api < s.api_labels())
                    .map(|s| s.requests(api, m, c))
                    .sum();
                if total > 0 {
                    let _ = writeln!(out, "shardgate_requests_total{{api=\"{}\",method=\"{method}\",class=\"{class}\"}} {total}", escape(name));
                }
            }
        }
    }

    let websocket_sum = |api: usize, get: &dyn Fn(&crate::metrics::WebSocketCounters) -> i64| {
        shards
            .iter()
            .filter_map(|s| s.websocket(api as u32))
            .map(get)
            .sum::<i64>()
    };
    header(
        &mut out,
        "shardgate_websocket_connections_open",
        "gauge",
        "WebSocket tunnels open, by API.",
    );
    for (api, name) in labels.apis().iter().enumerate() {
        let open = websocket_sum(api, &|c| c.open.get());
        let _ = writeln!(
            out,
            "shardgate_websocket_connections_open{{api=\"{}\"}} {open}",
            escape(name)
        );
    }
    header(
        &mut out,
        "shardgate_websocket_upgrades_total",
        "counter",
        "WebSocket handshakes by outcome: switched (the upstream answered 101) or refused (any other answer).",
    );
    for (api, name) in labels.apis().iter().enumerate() {
        for (outcome, get) in [
            (
                "switched",
                &(|c: &crate::metrics::WebSocketCounters| c.upgraded.get() as i64)
                    as &dyn Fn(&crate::metrics::WebSocketCounters) -> i64,
            ),
            ("refused", &|c: &crate::metrics::WebSocketCounters| {
                c.refused.get() as i64
            }),
        ] {
            let total = websocket_sum(api, get);
            if total > 0 {
                let _ = writeln!(out, "shardgate_websocket_upgrades_total{{api=\"{}\",outcome=\"{outcome}\"}} {total}", escape(name));
            }
        }
    }
    header(
        &mut out,
        "shardgate_websocket_bytes_total",
        "counter",
        "Bytes relayed through WebSocket tunnels, by API and direction.",
    );
    for (api, name) in labels.apis().iter().enumerate() {
        for (direction, get) in [
            (
                "to_upstream",
                &(|c: &crate::metrics::WebSocketCounters| c.bytes_to_upstream.get() as i64)
                    as &dyn Fn(&crate::metrics::WebSocketCounters) -> i64,
            ),
            ("to_client", &|c: &crate::metrics::WebSocketCounters| {
                c.bytes_to_client.get() as i64
            }),
        ] {
            let total = websocket_sum(api, get);
            if total > 0 {
                let _ = writeln!(out, "shardgate_websocket_bytes_total{{api=\"{}\",direction=\"{direction}\"}} {total}", escape(name));
            }
        }
    }

    header(
        &mut out,
        "shardgate_request_rejections_total",
        "counter",
        "Requests refused before routing, by reason (syntax, framing: the smuggling defences, path: normalisation, underscore_header, expectation, head_too_large, uri_too_long, version, timeout); the connection is closed after each.",
    );
    for reason in Rejection::ALL {
        let total: u64 = shards.iter().map(|s| s.rejections(reason)).sum();
        let _ = writeln!(
            out,
            "shardgate_request_rejections_total{{reason=\"{}\"}} {total}",
            reason.label()
        );
    }

    let endpoint_counters: [EndpointSeries<u64>; 5] = [
        ("shardgate_upstream_attempts_total", "Requests sent (or attempted) to an endpoint.", |c| c.attempts.get()),
        ("shardgate_upstream_failures_total", "Attempts that failed before any response byte (connect refused or timed out, TLS handshake, reset).", |c| c.failures.get()),
        ("shardgate_upstream_retries_total", "Attempts that retried an earlier attempt of the same request.", |c| c.retries.get()),
        ("shardgate_upstream_connections_opened_total", "Upstream connections opened.", |c| c.connections_opened.get()),
        ("shardgate_upstream_suspensions_total", "Times an endpoint was suspended after a failure.", |c| c.suspensions.get()),
    ];
    for (name, help, get) in endpoint_counters {
        header(&mut out, name, "counter", help);
        for (label, endpoint) in labels.endpoints().iter().enumerate() {
            let total: u64 = shards
                .iter()
                .filter_map(|s| s.endpoint(label as u32))
                .map(get)
                .sum();
            let _ = writeln!(out, "{name}{{endpoint=\"{}\"}} {total}", escape(endpoint));
        }
    }
    let endpoint_gauges: [EndpointSeries<i64>; 2] = [
        (
            "shardgate_upstream_in_flight",
            "Requests in progress at an endpoint.",
            |c| c.in_flight.get(),
        ),
        (
            "shardgate_upstream_connections_idle",
            "Idle pooled connections to an endpoint (all shards).",
            |c| c.idle.get(),
        ),
    ];
    for (name, help, get) in endpoint_gauges {
        header(&mut out, name, "gauge", help);
        for (label, endpoint) in labels.endpoints().iter().enumerate() {
            let total: i64 = shards
                .iter()
                .filter_map(|s| s.endpoint(label as u32))
                .map(get)
                .sum();
            let _ = writeln!(out, "{name}{{endpoint=\"{}\"}} {total}", escape(endpoint));
        }
    }
    drop(labels);
    shared.render_health_metrics(&mut out);

    let scalars: [ShardSeries; 14] = [
        (
            "shardgate_client_connections_open",
            "gauge",
            "Open client connections.",
            |m| m.client_connections_open.get(),
        ),
        (
            "shardgate_client_connections_total",
            "counter",
            "Client connections accepted.",
            |m| m.client_connections_total.get() as i64,
        ),
        (
            "shardgate_upstream_connections_open",
            "gauge",
            "Open upstream connections, in use or pooled (published once a second).",
            |m| m.upstream_connections_open.get(),
        ),
        (
            "shardgate_tls_handshakes_total",
            "counter",
            "Completed TLS handshakes on HTTPS listeners.",
            |m| m.tls_handshakes.get() as i64,
        ),
        (
            "shardgate_tls_handshake_failures_total",
            "counter",
            "Failed TLS handshakes (timeouts, protocol errors, hang-ups).",
            |m| m.tls_handshake_failures.get() as i64,
        ),
        (
            "shardgate_tls_plain_http_total",
            "counter",
            "Plain HTTP requests sent to an HTTPS listener.",
            |m| m.tls_plain_http.get() as i64,
        ),
        (
            "shardgate_http2_connections_total",
            "counter",
            "HTTP/2 client connections (h2 over TLS and h2c) past their handshake.",
            |m| m.http2_connections.get() as i64,
        ),
        (
            "shardgate_http2_enhance_your_calm_total",
            "counter",
            "HTTP/2 connections closed with GOAWAY ENHANCE_YOUR_CALM (frame budgets, rapid reset, CONTINUATION flood).",
            |m| m.http2_budget_exceeded.get() as i64,
        ),
        (
            "shardgate_connection_panics_total",
            "counter",
            "Connection tasks that panicked (the connection was closed, the shard kept running).",
            |m| m.panics.get() as i64,
        ),
        (
            "shardgate_access_log_dropped_total",
            "counter",
            "Access log lines dropped because the writer fell behind.",
            |m| m.access_log_dropped.get() as i64,
        ),
        (
            "shardgate_response_body_bytes_spliced_total",
            "counter",
            "Response body bytes moved from upstream to client sockets by splice(2) instead of being copied (upstream.body_relay: splice).",
            |m| m.spliced_body_bytes.get() as i64,
        ),
        (
            "shardgate_large_body_buffers_lent",
            "gauge",
            "256 KiB read buffers lent to responses whose long bodies are being copied, at most 64 per shard (published once a second).",
            |m| m.large_buffers_lent.get(),
        ),
        (
            "shardgate_large_body_buffer_refusals_total",
            "counter",
            "Reads of a long response body made with the ordinary 68 KiB buffer because every large buffer of the shard was lent.",
            |m| m.large_buffer_refusals.get() as i64,
        ),
        (
            "shardgate_clock_reads_total",
            "counter",
            "Monotonic clock reads on the request path (one per connection-task poll at most), updated every control tick.",
            |m| m.clock_reads.get(),
        ),
    ];
    for (name, kind, help, get) in scalars {
        header(&mut out, name, kind, help);
        let total: i64 = shards.iter().map(|m| get(m)).sum();
        let _ = writeln!(out, "{name} {total}");
    }

    header(
        &mut out,
        "shardgate_auth_failures_total",
        "counter",
        "Requests refused with 401 or 403, by reason (missing, malformed, expired, bad_signature, unknown_issuer, missing_scope, no_client_certificate, ...).",
    );
    for reason in crate::auth::FailureReason::ALL {
        let total: u64 = shards.iter().map(|m| m.auth_failures(reason)).sum();
        let _ = writeln!(
            out,
            "shardgate_auth_failures_total{{reason=\"{}\"}} {total}",
            reason.label()
        );
    }

    shared.rate_limits.render(&mut out, escape);

    let histograms = shared.metrics.merged_histograms();
    histogram(
        &mut out,
        "shardgate_request_duration_seconds",
        "Requests from a complete head to the last response byte.",
        &histograms.total,
    );
    histogram(
        &mut out,
        "shardgate_upstream_duration_seconds",
        "Upstream exchanges from the first attempt to the response head (retries included).",
        &histograms.upstream,
    );
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram<u64>) {
    header(out, name, "histogram", help);
    for bound in BUCKETS {
        let micros = (bound * 1e6) as u64;
        let count = if h.is_empty() {
            0
        } else {
            h.count_between(0, micros)
        };
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.len());
    let sum_micros: f64 = h
        .iter_recorded()
        .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
        .sum();
    let _ = writeln!(out, "{name}_sum {}", sum_micros / 1e6);
    let _ = writeln!(out, "{name}_count {}", h.len());
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_the_count() {
        let mut h = crate::metrics::latency_histogram();
        for micros in [50, 300, 300, 20_000, 2_000_000] {
            h.record(micros).unwrap();
        }
        let mut out = String::new();
        histogram(&mut out, "x", "help", &h);
        assert!(out.contains("x_bucket{le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.0005\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.025\"} 4\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 5\n"), "{out}");
        assert!(out.contains("x_count 5\n"), "{out}");
        let sum: f64 = out
            .lines()
            .find_map(|l| l.strip_prefix("x_sum "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 2.02065).abs() < 0.01, "{sum}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
