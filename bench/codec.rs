//! Micro-benchmarks of the data path's HTTP/1.1 codec (`shardgate::http`): head parsing, head
//! rewriting, chunked scanning, path normalisation and the trailer filter, on heads shaped like
//! real API traffic.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardgate::http::{
    current_http_date, normalize_path, parse_request, parse_response, write_client_head,
    write_upstream_head, ChunkedDecoder, ClientHead, HeadLimits, HeadScan, RequestHead,
    ResponseHead, TrailerGate, UpstreamHead, Version,
};

/// A browser-like API request: ~600 bytes, 12 fields, a bearer token.
const REQUEST: &[u8] = b"GET /petstore/v1/pet/findByStatus?status=sold HTTP/1.1\r\n\
Host: gateway.example.com:9095\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n\
Accept: application/json, text/plain, */*\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Authorization: Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwia2V5dHlwZSI6IlBST0RVQ1RJT04ifQ.c2lnbmF0dXJl\r\n\
Connection: keep-alive\r\n\
X-Request-ID: 6f1c2d1e-8a7b-4c3d-9e0f-112233445566\r\n\
X-Forwarded-For: 198.51.100.20\r\n\
Origin: https://app.example.com\r\n\
Referer: https://app.example.com/pets\r\n\
Cache-Control: no-cache\r\n\r\n";

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Date: Tue, 21 Nov 2023 18:53:00 GMT\r\n\
Content-Type: application/json\r\n\
Content-Length: 1432\r\n\
Connection: keep-alive\r\n\
Cache-Control: no-store\r\n\
ETag: \"33a64df551425fcc55e4d42a148795d9f25f89d4\"\r\n\
Vary: Accept-Encoding\r\n\r\n";

fn heads(c: &mut Criterion) {
    let limits = HeadLimits::default();
    let mut group = c.benchmark_group("head");
    group.throughput(Throughput::Bytes(REQUEST.len() as u64));

    let mut request = RequestHead::with_limits(&limits);
    group.bench_function("parse_request", |b| {
        b.iter(|| parse_request(black_box(REQUEST), &limits, &mut request))
    });
    // Baseline: httparse alone, no validation; parse_request's cost above this is ours.
    group.bench_function("httparse_baseline", |b| {
        b.iter(|| {
            let mut fields = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Request::new(&mut fields);
            parsed.parse(black_box(REQUEST)).is_ok()
        })
    });
    group.bench_function("head_scan_one_read", |b| {
        b.iter(|| HeadScan::default().poll(black_box(REQUEST), &limits))
    });

    let mut response = ResponseHead::with_limits(&limits);
    group.bench_function("parse_response", |b| {
        b.iter(|| parse_response(black_box(RESPONSE), false, &limits, &mut response))
    });

    if parse_request(REQUEST, &limits, &mut request).is_err() {
        panic!("benchmark request does not parse");
    }
    let upstream = UpstreamHead {
        target: b"/v2/pet/findByStatus?status=sold",
        host: b"petstore.internal:8080",
        client_ip: b"203.0.113.7",
        proto: b"https",
        drop_header: Some(b"authorization"),
        authorization: None,
    };
    let mut out = Vec::with_capacity(4096);
    group.bench_function("write_upstream_head", |b| {
        b.iter(|| {
            out.clear();
            write_upstream_head(&mut out, black_box(REQUEST), &request, &upstream);
        })
    });

    if parse_response(RESPONSE, false, &limits, &mut response).is_err() {
        panic!("benchmark response does not parse");
    }
    let client = ClientHead {
        keep_alive: true,
        client_version: Version::Http11,
        dechunk: false,
        extra: b"Access-Control-Allow-Origin: https://app.example.com\r\n",
    };
    group.bench_function("write_client_head", |b| {
        b.iter(|| {
            out.clear();
            write_client_head(&mut out, black_box(RESPONSE), &response, &client);
        })
    });
    group.finish();
}

/// A 64 KiB body in 4 KiB chunks with an extension and a trailer.
fn chunked_body() -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..16 {
        body.extend_from_slice(b"1000;sig=abc\r\n");
        body.extend_from_slice(&[b'x'; 4096]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\nX-Checksum: 1234\r\n\r\n");
    body
}

fn chunked(c: &mut Criterion) {
    let body = chunked_body();
    let mut group = c.benchmark_group("chunked");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("scan_64k", |b| {
        b.iter(|| ChunkedDecoder::default().scan(black_box(&body)))
    });
    let mut out = Vec::with_capacity(body.len());
    group.bench_function("decode_64k", |b| {
        b.iter(|| {
            out.clear();
            ChunkedDecoder::default().decode(black_box(&body), &mut out)
        })
    });
    group.finish();
}

/// Path normalisation (BEHAVIOUR.md §2) as the proxy runs it on every request: the common
/// path (nothing to change: one scan, no copy), and paths that must be rewritten into the
/// reused vector.
fn paths(c: &mut Criterion) {
    let mut group = c.benchmark_group("path");
    let cases: [(&str, &[u8]); 4] = [
        ("normal", b"/petstore/v1/pet/findByStatus"),
        (
            "normal_long",
            b"/api/v3/organisations/8f3c2a/projects/1234/environments/prod/deployments/latest/logs",
        ),
        ("encoded", b"/petstore/v1/pet/%66indBy%53tatus/caf%c3%a9"),
        ("traversal", b"/pub/%2e%2e/admin//users/./42/../43/"),
    ];
    let mut out = Vec::with_capacity(256);
    for (name, path) in cases {
        group.throughput(Throughput::Bytes(path.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| normalize_path(black_box(path), &mut out))
        });
    }
    group.finish();
}

/// The trailer filter on the tail of a passed-through chunked body, and the per-shard `Date`.
fn hygiene(c: &mut Criterion) {
    let mut group = c.benchmark_group("hygiene");
    let body: &[u8] = b"5\r\nhello\r\n0\r\nX-Checksum: 1234\r\nContent-Length: 5\r\n\r\n";
    let mut gate = TrailerGate::default();
    let mut buf = Vec::with_capacity(256);
    group.bench_function("trailer_filter", |b| {
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(black_box(body));
            let mut decoder = ChunkedDecoder::default();
            let scan = decoder.scan(&buf).map(|s| s.consumed).unwrap_or(0);
            gate.start(b"x-api-key");
            gate.pass(&decoder, &mut buf, 0, scan)
        })
    });
    group.bench_function("date_cached", |b| b.iter(current_http_date));
    group.finish();
}

criterion_group!(benches, heads, chunked, paths, hygiene);
criterion_main!(benches);
