//! Real parts for integration tests: a mock HTTP/1.1 backend on 127.0.0.1 (std threads,
//! records what it received, misbehaves on request), a raw-socket HTTP client, and a
//! gateway started in-process on ephemeral ports. No network mocks.

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

// ---------------------------------------------------------------- backend

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
    pub fn stop(mut self) {
        self.shutdown();
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

// ---------------------------------------------------------------- client

/// A response as the client saw it.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body ended with the connection (no length, not chunked).
    pub until_close: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTP/1.1 client over one TCP connection.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to gateway");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends a GET with Host and reads the response.
    pub fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: gateway.test\r\n\r\n").as_bytes());
        self.read_response(false).expect("response")
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut out = format!("{method} {path} HTTP/1.1\r\nHost: gateway.test\r\n");
        for (name, value) in headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            out.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        self.send(&bytes);
        self.read_response(method == "HEAD").expect("response")
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one final response (interim 1xx responses are skipped and returned separately
    /// by `read_any_response`).
    pub fn read_response(&mut self, head_request: bool) -> io::Result<Response> {
        loop {
            let response = self.read_any_response(head_request)?;
            if !(100..200).contains(&response.status) {
                return Ok(response);
            }
        }
    }

    /// Reads the next response, interim ones included.
    pub fn read_any_response(&mut self, head_request: bool) -> io::Result<Response> {
        let (status, headers, head_len) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 128];
            let mut response = httparse::Response::new(&mut slots);
            match response.parse(&self.buf) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let headers = response
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_owned(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect::<Vec<_>>();
                    break (response.code.unwrap_or(0), headers, head_len);
                }
                Ok(httparse::Status::Partial) => {
                    if self.fill()? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "closed before a response head",
                        ));
                    }
                }
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad response head: {e}"),
                    ))
                }
            }
        };
        self.buf.drain(..head_len);
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let mut response = Response {
            status,
            headers: headers.clone(),
            body: Vec::new(),
            until_close: false,
        };
        if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok(response);
        }
        if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            response.body = self.read_chunked_body()?;
        } else if let Some(length) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while self.buf.len() < length {
                if self.fill()? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("body cut at {} of {length}", self.buf.len()),
                    ));
                }
            }
            response.body = self.buf.drain(..length).collect();
        } else {
            while self.fill()? > 0 {}
            response.body = std::mem::take(&mut self.buf);
            response.until_close = true;
        }
        Ok(response)
    }

    fn read_chunked_body(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break pos;
                }
                if self.fill()? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            };
            let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                loop {
                    let end = loop {
                        if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                            break pos;
                        }
                        if self.fill()? == 0 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                    };
                    self.buf.drain(..end + 2);
                    if end == 0 {
                        return Ok(body);
                    }
                }
            }
            while self.buf.len() < size + 2 {
                if self.fill()? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }

    /// Whether the gateway closed the connection (end of stream within `wait`) with no
    /// bytes pending.
    pub fn is_closed(&mut self, wait: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut byte = [0u8; 1];
        let closed = match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => {
                self.buf.push(byte[0]);
                false
            }
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        };
        self.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        closed
    }

    /// Everything until the gateway closes the connection.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        while let Ok(n) = self.fill() {
            if n == 0 {
                break;
            }
        }
        std::mem::take(&mut self.buf)
    }
}

// ---------------------------------------------------------------- gateway

/// A gateway running in this process on ephemeral ports.
pub struct Gateway {
    server: Option<Server>,
    pub addr: SocketAddr,
    /// The HTTPS listener, when started with `start_tls`.
    pub https_addr: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
}

impl Gateway {
    /// One worker, the given API definition, defaults otherwise.
    pub fn start(api: &str) -> Gateway {
        Gateway::start_with(api, "", 1)
    }

    /// `gateway_yaml` is appended to a config that listens on 127.0.0.1:0 (HTTP only).
    pub fn start_with(api: &str, gateway_yaml: &str, workers: usize) -> Gateway {
        Gateway::start_config(
            api,
            "listeners:\n  http: [\"127.0.0.1:0\"]\n  https: []\n",
            gateway_yaml,
            workers,
        )
    }

    /// Like `start_with`, with several API definitions (one file each).
    pub fn start_apis(apis: &[&str], gateway_yaml: &str, workers: usize) -> Gateway {
        Gateway::start_definitions(
            apis,
            "listeners:\n  http: [\"127.0.0.1:0\"]\n  https: []\n",
            gateway_yaml,
            workers,
        )
    }

    /// HTTP and HTTPS on 127.0.0.1:0; `gateway_yaml` may add a `tls:` section.
    pub fn start_tls(api: &str, gateway_yaml: &str) -> Gateway {
        Gateway::start_config(
            api,
            "listeners:\n  http: [\"127.0.0.1:0\"]\n  https: [\"127.0.0.1:0\"]\n",
            gateway_yaml,
            1,
        )
    }

    fn start_config(api: &str, listeners: &str, gateway_yaml: &str, workers: usize) -> Gateway {
        Gateway::start_definitions(&[api], listeners, gateway_yaml, workers)
    }

    fn start_definitions(
        apis: &[&str],
        listeners: &str,
        gateway_yaml: &str,
        workers: usize,
    ) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("apis")).unwrap();
        for (i, api) in apis.iter().enumerate() {
            let name = if i == 0 {
                "api.yaml".to_owned()
            } else {
                format!("api{i}.yaml")
            };
            std::fs::write(dir.path().join("apis").join(name), api).unwrap();
        }
        let config =
            format!("{listeners}admin: null\nworkers: {workers}\napis: [apis/]\n{gateway_yaml}");
        let config_path = dir.path().join("gateway.yaml");
        std::fs::write(&config_path, config).unwrap();
        let snapshot = Snapshot::load(&LoadOptions {
            config: Some(config_path),
            apis: vec![],
            resolve_hosts: true,
        })
        .unwrap_or_else(|e| panic!("test configuration is invalid:\n{e}"));
        let server = Server::start(snapshot, Driver::Auto).expect("start gateway");
        let addr = server.http_addrs[0];
        let https_addr = server.https_addrs.first().copied();
        Gateway {
            server: Some(server),
            addr,
            https_addr,
            dir,
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.yaml")
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    /// Begins the drain and waits for the shards to exit.
    pub fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

/// An open (security-disabled) API at `/svc` over `urls` with `type`.
pub fn open_api(urls: &[String], kind: &str) -> String {
    let urls = urls
        .iter()
        .map(|u| format!("'{u}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "openapi: 3.0.1\ninfo: {{title: svc, version: '1'}}\nx-wso2-basePath: /svc\nx-wso2-disable-security: true\nx-wso2-production-endpoints:\n  urls: [{urls}]\n  type: {kind}\npaths:\n  /*:\n    get: {{}}\n    post: {{}}\n    put: {{}}\n    delete: {{}}\n    head: {{}}\n    patch: {{}}\n"
    )
}

/// Polls `condition` until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    condition()
}

// ---------------------------------------------------------------- gateway process

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
pub mod hostile;
