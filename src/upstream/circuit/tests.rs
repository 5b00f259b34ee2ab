use std::sync::atomic::AtomicBool;

use super::*;
use crate::compile::config::endpoint::GroupKind;
use crate::ids::ApiId;

const G0: GroupId = GroupId(0);
const G1: GroupId = GroupId(1);

fn group(spec: Option<CircuitBreakerSpec>) -> Group {
    Group {
        api: ApiId(0),
        kind: GroupKind::LoadBalance,
        members: Box::default(),
        timeout_ms: 1000,
        retry: None,
        circuit_breakers: spec,
        authorization: None,
        suspension: crate::upstream::health::SuspensionPolicy::default(),
        health_check: None,
        http2: false,
    }
}

fn spec(
    connections: Option<u32>,
    requests: Option<u32>,
    pending: Option<u32>,
    retries: Option<u32>,
) -> Option<CircuitBreakerSpec> {
    Some(CircuitBreakerSpec {
        max_connections: connections,
        max_requests: requests,
        max_pending_requests: pending,
        max_retries: retries,
    })
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("a monoio runtime")
        .block_on(future)
}

#[test]
fn groups_without_breakers_are_not_counted() {
    let breakers = CircuitBreakers::new(&[group(None), group(spec(None, None, None, None))]);
    for g in [G0, G1, GroupId(9)] {
        let guards: Vec<_> = (0..100)
            .map(|_| breakers.try_acquire_request(g).unwrap())
            .collect();
        assert!(guards.iter().all(|guard| !guard.is_counted()));
        assert!(!breakers.try_acquire_connection(g).unwrap().is_counted());
        assert_eq!(breakers.in_use(g), InUse::default());
        assert!(!breakers.is_limited(g, Limit::Requests));
    }
}

#[test]
fn requests_over_the_limit_overflow_until_one_is_released() {
    let breakers = CircuitBreakers::new(&[group(spec(None, Some(2), None, None))]);
    let a = breakers.try_acquire_request(G0).unwrap();
    let b = breakers.try_acquire_request(G0).unwrap();
    assert!(a.is_counted() && b.is_counted());
    assert_eq!(
        breakers.try_acquire_request(G0).unwrap_err(),
        Overflow(Limit::Requests)
    );
    assert_eq!(breakers.in_use(G0).requests, 2);
    drop(a);
    let c = breakers.try_acquire_request(G0).unwrap();
    assert_eq!(breakers.in_use(G0).requests, 2);
    drop((b, c));
    assert_eq!(breakers.in_use(G0), InUse::default());
}

#[test]
fn each_limit_counts_on_its_own() {
    let breakers = CircuitBreakers::new(&[group(spec(Some(1), Some(3), Some(1), Some(1)))]);
    let _request = breakers.try_acquire_request(G0).unwrap();
    let _retry = breakers.try_acquire_retry(G0).unwrap();
    assert_eq!(
        breakers.try_acquire_retry(G0).unwrap_err(),
        Overflow(Limit::Retries)
    );
    let _pending = breakers.try_acquire_pending(G0).unwrap();
    assert_eq!(
        breakers.try_acquire_pending(G0).unwrap_err(),
        Overflow(Limit::PendingRequests)
    );
    let _conn = breakers.try_acquire_connection(G0).unwrap();
    assert_eq!(
        breakers.try_acquire_connection(G0).unwrap_err(),
        Overflow(Limit::Connections)
    );
    assert_eq!(
        breakers.in_use(G0),
        InUse {
            connections: 1,
            requests: 1,
            pending_requests: 1,
            retries: 1
        }
    );
    // Limits not configured are not counted, even in a group that configures others.
    let partial = CircuitBreakers::new(&[group(spec(None, Some(1), None, None))]);
    assert!(!partial.try_acquire_retry(G0).unwrap().is_counted());
    assert!(!partial.try_acquire_connection(G0).unwrap().is_counted());
}

