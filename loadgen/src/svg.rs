//! A self-contained SVG chart, written by hand:
//! 1. the latency percentile spectrum on a logarithmic "1/(1-p)" axis (as HdrHistogram's
//!    plotter draws it), corrected and uncorrected;
//! 2. the per-second timeline: requests sent and completed, and errors;
//! 3. the per-second timeline: p50, p99 and max latency (logarithmic).

use std::fmt::Write;

use crate::hgrm;
use crate::report::fmt_us;
use crate::{RunResult, TimelineRow};

const W: f64 = 960.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const PLOT_W: f64 = W - LEFT - RIGHT;

const COL_CORR: &str = "#d62728";
const COL_UNCORR: &str = "#1f77b4";
const COL_SENT: &str = "#1f77b4";
const COL_DONE: &str = "#2ca02c";
const COL_ERR: &str = "#d62728";
const COL_P50: &str = "#2ca02c";
const COL_P99: &str = "#ff7f0e";
const COL_MAX: &str = "#d62728";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" upper bound and step for a linear axis from 0 to `max`.
fn nice_axis(max: f64) -> (f64, f64) {
    if max <= 0.0 || !max.is_finite() {
        return (1.0, 0.2);
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn fmt_num(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

struct Panel {
    top: f64,
    h: f64,
}

impl Panel {
    fn frame(&self, s: &mut String, title: &str, ylabel: &str, xlabel: &str) {
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{}" width="{PLOT_W}" height="{}" fill="#fff" stroke="#444"/>"##,
            self.top, self.h
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" font-size="14" font-weight="bold" text-anchor="middle">{}</text>"##,
            LEFT + PLOT_W / 2.0,
            self.top - 10.0,
            esc(title)
        );
        let _ = writeln!(
            s,
            r##"<text x="18" y="{y}" font-size="12" text-anchor="middle" transform="rotate(-90 18 {y})">{}</text>"##,
            esc(ylabel),
            y = self.top + self.h / 2.0
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" font-size="12" text-anchor="middle">{}</text>"##,
            LEFT + PLOT_W / 2.0,
            self.top + self.h + 34.0,
            esc(xlabel)
        );
    }

    fn ytick(&self, s: &mut String, y: f64, label: &str) {
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            LEFT + PLOT_W,
            LEFT - 6.0,
            y + 4.0,
            esc(label)
        );
    }

    fn xtick(&self, s: &mut String, x: f64, label: &str) {
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" font-size="11" text-anchor="middle">{}</text>"##,
            self.top,
            self.top + self.h,
            self.top + self.h + 16.0,
            esc(label)
        );
    }
}

fn polyline(s: &mut String, pts: &[(f64, f64)], color: &str, width: f64, dash: bool) {
    if pts.is_empty() {
        return;
    }
    let mut d = String::with_capacity(pts.len() * 16);
    for (x, y) in pts {
        let _ = write!(d, "{x:.1},{y:.1} ");
    }
    let dash = if dash {
        r#" stroke-dasharray="6 3""#
    } else {
        ""
    };
    let _ = writeln!(
        s,
        r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="{width}"{dash}/>"#,
        d.trim_end()
    );
}

fn legend(s: &mut String, x: f64, y: f64, items: &[(&str, &str)]) {
    let width = 40.0 + 6.5 * items.iter().map(|(l, _)| l.len()).max().unwrap_or(0) as f64;
    let _ = writeln!(
        s,
        r##"<rect x="{}" y="{}" width="{width:.0}" height="{}" fill="#fff" fill-opacity="0.85" stroke="#ccc"/>"##,
        x - 6.0,
        y - 10.0,
        items.len() as f64 * 16.0 + 4.0
    );
    for (i, (label, color)) in items.iter().enumerate() {
        let yy = y + i as f64 * 16.0;
        let _ = writeln!(
            s,
            r#"<line x1="{x}" y1="{yy}" x2="{}" y2="{yy}" stroke="{color}" stroke-width="2.5"/><text x="{}" y="{}" font-size="11">{}</text>"#,
            x + 22.0,
            x + 28.0,
            yy + 4.0,
            esc(label)
        );
    }
}

