//! `shardgate demo`: the example configuration with built-in upstreams on the ports the
//! example API names (2380, 2381; sandbox 2390), so a newcomer sees round robin and failover
//! with nothing else installed. Typing `down 2380` / `up 2380` on standard input stops and
//! restarts an upstream to show failover. The upstreams are deliberately simple blocking
//! servers on their own threads: they are props, not part of the gateway.

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A demo upstream answering every request with JSON naming itself.
pub struct DemoUpstream {
    pub port: u16,
    running: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
}

impl DemoUpstream {
    /// Starts serving on 127.0.0.1:`port`.
    pub fn start(port: u16) -> io::Result<DemoUpstream> {
        let upstream = DemoUpstream {
            port,
            running: Arc::new(AtomicBool::new(false)),
            connections: Arc::default(),
        };
        upstream.up()?;
        Ok(upstream)
    }

    /// (Re)starts listening.
    pub fn up(&self) -> io::Result<()> {
        if self.running.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], self.port)))?;
        listener.set_nonblocking(true)?;
        let running = Arc::clone(&self.running);
        let connections = Arc::clone(&self.connections);
        let port = self.port;
        thread::Builder::new()
            .name(format!("demo-upstream-{port}"))
            .spawn(move || {
                while running.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            if let Ok(clone) = stream.try_clone() {
                                connections
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .push(clone);
                            }
                            let _ = thread::Builder::new().spawn(move || serve(stream, port));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            })?;
        Ok(())
    }

    /// Stops listening and drops every connection, like a crashed server.
    pub fn down(&self) {
        self.running.store(false, Ordering::Release);
        for stream in self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // Let the accept thread notice and release the port.
        thread::sleep(Duration::from_millis(20));
    }
}

fn serve(mut stream: TcpStream, port: u16) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let head_end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let request_line = head.lines().next().unwrap_or_default().to_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
                    .map(|(_, v)| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + length);
        let mut parts = request_line.split(' ');
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let mut body = String::from("{\"upstream\":\"127.0.0.1:");
        body.push_str(&port.to_string());
        body.push_str("\",\"method\":");
        crate::render::push_json_string(&mut body, method);
        body.push_str(",\"path\":");
        crate::render::push_json_string(&mut body, target);
        body.push_str("}\n");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// The text printed once the demo is up.
pub fn instructions(http: SocketAddr, token: &str) -> String {
    let base = format!("http://localhost:{}/petstore/v1", http.port());
    format!(
        "
shardgate demo is running. Try, in another terminal:

  # round robin (API-level load_balance over 2380 and 2381); secured, so with a dev token:
  TOKEN={token}
  for i in 1 2 3 4; do curl -s -H \"Authorization: Bearer $TOKEN\" {base}/pet/findByStatus?status=sold; done

  # failover group (resource level): always 2380 while it is up
  curl -s -H \"Authorization: Bearer $TOKEN\" {base}/pet/1

  # no token needed here (x-wso2-disable-security), failover 2381 -> 2380
  curl -s {base}/store/inventory

  # what the gateway answers without a token, and for an unknown path
  curl -si {base}/pet/1
  curl -si {base}/nope

Type 'down 2380' here to stop that upstream and watch /pet/1 move to 2381 without errors;
'up 2380' brings it back. Ctrl-C stops the demo.
"
    )
}

/// Reads `down PORT` / `up PORT` lines from standard input until it closes.
pub fn control_loop(upstreams: &[DemoUpstream]) {
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return };
        let mut words = line.split_whitespace();
        let (Some(command), Some(port)) = (
            words.next(),
            words.next().and_then(|p| p.parse::<u16>().ok()),
        ) else {
            if !line.trim().is_empty() {
                println!("commands: down PORT, up PORT");
            }
            continue;
        };
        let Some(upstream) = upstreams.iter().find(|u| u.port == port) else {
            println!("no demo upstream on port {port}");
            continue;
        };
        match command {
            "down" => {
                upstream.down();
                println!("upstream {port} is down");
            }
            "up" => match upstream.up() {
                Ok(()) => println!("upstream {port} is up"),
                Err(e) => println!("cannot restart {port}: {e}"),
            },
            _ => println!("commands: down PORT, up PORT"),
        }
    }
}
