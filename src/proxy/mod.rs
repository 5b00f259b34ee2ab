//! The per-connection request lifecycle: read request -> route -> authorize -> pick ->
//! forward -> stream back. (Placeholder until the codec lands.)

use std::net::SocketAddr;
use std::rc::Rc;

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use crate::server::ListenerKind;
use crate::shard::ShardContext;

pub async fn serve_connection(
    ctx: Rc<ShardContext>,
    mut stream: TcpStream,
    _peer: SocketAddr,
    _kind: ListenerKind,
) {
    let _slot = ctx
        .connections
        .register(std::os::fd::AsRawFd::as_raw_fd(&stream));
    let _ = stream
        .write_all(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                .to_vec(),
        )
        .await;
}
