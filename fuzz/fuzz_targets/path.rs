//! libFuzzer entry point; the checks live in `shardgate_fuzz::path` so that
//! `cargo test --manifest-path fuzz/Cargo.toml` can replay the corpus without libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shardgate_fuzz::path::check(data));
