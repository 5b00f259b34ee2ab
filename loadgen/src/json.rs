//! JSON output. Where a field means the same as in oha's JSON output (`oha -j`), it has
//! oha's name and unit (seconds): `summary`, `responseTimeHistogram`, `latencyPercentiles`,
//! `rps`, `statusCodeDistribution`, `errorDistribution`. The latency fields there are the
//! corrected latencies (the only ones in closed loop, where both are the same). Everything
//! else is loadgen's own, also in camelCase.

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::stats::ErrorKind;
use crate::{Mode, RunResult};

const PERCENTILES: [(&str, f64); 13] = [
    ("p10", 0.10),
    ("p25", 0.25),
    ("p50", 0.50),
    ("p75", 0.75),
    ("p90", 0.90),
    ("p95", 0.95),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
    ("p99.999", 0.99999),
    ("p100", 1.0),
    ("min", -1.0),
    ("mean", -2.0),
];

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

/// Percentiles in seconds (oha's `latencyPercentiles` keys plus p99.999, p100, min, mean).
fn percentiles(h: &Histogram<u64>) -> Value {
    let mut m = Map::new();
    for (name, quant) in PERCENTILES {
        let v = if h.is_empty() {
            0.0
        } else if quant == -1.0 {
            secs(h.min())
        } else if quant == -2.0 {
            h.mean() / 1e6
        } else {
            secs(h.value_at_quantile(quant))
        };
        m.insert(name.to_string(), json!(v));
    }
    Value::Object(m)
}

/// oha-style linear histogram: 11 buckets from fastest to slowest (keys in seconds).
fn linear_histogram(h: &Histogram<u64>) -> Value {
    let mut m = Map::new();
    if h.is_empty() {
        return Value::Object(m);
    }
    let (lo, hi) = (h.min(), h.max());
    let n = 11u64;
    let step = ((hi - lo) / (n - 1)).max(1);
    let mut prev = 0u64;
    for i in 0..n {
        let edge = if i == n - 1 { hi } else { lo + step * i };
        let upto = h.count_between(0, edge);
        m.insert(format!("{}", secs(edge)), json!(upto - prev));
        prev = upto;
        if edge >= hi {
            break;
        }
    }
    Value::Object(m)
}

fn mean_stddev(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / xs.len() as f64;
    (mean, var.sqrt())
}

fn rps_percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// The whole result as JSON.
pub fn to_json(r: &RunResult) -> Value {
    let t = &r.totals;
    let c = &t.counters;
    let h = &r.honesty;
    let duration = r.duration.as_secs_f64();
    let errors = c.total_errors();
    let attempts = c.completed + errors;

    let summary = json!({
        "successRate": if attempts == 0 { 0.0 } else { c.completed as f64 / attempts as f64 },
        "total": duration,
        "slowest": if t.corrected.is_empty() { 0.0 } else { secs(t.corrected.max()) },
        "fastest": if t.corrected.is_empty() { 0.0 } else { secs(t.corrected.min()) },
        "average": if t.corrected.is_empty() { 0.0 } else { t.corrected.mean() / 1e6 },
        "requestsPerSec": h.throughput,
        "totalData": c.body_bytes,
        "sizePerRequest": c.body_bytes.checked_div(c.completed).unwrap_or(0),
        "sizePerSec": c.body_bytes as f64 / duration,
    });

    let per_sec: Vec<f64> = r.timeline.iter().map(|row| row.completed as f64).collect();
    let (rmean, rstd) = mean_stddev(&per_sec);
    let mut sorted = per_sec.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mut rps_p = Map::new();
    for (name, quant) in &PERCENTILES[..9] {
        rps_p.insert(name.to_string(), json!(rps_percentile(&sorted, *quant)));
    }
    let rps = json!({
        "mean": rmean,
        "stddev": rstd,
        "max": sorted.last().copied().unwrap_or(0.0),
        "min": sorted.first().copied().unwrap_or(0.0),
        "percentiles": rps_p,
    });

    let mut status = Map::new();
    for (code, n) in c.status.iter().enumerate() {
        if *n > 0 {
            status.insert(code.to_string(), json!(n));
        }
    }
    let mut error_dist = Map::new();
    for (k, cause, n) in &t.causes {
        error_dist.insert(format!("{}: {cause}", k.name()), json!(n));
    }
    let mut status_errors = Map::new();
    for (code, n) in c.status.iter().enumerate().skip(400) {
        if *n > 0 {
            status_errors.insert(code.to_string(), json!(n));
        }
    }
    let mut errors_obj = Map::new();
    for k in ErrorKind::ALL {
        errors_obj.insert(k.name().to_string(), json!(c.errors[k as usize]));
    }
    errors_obj.insert("status".into(), Value::Object(status_errors));

    let timeline: Vec<Value> = r
        .timeline
        .iter()
        .map(|row| {
            json!({
                "second": row.second,
                "sent": row.sent,
                "completed": row.completed,
                "errors": row.errors,
                "p50": secs(row.p50_us),
                "p99": secs(row.p99_us),
                "max": secs(row.max_us),
                "inFlight": row.in_flight,
            })
        })
        .collect();

    let (mode, rate) = match r.mode {
        Mode::Open { rate } => ("open", Some(rate)),
        Mode::Closed => ("closed", None),
    };

    json!({
        "summary": summary,
        "responseTimeHistogram": linear_histogram(&t.corrected),
        "latencyPercentiles": percentiles(&t.corrected),
        "latencyPercentilesUncorrected": percentiles(&t.uncorrected),
        "rps": rps,
        "statusCodeDistribution": status,
        "errorDistribution": error_dist,
        "config": {
            "mode": mode,
            "targetRate": rate,
            "threads": r.threads,
            "connections": r.connections,
            "duration": duration,
            "warmup": r.warmup.as_secs_f64(),
            "timeout": r.timeout.as_secs_f64(),
            "method": r.method,
            "urls": r.urls,
            "driver": if r.io_uring { "io_uring" } else { "epoll" },
        },
        "requests": {
            "issued": c.issued,
            "completed": c.completed,
            "errors": errors,
            "unsent": c.unsent,
            "statusErrors": c.status_errors(),
        },
        "errors": errors_obj,
        "transfer": {
            "bytesRead": c.bytes_read,
            "bytesWritten": c.bytes_written,
            "bodyBytes": c.body_bytes,
        },
        "connections": {
            "opened": c.connects,
            "reconnects": c.reconnects,
            "closedByServer": c.closed_by_server,
            "connectTime": percentiles(&t.connect),
        },
        "scheduleLag": percentiles(&t.lag),
        "sendDelay": percentiles(&t.send_delay),
        "timeline": timeline,
        "cpu": {
            "seconds": r.cpu.as_secs_f64(),
            "usPerResponse": if c.completed == 0 { 0.0 } else { r.cpu.as_secs_f64() * 1e6 / c.completed as f64 },
        },
        "honesty": {
            "couldNotKeepUp": h.could_not_keep_up,
            "lagExceeded": h.lag_exceeded,
            "rateBelowTarget": h.rate_below_target,
            "targetRate": h.target_rate,
            "achievedRate": h.achieved_rate,
            "scheduleLagP99": secs(h.schedule_lag_p99_us),
            "sendDelayP99": secs(h.send_delay_p99_us),
            "preciseTimer": h.precise_timer,
            "notes": h.notes,
        },
    })
}
