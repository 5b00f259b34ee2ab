//! Driving a rustls handshake over a monoio `TcpStream` with owned buffers, before the
//! connection is handed to `monoio-rustls` for the data phase. Doing the handshake here lets
//! the server look at the first bytes (plain HTTP on the TLS port) without an extra peek
//! syscall, and lets both sides record what was negotiated (version, resumption, ALPN), which
//! the `monoio-rustls` stream does not expose afterwards.

use std::io;
use std::ops::DerefMut;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::{ConnectionCommon, SideData};

use super::HandshakeError;

/// Bytes read from the socket per handshake read. Also bounds the application data that can
/// arrive with the last handshake flight: its plaintext stays below rustls' 16 KiB received
/// plaintext limit, so feeding it all in never fails with "buffer full".
const HANDSHAKE_READ: usize = 16 * 1024;

/// Whether the first bytes from the peer are to be checked for plain HTTP.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstBytes {
    /// Server side: a client speaking HTTP to the TLS port is reported as `PlainHttp`.
    DetectPlainHttp,
    /// Client side: whatever the server sends goes to rustls.
    Tls,
}

/// Runs the handshake of `conn` on `tcp` to completion. On success every byte read from the
/// socket is inside `conn` (early application data included) and nothing is left to write.
/// On a protocol error the alert rustls queued is sent, best effort.
pub(crate) async fn complete<C, SD>(
    tcp: &mut TcpStream,
    conn: &mut C,
    first_bytes: FirstBytes,
) -> Result<(), HandshakeError>
where
    C: DerefMut<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    let mut inbuf = Vec::with_capacity(HANDSHAKE_READ);
    let mut outbuf = Vec::new();
    let mut first_read = true;
    loop {
        send_pending(tcp, conn, &mut outbuf).await?;
        if !conn.is_handshaking() {
            return Ok(());
        }
        inbuf.clear();
        let (result, buf) = tcp.read(inbuf).await;
        inbuf = buf;
        match result {
            Ok(0) => return Err(HandshakeError::Closed),
            Ok(_) => {}
            Err(e) => return Err(socket_error(e)),
        }
        if first_read && first_bytes == FirstBytes::DetectPlainHttp && looks_like_http(&inbuf) {
            return Err(HandshakeError::PlainHttp);
        }
        first_read = false;
        if let Err(e) = feed(conn, &inbuf) {
            let _ = send_pending(tcp, conn, &mut outbuf).await;
            return Err(e);
        }
    }
}

/// Whether the first bytes of a connection are an HTTP request line rather than a TLS
/// record. A TLS record starts with its content type (20..=24; a ClientHello with 22), an
/// SSLv2-compatible hello with a byte >= 0x80; an HTTP method starts with an upper-case
/// letter.
pub(crate) fn looks_like_http(first: &[u8]) -> bool {
    first.first().is_some_and(u8::is_ascii_uppercase)
}

/// Hands all of `bytes` to rustls, processing records as they complete.
fn feed<C, SD>(conn: &mut C, mut bytes: &[u8]) -> Result<(), HandshakeError>
where
    C: DerefMut<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    // Never call `read_tls` with nothing to give: a zero-length read means end of stream.
    while !bytes.is_empty() {
        conn.read_tls(&mut bytes)?;
        conn.process_new_packets()?;
    }
    Ok(())
}

/// Writes everything rustls wants to send.
async fn send_pending<C, SD>(
    tcp: &mut TcpStream,
    conn: &mut C,
    outbuf: &mut Vec<u8>,
) -> Result<(), HandshakeError>
where
    C: DerefMut<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    outbuf.clear();
    while conn.wants_write() {
        // Writing into a Vec cannot fail or block.
        conn.write_tls(outbuf)?;
    }
    if outbuf.is_empty() {
        return Ok(());
    }
    let (result, buf) = tcp.write_all(std::mem::take(outbuf)).await;
    *outbuf = buf;
    result.map(|_| ()).map_err(socket_error)
}

fn socket_error(e: io::Error) -> HandshakeError {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => HandshakeError::Closed,
        _ => HandshakeError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_methods_are_plain_http_and_tls_records_are_not() {
        for request in [&b"GET / HTTP/1.1\r\n"[..], b"POST", b"OPTIONS *", b"P"] {
            assert!(looks_like_http(request), "{request:?}");
        }
        // Handshake record (ClientHello), alert, SSLv2-compatible hello, nothing, lower case.
        for other in [
            &[0x16u8, 0x03, 0x01][..],
            &[0x15, 0x03, 0x03],
            &[0x80, 0x2e],
            b"",
            b"get",
        ] {
            assert!(!looks_like_http(other), "{other:?}");
        }
    }
}
