//! The admin listener (default 127.0.0.1:9000), off the data path: a plain blocking thread
//! that answers `/health`, `/ready`, `/metrics` (Prometheus text), `/endpoints` (JSON),
//! `/routes` (the route table), `POST /reload` and `POST /endpoints/drain|enable?url=URL`.
//! It only reads what shards publish and writes the process-wide upstream table (drain
//! flags), which shards copy in their control loop; it never touches a shard's state.

mod prometheus;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::data::shared::Shared;

/// Reloads the configuration; `Ok` carries a summary, `Err` every error found.
pub type Reloader = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// A running admin listener.
pub struct AdminServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    pub fn start(
        addr: SocketAddr,
        shared: Arc<Shared>,
        reload: Reloader,
    ) -> io::Result<AdminServer> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on admin {addr}: {e}")))?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || {
                while !stopping.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let shared = Arc::clone(&shared);
                            let reload = Arc::clone(&reload);
                            let _ = std::thread::Builder::new()
                                .name("admin-conn".into())
                                .spawn(move || serve(stream, &shared, &reload));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        Err(e) => {
                            log::warn!("admin accept failed: {e}");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })?;
        Ok(AdminServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// An answer of the admin API.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Reply {
    fn json(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body,
        }
    }
}

fn serve(mut stream: TcpStream, shared: &Shared, reload: &Reloader) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let (method, path, query) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let method = request.method.unwrap_or("").to_owned();
                let target = request.path.unwrap_or("");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                break (method, path.to_owned(), query.to_owned());
            }
            Ok(httparse::Status::Partial) if buf.len() < 16 * 1024 => match stream.read(&mut chunk)
            {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            },
            _ => {
                let _ = write_reply(
                    &mut stream,
                    &Reply::json(400, error_body("400", "Bad Request")),
                );
                return;
            }
        }
    };
    let reply = route(&method, &path, &query, shared, reload);
    let _ = write_reply(&mut stream, &reply);
}

fn route(method: &str, path: &str, query: &str, shared: &Shared, reload: &Reloader) -> Reply {
    match (method, path) {
        ("POST", "/endpoints/drain") => set_drained(shared, query, true),
        ("POST", "/endpoints/enable") => set_drained(shared, query, false),
        ("GET", "/health") => Reply::json(200, r#"{"status":"healthy"}"#.to_owned()),
        ("GET", "/ready") => ready(shared),
        ("GET", "/metrics") => Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: prometheus::render(shared),
        },
        ("GET", "/endpoints") => Reply::json(200, endpoints(shared)),
        ("GET", "/routes") => Reply {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: shared.snapshot().0.route_table(),
        },
        ("POST", "/reload") => match reload() {
            Ok(summary) => Reply::json(
                200,
                format!(
                    "{{\"status\":\"reloaded\",\"summary\":{}}}",
                    json_string(&summary)
                ),
            ),
            Err(errors) => Reply::json(
                400,
                format!(
                    "{{\"status\":\"rejected\",\"errors\":{}}}",
                    serde_json::Value::from(errors.lines().collect::<Vec<_>>())
                ),
            ),
        },
        (
            _,
            "/health" | "/ready" | "/metrics" | "/endpoints" | "/routes" | "/reload"
            | "/endpoints/drain" | "/endpoints/enable",
        ) => Reply::json(405, error_body("405", "Method Not Allowed")),
        _ => Reply::json(404, error_body("404", "Not Found")),
    }
}

fn ready(shared: &Shared) -> Reply {
    let ready = shared.ready_shards();
    let workers = shared.workers;
    if shared.is_draining() {
        Reply::json(
            503,
            format!("{{\"status\":\"draining\",\"shards_ready\":{ready},\"workers\":{workers}}}"),
        )
    } else if ready < workers {
        Reply::json(
            503,
            format!("{{\"status\":\"starting\",\"shards_ready\":{ready},\"workers\":{workers}}}"),
        )
    } else {
        Reply::json(
            200,
            format!("{{\"status\":\"ready\",\"shards_ready\":{ready},\"workers\":{workers}}}"),
        )
    }
}

