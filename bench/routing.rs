//! Route lookup cost against the number of APIs (1 .. 1,000 APIs x 20 resources each).
//! Base paths are found through a hashed trie level and resources through the API's own trie,
//! so a lookup's work does not grow with the number of APIs.
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

/// 64 request paths over literal, param, deep and wildcard routes of `targets` of the APIs.
fn paths(apis: usize, targets: usize) -> Vec<Vec<u8>> {
    (0..64)
        .map(|k| {
            // The targeted APIs are scattered through the id space.
            let api = ((k % targets) * 7919) % apis;
            let rest = match k % 4 {
                0 => "/pet/findByStatus".to_owned(),
                1 => format!("/users/{k}/orders/{}", k * 3),
                2 => "/files/a/b/c.txt".to_owned(),
                _ => format!("/items/{k}/tags"),
            };
            format!("/service{api}/v1{rest}").into_bytes()
        })
        .collect()
}

fn lookups(c: &mut Criterion) {
    // "hot8": traffic goes to the same 8 APIs whatever the table size, so the figure is the
    // algorithm's cost against the number of APIs. "spread": every lookup hits a different
    // API, so larger tables also pay cache misses.
    for (name, targets) in [("route_lookup_hot8", 8usize), ("route_lookup_spread", 64)] {
        let mut group = c.benchmark_group(name);
        for apis in [1usize, 10, 100, 1000] {
            let router = router(apis);
            let paths = paths(apis, targets.min(apis));
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
}

criterion_group!(benches, lookups);
criterion_main!(benches);