/// Percentile spectrum panel.
fn spectrum_panel(s: &mut String, r: &RunResult, p: &Panel) {
    let open = r.is_open_loop();
    let corr = hgrm::spectrum(&r.totals.corrected);
    let uncorr = if open {
        hgrm::spectrum(&r.totals.uncorrected)
    } else {
        Vec::new()
    };
    let count = r.totals.corrected.len().max(10);
    // Decades of 1/(1-p) worth showing: up to the resolution of the sample count.
    let decades = ((count as f64).log10().ceil() as i32).clamp(2, 6);
    let xmax = 10f64.powi(decades);
    let x_of = |pct: f64| {
        let inv = if pct >= 1.0 {
            xmax
        } else {
            (1.0 / (1.0 - pct)).min(xmax)
        };
        LEFT + PLOT_W * inv.log10() / decades as f64
    };
    let ymax_us = r
        .totals
        .corrected
        .max()
        .max(r.totals.uncorrected.max())
        .max(1) as f64;
    let (ymax, ystep) = nice_axis(ymax_us / 1000.0);
    let y_of = |ms: f64| p.top + p.h - p.h * (ms / ymax).min(1.0);

    let title = if open {
        "Latency by percentile (corrected vs uncorrected)"
    } else {
        "Latency by percentile (closed loop: from the actual send)"
    };
    p.frame(s, title, "latency (ms)", "percentile");
    let mut v = 0.0;
    while v <= ymax + 1e-9 {
        p.ytick(s, y_of(v), &fmt_num(v));
        v += ystep;
    }
    let labels = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"];
    for (d, label) in labels.iter().enumerate().take(decades as usize + 1) {
        p.xtick(s, LEFT + PLOT_W * d as f64 / decades as f64, label);
    }
    let pts = |sp: &[hgrm::Point]| -> Vec<(f64, f64)> {
        sp.iter()
            .map(|pt| (x_of(pt.percentile), y_of(pt.value_us as f64 / 1000.0)))
            .collect()
    };
    if open {
        polyline(s, &pts(&uncorr), COL_UNCORR, 2.0, true);
    }
    polyline(s, &pts(&corr), COL_CORR, 2.5, false);
    let items: Vec<(&str, &str)> = if open {
        vec![
            ("corrected (from intended send)", COL_CORR),
            ("uncorrected (from actual send)", COL_UNCORR),
        ]
    } else {
        vec![("latency", COL_CORR)]
    };
    legend(s, LEFT + 16.0, p.top + 18.0, &items);
}

fn x_of_sec(sec: f64, n: usize) -> f64 {
    LEFT + PLOT_W * sec / n.max(1) as f64
}

fn sec_ticks(p: &Panel, s: &mut String, n: usize) {
    let (_, step) = nice_axis(n as f64);
    let step = step.max(1.0);
    let mut t = 0.0;
    while t <= n as f64 + 1e-9 {
        p.xtick(s, x_of_sec(t, n), &fmt_num(t));
        t += step;
    }
}

/// Requests per second panel.
fn rate_panel(s: &mut String, rows: &[TimelineRow], target: Option<f64>, p: &Panel) {
    let n = rows.len();
    let peak = rows
        .iter()
        .map(|r| r.sent.max(r.completed).max(r.errors) as f64)
        .fold(target.unwrap_or(0.0), f64::max);
    let (ymax, ystep) = nice_axis(peak * 1.05);
    let y_of = |v: f64| p.top + p.h - p.h * (v / ymax).min(1.0);
    p.frame(s, "Requests per second", "requests/s", "seconds");
    let mut v = 0.0;
    while v <= ymax + 1e-9 {
        p.ytick(s, y_of(v), &fmt_num(v));
        v += ystep;
    }
    sec_ticks(p, s, n);
    if let Some(t) = target {
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#888" stroke-dasharray="2 4"/>"##,
            LEFT + PLOT_W,
            y = y_of(t)
        );
    }
    let step_pts = |f: &dyn Fn(&TimelineRow) -> u64| -> Vec<(f64, f64)> {
        let mut pts = Vec::with_capacity(rows.len() * 2);
        for (i, r) in rows.iter().enumerate() {
            let y = y_of(f(r) as f64);
            pts.push((x_of_sec(i as f64, n), y));
            pts.push((x_of_sec(i as f64 + 1.0, n), y));
        }
        pts
    };
    polyline(s, &step_pts(&|r| r.sent), COL_SENT, 2.0, true);
    polyline(s, &step_pts(&|r| r.completed), COL_DONE, 2.0, false);
    polyline(s, &step_pts(&|r| r.errors), COL_ERR, 1.5, false);
    let mut items = vec![
        ("sent", COL_SENT),
        ("completed", COL_DONE),
        ("errors", COL_ERR),
    ];
    if target.is_some() {
        items.push(("target", "#888"));
    }
    legend(s, LEFT + 16.0, p.top + 18.0, &items);
}

