//! The human summary, the per-second timeline table and the progress line.

use std::fmt::Write;

use hdrhistogram::Histogram;

use crate::stats::ErrorKind;
use crate::{Mode, RunResult, TimelineRow};

/// The percentiles of the summary table.
pub const SUMMARY_QUANTILES: [(f64, &str); 7] = [
    (0.50, "50%"),
    (0.75, "75%"),
    (0.90, "90%"),
    (0.99, "99%"),
    (0.999, "99.9%"),
    (0.9999, "99.99%"),
    (0.99999, "99.999%"),
];

/// Formats microseconds with a unit that keeps 3-4 significant digits (like wrk).
pub fn fmt_us(us: u64) -> String {
    let v = us as f64;
    if us < 1000 {
        format!("{us}us")
    } else if v < 1e6 {
        format!("{:.2}ms", v / 1e3)
    } else {
        format!("{:.2}s", v / 1e6)
    }
}

/// Formats a byte count with binary units.
pub fn fmt_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0}{}", UNITS[u])
    } else {
        format!("{v:.2}{}", UNITS[u])
    }
}

fn q(h: &Histogram<u64>, quantile: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(quantile)
    }
}

/// The human summary (everything but the detailed spectrum).
pub fn summary(r: &RunResult, with_timeline: bool) -> String {
    let t = &r.totals;
    let c = &t.counters;
    let h = &r.honesty;
    let mut s = String::new();
    let mode = match r.mode {
        Mode::Open { rate } => format!("open loop at {rate} req/s"),
        Mode::Closed => "closed loop".to_string(),
    };
    let warm = if r.warmup.is_zero() {
        String::new()
    } else {
        format!(" after {:?} warmup (excluded)", r.warmup)
    };
    let _ = writeln!(
        s,
        "loadgen: {mode}, {} threads, {} connections, {:?}{warm}; {}",
        r.threads,
        r.connections,
        r.duration,
        if r.io_uring {
            "io_uring"
        } else {
            "epoll (no io_uring)"
        }
    );
    for u in &r.urls {
        let _ = writeln!(s, "  {} {u}", r.method);
    }
    let _ = writeln!(s);

    let secs = r.duration.as_secs_f64();
    let errors = c.total_errors();
    let _ = writeln!(
        s,
        "  Requests     {} completed, {} errors, {} unsent ({} issued)",
        c.completed, errors, c.unsent, c.issued
    );
    match h.target_rate {
        Some(target) => {
            let _ = writeln!(
                s,
                "  Rate         {:.1} req/s sent of {} target ({:.1}%); {:.1} responses/s",
                h.achieved_rate,
                target,
                100.0 * h.achieved_rate / target,
                h.throughput
            );
        }
        None => {
            let _ = writeln!(
                s,
                "  Rate         {:.1} responses/s ({:.1} per thread)",
                h.throughput,
                h.throughput / r.threads as f64
            );
        }
    }
    let _ = writeln!(
        s,
        "  Transfer     {} read ({}/s), {} written, {} of bodies",
        fmt_bytes(c.bytes_read as f64),
        fmt_bytes(c.bytes_read as f64 / secs),
        fmt_bytes(c.bytes_written as f64),
        fmt_bytes(c.body_bytes as f64)
    );
    let _ = writeln!(
        s,
        "  Connections  {} opened, {} reconnects, {} closed by the server; connect p50 {} max {}",
        c.connects,
        c.reconnects,
        c.closed_by_server,
        fmt_us(q(&t.connect, 0.5)),
        fmt_us(t.connect.max())
    );
    if c.completed > 0 {
        let _ = writeln!(
            s,
            "  CPU          {:.3}s in the worker threads, {:.2}us per response",
            r.cpu.as_secs_f64(),
            r.cpu.as_secs_f64() * 1e6 / c.completed as f64
        );
    }
    let _ = writeln!(s);

    // Latency table.
    let open = r.is_open_loop();
    if open {
        let _ = writeln!(
            s,
            "  Latency      {:>12} {:>12}   corrected: from the intended send time",
            "corrected", "uncorrected"
        );
        let _ = writeln!(
            s,
            "  {:>12} {:>12} {:>12}   uncorrected: from the actual send",
            "", "", ""
        );
    } else {
        let _ = writeln!(
            s,
            "  Latency      {:>12}   from the actual send (not corrected)",
            ""
        );
    }
    let mut line = |label: &str, a: String, b: String| {
        if open {
            let _ = writeln!(s, "    {label:<10} {a:>12} {b:>12}");
        } else {
            let _ = writeln!(s, "    {label:<10} {a:>12}");
        }
    };
    for (quant, label) in SUMMARY_QUANTILES {
        line(
            label,
            fmt_us(q(&t.corrected, quant)),
            fmt_us(q(&t.uncorrected, quant)),
        );
    }
    line(
        "max",
        fmt_us(t.corrected.max()),
        fmt_us(t.uncorrected.max()),
    );
    line(
        "mean",
        fmt_us(t.corrected.mean() as u64),
        fmt_us(t.uncorrected.mean() as u64),
    );
    line(
        "stdev",
        fmt_us(t.corrected.stdev() as u64),
        fmt_us(t.uncorrected.stdev() as u64),
    );
    if open {
        let _ = writeln!(
            s,
            "  Schedule lag p50 {} p99 {} max {} (generator: release - intended)",
            fmt_us(q(&t.lag, 0.5)),
            fmt_us(q(&t.lag, 0.99)),
            fmt_us(t.lag.max())
        );
        let _ = writeln!(
            s,
            "  Send delay   p50 {} p99 {} max {} (intended -> actual send, incl. waiting for a connection)",
            fmt_us(q(&t.send_delay, 0.5)),
            fmt_us(q(&t.send_delay, 0.99)),
            fmt_us(t.send_delay.max())
        );
    }
    let _ = writeln!(s);

    // Errors.
    let kinds: Vec<String> = ErrorKind::ALL
        .iter()
        .map(|k| format!("{} {}", k.name(), c.errors[*k as usize]))
        .collect();
    let _ = writeln!(s, "  Errors       {}", kinds.join(", "));
    for (k, cause, n) in &t.causes {
        let _ = writeln!(s, "    {:<9} {n:>8}  {cause}", k.name());
    }
    let statuses: Vec<String> = c
        .status
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(code, n)| format!("{code}: {n}"))
        .collect();
    let _ = writeln!(
        s,
        "  Status       {}{}",
        if statuses.is_empty() {
            "none".to_string()
        } else {
            statuses.join(", ")
        },
        if c.status_errors() > 0 {
            format!("  ({} responses with status >= 400)", c.status_errors())
        } else {
            String::new()
        }
    );

    if with_timeline {
        let _ = writeln!(s);
        s.push_str(&timeline_table(&r.timeline));
    }

    let _ = writeln!(s);
    let verdict = if !open {
        "NOTE"
    } else if h.could_not_keep_up {
        "WARNING"
    } else {
        "OK"
    };
    for n in &h.notes {
        let _ = writeln!(s, "  {verdict}: {n}");
    }
    s
}

