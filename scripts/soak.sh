#!/usr/bin/env bash
# The long robustness runs, kept out of the normal test run (docs/robustness.md).
#
#   scripts/soak.sh [DURATION_S=300] [RATE=200]   soak: the gateway process in front of a backend
#                                                 whose faults rotate request by request, driven
#                                                 open loop by loadgen; RSS and fds every second;
#                                                 every request accounted for
#   scripts/soak.sh storm [CONNECTIONS=10000]     the connection storm and EMFILE tests at full size
#
# Release builds. Results go to target/soak/ (summary.txt, series.csv, loadgen.json). Everything
# runs on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "storm" ]; then
  connections="${2:-10000}"
  SHARDGATE_STORM_CONNECTIONS="$connections" \
    cargo test --release --test connection_storm -- --nocapture --test-threads 1
  exit
fi

duration="${1:-300}"
rate="${2:-200}"
out="target/soak"
mkdir -p "$out"
cargo build --release -p loadgen
SOAK_DURATION="$duration" SOAK_RATE="$rate" SOAK_OUT="$PWD/$out" LOADGEN="$PWD/target/release/loadgen" \
  cargo test --release --test backend_faults -- --ignored --exact soak_with_rotating_backend_faults --nocapture
echo "soak results: $out/summary.txt, $out/series.csv, $out/loadgen.json"
