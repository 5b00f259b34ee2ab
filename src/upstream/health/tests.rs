use std::sync::atomic::AtomicU64 as StdAtomicU64;
use std::sync::Arc;

use super::*;

const E0: UpstreamId = UpstreamId(0);
const E1: UpstreamId = UpstreamId(1);
const LEASE: Duration = Duration::from_millis(500);

fn table(endpoints: usize) -> (HealthTable, Instant) {
    let base = Instant::now();
    (HealthTable::with_base(endpoints, base), base)
}

fn at(base: Instant, ms: u64) -> Instant {
    base + Duration::from_millis(ms)
}

fn policy() -> SuspensionPolicy {
    SuspensionPolicy::default()
}

#[test]
fn word_fields_round_trip_at_their_limits() {
    for (epoch, state, level, until) in [
        (0, State::Healthy, 0, 0),
        (u16::MAX, State::Suspended, MAX_LEVEL, MAX_MILLIS),
        (1234, State::Probing, 17, 99_999_999),
    ] {
        let w = HealthWord::pack(epoch, state, level, FailureCause::Connect, until);
        assert_eq!(
            (w.epoch(), w.state(), w.level(), w.until_ms()),
            (epoch, state, level, until)
        );
    }
    assert_eq!(
        HealthWord::pack(0, State::Healthy, 0, FailureCause::Connect, 0),
        HealthWord::HEALTHY
    );
    // A deadline beyond the field saturates instead of spilling into the state bits.
    let w = HealthWord::pack(1, State::Suspended, 0, FailureCause::Connect, u64::MAX);
    assert_eq!(
        (w.state(), w.until_ms(), w.epoch()),
        (State::Suspended, MAX_MILLIS, 1)
    );
}

#[test]
fn a_new_table_is_healthy_and_usable() {
    let (t, base) = table(3);
    assert!(t.capacity() >= 3);
    for id in 0..3 {
        assert_eq!(t.pick_state(UpstreamId(id), at(base, 0)), Pick::Usable);
        assert_eq!(t.load(UpstreamId(id)), HealthWord::HEALTHY);
    }
}

#[test]
fn failure_suspends_a_healthy_endpoint_for_the_initial_duration() {
    let (t, base) = table(2);
    assert_eq!(
        t.report_failure(E0, at(base, 1000), &policy(), FailureCause::Connect),
        Transition::Suspended { for_ms: 2000 }
    );
    let w = t.load(E0);
    assert_eq!(
        (w.state(), w.level(), w.until_ms(), w.epoch()),
        (State::Suspended, 0, 3000, 1)
    );
    assert_eq!(t.pick_state(E0, at(base, 1000)), Pick::Suspended);
    assert_eq!(t.pick_state(E0, at(base, 2999)), Pick::Suspended);
    assert_eq!(t.pick_state(E0, at(base, 3000)), Pick::ProbeDue);
    // The other endpoint is untouched.
    assert_eq!(t.pick_state(E1, at(base, 1000)), Pick::Usable);
}

#[test]
fn a_stale_failure_does_not_extend_a_suspension() {
    let (t, base) = table(1);
    t.report_failure(E0, at(base, 0), &policy(), FailureCause::Connect);
    let before = t.load(E0);
    assert_eq!(
        t.report_failure(E0, at(base, 1500), &policy(), FailureCause::Connect),
        Transition::Unchanged
    );
    // Not even after it expired: only a probe's failure escalates.
    assert_eq!(
        t.report_failure(E0, at(base, 5000), &policy(), FailureCause::Connect),
        Transition::Unchanged
    );
    assert_eq!(t.load(E0), before);
}

#[test]
fn picking_never_writes() {
    let (t, base) = table(1);
    t.report_failure(E0, at(base, 0), &policy(), FailureCause::Connect);
    let before = t.load(E0);
    for ms in [0, 1999, 2000, 10_000] {
        t.pick_state(E0, at(base, ms));
    }
    assert_eq!(t.load(E0), before);
}

#[test]
fn a_probe_cannot_be_claimed_before_the_suspension_ends_or_when_healthy() {
    let (t, base) = table(1);
    assert!(!t.try_claim_probe(E0, at(base, 0), LEASE));
    t.report_failure(E0, at(base, 0), &policy(), FailureCause::Connect);
    assert!(!t.try_claim_probe(E0, at(base, 1999), LEASE));
    assert_eq!(t.load(E0).state(), State::Suspended);
}

