//! The access log: one line per request, formatted by each shard into its own buffer and
//! handed whole to a writer thread through a bounded channel, so the event loop never waits
//! for a disk or a pipe. When the writer falls behind, buffers are dropped and counted
//! (`shardgate_access_log_dropped_total`) rather than stalling requests. Buffers come back
//! to the shard for reuse.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam::channel::{self, Receiver, Sender, TrySendError};

use crate::compile::config::gateway::{AccessLog as AccessLogConfig, AccessLogFormat};

/// A shard's buffer is handed over at this size (and at every control tick).
const FLUSH_AT: usize = 32 * 1024;
/// Buffers in flight between all shards and the writer.
const QUEUE: usize = 64;

/// What one line says.
pub struct Entry<'a> {
    pub client: IpAddr,
    pub method: &'a str,
    pub target: &'a [u8],
    pub version: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub upstream: Option<&'a str>,
    pub upstream_micros: Option<u64>,
    pub total_micros: u64,
    pub retries: u32,
}

/// The writer thread and the channels shards use.
pub struct AccessLogWriter {
    full: Sender<Vec<u8>>,
    empty: Receiver<Vec<u8>>,
    format: AccessLogFormat,
    thread: Option<JoinHandle<()>>,
}

impl AccessLogWriter {
    /// Opens the destination (a file, appended to, or standard output) and starts the writer.
    pub fn start(config: &AccessLogConfig) -> io::Result<AccessLogWriter> {
        let mut out: Box<dyn Write + Send> = match &config.path {
            Some(path) if path != Path::new("-") => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("access log {}: {e}", path.display()))
                    })?,
            ),
            _ => Box::new(io::stdout()),
        };
        let (full, full_rx) = channel::bounded::<Vec<u8>>(QUEUE);
        let (empty_tx, empty) = channel::bounded::<Vec<u8>>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                for mut buffer in full_rx {
                    if let Err(e) = out.write_all(&buffer).and_then(|()| out.flush()) {
                        log::warn!("access log write failed: {e}");
                    }
                    buffer.clear();
                    let _ = empty_tx.try_send(buffer);
                }
            })?;
        Ok(AccessLogWriter {
            full,
            empty,
            format: config.format,
            thread: Some(thread),
        })
    }

    /// A shard's handle.
    pub fn shard_buffer(&self) -> AccessLogBuffer {
        AccessLogBuffer {
            current: Vec::with_capacity(FLUSH_AT + 1024),
            full: self.full.clone(),
            empty: self.empty.clone(),
            format: self.format,
        }
    }

    /// Stops after everything queued is written. Shards' buffers must be gone first (they
    /// hold senders; the writer ends when the last one is dropped).
    pub fn finish(mut self) {
        let (full, _) = channel::bounded(0);
        drop(std::mem::replace(&mut self.full, full));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One shard's access log buffer.
pub struct AccessLogBuffer {
    current: Vec<u8>,
    full: Sender<Vec<u8>>,
    empty: Receiver<Vec<u8>>,
    format: AccessLogFormat,
}

impl AccessLogBuffer {
    /// Appends a line; hands the buffer over when it is full. Returns the number of lines
    /// dropped (0 unless the writer is behind).
    pub fn record(&mut self, entry: &Entry<'_>) -> u64 {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        match self.format {
            AccessLogFormat::Text => write_text(&mut self.current, micros, entry),
            AccessLogFormat::Json => write_json(&mut self.current, micros, entry),
        }
        if self.current.len() >= FLUSH_AT {
            self.flush()
        } else {
            0
        }
    }

    /// Hands the buffer to the writer (if it holds anything). Returns lines dropped.
    pub fn flush(&mut self) -> u64 {
        if self.current.is_empty() {
            return 0;
        }
        let replacement = self
            .empty
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(FLUSH_AT + 1024));
        let buffer = std::mem::replace(&mut self.current, replacement);
        match self.full.try_send(buffer) {
            Ok(()) => 0,
            Err(TrySendError::Full(mut buffer)) | Err(TrySendError::Disconnected(mut buffer)) => {
                let lines = buffer.iter().filter(|&&b| b == b'\n').count() as u64;
                buffer.clear();
                self.current = buffer;
                lines
            }
        }
    }
}

fn write_text(out: &mut Vec<u8>, micros: u64, e: &Entry<'_>) {
    use std::io::Write as _;
    let _ = write!(
        out,
        "{} {} \"{} ",
        crate::render::rfc3339_utc(micros),
        e.client,
        e.method
    );
    push_sanitized(out, e.target);
    let _ = write!(
        out,
        " {}\" {} {} upstream={} upstream_ms=",
        e.version,
        e.status,
        e.bytes,
        e.upstream.unwrap_or("-")
    );
    match e.upstream_micros {
        Some(us) => push_millis(out, us),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" total_ms=");
    push_millis(out, e.total_micros);
    let _ = writeln!(out, " retries={}", e.retries);
}

