#!/usr/bin/env bash
# Closed-loop loadgen vs wrk against the same nginx origin on this machine.
#
# nginx: one worker pinned to the last core; each generator: one thread pinned to core 0,
# the same connection count and duration. Runs alternate (wrk, loadgen, wrk, ...) so that
# drift in the machine's load hits both. For each run: requests/s per generator thread, and
# the generator process's CPU time (user + sys, from /usr/bin/time) per request.
#
# Usage: bench/loadgen_vs_wrk.sh [CONNECTIONS] [SECONDS] [ROUNDS]
# Needs: nginx, wrk, /usr/bin/time, taskset (apt-get install -y nginx wrk time util-linux)
# and a release build: cargo build --release -p loadgen
set -euo pipefail

CONNS=${1:-50}
SECS=${2:-10}
ROUNDS=${3:-3}
PORT=${PORT:-18080}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOADGEN=${LOADGEN:-$ROOT/target/release/loadgen}
WORK=$(mktemp -d /tmp/loadgen-bench.XXXXXX)
LAST_CORE=$(( $(nproc) - 1 ))

[ -x "$LOADGEN" ] || { echo "build first: cargo build --release -p loadgen" >&2; exit 1; }

mkdir -p "$WORK/logs"
cat > "$WORK/nginx.conf" <<EOF
worker_processes 1;
worker_cpu_affinity $(printf '1%0*d' "$LAST_CORE" 0);
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    server {
        listen 127.0.0.1:$PORT reuseport;
        location / { default_type text/plain; return 200 "hello from nginx\n"; }
    }
}
EOF
nginx -c "$WORK/nginx.conf" -p "$WORK/"
trap 'kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true; rm -rf "$WORK"' EXIT
sleep 0.5
URL="http://127.0.0.1:$PORT/"

echo "# $(date -u +%FT%TZ) $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# nginx $(nginx -v 2>&1 | cut -d/ -f2), 1 worker on core $LAST_CORE; generators: 1 thread on core 0"
echo "# $CONNS connections, ${SECS}s per run, $ROUNDS rounds"
printf '%-8s %6s %12s %10s %10s %10s\n' tool round requests 'req/s' 'cpu_s' 'us/req'

run() { # tool round -> one result line
    local tool=$1 round=$2 out reqs secs cpu
    if [ "$tool" = wrk ]; then
        out=$(/usr/bin/time -f 'CPU %U %S' taskset -c 0 wrk -t1 -c"$CONNS" -d"${SECS}s" "$URL" 2>&1)
        reqs=$(awk '/requests in/ {print $1}' <<<"$out")
        secs=$(awk '/requests in/ {sub(/s,$/, "", $4); print $4}' <<<"$out")
    else
        out=$(/usr/bin/time -f "CPU %U %S" taskset -c 0 "$LOADGEN" -t1 -c"$CONNS" -d"${SECS}s" \
            --no-timeline --no-progress "$URL" 2>&1)
        reqs=$(awk '/^  Requests/ {print $2}' <<<"$out")
        secs=$SECS
    fi
    cpu=$(awk '/^CPU/ {printf "%.2f", $2 + $3}' <<<"$out")
    awk -v t="$tool" -v r="$round" -v n="$reqs" -v s="$secs" -v c="$cpu" \
        'BEGIN { printf "%-8s %6d %12d %10.0f %10.2f %10.2f\n", t, r, n, n / s, c, c * 1e6 / n }'
}

for r in $(seq 1 "$ROUNDS"); do
    run wrk "$r"
    run loadgen "$r"
done | tee "$WORK/results"

echo "# medians"
for tool in wrk loadgen; do
    awk -v t="$tool" '$1 == t' "$WORK/results" | sort -k4 -n | awk -v t="$tool" \
        '{ rps[NR] = $4; us[NR] = $6 } END { m = int((NR + 1) / 2); printf "%-8s req/s per thread %.0f\n", t, rps[m] }'
    awk -v t="$tool" '$1 == t' "$WORK/results" | sort -k6 -n | awk -v t="$tool" \
        '{ us[NR] = $6 } END { m = int((NR + 1) / 2); printf "%-8s CPU us per request %.2f\n", t, us[m] }'
done