#[test]
fn exactly_one_caller_claims_an_expired_suspension() {
    let (t, base) = table(1);
    t.report_failure(E0, at(base, 0), &policy(), FailureCause::Connect);
    assert!(t.try_claim_probe(E0, at(base, 2000), LEASE));
    assert!(!t.try_claim_probe(E0, at(base, 2000), LEASE));
    assert!(!t.try_claim_probe(E0, at(base, 2499), LEASE));
    let w = t.load(E0);
    assert_eq!(
        (w.state(), w.level(), w.until_ms(), w.epoch()),
        (State::Probing, 0, 2500, 2)
    );
    // Everyone else skips it while the probe is out.
    assert_eq!(t.pick_state(E0, at(base, 2100)), Pick::Suspended);
}

#[test]
fn an_abandoned_probe_lapses_and_can_be_claimed_again() {
    let (t, base) = table(1);
    t.report_failure(E0, at(base, 0), &policy(), FailureCause::Connect);
    assert!(t.try_claim_probe(E0, at(base, 2000), LEASE));
    assert_eq!(t.pick_state(E0, at(base, 2500)), Pick::ProbeDue);
    assert!(t.try_claim_probe(E0, at(base, 2600), LEASE));
    let w = t.load(E0);
    assert_eq!(
        (w.state(), w.level(), w.until_ms(), w.epoch()),
        (State::Probing, 0, 3100, 3)
    );
}

#[test]
fn a_zero_lease_still_holds_for_a_millisecond() {
    let (t, base) = table(1);
    t.report_failure(E0, at(base, 0), &policy(), FailureCause::Connect);
    assert!(t.try_claim_probe(E0, at(base, 2000), Duration::ZERO));
    assert!(!t.try_claim_probe(E0, at(base, 2000), Duration::ZERO));
    assert!(t.try_claim_probe(E0, at(base, 2001), Duration::ZERO));
}

/// Suspends E0 at 0, then fails `probes` claimed probes, each right when due. Returns the
/// durations of the suspensions that followed the failed probes.
fn fail_probes(t: &HealthTable, base: Instant, p: &SuspensionPolicy, probes: usize) -> Vec<u64> {
    assert!(matches!(
        t.report_failure(E0, at(base, 0), p, FailureCause::Connect),
        Transition::Suspended { .. }
    ));
    let mut durations = Vec::new();
    for _ in 0..probes {
        let due = t.load(E0).until_ms();
        assert!(t.try_claim_probe(E0, at(base, due), LEASE));
        match t.report_failure(E0, at(base, due + 10), p, FailureCause::Connect) {
            Transition::Resuspended { for_ms, level } => {
                assert_eq!(level, t.load(E0).level());
                durations.push(for_ms);
            }
            other => panic!("a failed probe re-suspends, got {other:?}"),
        }
    }
    durations
}

#[test]
fn each_failed_probe_multiplies_the_suspension_up_to_the_cap() {
    let (t, base) = table(1);
    assert_eq!(
        fail_probes(&t, base, &policy(), 8),
        vec![4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000, 60_000]
    );
    let w = t.load(E0);
    assert_eq!((w.state(), w.level()), (State::Suspended, 8));
}

#[test]
fn the_new_suspension_runs_from_the_probe_failure() {
    let (t, base) = table(1);
    fail_probes(&t, base, &policy(), 1);
    // Claimed at 2000, failed at 2010: suspended for 4000 from 2010.
    assert_eq!(t.load(E0).until_ms(), 6010);
}

#[test]
fn a_failure_reported_after_the_lease_lapsed_still_counts_as_the_probe_failing() {
    let (t, base) = table(1);
    t.report_failure(E0, at(base, 0), &policy(), FailureCause::Connect);
    assert!(t.try_claim_probe(E0, at(base, 2000), LEASE));
    assert_eq!(
        t.report_failure(E0, at(base, 9000), &policy(), FailureCause::Connect),
        Transition::Resuspended {
            level: 1,
            for_ms: 4000
        }
    );
}

#[test]
fn the_level_saturates_without_wrapping() {
    let (t, base) = table(1);
    let flat = SuspensionPolicy {
        initial_ms: 10,
        factor: 1.0,
        max_ms: 10,
    };
    let durations = fail_probes(&t, base, &flat, 70);
    assert!(durations.iter().all(|&d| d == 10));
    assert_eq!(t.load(E0).level(), MAX_LEVEL);
}

