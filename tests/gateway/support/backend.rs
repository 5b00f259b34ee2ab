//! A mock HTTP/1.1 backend on 127.0.0.1 (std threads): records what it received and
//! answers, misbehaves or stalls as the test scripts it.

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

/// A request as the backend received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub target: String,
    pub version: u8,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Which accepted connection (0-based) carried it.
    pub connection: usize,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }
}

/// What the backend does with a request.
pub enum Action {
    /// A response with `Content-Length`.
    Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// A chunked response with these chunks (and optional trailer lines).
    Chunked {
        status: u16,
        chunks: Vec<Vec<u8>>,
        trailers: Vec<(String, String)>,
    },
    /// Bytes written as they are; the connection stays open.
    Raw(Vec<u8>),
    /// Bytes written as they are, then the connection is closed.
    RawThenClose(Vec<u8>),
    /// Close without answering.
    Close,
    /// Never answer (until the backend stops).
    Hang,
    /// Wait, then act.
    Delay(Duration, Box<Action>),
}

impl Action {
    pub fn ok(body: impl Into<Vec<u8>>) -> Action {
        Action::Reply {
            status: 200,
            headers: vec![],
            body: body.into(),
        }
    }

    pub fn status(status: u16, body: impl Into<Vec<u8>>) -> Action {
        Action::Reply {
            status,
            headers: vec![],
            body: body.into(),
        }
    }
}

type Handler = dyn Fn(&Received) -> Action + Send + Sync;

struct BackendState {
    name: String,
    received: Mutex<Vec<Received>>,
    connections: AtomicUsize,
    /// Connections that ended (the peer closed or the backend stopped).
    closed: AtomicUsize,
    stopping: AtomicBool,
    open: Mutex<Vec<TcpStream>>,
    handler: Box<Handler>,
}