/// Per-second latency panel (logarithmic).
fn latency_panel(s: &mut String, rows: &[TimelineRow], p: &Panel) {
    let n = rows.len();
    let positive = rows
        .iter()
        .flat_map(|r| [r.p50_us, r.p99_us, r.max_us])
        .filter(|v| *v > 0);
    let lo_us = positive.clone().min().unwrap_or(1) as f64;
    let hi_us = positive.max().unwrap_or(1000) as f64;
    let lo = 10f64.powf(lo_us.log10().floor());
    let mut hi = 10f64.powf(hi_us.log10().ceil());
    if hi <= lo {
        hi = lo * 10.0;
    }
    let span = (hi / lo).log10();
    let y_of = |us: f64| {
        let v = us.max(lo);
        p.top + p.h - p.h * ((v / lo).log10() / span).min(1.0)
    };
    p.frame(s, "Latency per second (corrected)", "latency", "seconds");
    let mut d = lo;
    while d <= hi * 1.0001 {
        p.ytick(s, y_of(d), &fmt_us(d as u64));
        d *= 10.0;
    }
    sec_ticks(p, s, n);
    for (f, color, width) in [
        (
            &(|r: &TimelineRow| r.max_us) as &dyn Fn(&TimelineRow) -> u64,
            COL_MAX,
            1.5,
        ),
        (&|r: &TimelineRow| r.p99_us, COL_P99, 2.0),
        (&|r: &TimelineRow| r.p50_us, COL_P50, 2.0),
    ] {
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.completed > 0)
            .map(|(i, r)| (x_of_sec(i as f64 + 0.5, n), y_of(f(r) as f64)))
            .collect();
        polyline(s, &pts, color, width, false);
        for (x, y) in &pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{color}"/>"#
            );
        }
    }
    legend(
        s,
        LEFT + 16.0,
        p.top + 18.0,
        &[("max", COL_MAX), ("p99", COL_P99), ("p50", COL_P50)],
    );
}

/// The whole chart.
pub fn render(r: &RunResult) -> String {
    let panels = [
        Panel {
            top: 110.0,
            h: 360.0,
        },
        Panel {
            top: 540.0,
            h: 200.0,
        },
        Panel {
            top: 810.0,
            h: 200.0,
        },
    ];
    let height = 1070.0;
    let mut s = String::with_capacity(64 * 1024);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif">"#
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#f8f8f8"/>"##);
    let mode = match r.mode {
        crate::Mode::Open { rate } => format!("open loop, {rate} req/s target"),
        crate::Mode::Closed => "closed loop".to_string(),
    };
    let c = &r.totals.counters;
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">loadgen: {} {}</text>"#,
        esc(&r.method),
        esc(&r.urls.join(" "))
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="42" font-size="12">{}; {} threads, {} connections, {:?}; {} completed, {} errors, {} unsent</text>"#,
        esc(&mode),
        r.threads,
        r.connections,
        r.duration,
        c.completed,
        c.total_errors(),
        c.unsent
    );
    let p99 = if r.totals.corrected.is_empty() {
        0
    } else {
        r.totals.corrected.value_at_quantile(0.99)
    };
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="58" font-size="12">p99 {} and max {} ({}); schedule lag p99 {}</text>"#,
        fmt_us(p99),
        fmt_us(r.totals.corrected.max()),
        if r.is_open_loop() {
            "corrected"
        } else {
            "closed loop, uncorrected"
        },
        fmt_us(r.honesty.schedule_lag_p99_us)
    );
    if r.honesty.could_not_keep_up {
        let _ = writeln!(
            s,
            r##"<text x="{LEFT}" y="76" font-size="12" font-weight="bold" fill="#d62728">WARNING: the generator did not keep up with the target rate (see the summary)</text>"##
        );
    }
    spectrum_panel(&mut s, r, &panels[0]);
    rate_panel(&mut s, &r.timeline, r.honesty.target_rate, &panels[1]);
    latency_panel(&mut s, &r.timeline, &panels[2]);
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axes() {
        assert_eq!(nice_axis(0.0), (1.0, 0.2));
        let (max, step) = nice_axis(237.0);
        assert!(
            max >= 237.0 && step > 0.0 && (max / step) <= 6.0,
            "{max} {step}"
        );
        let (max, step) = nice_axis(0.42);
        assert!(max >= 0.42 && step > 0.0, "{max} {step}");
    }

    #[test]
    fn escapes() {
        assert_eq!(esc("a<b>&\"c\""), "a&lt;b&gt;&amp;&quot;c&quot;");
    }
}
