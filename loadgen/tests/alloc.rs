//! The request path allocates nothing: the worker threads' allocation count does not grow
//! with the number of requests (plain HTTP, keep-alive; rustls allocates per TLS record).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use common::{run, TestServer};

struct Counting;

static WORKER_ALLOCS: AtomicU64 = AtomicU64::new(0);

/// Whether the calling thread is a loadgen worker ("loadgen-N"), without allocating.
fn on_worker_thread() -> bool {
    let mut name = [0u8; 16];
    // SAFETY: a valid buffer of the documented size for the calling thread.
    let r = unsafe {
        libc::pthread_getname_np(libc::pthread_self(), name.as_mut_ptr().cast(), name.len())
    };
    r == 0 && name.starts_with(b"loadgen-")
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if on_worker_thread() {
            WORKER_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if on_worker_thread() {
            WORKER_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn worker_allocs(rate: &str, url: &str) -> (u64, u64) {
    let before = WORKER_ALLOCS.load(Ordering::SeqCst);
    let r = run(&["--rate", rate, "-c", "4", "-t", "1", "-d", "2s", url]).unwrap();
    let n = WORKER_ALLOCS.load(Ordering::SeqCst) - before;
    assert_eq!(r.totals.counters.total_errors(), 0);
    (n, r.totals.counters.completed)
}

#[test]
fn allocations_do_not_grow_with_requests() {
    let server = TestServer::start();
    let url = server.url("/");
    let (few_allocs, few) = worker_allocs("100", &url);
    let (many_allocs, many) = worker_allocs("2000", &url);
    eprintln!(
        "{few} requests: {few_allocs} allocations; {many} requests: {many_allocs} allocations"
    );
    // 200 and 4000 requests are scheduled; a busy machine may send fewer (counted as unsent),
    // so the comparison is by what was done, not by what was asked.
    assert!(few <= 200 && many <= 4000, "{few} / {many}");
    assert!(many > few, "{many} requests vs {few}");
    // Setup and the per-second timeline allocate; the extra requests must not.
    assert!(
        many_allocs <= few_allocs + 20,
        "{many_allocs} allocations for {many} requests vs {few_allocs} for {few}"
    );
}