#[test]
fn a_zero_limit_lets_nothing_through() {
    let breakers = CircuitBreakers::new(&[group(spec(None, Some(0), None, None))]);
    assert_eq!(
        breakers.try_acquire_request(G0).unwrap_err(),
        Overflow(Limit::Requests)
    );
    assert_eq!(breakers.in_use(G0).requests, 0);
}

#[test]
fn groups_have_separate_counters() {
    let breakers = CircuitBreakers::new(&[
        group(spec(None, Some(1), None, None)),
        group(spec(None, Some(1), None, None)),
    ]);
    let _a = breakers.try_acquire_request(G0).unwrap();
    let _b = breakers.try_acquire_request(G1).unwrap();
    assert!(breakers.try_acquire_request(G0).is_err());
}

#[test]
fn overflow_names_the_limit() {
    assert_eq!(
        Overflow(Limit::PendingRequests).to_string(),
        "circuit breaker maxPendingRequests reached"
    );
}

#[test]
fn a_connection_slot_outlives_a_reload_and_counts_in_the_new_table() {
    let old = CircuitBreakers::new(&[group(spec(Some(2), None, None, None))]);
    let slot = old.try_acquire_connection(G0).unwrap();
    // The group is now id 1, with a lower limit; a new group took id 0.
    let groups = [
        group(spec(Some(5), None, None, None)),
        group(spec(Some(1), None, None, None)),
    ];
    let new = CircuitBreakers::carry_over(&old, &groups, &[None, Some(G0)]);
    drop(old);
    assert_eq!(new.in_use(G1).connections, 1);
    assert_eq!(
        new.try_acquire_connection(G1).unwrap_err(),
        Overflow(Limit::Connections)
    );
    assert_eq!(new.in_use(G0).connections, 0);
    drop(slot);
    assert_eq!(new.in_use(G1).connections, 0);
    let _again = new.try_acquire_connection(G1).unwrap();
}

#[test]
fn carry_over_drops_counters_of_groups_without_breakers_now() {
    let old = CircuitBreakers::new(&[group(spec(None, Some(1), None, None))]);
    let _guard = old.try_acquire_request(G0).unwrap();
    let new = CircuitBreakers::carry_over(&old, &[group(None)], &[Some(G0)]);
    assert!(!new.try_acquire_request(G0).unwrap().is_counted());
    // A group that gains breakers starts from zero.
    let old = CircuitBreakers::new(&[group(None)]);
    let new =
        CircuitBreakers::carry_over(&old, &[group(spec(None, Some(1), None, None))], &[Some(G0)]);
    let _first = new.try_acquire_request(G0).unwrap();
    assert!(new.try_acquire_request(G0).is_err());
}

