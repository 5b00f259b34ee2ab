//! The HdrHistogram percentile distribution text format (`.hgrm`), as written by
//! `outputPercentileDistribution` in HdrHistogram (Java) and printed by wrk2 `--latency`.
//! HdrHistogram's plotter reads it. Values are written in milliseconds.

use std::fmt::Write;

use hdrhistogram::Histogram;

/// Percentile ticks per half distance, as HdrHistogram's and wrk2's default output.
pub const TICKS_PER_HALF: u32 = 5;

/// One line of the spectrum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Value in microseconds (highest equivalent value of its bucket).
    pub value_us: u64,
    /// 0.0 ..= 1.0
    pub percentile: f64,
    pub total_count: u64,
}

/// The percentile spectrum of `h` (empty for an empty histogram).
pub fn spectrum(h: &Histogram<u64>) -> Vec<Point> {
    let mut out = Vec::new();
    if h.is_empty() {
        return out;
    }
    let mut total = 0;
    for v in h.iter_quantiles(TICKS_PER_HALF) {
        total += v.count_since_last_iteration();
        out.push(Point {
            value_us: v.value_iterated_to(),
            percentile: v.quantile_iterated_to(),
            total_count: total,
        });
    }
    out
}

/// Writes the distribution of `h` (microseconds) in the `.hgrm` format, values in ms.
pub fn render(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for p in spectrum(h) {
        let ms = p.value_us as f64 / 1000.0;
        if p.percentile < 1.0 {
            let _ = writeln!(
                s,
                "{:>12.3} {:>2.12} {:>10} {:>14.2}",
                ms,
                p.percentile,
                p.total_count,
                1.0 / (1.0 - p.percentile)
            );
        } else {
            let _ = writeln!(
                s,
                "{:>12.3} {:>2.12} {:>10}",
                ms, p.percentile, p.total_count
            );
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            h.mean() / 1000.0,
            h.stdev() / 1000.0,
            h.max() as f64 / 1000.0,
        )
    };
    let _ = writeln!(
        s,
        "#[Mean    = {mean:>12.3}, StdDeviation   = {stdev:>12.3}]"
    );
    let _ = writeln!(
        s,
        "#[Max     = {max:>12.3}, Total count    = {:>12}]",
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_buckets(h.sigfig())
    );
    s
}

/// HdrHistogram's sub-bucket count for `sigfig` significant figures (2048 for 3).
fn sub_buckets(sigfig: u8) -> u64 {
    let largest_single_unit = 2 * 10u64.pow(sigfig as u32);
    1u64 << (64 - (largest_single_unit - 1).leading_zeros())
}

/// Parses `.hgrm` text back into (value in ms, percentile, total count) rows; used by the
/// tests and handy for comparing runs.
pub fn parse(text: &str) -> Vec<(f64, f64, u64)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let v = f.next()?.parse().ok()?;
            let p = f.next()?.parse().ok()?;
            let c = f.next()?.parse().ok()?;
            Some((v, p, c))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_hist;

    #[test]
    fn renders_and_parses() {
        let mut h = new_hist();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let text = render(&h);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        let rows = parse(&text);
        assert!(rows.len() > 50);
        let last = rows.last().unwrap();
        assert_eq!(last.1, 1.0);
        assert_eq!(last.2, 10_000);
        assert!((last.0 - 10.007).abs() < 0.001, "{last:?}");
        let p50 = rows.iter().find(|r| r.1 >= 0.5).unwrap();
        assert!((p50.0 - 5.0).abs() < 0.01, "{p50:?}");
        // Percentiles and counts never go down.
        assert!(rows
            .windows(2)
            .all(|w| w[0].1 <= w[1].1 && w[0].2 <= w[1].2 && w[0].0 <= w[1].0));
        assert!(
            text.contains("#[Max     =       10.007, Total count    =        10000]"),
            "{text}"
        );
        assert!(text.contains("SubBuckets     =         2048]"));
    }

    #[test]
    fn empty() {
        let h = new_hist();
        assert!(spectrum(&h).is_empty());
        assert!(render(&h).contains("Total count    =            0"));
    }
}
