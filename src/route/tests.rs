use super::*;

fn router(apis: &[(&str, &[(&str, Method)])]) -> Router {
    let mut router = Router::new();
    let mut next_route = 0;
    for (base, routes) in apis {
        let api = router.add_api(base).unwrap();
        for (template, method) in routes.iter() {
            router
                .add_route(api, template, *method, RouteId(next_route))
                .unwrap();
            next_route += 1;
        }
    }
    router
}

fn found(lookup: Lookup) -> (u32, u32, usize) {
    match lookup {
        Lookup::Found(m) => (m.api.0, m.route.0, m.rest_start),
        other => panic!("expected a route, got {other:?}"),
    }
}

fn petstore() -> Router {
    router(&[(
        "/petstore/v1",
        &[
            ("/pet/findByStatus", Method::Get),  // 0
            ("/pet/{petId}", Method::Get),       // 1
            ("/pet/{petId}", Method::Delete),    // 2
            ("/pet", Method::Post),              // 3
            ("/store/*", Method::Get),           // 4
            ("/", Method::Get),                  // 5
            ("/files/{name}.json", Method::Get), // 6
            ("/files/{name}", Method::Get),      // 7
        ],
    )])
}

#[test]
fn literal_segment_beats_param() {
    let r = petstore();
    assert_eq!(
        found(r.lookup(Method::Get, b"/petstore/v1/pet/findByStatus")).1,
        0
    );
    assert_eq!(found(r.lookup(Method::Get, b"/petstore/v1/pet/42")).1, 1);
}

#[test]
fn falls_back_to_param_when_the_literal_branch_lacks_the_method() {
    let r = petstore();
    assert_eq!(
        found(r.lookup(Method::Delete, b"/petstore/v1/pet/findByStatus")).1,
        2
    );
}

#[test]
fn param_matches_exactly_one_non_empty_segment() {
    let r = petstore();
    assert_eq!(
        r.lookup(Method::Get, b"/petstore/v1/pet/1/2"),
        Lookup::NotFound
    );
    assert_eq!(
        r.lookup(Method::Get, b"/petstore/v1/pet//"),
        Lookup::NotFound
    );
}

#[test]
fn mixed_segment_beats_plain_param() {
    let r = petstore();
    assert_eq!(
        found(r.lookup(Method::Get, b"/petstore/v1/files/a.json")).1,
        6
    );
    assert_eq!(
        found(r.lookup(Method::Get, b"/petstore/v1/files/a.xml")).1,
        7
    );
}

#[test]
fn trailing_wildcard_matches_any_rest_including_none() {
    let r = petstore();
    for path in [
        "/petstore/v1/store",
        "/petstore/v1/store/",
        "/petstore/v1/store/order/7",
        "/petstore/v1/store//x",
    ] {
        assert_eq!(found(r.lookup(Method::Get, path.as_bytes())).1, 4, "{path}");
    }
}

#[test]
fn a_single_trailing_slash_is_tolerated() {
    let r = petstore();
    assert_eq!(found(r.lookup(Method::Post, b"/petstore/v1/pet/")).1, 3);
    assert_eq!(found(r.lookup(Method::Get, b"/petstore/v1/pet/42/")).1, 1);
    assert_eq!(
        r.lookup(Method::Post, b"/petstore/v1/pet//"),
        Lookup::NotFound
    );
}

#[test]
fn root_resource_matches_the_bare_base_path() {
    let r = petstore();
    assert_eq!(found(r.lookup(Method::Get, b"/petstore/v1")), (0, 5, 12));
    assert_eq!(found(r.lookup(Method::Get, b"/petstore/v1/")), (0, 5, 12));
}

