#!/usr/bin/env bash
# The test command of the README: formatting, lints, then every test of the workspace.
# Tests start their own servers and backends on 127.0.0.1 ephemeral ports and stop them.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# --no-fail-fast: one failing test binary must not hide the results of the others.
cargo test --workspace --no-fail-fast "$@"
