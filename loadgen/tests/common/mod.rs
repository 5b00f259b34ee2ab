//! A small HTTP/1.1 test server on 127.0.0.1 (port 0), std threads, one per connection.
//!
//! Routes:
//! - `/`                 200 "hello" (keep-alive unless the request says otherwise)
//! - `/close`            200 with `Connection: close`, then closes
//! - `/chunked`          200, chunked body of 3 + 26 bytes with a trailer
//! - `/status/N`         status N with a short body
//! - `/sleep/MS`         waits MS milliseconds, then 200
//! - `/broken`           promises 100 bytes, sends 10, closes (a read error)
//! - `/garbage`          not HTTP at all (a protocol error)
//! - `/eof`              closes without answering (a read error)
//! - `/host`             200 if the Host header equals the server's `expect_host`, else 421
//!
//! `stall_for(d)` makes every response wait until `d` from now (the stall switch).

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Shared {
    pub requests: AtomicU64,
    pub connections: AtomicU64,
    pub stall_until: Mutex<Option<Instant>>,
    pub expect_host: Mutex<String>,
    pub last_host: Mutex<String>,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(None)
    }

    pub fn start_tls(cfg: Arc<rustls::ServerConfig>) -> TestServer {
        Self::start_with(Some(cfg))
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (sh, st) = (shared.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                sh.connections.fetch_add(1, Ordering::SeqCst);
                let sh = sh.clone();
                let tls = tls.clone();
                thread::spawn(move || {
                    let _ = conn.set_nodelay(true);
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                    match tls {
                        None => serve(conn, &sh),
                        Some(cfg) => {
                            let Ok(sc) = rustls::ServerConnection::new(cfg) else {
                                return;
                            };
                            serve(rustls::StreamOwned::new(sc, conn), &sh)
                        }
                    }
                });
            }
        });
        TestServer { addr, shared, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// Every response waits until `d` from now.
    pub fn stall_for(&self, d: Duration) {
        *self.shared.stall_until.lock().unwrap() = Some(Instant::now() + d);
    }

    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

struct Req {
    method: String,
    path: String,
    close: bool,
    host: String,
}

fn read_request<R: BufRead>(r: &mut R) -> io::Result<Option<Req>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("/").to_string();
    let version = parts.next().unwrap_or("HTTP/1.1").to_string();
    let mut close = version == "HTTP/1.0";
    let mut len = 0usize;
    let mut host = String::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            let (n, v) = (n.trim().to_ascii_lowercase(), v.trim());
            match n.as_str() {
                "content-length" => len = v.parse().unwrap_or(0),
                "connection" if v.eq_ignore_ascii_case("close") => close = true,
                "connection" if v.eq_ignore_ascii_case("keep-alive") => close = false,
                "host" => host = v.to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Some(Req {
        method,
        path,
        close,
        host,
    }))
}

fn serve<S: Read + Write>(stream: S, sh: &Shared) {
    let mut r = BufReader::new(stream);
    while let Ok(Some(req)) = read_request(&mut r) {
        sh.requests.fetch_add(1, Ordering::SeqCst);
        *sh.last_host.lock().unwrap() = req.host.clone();
        let stall = *sh.stall_until.lock().unwrap();
        if let Some(until) = stall {
            let now = Instant::now();
            if until > now {
                thread::sleep(until - now);
            }
        }
        let conn_hdr = if req.close {
            "Connection: close\r\n"
        } else {
            ""
        };
        let simple = |status: u16, body: &str, extra: &str| {
            format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n{extra}{conn_hdr}\r\n{}",
                body.len(),
                if req.method == "HEAD" { "" } else { body }
            )
        };
        let mut close_after = req.close;
        let out: Vec<u8> = match req.path.as_str() {
            "/close" => {
                close_after = true;
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbye".into()
            }
            "/chunked" => format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n{conn_hdr}\r\n\
                 3;x=y\r\nabc\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n"
            )
            .into_bytes(),
            "/broken" => {
                let _ = r
                    .get_mut()
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
                let _ = r.get_mut().flush();
                return;
            }
            "/garbage" => {
                let _ = r.get_mut().write_all(b"THIS IS NOT HTTP\r\n\r\n");
                let _ = r.get_mut().flush();
                return;
            }
            "/eof" => return,
            "/host" => {
                let want = sh.expect_host.lock().unwrap().clone();
                if req.host == want {
                    simple(200, "right host", "").into_bytes()
                } else {
                    simple(421, "wrong host", "").into_bytes()
                }
            }
            p if p.starts_with("/status/") => {
                let code: u16 = p["/status/".len()..].parse().unwrap_or(500);
                simple(code, "status", "").into_bytes()
            }
            p if p.starts_with("/sleep/") => {
                let ms: u64 = p["/sleep/".len()..].parse().unwrap_or(0);
                thread::sleep(Duration::from_millis(ms));
                simple(200, "slept", "").into_bytes()
            }
            _ => simple(200, "hello", "").into_bytes(),
        };
        if r.get_mut().write_all(&out).is_err() || r.get_mut().flush().is_err() {
            return;
        }
        if close_after {
            return;
        }
    }
}

/// A rustls server config with a fresh self-signed certificate for `localhost`.
pub fn tls_server_config() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let cert = CertificateDer::from(ck.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
    Arc::new(cfg)
}

/// A `Config` from command-line words (exercises the parser as well).
pub fn config(args: &[&str]) -> loadgen::Config {
    match loadgen::args::parse(args.iter().copied()).expect("valid arguments") {
        loadgen::args::Command::Run(c) => *c,
        other => panic!("not a run: {other:?}"),
    }
}

/// Runs in-process with no progress output.
pub fn run(args: &[&str]) -> Result<loadgen::RunResult, loadgen::RunError> {
    loadgen::run(&config(args), |_| {})
}