#[test]
fn a_waiting_request_gets_the_connection_another_one_releases() {
    let breakers = CircuitBreakers::new(&[group(spec(Some(1), None, Some(1), None))]);
    block_on(async {
        let held = breakers.try_acquire_connection(G0).unwrap();
        let releaser = monoio::spawn(async move {
            monoio::time::sleep(Duration::from_millis(20)).await;
            drop(held);
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let waiter = breakers.acquire_connection(G0, deadline);
        // While it waits, it holds the only pending slot.
        let slot = {
            let mut waiter = std::pin::pin!(waiter);
            let probe = async {
                monoio::time::sleep(Duration::from_millis(5)).await;
                assert_eq!(breakers.in_use(G0).pending_requests, 1);
                assert_eq!(
                    breakers.try_acquire_pending(G0).unwrap_err(),
                    Overflow(Limit::PendingRequests)
                );
            };
            let (slot, ()) = monoio::join!(&mut waiter, probe);
            slot
        };
        releaser.await;
        let slot = slot.unwrap();
        assert!(slot.is_counted());
        assert_eq!(
            breakers.in_use(G0),
            InUse {
                connections: 1,
                ..InUse::default()
            }
        );
    });
}

#[test]
fn waiting_for_a_connection_overflows_when_pending_is_full_or_at_the_deadline() {
    let breakers = CircuitBreakers::new(&[group(spec(Some(1), None, Some(0), None))]);
    let no_waiting = CircuitBreakers::new(&[group(spec(Some(1), None, None, None))]);
    block_on(async {
        let _held = breakers.try_acquire_connection(G0).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        assert_eq!(
            breakers.acquire_connection(G0, deadline).await.unwrap_err(),
            Overflow(Limit::PendingRequests)
        );
        let _held = no_waiting.try_acquire_connection(G0).unwrap();
        let soon = Instant::now() + Duration::from_millis(30);
        assert_eq!(
            no_waiting.acquire_connection(G0, soon).await.unwrap_err(),
            Overflow(Limit::Connections)
        );
        assert_eq!(no_waiting.in_use(G0).pending_requests, 0);
    });
}

/// xorshift for the stress test's choices.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn racing_threads_never_exceed_the_limits() {
    const THREADS: u64 = 4;
    const OPS: usize = 10_000;
    const LIMIT: u32 = 3;
    let breakers = Arc::new(CircuitBreakers::new(&[group(spec(
        Some(LIMIT),
        Some(LIMIT),
        None,
        Some(1),
    ))]));
    // Holders counted independently of the breaker, after acquiring and before releasing:
    // never above the limit if the breaker never was.
    let holders: Arc<[AtomicU32; 3]> = Arc::new(Default::default());
    let over = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..THREADS)
        .map(|n| {
            let (breakers, holders, over) = (breakers.clone(), holders.clone(), over.clone());
            std::thread::spawn(move || {
                let mut rng = 0x2545_F491_4F6C_DD1D ^ (n + 1);
                let (mut granted, mut refused) = (0usize, 0usize);
                let mut held_requests = Vec::new();
                let mut held_connections = Vec::new();
                for _ in 0..OPS {
                    let r = next(&mut rng);
                    match r % 6 {
                        0 | 1 => match breakers.try_acquire_request(G0) {
                            Ok(guard) => {
                                granted += 1;
                                if holders[0].fetch_add(1, Ordering::SeqCst) + 1 > LIMIT {
                                    over.store(true, Ordering::SeqCst);
                                }
                                held_requests.push(guard);
                            }
                            Err(_) => refused += 1,
                        },
                        2 => match breakers.try_acquire_connection(G0) {
                            Ok(slot) => {
                                granted += 1;
                                if holders[1].fetch_add(1, Ordering::SeqCst) + 1 > LIMIT {
                                    over.store(true, Ordering::SeqCst);
                                }
                                held_connections.push(slot);
                            }
                            Err(_) => refused += 1,
                        },
                        3 => {
                            if let Ok(guard) = breakers.try_acquire_retry(G0) {
                                if holders[2].fetch_add(1, Ordering::SeqCst) + 1 > 1 {
                                    over.store(true, Ordering::SeqCst);
                                }
                                holders[2].fetch_sub(1, Ordering::SeqCst);
                                drop(guard);
                            }
                        }
                        // Uncount the holder before the guard gives its count back.
                        4 => {
                            if let Some(guard) = held_requests.pop() {
                                holders[0].fetch_sub(1, Ordering::SeqCst);
                                drop(guard);
                            }
                        }
                        _ => {
                            if let Some(slot) = held_connections.pop() {
                                holders[1].fetch_sub(1, Ordering::SeqCst);
                                drop(slot);
                            }
                        }
                    }
                }
                while let Some(guard) = held_requests.pop() {
                    holders[0].fetch_sub(1, Ordering::SeqCst);
                    drop(guard);
                }
                while let Some(slot) = held_connections.pop() {
                    holders[1].fetch_sub(1, Ordering::SeqCst);
                    drop(slot);
                }
                (granted, refused)
            })
        })
        .collect();
    let (mut granted, mut refused) = (0, 0);
    for worker in workers {
        let (g, r) = worker.join().unwrap();
        granted += g;
        refused += r;
    }
    assert!(!over.load(Ordering::SeqCst), "a limit was exceeded");
    assert!(
        granted > 0 && refused > 0,
        "the test should hit the limits ({granted}/{refused})"
    );
    assert_eq!(
        breakers.in_use(G0),
        InUse::default(),
        "every count was given back"
    );
}