/// Each endpoint of the current snapshot with its counters summed over shards.
fn endpoints(shared: &Shared) -> String {
    let (snapshot, generation) = shared.snapshot();
    let shards = shared.metrics.shard_metrics();
    let labels = shared.metrics.labels();
    let mut list = Vec::with_capacity(snapshot.endpoints.len());
    for (id, endpoint) in snapshot.endpoints.iter().enumerate() {
        let origin = endpoint.origin();
        let label = labels.endpoints().iter().position(|l| *l == origin);
        let sum = |f: &dyn Fn(&crate::metrics::EndpointCounters) -> i64| -> i64 {
            label.map_or(0, |label| {
                shards
                    .iter()
                    .filter_map(|m| m.endpoint(label as u32))
                    .map(f)
                    .sum()
            })
        };
        let health = shared.health_of(id);
        list.push(serde_json::json!({
            "id": id,
            "endpoint": origin,
            "upstream_id": endpoint.upstream.0,
            "addresses": snapshot.upstreams.addresses(endpoint.upstream).iter().map(ToString::to_string).collect::<Vec<_>>(),
            "state": health.state,
            "drained": health.drained,
            "suspension_cause": health.cause,
            "epoch": health.epoch,
            "suspended_remaining_ms": health.suspended_remaining_ms,
            "in_flight": sum(&|c| c.in_flight.get()),
            "idle_pooled": sum(&|c| c.idle.get()),
            "attempts": sum(&|c| c.attempts.get() as i64),
            "failures": sum(&|c| c.failures.get() as i64),
            "retries": sum(&|c| c.retries.get() as i64),
        }));
    }
    serde_json::json!({"generation": generation, "endpoints": list}).to_string()
}

/// `POST /endpoints/drain?url=URL` and `/endpoints/enable?url=URL`: takes the endpoint out of
/// service on every shard (or returns it). The URL names scheme, host and port; a path is
/// ignored (the endpoint is the server, whatever base path a group gives it).
fn set_drained(shared: &Shared, query: &str, drained: bool) -> Reply {
    let Some(url) = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("url="))
        .map(percent_decode)
    else {
        return Reply::json(
            400,
            error_body("400", "give the endpoint as ?url=http://host:port"),
        );
    };
    let parsed = match crate::compile::config::url::parse_url(&url) {
        Ok(parsed) => parsed,
        Err(e) => return Reply::json(400, error_body("400", &format!("'{url}': {e}"))),
    };
    let (snapshot, _) = shared.snapshot();
    let matching: Vec<_> = snapshot
        .endpoints
        .iter()
        .filter(|e| {
            e.scheme == parsed.scheme
                && e.port == parsed.port
                && e.host.eq_ignore_ascii_case(&parsed.host)
        })
        .collect();
    if matching.is_empty() {
        return Reply::json(
            404,
            error_body(
                "404",
                &format!("no endpoint {url} in the current configuration"),
            ),
        );
    }
    for endpoint in &matching {
        if snapshot.upstreams.set_drained(endpoint.upstream, drained) {
            if drained {
                log::warn!(
                    "endpoint {} drained by the admin API: no new requests",
                    endpoint.origin()
                );
            } else {
                log::info!("endpoint {} enabled by the admin API", endpoint.origin());
            }
        }
    }
    let status = if drained { "drained" } else { "enabled" };
    Reply::json(
        200,
        serde_json::json!({"status": status, "endpoint": matching[0].origin()}).to_string(),
    )
}

/// `%XX` escapes of a query value (and `+` as space), as forms and curl encode them.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' => {
                let high = bytes.get(i + 1).and_then(|&b| hex(b));
                let low = bytes.get(i + 2).and_then(|&b| hex(b));
                match (high, low) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn error_body(code: &str, message: &str) -> String {
    format!("{{\"code\":\"{code}\",\"message\":\"{message}\"}}")
}

fn json_string(text: &str) -> String {
    let mut out = String::new();
    crate::render::push_json_string(&mut out, text);
    out
}

fn write_reply(stream: &mut TcpStream, reply: &Reply) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        reply.status,
        crate::error::reason_phrase(reply.status),
        reply.content_type,
        reply.body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(reply.body.as_bytes())
}
