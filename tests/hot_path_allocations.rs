//! The common path (small GET, keep-alive on both sides) allocates nothing per request once
//! warm. A counting global allocator counts every allocation in the process; the client and
//! the backend used here allocate nothing inside the measured window, so what is counted is
//! the gateway's. Counts, not times.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};

use support::{open_api, Gateway};

struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates to the system allocator; the counter is a side effect only.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world\n";

/// A keep-alive backend that answers each request head with a fixed response, using only a
/// stack buffer.
fn fixed_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut buf = [0u8; 8192];
                let mut filled = 0;
                loop {
                    match stream.read(&mut buf[filled..]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => filled += n,
                    }
                    // Answer every complete head in the buffer.
                    while let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                        if stream.write_all(RESPONSE).is_err() {
                            return;
                        }
                        buf.copy_within(end + 4..filled, 0);
                        filled -= end + 4;
                    }
                }
            });
        }
    });
    port
}

/// Sends `count` requests on one connection and reads each complete response, with stack
/// buffers only. Returns the number of 200 responses.
fn run_requests(stream: &mut TcpStream, count: usize) -> usize {
    const REQUEST: &[u8] =
        b"GET /svc/hello HTTP/1.1\r\nHost: gateway.test\r\nUser-Agent: alloc-test\r\n\r\n";
    let mut ok = 0;
    let mut buf = [0u8; 4096];
    for _ in 0..count {
        stream.write_all(REQUEST).unwrap();
        let mut filled = 0;
        loop {
            filled += stream.read(&mut buf[filled..]).unwrap();
            if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                let head = &buf[..end];
                let length_at = head
                    .windows(16)
                    .position(|w| w.eq_ignore_ascii_case(b"content-length: "))
                    .unwrap();
                let digits = &head[length_at + 16..];
                let length: usize = digits
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .fold(0, |n, d| n * 10 + usize::from(d - b'0'));
                if filled >= end + 4 + length {
                    if head.starts_with(b"HTTP/1.1 200") {
                        ok += 1;
                    }
                    break;
                }
            }
        }
    }
    ok
}

#[test]
fn small_keep_alive_requests_allocate_nothing_once_warm() {
    let at_start = ALLOCATIONS.load(Ordering::Relaxed);
    let port = fixed_backend();
    let gateway = Gateway::start(&open_api(
        &[format!("http://127.0.0.1:{port}")],
        "load_balance",
    ));
    let mut stream = TcpStream::connect(gateway.addr).unwrap();
    stream.set_nodelay(true).unwrap();
    assert_eq!(run_requests(&mut stream, 2_000), 2_000, "warm-up");
    assert!(
        ALLOCATIONS.load(Ordering::Relaxed) > at_start,
        "the counting allocator is not counting"
    );

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let requests = 20_000;
    assert_eq!(run_requests(&mut stream, requests), requests);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    eprintln!("{allocations} allocations in {requests} proxied requests");
    assert_eq!(
        allocations, 0,
        "{allocations} allocations over {requests} requests on the warm path"
    );
}
