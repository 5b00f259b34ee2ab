//! Model checks of the health word's CAS state machine under every interleaving loom can
//! produce (and the weak-memory outcomes it models). Run with
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --lib upstream::health --release`.
//!
//! Each model starts the word in a given state, runs up to three threads of operations, and
//! checks that (1) the results and the final word are those of some serial order of the same
//! operations that respects each thread's program order (so no transition was lost or
//! applied to a stale value), (2) every write made a distinct epoch, one more than the last
//! (so at most one claimer won each expiry), and (3) no thread ever saw the epoch go back.

use loom::sync::Arc;
use loom::thread;

use super::*;

const E0: UpstreamId = UpstreamId(0);
const POLICY: SuspensionPolicy = SuspensionPolicy {
    initial_ms: 100,
    factor: 2.0,
    max_ms: 1000,
};

#[derive(Clone, Copy, Debug)]
enum Op {
    /// `report_failure` at this many ms.
    Fail(u64),
    /// `report_success`.
    Succeed,
    /// `try_claim_probe` at this many ms, with this lease in ms.
    Claim(u64, u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Unchanged,
    Wrote(HealthWord),
}

/// Runs `op` on the shared table through the code paths of the public operations, keeping
/// the word each write produced.
fn run(table: &HealthTable, op: Op) -> Outcome {
    let written = match op {
        Op::Fail(at) => table.fail(E0, at, &POLICY).map(|(_, new)| new),
        Op::Succeed => table.succeed(E0).map(|(_, new)| new),
        Op::Claim(at, lease) => table.claim(
            E0,
            table.base() + Duration::from_millis(at),
            Duration::from_millis(lease),
        ),
    };
    written.map_or(Outcome::Unchanged, Outcome::Wrote)
}

/// The serial meaning of `op` on `word`: the pure transition functions the table's CAS
/// loops apply.
fn apply(word: HealthWord, op: Op) -> (HealthWord, Outcome) {
    let next = match op {
        Op::Fail(at) => word.after_failure(at, &POLICY),
        Op::Succeed => word.after_success(),
        Op::Claim(at, lease) => word.after_claim(at, lease),
    };
    match next {
        Some(new) => (new, Outcome::Wrote(new)),
        None => (word, Outcome::Unchanged),
    }
}

/// Whether recorded `outcomes` and `last` are those of some serial order of `programs`
/// starting from `word`.
fn serializable(
    word: HealthWord,
    programs: &[Vec<Op>],
    outcomes: &[Vec<Outcome>],
    next: &mut [usize],
    last: HealthWord,
) -> bool {
    if next.iter().zip(programs).all(|(&i, p)| i == p.len()) {
        return word == last;
    }
    for t in 0..programs.len() {
        let i = next[t];
        if i == programs[t].len() {
            continue;
        }
        let (after, outcome) = apply(word, programs[t][i]);
        if outcome == outcomes[t][i] {
            next[t] += 1;
            let found = serializable(after, programs, outcomes, next, last);
            next[t] -= 1;
            if found {
                return true;
            }
        }
    }
    false
}

/// Preemptions per execution that loom explores unless `LOOM_MAX_PREEMPTIONS` says
/// otherwise: the usual bounded search (an unbounded one of the three-thread models runs for
/// many minutes); every interleaving with at most this many forced thread switches is
/// checked.
const DEFAULT_PREEMPTIONS: usize = 3;

fn check(initial: HealthWord, programs: Vec<Vec<Op>>) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(DEFAULT_PREEMPTIONS);
    }
    builder.check(move || {
        let table = Arc::new(HealthTable::with_base(1, Instant::now()));
        table.set(E0, initial);
        let handles: Vec<_> = programs
            .iter()
            .cloned()
            .map(|program| {
                let table = Arc::clone(&table);
                thread::spawn(move || {
                    let mut outcomes = Vec::new();
                    let mut epochs = vec![table.load(E0).epoch()];
                    for op in program {
                        outcomes.push(run(&table, op));
                        epochs.push(table.load(E0).epoch());
                    }
                    (outcomes, epochs)
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        let mut written = Vec::new();
        for handle in handles {
            let (thread_outcomes, epochs) = handle.join().unwrap();
            assert!(
                epochs.windows(2).all(|p| p[0] <= p[1]),
                "a thread saw the epoch go back: {epochs:?}"
            );
            for outcome in &thread_outcomes {
                if let Outcome::Wrote(w) = outcome {
                    written.push(w.epoch());
                }
            }
            outcomes.push(thread_outcomes);
        }
        let last = table.load(E0);
        written.sort_unstable();
        let expected: Vec<u16> = (initial.epoch() + 1..=last.epoch()).collect();
        assert_eq!(written, expected, "each write makes one new epoch");
        let mut next = vec![0; programs.len()];
        assert!(
            serializable(initial, &programs, &outcomes, &mut next, last),
            "no serial order explains {outcomes:?} ending in {last:?}"
        );
    });
}

fn suspended(epoch: u16, level: u8, until: u64) -> HealthWord {
    HealthWord::pack(epoch, State::Suspended, level, FailureCause::Connect, until)
}

#[test]
fn racing_claimers_of_one_expiry_have_one_winner() {
    check(
        suspended(1, 0, 100),
        vec![
            vec![Op::Claim(100, 50)],
            vec![Op::Claim(120, 50)],
            vec![Op::Claim(149, 50)],
        ],
    );
}

#[test]
fn racing_failures_and_a_success_on_a_healthy_endpoint() {
    check(
        HealthWord::HEALTHY,
        vec![vec![Op::Fail(10)], vec![Op::Fail(20)], vec![Op::Succeed]],
    );
}

#[test]
fn probers_racing_with_stale_reports() {
    check(
        suspended(1, 0, 100),
        vec![
            vec![Op::Claim(100, 50), Op::Fail(120)],
            vec![Op::Claim(110, 50), Op::Succeed],
            vec![Op::Fail(130)],
        ],
    );
}

#[test]
fn a_lapsed_lease_reclaimed_while_reports_race() {
    check(
        HealthWord::pack(2, State::Probing, 1, FailureCause::Connect, 100),
        vec![
            vec![Op::Claim(100, 50)],
            vec![Op::Fail(105)],
            vec![Op::Succeed, Op::Claim(400, 50)],
        ],
    );
}