#[test]
fn base_path_matches_only_on_a_segment_boundary() {
    let r = petstore();
    assert_eq!(
        r.lookup(Method::Get, b"/petstore/v10/pet/1"),
        Lookup::NotFound
    );
    assert_eq!(
        r.lookup(Method::Get, b"/petstorev1/pet/1"),
        Lookup::NotFound
    );
    assert_eq!(r.lookup(Method::Get, b"/other"), Lookup::NotFound);
    assert_eq!(r.lookup(Method::Get, b"/"), Lookup::NotFound);
}

#[test]
fn longest_base_path_wins() {
    let r = router(&[
        ("/api", &[("/*", Method::Get)]),
        ("/api/v2", &[("/items", Method::Get)]),
    ]);
    assert_eq!(found(r.lookup(Method::Get, b"/api/v2/items")), (1, 1, 7));
    assert_eq!(found(r.lookup(Method::Get, b"/api/v3/items")), (0, 0, 4));
    // The longer base path owns its subtree even where it has no resource.
    assert_eq!(r.lookup(Method::Get, b"/api/v2/other"), Lookup::NotFound);
}

#[test]
fn root_base_path_catches_what_no_other_api_claims() {
    let r = router(&[
        ("/", &[("/health", Method::Get)]),
        ("/a", &[("/x", Method::Get)]),
    ]);
    assert_eq!(found(r.lookup(Method::Get, b"/health")), (0, 0, 0));
    assert_eq!(found(r.lookup(Method::Get, b"/a/x")), (1, 1, 2));
}

#[test]
fn wrong_method_reports_every_allowed_method() {
    let r = petstore();
    match r.lookup(Method::Put, b"/petstore/v1/pet/7") {
        Lookup::MethodNotAllowed { api, allowed } => {
            assert_eq!(api, ApiId(0));
            let mut allow = Vec::new();
            allowed.write_allow(&mut allow);
            assert_eq!(allow, b"GET, DELETE");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn allowed_methods_are_the_union_over_all_matching_templates() {
    let r = petstore();
    let Lookup::MethodNotAllowed { allowed, .. } =
        r.lookup(Method::Put, b"/petstore/v1/pet/findByStatus")
    else {
        panic!()
    };
    assert_eq!(
        allowed.iter().collect::<Vec<_>>(),
        vec![Method::Get, Method::Delete]
    );
}

#[test]
fn extension_methods_get_405_on_existing_resources() {
    let r = petstore();
    assert!(matches!(
        r.lookup(Method::Other, b"/petstore/v1/pet"),
        Lookup::MethodNotAllowed { .. }
    ));
    assert!(matches!(
        r.lookup(Method::Connect, b"/petstore/v1/pet"),
        Lookup::MethodNotAllowed { .. }
    ));
}

#[test]
fn duplicate_base_paths_and_routes_conflict() {
    let mut r = Router::new();
    let api = r.add_api("/a").unwrap();
    assert_eq!(r.add_api("/a"), Err(RouteConflict::BasePath(api)));
    r.add_route(api, "/x/{id}", Method::Get, RouteId(0))
        .unwrap();
    assert_eq!(
        r.add_route(api, "/x/{other}", Method::Get, RouteId(1)),
        Err(RouteConflict::Resource(RouteId(0)))
    );
    assert_eq!(
        r.add_route(api, "/x/{other}", Method::Post, RouteId(2)),
        Ok(())
    );
}

#[test]
fn many_apis_are_found_through_the_hashed_root() {
    let mut r = Router::new();
    for i in 0..1000 {
        let api = r.add_api(&format!("/api{i}/v1")).unwrap();
        r.add_route(api, "/items/{id}", Method::Get, RouteId(i))
            .unwrap();
    }
    for i in [0u32, 1, 499, 999] {
        let path = format!("/api{i}/v1/items/5");
        assert_eq!(
            found(r.lookup(Method::Get, path.as_bytes())),
            (i, i, format!("/api{i}/v1").len())
        );
    }
    assert_eq!(
        r.lookup(Method::Get, b"/api1000/v1/items/5"),
        Lookup::NotFound
    );
}
