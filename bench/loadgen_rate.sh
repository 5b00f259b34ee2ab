#!/usr/bin/env bash
# The open-loop generator's schedule: achieved rate against the target, against an nginx
# origin on this machine. The target is within 1 % of the asked rate on a quiet machine; the
# tests in loadgen/tests/timing.rs only check the accounting, because a busy machine can make
# any generator fall short (and loadgen then says so: "rate below target").
#
# Usage: bench/loadgen_rate.sh [SECONDS] [RATES...]     (default: 5 s at 2000 and 20000 req/s)
# Needs: nginx, taskset (apt-get install -y nginx util-linux) and
#        cargo build --release -p loadgen
set -euo pipefail

SECS=${1:-5}
shift || true
RATES=("$@")
[ "${#RATES[@]}" -gt 0 ] || RATES=(2000 20000)
PORT=${PORT:-18083}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOADGEN=${LOADGEN:-$ROOT/target/release/loadgen}
WORK=$(mktemp -d /tmp/loadgen-rate.XXXXXX)
LAST_CORE=$(( $(nproc) - 1 ))

[ -x "$LOADGEN" ] || { echo "build first: cargo build --release -p loadgen" >&2; exit 1; }

mkdir -p "$WORK/logs"
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
worker_cpu_affinity $(printf '1%0*d' "$LAST_CORE" 0);
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$PORT reuseport;
        location / { default_type text/plain; return 200 "hello from nginx\n"; }
    }
}
CONF
nginx -c "$WORK/nginx.conf" -p "$WORK/"
trap 'kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true; rm -rf "$WORK"' EXIT
sleep 0.5

echo "# $(date -u +%FT%TZ) $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %-6s %12s %10s %10s %8s\n' target conns achieved 'dev_%' 'lag_p99' within
for rate in "${RATES[@]}"; do
    conns=$(( rate >= 10000 ? 64 : 16 ))
    json="$WORK/run-$rate.json"
    taskset -c 0 "$LOADGEN" --rate "$rate" -c "$conns" -d "${SECS}s" --warmup 500ms \
        --no-timeline --no-progress --json "$json" "http://127.0.0.1:$PORT/" >/dev/null
    python3 - "$json" "$rate" "$conns" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
target, conns = float(sys.argv[2]), sys.argv[3]
h = report["honesty"]
achieved = h["achievedRate"]
dev = 100.0 * (achieved - target) / target
print(f"{int(target):<8} {conns:<6} {achieved:12.1f} {dev:10.2f} {h['scheduleLagP99'] * 1e6:>8.0f}us "
      f"{'yes' if abs(dev) <= 1.0 else 'NO'}")
PY
done
