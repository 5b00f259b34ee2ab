//! Large bodies stream through with bounded memory: 10 MiB up and 10 MiB down through the
//! gateway process, content checked by hash, peak RSS (VmHWM) of the gateway under 64 MiB.

use crate::support;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Read, Write};

use support::{api_file, open_api, Action, Backend, GatewayProcess};

const SIZE: usize = 10 * 1024 * 1024;

fn pattern(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect()
}

fn digest(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

#[test]
fn ten_mib_bodies_stream_both_ways_within_64_mib_of_rss() {
    let download = pattern(SIZE);
    let download_digest = digest(&download);
    let backend = Backend::start("big", move |r| {
        if r.method == "POST" {
            // Report what arrived, so the upload can be checked without echoing 10 MiB.
            Action::ok(format!("{} {}", r.body.len(), digest(&r.body)))
        } else {
            Action::ok(download.clone())
        }
    });
    let (_dir, api) = api_file(&open_api(&[backend.url("")], "load_balance"));
    let gateway = GatewayProcess::start(&[
        "--api",
        &api,
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--admin",
        "off",
    ]);
    let baseline_kb = gateway.status_kb("VmRSS");

    let mut client = gateway.client();
    for _ in 0..2 {
        let response = client.get("/svc/download");
        assert_eq!(response.status, 200);
        assert_eq!(response.body.len(), SIZE);
        assert_eq!(
            digest(&response.body),
            download_digest,
            "download corrupted"
        );
    }

    // Upload: write the body in pieces while the gateway streams it upstream.
    let upload = pattern(SIZE);
    let mut stream = client.stream.try_clone().unwrap();
    stream
        .write_all(
            format!("POST /svc/upload HTTP/1.1\r\nHost: h\r\nContent-Length: {SIZE}\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    for piece in upload.chunks(256 * 1024) {
        stream.write_all(piece).unwrap();
    }
    let response = client.read_response(false).unwrap();
    assert_eq!(
        response.text(),
        format!("{SIZE} {}", digest(&upload)),
        "upload corrupted"
    );

    // Chunked upload of the same size.
    stream
        .write_all(b"POST /svc/upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    for piece in upload.chunks(100_000) {
        stream
            .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .unwrap();
        stream.write_all(piece).unwrap();
        stream.write_all(b"\r\n").unwrap();
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
    let response = client.read_response(false).unwrap();
    assert_eq!(
        response.text(),
        format!("{SIZE} {}", digest(&upload)),
        "chunked upload corrupted"
    );

    let peak_kb = gateway.status_kb("VmHWM");
    eprintln!("gateway RSS: {baseline_kb} kB at start, peak {peak_kb} kB after 40 MiB through it");
    assert!(peak_kb < 64 * 1024, "peak RSS {peak_kb} kB is over 64 MiB");
}

#[test]
fn a_slow_reader_does_not_make_the_gateway_buffer_the_response() {
    let body = pattern(SIZE);
    let backend = Backend::start("big", move |_| Action::ok(body.clone()));
    let (_dir, api) = api_file(&open_api(&[backend.url("")], "load_balance"));
    let gateway = GatewayProcess::start(&[
        "--api",
        &api,
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--admin",
        "off",
    ]);
    let mut client = gateway.client();
    client.send(b"GET /svc/slow HTTP/1.1\r\nHost: h\r\n\r\n");
    // Read slowly: the socket buffers fill and the gateway must wait instead of buffering.
    let mut received = 0usize;
    let mut buf = [0u8; 16 * 1024];
    for _ in 0..20 {
        received += client.stream.read(&mut buf).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let rss_kb = gateway.status_kb("VmRSS");
    assert!(received < SIZE);
    assert!(
        rss_kb < 32 * 1024,
        "RSS {rss_kb} kB while a 10 MiB response waits for a slow reader"
    );
}
