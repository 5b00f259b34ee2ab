//! The process logger behind the `log` facade: human-readable lines by default, one JSON
//! object per line with `--log-format json`; level from `--log-level` or `RUST_LOG`.
//!
//! A shard never writes to stderr itself: a line is formatted where it is logged and handed
//! to the logger's own thread through a bounded lock-free queue (`crossbeam`), which does the
//! blocking write. A full queue (stderr stuck, a log storm) drops the line and counts it
//! (the next line written says how many were lost): a shard never waits on the log. The
//! access log is separate.

use std::io::Write;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam::channel::{self, Receiver, Sender, TrySendError};
use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::render::{push_json_string, rfc3339_utc};

/// Lines waiting for the writer at most.
const QUEUE_LINES: usize = 4096;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "human" | "text" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format '{other}'; expected human or json"
            )),
        }
    }
}

struct Logger {
    format: LogFormat,
    lines: Sender<String>,
    /// Lines dropped because the queue was full.
    dropped: AtomicU64,
    /// Lines queued and lines written, for `flush`.
    queued: AtomicU64,
    written: &'static AtomicU64,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = format_line(
            self.format,
            now_unix_micros(),
            record.level(),
            record.target(),
            &record.args().to_string(),
        );
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            line.insert_str(
                0,
                &format!("({dropped} log lines dropped: the log writer fell behind)\n"),
            );
        }
        match self.lines.try_send(line) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::AcqRel);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1 + dropped, Ordering::Relaxed);
            }
        }
    }

    /// Waits (at most a second) until every line queued so far is written: before exit.
    fn flush(&self) {
        let target = self.queued.load(Ordering::Acquire);
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.written.load(Ordering::Acquire) < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = std::io::stderr().flush();
    }
}

/// The logger's thread: one blocking write per line, so lines never interleave.
fn write_lines(lines: Receiver<String>, written: &AtomicU64) {
    let stderr = std::io::stderr();
    for line in lines {
        let _ = stderr.lock().write_all(line.as_bytes());
        written.fetch_add(1, Ordering::AcqRel);
    }
}

/// Installs the logger and starts its writer thread. `level` wins over `RUST_LOG`; the
/// default is `info`.
pub fn init(format: LogFormat, level: Option<LevelFilter>) {
    let level = level
        .or_else(|| std::env::var("RUST_LOG").ok().and_then(|v| v.parse().ok()))
        .unwrap_or(LevelFilter::Info);
    let (sender, receiver) = channel::bounded(QUEUE_LINES);
    // The counters and the logger live as long as the process.
    let written: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    if std::thread::Builder::new()
        .name("log".into())
        .spawn(move || write_lines(receiver, written))
        .is_err()
    {
        eprintln!("shardgate: cannot start the log writer thread; logging is off");
        return;
    }
    let logger = Logger {
        format,
        lines: sender,
        dropped: AtomicU64::new(0),
        queued: AtomicU64::new(0),
        written,
    };
    if log::set_logger(Box::leak(Box::new(logger))).is_ok() {
        log::set_max_level(level);
    }
}

fn now_unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn format_line(
    format: LogFormat,
    micros: u64,
    level: Level,
    target: &str,
    message: &str,
) -> String {
    let time = rfc3339_utc(micros);
    match format {
        LogFormat::Human => format!("{time} {level:<5} {message}\n"),
        LogFormat::Json => {
            let mut line = String::with_capacity(64 + message.len());
            line.push_str("{\"time\":\"");
            line.push_str(&time);
            line.push_str("\",\"level\":\"");
            line.push_str(level.as_str());
            line.push_str("\",\"target\":");
            push_json_string(&mut line, target);
            line.push_str(",\"message\":");
            push_json_string(&mut line, message);
            line.push_str("}\n");
            line
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_escape_the_message() {
        let line = format_line(
            LogFormat::Json,
            0,
            Level::Warn,
            "shardgate::x",
            "say \"hi\"\n\u{1}",
        );
        assert_eq!(
            line,
            "{\"time\":\"1970-01-01T00:00:00.000000Z\",\"level\":\"WARN\",\"target\":\"shardgate::x\",\"message\":\"say \\\"hi\\\"\\n\\u0001\"}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["message"], "say \"hi\"\n\u{1}");
    }

    #[test]
    fn human_lines_carry_time_level_and_message() {
        assert_eq!(
            format_line(LogFormat::Human, 0, Level::Info, "t", "up"),
            "1970-01-01T00:00:00.000000Z INFO  up\n"
        );
    }
}
