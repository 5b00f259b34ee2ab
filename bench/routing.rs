//! Route lookup cost against the number of APIs (1 .. 1,000 APIs x 20 resources each).
//! The lookup should cost the same whatever the number of APIs: base paths are found through
//! a hashed trie level, resources through the API's own trie.
//!
//! cargo bench --bench routing

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardgate::http::Method;
use shardgate::ids::RouteId;
use shardgate::route::{Lookup, Router};

const TEMPLATES: [&str; 20] = [
    "/items",
    "/items/{id}",
    "/items/{id}/tags",
    "/items/{id}/tags/{tag}",
    "/users",
    "/users/{id}",
    "/users/{id}/orders",
    "/users/{id}/orders/{order}",
    "/orders/{id}",
    "/orders/{id}/lines/{line}",
    "/search",
    "/health",
    "/reports/daily",
    "/reports/{kind}",
    "/files/*",
    "/pet/findByStatus",
    "/pet/{petId}",
    "/pet/{petId}/uploadImage",
    "/store/inventory",
    "/store/order/{orderId}",
];

fn router(apis: usize) -> Router {
    let mut router = Router::new();
    let mut route = 0;
    for i in 0..apis {
        let api = router.add_api(&format!("/service{i}/v1")).unwrap();
        for template in TEMPLATES {
            router
                .add_route(api, template, Method::Get, RouteId(route))
                .unwrap();
            route += 1;
        }
    }
    router
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    for apis in [1usize, 10, 100, 1000] {
        let router = router(apis);
        // Requests spread over the APIs and over literal, param, deep and wildcard routes.
        let paths: Vec<Vec<u8>> = (0..64)
            .map(|k| {
                let api = (k * 7919) % apis;
                let rest = match k % 4 {
                    0 => "/pet/findByStatus".to_owned(),
                    1 => format!("/users/{k}/orders/{}", k * 3),
                    2 => "/files/a/b/c.txt".to_owned(),
                    _ => format!("/items/{k}/tags"),
                };
                format!("/service{api}/v1{rest}").into_bytes()
            })
            .collect();
        for path in &paths {
            assert!(matches!(router.lookup(Method::Get, path), Lookup::Found(_)));
        }
        group.throughput(Throughput::Elements(paths.len() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{apis}_apis")),
            &paths,
            |b, paths| {
                b.iter(|| {
                    for path in paths {
                        black_box(router.lookup(Method::Get, black_box(path)));
                    }
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