#[test]
fn success_after_a_probe_makes_it_healthy_and_resets_the_progression() {
    let (t, base) = table(1);
    fail_probes(&t, base, &policy(), 3);
    let due = t.load(E0).until_ms();
    assert!(t.try_claim_probe(E0, at(base, due), LEASE));
    assert_eq!(t.report_success(E0), Transition::Recovered);
    let w = t.load(E0);
    assert_eq!((w.state(), w.level(), w.until_ms()), (State::Healthy, 0, 0));
    assert_eq!(t.pick_state(E0, at(base, due)), Pick::Usable);
    // The next failure starts from the initial duration again.
    assert_eq!(
        t.report_failure(E0, at(base, due + 1), &policy(), FailureCause::Connect),
        Transition::Suspended { for_ms: 2000 }
    );
}

#[test]
fn any_success_ends_a_suspension_early() {
    let (t, base) = table(1);
    t.report_failure(E0, at(base, 0), &policy(), FailureCause::Connect);
    assert_eq!(t.report_success(E0), Transition::Recovered);
    assert_eq!(t.pick_state(E0, at(base, 1)), Pick::Usable);
}

#[test]
fn success_on_a_healthy_endpoint_writes_nothing() {
    let (t, _) = table(1);
    assert_eq!(t.report_success(E0), Transition::Unchanged);
    assert_eq!(t.load(E0), HealthWord::HEALTHY);
}

#[test]
fn every_transition_bumps_the_epoch_by_one() {
    let (t, base) = table(1);
    let mut epochs = vec![t.load(E0).epoch()];
    t.report_failure(E0, at(base, 0), &policy(), FailureCause::Connect);
    epochs.push(t.load(E0).epoch());
    t.try_claim_probe(E0, at(base, 2000), LEASE);
    epochs.push(t.load(E0).epoch());
    t.report_failure(E0, at(base, 2001), &policy(), FailureCause::Connect);
    epochs.push(t.load(E0).epoch());
    t.report_success(E0);
    epochs.push(t.load(E0).epoch());
    // Non-transitions leave it alone.
    t.report_success(E0);
    t.try_claim_probe(E0, at(base, 99_999), LEASE);
    epochs.push(t.load(E0).epoch());
    assert_eq!(epochs, vec![0, 1, 2, 3, 4, 4]);
}

#[test]
fn the_epoch_wraps_and_shards_still_notice() {
    let (t, base) = table(1);
    t.set(
        E0,
        HealthWord::pack(u16::MAX, State::Healthy, 0, FailureCause::Connect, 0),
    );
    let local = LocalHealth::new(1);
    assert_eq!(local.observe(&t, E0), Some(Change::Bounced));
    t.report_failure(E0, at(base, 0), &policy(), FailureCause::Connect);
    assert_eq!(t.load(E0).epoch(), 0);
    assert_eq!(local.observe(&t, E0), Some(Change::Down));
}

#[test]
fn deadlines_saturate_at_the_word_limit() {
    let (t, base) = table(1);
    let long = SuspensionPolicy {
        initial_ms: u64::MAX,
        factor: 2.0,
        max_ms: u64::MAX,
    };
    let far = at(base, MAX_MILLIS - 5);
    assert_eq!(t.millis(far + Duration::from_secs(1)), MAX_MILLIS);
    assert_eq!(
        t.report_failure(E0, far, &long, FailureCause::Connect),
        Transition::Suspended { for_ms: 5 }
    );
    assert_eq!(t.load(E0).state(), State::Suspended);
    assert_eq!(t.load(E0).until_ms(), MAX_MILLIS);
}

#[test]
fn times_before_the_base_count_as_zero() {
    let base = Instant::now() + Duration::from_secs(10);
    let t = HealthTable::with_base(1, base);
    assert_eq!(t.millis(Instant::now()), 0);
}

#[test]
fn ids_outside_the_table_are_healthy_and_never_written() {
    let (t, base) = table(1);
    // The first segment holds 64 words: 64 is the first id outside a table of one.
    let outside = UpstreamId(64);
    assert_eq!(t.pick_state(outside, at(base, 0)), Pick::Usable);
    assert_eq!(
        t.report_failure(outside, at(base, 0), &policy(), FailureCause::Connect),
        Transition::Unchanged
    );
    assert!(!t.try_claim_probe(outside, at(base, 0), LEASE));
    assert_eq!(t.report_success(outside), Transition::Unchanged);
    assert_eq!(LocalHealth::new(1).observe(&t, outside), None);
}