/// The per-second timeline as a table.
pub fn timeline_table(rows: &[TimelineRow]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "  Timeline (per second; latency corrected)");
    let _ = writeln!(
        s,
        "    {:>5} {:>9} {:>9} {:>7} {:>10} {:>10} {:>10} {:>9}",
        "sec", "sent", "done", "errors", "p50", "p99", "max", "in-flight"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "    {:>5} {:>9} {:>9} {:>7} {:>10} {:>10} {:>10} {:>9}",
            r.second,
            r.sent,
            r.completed,
            r.errors,
            fmt_us(r.p50_us),
            fmt_us(r.p99_us),
            fmt_us(r.max_us),
            r.in_flight
        );
    }
    s
}

/// The wrk2-style detailed spectrum (`--latency`).
pub fn spectrum(r: &RunResult) -> String {
    let mut s = String::new();
    let title = if r.is_open_loop() {
        "corrected: from the intended send time"
    } else {
        "from the actual send"
    };
    let _ = writeln!(s, "  Detailed Percentile spectrum ({title}, ms):");
    for l in crate::hgrm::render(&r.totals.corrected).lines() {
        let _ = writeln!(s, "  {l}");
    }
    if r.is_open_loop() {
        let _ = writeln!(
            s,
            "\n  Detailed Percentile spectrum (uncorrected: from the actual send, ms):"
        );
        for l in crate::hgrm::render(&r.totals.uncorrected).lines() {
            let _ = writeln!(s, "  {l}");
        }
    }
    s
}

/// One progress line (no newline), for a terminal.
pub fn progress_line(row: &TimelineRow, of: usize) -> String {
    format!(
        "[{:>4}/{of}s] sent {:>8}  done {:>8}  err {:>5}  p99 {:>9}  max {:>9}  in flight {:>5}",
        row.second,
        row.sent,
        row.completed,
        row.errors,
        fmt_us(row.p99_us),
        fmt_us(row.max_us),
        row.in_flight
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(fmt_us(999), "999us");
        assert_eq!(fmt_us(1500), "1.50ms");
        assert_eq!(fmt_us(2_500_000), "2.50s");
        assert_eq!(fmt_bytes(10.0), "10B");
        assert_eq!(fmt_bytes(2048.0), "2.00KiB");
        assert_eq!(fmt_bytes(3.0 * 1024.0 * 1024.0), "3.00MiB");
    }
}