/// A mock HTTP/1.1 server.
pub struct Backend {
    pub addr: SocketAddr,
    state: Arc<BackendState>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl Backend {
    /// A backend answering every request with a JSON echo of what it saw.
    pub fn echo(name: &str) -> Backend {
        let label = name.to_owned();
        Backend::start(name, move |r| echo_action(&label, r))
    }

    pub fn start(
        name: &str,
        handler: impl Fn(&Received) -> Action + Send + Sync + 'static,
    ) -> Backend {
        Backend::start_on("127.0.0.1:0".parse().unwrap(), name, handler).expect("bind backend")
    }

    /// Starts on a given address (to restart a killed backend on its port).
    pub fn start_on(
        addr: SocketAddr,
        name: &str,
        handler: impl Fn(&Received) -> Action + Send + Sync + 'static,
    ) -> io::Result<Backend> {
        if addr.port() != 0 {
            release_stopped_port(addr);
        }
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let state = Arc::new(BackendState {
            name: name.to_owned(),
            received: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
            handler: Box::new(handler),
        });
        let accept_state = Arc::clone(&state);
        let acceptor = thread::spawn(move || {
            while !accept_state.stopping.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_nodelay(true);
                        let index = accept_state.connections.fetch_add(1, Ordering::AcqRel);
                        if let Ok(clone) = stream.try_clone() {
                            accept_state.open.lock().unwrap().push(clone);
                        }
                        let conn_state = Arc::clone(&accept_state);
                        thread::spawn(move || {
                            serve_backend_connection(Arc::clone(&conn_state), stream, index);
                            conn_state.closed.fetch_add(1, Ordering::AcqRel);
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(2))
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Ok(Backend {
            addr,
            state,
            acceptor: Some(acceptor),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.addr.port())
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.state.received.lock().unwrap().len()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::Acquire)
    }

    /// TCP connections that ended.
    pub fn closed_connections(&self) -> usize {
        self.state.closed.load(Ordering::Acquire)
    }

    /// Stops listening and closes every connection (a killed backend).
    /// Stops accepting and ends every connection. The port stays held (bound, not
    /// listening) for the rest of the run, so the gateway's connections to it are refused
    /// rather than reaching whichever test's listener would otherwise be given the freed
    /// port; `start_on` the same address takes it back.
    pub fn stop(mut self) {
        self.shutdown();
        hold_stopped_port(self.addr);
    }

    fn shutdown(&mut self) {
        self.state.stopping.store(true, Ordering::Release);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for stream in self.state.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The echo answer: backend name, method, target, headers and body length as JSON.
pub fn echo_action(name: &str, r: &Received) -> Action {
    let headers: HashMap<String, String> = r
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    let body = serde_json::json!({
        "backend": name,
        "method": r.method,
        "target": r.target,
        "headers": headers,
        "body_len": r.body.len(),
    });
    Action::Reply {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

fn serve_backend_connection(state: Arc<BackendState>, mut stream: TcpStream, index: usize) {
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        let request = match read_request(&mut stream, &mut buf) {
            Ok(Some(mut request)) => {
                request.connection = index;
                request
            }
            _ => return,
        };
        state.received.lock().unwrap().push(request.clone());
        let action = (state.handler)(&request);
        let head_request = request.method == "HEAD";
        if !perform(&state, &mut stream, action, head_request) {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        if request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Returns whether the connection stays open.
fn perform(
    state: &BackendState,
    stream: &mut TcpStream,
    action: Action,
    head_request: bool,
) -> bool {
    match action {
        Action::Reply {
            status,
            headers,
            body,
        } => {
            let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status)).into_bytes();
            let no_body =
                head_request || status == 204 || status == 304 || (100..200).contains(&status);
            let explicit_length = headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
            for (name, value) in &headers {
                out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            if !explicit_length && status != 204 && status != 304 {
                out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            if !no_body {
                out.extend_from_slice(&body);
            }
            stream.write_all(&out).is_ok()
        }
        Action::Chunked {
            status,
            chunks,
            trailers,
        } => {
            let mut out = format!(
                "HTTP/1.1 {status} {}\r\nTransfer-Encoding: chunked\r\n\r\n",
                reason(status)
            )
            .into_bytes();
            for chunk in chunks.iter().filter(|c| !c.is_empty()) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n");
            for (name, value) in &trailers {
                out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            stream.write_all(&out).is_ok()
        }
        Action::Raw(bytes) => stream.write_all(&bytes).is_ok(),
        Action::RawThenClose(bytes) => {
            let _ = stream.write_all(&bytes);
            false
        }
        Action::Close => false,
        Action::Hang => {
            while !state.stopping.load(Ordering::Acquire) {
                thread::sleep(Duration::from_millis(10));
            }
            false
        }
        Action::Delay(delay, then) => {
            thread::sleep(delay);
            perform(state, stream, *then, head_request)
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// Reads one request (head and body, de-chunked) from a backend connection.
fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Option<Received>> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let received_headers: Vec<(String, String)> = req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let mut request = Received {
                    method: req.method.unwrap_or_default().to_owned(),
                    target: req.path.unwrap_or_default().to_owned(),
                    version: req.version.unwrap_or(1),
                    headers: received_headers,
                    body: Vec::new(),
                    connection: 0,
                };
                buf.drain(..head_len);
                let chunked = request
                    .header("transfer-encoding")
                    .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
                if chunked {
                    request.body = read_chunked(stream, buf)?;
                } else if let Some(length) = request
                    .header("content-length")
                    .and_then(|v| v.trim().parse::<usize>().ok())
                {
                    while buf.len() < length {
                        if !fill(stream, buf)? {
                            return Ok(None);
                        }
                    }
                    request.body = buf.drain(..length).collect();
                }
                return Ok(Some(request));
            }
            Ok(httparse::Status::Partial) => {
                if !fill(stream, buf)? {
                    return Ok(None);
                }
            }
            Err(_) => return Ok(None),
        }
    }
}

fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

/// De-chunks a chunked body from `buf`/`stream`; trailers are dropped.
fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
                break pos;
            }
            if !fill(stream, buf)? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        buf.drain(..line_end + 2);
        if size == 0 {
            // Trailers until an empty line.
            loop {
                let end = loop {
                    if let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
                        break pos;
                    }
                    if !fill(stream, buf)? {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                };
                buf.drain(..end + 2);
                if end == 0 {
                    return Ok(body);
                }
            }
        }
        while buf.len() < size + 2 {
            if !fill(stream, buf)? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

/// Ports of stopped backends, held by a bound socket that does not listen.
static STOPPED_PORTS: Mutex<Vec<(SocketAddr, socket2::Socket)>> = Mutex::new(Vec::new());

fn hold_stopped_port(addr: SocketAddr) {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .expect("a socket");
    // The stopped backend's closed connections leave TIME_WAIT entries on the port, which
    // a bind without SO_REUSEADDR would refuse; with it, a bind to port 0 elsewhere is
    // still never given the port (the kernel's search does not relax the conflict).
    socket.set_reuse_address(true).expect("SO_REUSEADDR");
    if socket.bind(&addr.into()).is_ok() {
        STOPPED_PORTS.lock().unwrap().push((addr, socket));
    }
}

fn release_stopped_port(addr: SocketAddr) {
    STOPPED_PORTS
        .lock()
        .unwrap()
        .retain(|(held, _)| *held != addr);
}

/// The URL of a port on which nothing listens for the rest of the test run. A socket stays
/// bound to it without listening, so connections are refused and no other test's listener
/// (a gateway or backend on an ephemeral port, in this process or another) is given the
/// port: a port that was merely freed could be, and the "dead" endpoint would then answer.
pub fn dead_url() -> String {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).expect("an ephemeral port");
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("a bound address")
        .port();
    // Held until the process exits (one descriptor per dead endpoint of a test).
    std::mem::forget(socket);
    format!("http://127.0.0.1:{port}")
}