#[test]
fn policy_durations_follow_the_factor_and_respect_the_cap() {
    let p = policy();
    assert_eq!(
        (0..7).map(|l| p.duration_ms(l)).collect::<Vec<_>>(),
        vec![2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]
    );
    assert_eq!(p.duration_ms(MAX_LEVEL), 60_000);
    let odd = SuspensionPolicy {
        initial_ms: 1000,
        factor: 1.5,
        max_ms: 5000,
    };
    assert_eq!(
        (0..6).map(|l| odd.duration_ms(l)).collect::<Vec<_>>(),
        vec![1000, 1500, 2250, 3375, 5000, 5000]
    );
    // Nonsense the config validation rejects still yields a bounded duration.
    let nan = SuspensionPolicy {
        initial_ms: 1000,
        factor: f64::NAN,
        max_ms: 5000,
    };
    assert_eq!(nan.duration_ms(1), 5000);
    let inverted = SuspensionPolicy {
        initial_ms: 9000,
        factor: 2.0,
        max_ms: 5000,
    };
    assert_eq!(inverted.duration_ms(0), 5000);
}

#[test]
fn policy_comes_from_the_suspension_config() {
    assert_eq!(
        SuspensionPolicy::from(&Suspension::default()),
        SuspensionPolicy::default()
    );
    let custom = Suspension {
        initial_ms: 100,
        progression_factor: 3.0,
        max_ms: 900,
    };
    assert_eq!(
        SuspensionPolicy::from(&custom),
        SuspensionPolicy {
            initial_ms: 100,
            factor: 3.0,
            max_ms: 900
        }
    );
}

#[test]
fn a_shard_sees_down_once_then_nothing_until_it_comes_back() {
    let (t, base) = table(2);
    let local = LocalHealth::new(2);
    assert_eq!(local.observe(&t, E0), None);
    t.report_failure(E0, at(base, 0), &policy(), FailureCause::Connect);
    assert_eq!(local.observe(&t, E0), Some(Change::Down));
    assert_eq!(local.observe(&t, E0), None);
    // A claim and a failed probe move the epoch but the endpoint stays down.
    t.try_claim_probe(E0, at(base, 2000), LEASE);
    assert_eq!(local.observe(&t, E0), None);
    t.report_failure(E0, at(base, 2001), &policy(), FailureCause::Connect);
    assert_eq!(local.observe(&t, E0), None);
    t.report_success(E0);
    assert_eq!(local.observe(&t, E0), Some(Change::Up));
    assert_eq!(local.observe(&t, E0), None);
    assert_eq!(local.observe(&t, E1), None);
}

#[test]
fn a_shard_that_missed_a_whole_outage_sees_a_bounce() {
    let (t, base) = table(1);
    let local = LocalHealth::new(1);
    t.report_failure(E0, at(base, 0), &policy(), FailureCause::Connect);
    t.report_success(E0);
    let change = local.observe(&t, E0).unwrap();
    assert_eq!(change, Change::Bounced);
    assert!(change.drains_pool());
    assert!(Change::Down.drains_pool());
    assert!(!Change::Up.drains_pool());
}

#[test]
fn observe_word_and_pick_of_share_one_load() {
    let (t, base) = table(1);
    let local = LocalHealth::new(1);
    t.report_failure(E0, at(base, 0), &policy(), FailureCause::Connect);
    let word = t.load(E0);
    assert_eq!(local.observe_word(E0, word), Some(Change::Down));
    assert_eq!(t.pick_of(word, at(base, 10)), Pick::Suspended);
    assert_eq!(t.pick_of(word, at(base, 2000)), Pick::ProbeDue);
}

#[test]
fn the_table_grows_without_touching_existing_words() {
    let (t, base) = table(1);
    t.report_failure(E0, at(base, 0), &policy(), FailureCause::Response);
    let before = t.load(E0);
    t.grow_to(500);
    assert_eq!(t.load(E0), before);
    assert_eq!(t.load(UpstreamId(499)), HealthWord::HEALTHY);
    assert_eq!(before.cause(), FailureCause::Response);
    let mut local = LocalHealth::new(1);
    assert_eq!(local.observe(&t, E0), Some(Change::Down));
    local.grow_to(500);
    // The known upstream stays known; a new one starts fresh.
    assert_eq!(local.observe(&t, E0), None);
    assert_eq!(local.observe(&t, UpstreamId(499)), None);
}

