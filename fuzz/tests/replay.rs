//! Replays the checked-in corpus (and the generated seeds and any crash artifacts, when
//! present) through every target's checks, without libFuzzer or instrumentation:
//!
//!     cargo test --manifest-path fuzz/Cargo.toml
//!
//! `FUZZ_REPLAY_DIR=path` replays one extra directory (or file) against the target named by
//! `FUZZ_REPLAY_TARGET`.

use std::fs;
use std::path::{Path, PathBuf};

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 7] = [
    ("request_head", shardgate_fuzz::request_head::check),
    ("response_head", shardgate_fuzz::response_head::check),
    ("chunked", shardgate_fuzz::chunked::check),
    ("router", shardgate_fuzz::router::check),
    ("config", shardgate_fuzz::config::check),
    ("jwt", shardgate_fuzz::jwt::check),
    ("path", shardgate_fuzz::path::check),
];

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let Ok(entries) = fs::read_dir(path) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn replay(target: &str, check: Check, dir: &Path) -> usize {
    let inputs = files(dir);
    for input in &inputs {
        let data = fs::read(input).expect("readable input");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{target}: {} fails", input.display());
    }
    inputs.len()
}

#[test]
fn corpus_and_seeds_pass_every_check() {
    for (target, check) in TARGETS {
        let corpus = replay(target, check, &fuzz_dir().join("corpus").join(target));
        let seeds = replay(target, check, &fuzz_dir().join("seeds").join(target));
        eprintln!("{target}: {corpus} corpus inputs, {seeds} seeds");
    }
}

#[test]
fn extra_directory() {
    let (Ok(dir), Ok(name)) = (
        std::env::var("FUZZ_REPLAY_DIR"),
        std::env::var("FUZZ_REPLAY_TARGET"),
    ) else {
        return;
    };
    let (target, check) = TARGETS
        .into_iter()
        .find(|(t, _)| *t == name)
        .unwrap_or_else(|| panic!("no target {name}"));
    let n = replay(target, check, Path::new(&dir));
    eprintln!("{target}: {n} inputs from {dir}");
}