fn write_json(out: &mut Vec<u8>, micros: u64, e: &Entry<'_>) {
    use std::io::Write as _;
    let mut target = String::with_capacity(e.target.len());
    crate::render::push_json_string(&mut target, &String::from_utf8_lossy(e.target));
    let _ = write!(
        out,
        "{{\"time\":\"{}\",\"client\":\"{}\",\"method\":\"{}\",\"path\":{target},\"version\":\"{}\",\"status\":{},\"bytes\":{},\"upstream\":",
        crate::render::rfc3339_utc(micros),
        e.client,
        e.method,
        e.version,
        e.status,
        e.bytes
    );
    match e.upstream {
        Some(upstream) => {
            let _ = write!(out, "\"{upstream}\"");
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"upstream_ms\":");
    match e.upstream_micros {
        Some(us) => push_millis(out, us),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"total_ms\":");
    push_millis(out, e.total_micros);
    let _ = writeln!(out, ",\"retries\":{}}}", e.retries);
}

/// Milliseconds with three decimals.
fn push_millis(out: &mut Vec<u8>, micros: u64) {
    use std::io::Write as _;
    let _ = write!(out, "{}.{:03}", micros / 1000, micros % 1000);
}

/// A request target as text, control bytes and quotes escaped so a line stays one line.
fn push_sanitized(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(target: &[u8]) -> Entry<'_> {
        Entry {
            client: "10.0.0.7".parse().unwrap(),
            method: "GET",
            target,
            version: "HTTP/1.1",
            status: 200,
            bytes: 512,
            upstream: Some("127.0.0.1:2380"),
            upstream_micros: Some(1_234),
            total_micros: 2_005,
            retries: 1,
        }
    }

    #[test]
    fn text_lines_carry_every_field() {
        let mut out = Vec::new();
        write_text(&mut out, 0, &entry(b"/a?b=1"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1970-01-01T00:00:00.000000Z 10.0.0.7 \"GET /a?b=1 HTTP/1.1\" 200 512 upstream=127.0.0.1:2380 upstream_ms=1.234 total_ms=2.005 retries=1\n"
        );
    }

    #[test]
    fn hostile_targets_cannot_break_the_line() {
        let mut out = Vec::new();
        write_text(&mut out, 0, &entry(b"/a\"b\nc"));
        let line = String::from_utf8(out).unwrap();
        assert_eq!(line.lines().count(), 1);
        assert!(line.contains(r#"/a\"b\x0ac"#), "{line}");
    }

    #[test]
    fn json_lines_parse() {
        let mut out = Vec::new();
        let mut e = entry(b"/x\"y");
        e.upstream = None;
        e.upstream_micros = None;
        write_json(&mut out, 0, &e);
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["path"], "/x\"y");
        assert_eq!(value["status"], 200);
        assert_eq!(value["upstream"], serde_json::Value::Null);
        assert_eq!(value["total_ms"], 2.005);
    }

    #[test]
    fn lines_reach_the_file_once_the_shards_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let config = AccessLogConfig {
            enabled: true,
            path: Some(path.clone()),
            format: AccessLogFormat::Text,
        };
        let writer = AccessLogWriter::start(&config).unwrap();
        let mut buffer = writer.shard_buffer();
        for _ in 0..3 {
            assert_eq!(buffer.record(&entry(b"/x")), 0);
        }
        assert_eq!(buffer.flush(), 0);
        // As at shutdown: shards exit (their buffers go) before the writer is finished.
        drop(buffer);
        writer.finish();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
    }

    #[test]
    fn a_writer_that_falls_behind_costs_dropped_lines_not_a_stall() {
        // A queue of one that nobody reads: the second hand-over finds it full.
        let (full, _stalled_writer) = channel::bounded(1);
        let (_, empty) = channel::bounded(1);
        let mut buffer = AccessLogBuffer {
            current: Vec::new(),
            full,
            empty,
            format: AccessLogFormat::Text,
        };
        buffer.record(&entry(b"/a"));
        assert_eq!(buffer.flush(), 0);
        buffer.record(&entry(b"/b"));
        buffer.record(&entry(b"/c"));
        assert_eq!(buffer.flush(), 2, "two lines dropped, immediately");
        assert!(buffer.current.is_empty());
    }
}