#[test]
fn a_suspension_keeps_its_cause_through_the_probe_and_takes_the_next_one() {
    let (t, base) = table(1);
    t.report_failure(E0, at(base, 0), &policy(), FailureCause::Connect);
    assert_eq!(t.load(E0).cause(), FailureCause::Connect);
    assert!(t.try_claim_probe(E0, at(base, 2000), LEASE));
    assert_eq!(t.load(E0).cause(), FailureCause::Connect);
    t.report_failure(E0, at(base, 2100), &policy(), FailureCause::Response);
    let word = t.load(E0);
    assert_eq!((word.cause(), word.level()), (FailureCause::Response, 1));
    t.report_success(E0);
    assert!(t.load(E0).is_healthy());
}

#[test]
fn the_table_is_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<HealthTable>();
    assert_send_sync::<Arc<HealthTable>>();
}

/// One random operation of the stress test, with what it did.
#[derive(Debug)]
enum Done {
    Nothing,
    /// A transition that wrote `epoch`.
    Wrote(u16),
}

/// xorshift64*: a tiny deterministic generator for the stress test.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[test]
fn racing_threads_lose_no_transition_and_claim_each_expiry_once() {
    const THREADS: u64 = 4;
    const OPS: usize = 10_000;
    let base = Instant::now();
    let table = Arc::new(HealthTable::with_base(2, base));
    // A shared fake clock the threads advance, so expiries happen often and at races.
    let clock = Arc::new(StdAtomicU64::new(0));
    let short = SuspensionPolicy {
        initial_ms: 2,
        factor: 2.0,
        max_ms: 16,
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|n| {
            let table = Arc::clone(&table);
            let clock = Arc::clone(&clock);
            std::thread::spawn(move || {
                let mut rng = 0x9E37_79B9_7F4A_7C15 ^ (n + 1);
                let mut writes: Vec<Vec<u16>> = vec![Vec::new(), Vec::new()];
                let mut last_seen = [0u16; 2];
                let mut claims = 0usize;
                for _ in 0..OPS {
                    let r = next_random(&mut rng);
                    let id = UpstreamId((r >> 32) as u32 % 2);
                    let ms = if r % 7 == 0 {
                        clock.fetch_add(1, Ordering::Relaxed) + 1
                    } else {
                        clock.load(Ordering::Relaxed)
                    };
                    let now = base + Duration::from_millis(ms);
                    let done = match r % 10 {
                        0..=3 => match table.claim(id, now, Duration::from_millis(3)) {
                            Some(w) => {
                                claims += 1;
                                Done::Wrote(w.epoch())
                            }
                            None => Done::Nothing,
                        },
                        4..=6 => {
                            match table.fail(id, table.millis(now), &short, FailureCause::Connect) {
                                Some((_, new)) => Done::Wrote(new.epoch()),
                                None => Done::Nothing,
                            }
                        }
                        _ => match table.succeed(id) {
                            Some((_, new)) => Done::Wrote(new.epoch()),
                            None => Done::Nothing,
                        },
                    };
                    if let Done::Wrote(epoch) = done {
                        writes[id.index()].push(epoch);
                    }
                    // Epochs only grow (fewer than 2^16 transitions: no wrap in this test).
                    let seen = table.load(id).epoch();
                    assert!(seen >= last_seen[id.index()], "epoch went back");
                    last_seen[id.index()] = seen;
                }
                (writes, claims)
            })
        })
        .collect();
    let mut all: Vec<Vec<u16>> = vec![Vec::new(), Vec::new()];
    let mut claims = 0;
    for worker in workers {
        let (writes, c) = worker.join().unwrap();
        claims += c;
        for (id, epochs) in writes.into_iter().enumerate() {
            // Each thread's own writes are in increasing epoch order.
            assert!(epochs.windows(2).all(|p| p[0] < p[1]));
            all[id].extend(epochs);
        }
    }
    assert!(claims > 0, "the test should exercise probe claims");
    for (id, mut epochs) in all.into_iter().enumerate() {
        epochs.sort_unstable();
        let last = table.load(UpstreamId(id as u32)).epoch();
        // Every successful write made exactly one epoch, none twice, none lost: the final
        // word is the product of exactly these transitions in epoch order. Two claimers
        // winning the same expiry would have written the same epoch.
        assert_eq!(epochs, (1..=last).collect::<Vec<_>>(), "endpoint {id}");
    }
}
