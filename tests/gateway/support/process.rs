//! The `shardgate` binary as a child process (signals, exit codes, memory, logs) and the admin
//! API over plain HTTP.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use shardgate::cli::Driver;
use shardgate::compile::snapshot::{LoadOptions, Snapshot};
use shardgate::control::server::Server;

use super::*;

/// The `shardgate` binary running as a child process (for signals, exit codes and memory).
pub struct GatewayProcess {
    child: std::process::Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl GatewayProcess {
    /// Runs `shardgate run <args>` (add `--listen 127.0.0.1:0`) and waits until it listens.
    pub fn start(args: &[&str]) -> GatewayProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shardgate"))
            .arg("run")
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn shardgate");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        thread::spawn(move || {
            for line in io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening http ").nth(1) {
                    let _ = tx.send(addr.trim().parse::<SocketAddr>().ok());
                }
                sink.lock().unwrap().push(line);
            }
            let _ = tx.send(None);
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .ok()
            .flatten()
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "shardgate did not start:\n{}",
                    log.lock().unwrap().join("\n")
                )
            });
        GatewayProcess { child, addr, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// A field of /proc/PID/status in kB (`VmRSS`, `VmHWM`).
    pub fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(field).and_then(|rest| {
                    rest.trim_start_matches(':')
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                })
            })
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// Open file descriptors of the process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid() as i32, signal) };
    }

    /// Waits for the process to exit (at most `limit`); returns its exit code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// The admin address from the start-up log (`admin listening on http://ADDR`).
    pub fn admin_addr(&self) -> SocketAddr {
        let mut found = None;
        eventually(Duration::from_secs(10), || {
            found = self.log.lock().unwrap().iter().find_map(|l| {
                l.split("admin listening on http://")
                    .nth(1)
                    .and_then(|a| a.trim().parse().ok())
            });
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no admin address in the log:\n{}", self.log_text()))
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `api` to a temporary file and returns the directory (keep it alive) and the path.
pub fn api_file(api: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.yaml");
    std::fs::write(&path, api).unwrap();
    let text = path.to_string_lossy().into_owned();
    (dir, text)
}

/// A plain HTTP/1.1 request to an admin endpoint; returns (status, body).
pub fn admin_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to admin");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(
            format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut raw = String::new();
    let _ = stream.read_to_string(&mut raw);
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
