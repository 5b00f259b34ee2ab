//! libFuzzer entry point; the checks live in `shardgate_fuzz::response_head` so that
//! `cargo test --manifest-path fuzz/Cargo.toml` can replay the corpus without libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shardgate_fuzz::response_head::check(data));
