//! Helpers for the crate's own socket tests: both runtime drivers, a connected TCP pair.

use std::future::Future;
use std::net::TcpListener;

use monoio::net::TcpStream;

/// Runs `test` on an io_uring runtime (the shards' driver) and on the epoll fallback.
pub(crate) fn on_both_drivers<F: Future<Output = ()>>(test: impl Fn() -> F) {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("an io_uring runtime")
        .block_on(test());
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("an epoll runtime")
        .block_on(test());
}

/// A connected pair on loopback: the monoio side (the gateway's) and the peer's blocking side.
pub(crate) async fn tcp_pair() -> (TcpStream, std::net::TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ours = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (peer, _) = listener.accept().unwrap();
    (ours, peer)
}
