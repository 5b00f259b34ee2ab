#!/usr/bin/env bash
# Instructions per proxied request, measured with callgrind (perf is not available on every
# box; instruction counts are also immune to the machine's noise).
#
# The gateway runs under callgrind in front of an nginx origin; one sequential keep-alive
# client sends N1 and then N2 requests in two separate runs. The per-request cost is
#   (instructions(N2) - instructions(N1)) / (N2 - N1),
# which cancels start-up, configuration and shutdown.
#
# usage: bench/callgrind.sh [--jwt] [N1 N2]      (defaults 2000 12000)
#   --jwt: also the same request with a bearer token through a JWT-secured API (one repeated
#          token: the per-shard cache's case), next to the unsecured figure.
# output: instructions per request, and bench/out/callgrind.N2.out for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
jwt=0
if [ "${1:-}" = "--jwt" ]; then
    jwt=1
    shift
fi
n1=${1:-2000}
n2=${2:-12000}
origin_port=18481
gateway_port=18482
work=$(mktemp -d /tmp/shardgate-callgrind.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

for tool in valgrind nginx python3; do
    command -v "$tool" >/dev/null || { echo "callgrind.sh: needs $tool (apt-get install valgrind nginx)" >&2; exit 1; }
done
cargo build --release -p shardgate >/dev/null

cat >"$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$origin_port; location / { return 200 "0123456789012345678901234567890123456789012345678901234567890123"; } }
}
CONF
mkdir "$work/apis"
cat >"$work/apis/open.yaml" <<CONF
openapi: 3.0.1
x-wso2-basePath: /
x-wso2-disable-security: true
x-wso2-production-endpoints:
  urls: [http://127.0.0.1:$origin_port]
paths:
  /*: {get: {}}
CONF
cat >"$work/apis/secured.yaml" <<CONF
openapi: 3.0.1
x-wso2-basePath: /sec
x-wso2-production-endpoints:
  urls: [http://127.0.0.1:$origin_port]
paths:
  /*: {get: {}}
CONF
issuer=https://localhost/dev-only
cat >"$work/gateway.yaml" <<CONF
jwt:
  issuers: [{issuer: "$issuer", certificate: "$PWD/config/dev-only/jwt-dev-only.cert.pem"}]
workers: 1
admin: null
apis: [apis/]
CONF
token=$(./target/release/shardgate token --key config/dev-only/jwt-dev-only.key.pem --issuer "$issuer" --ttl 1h)
cat >"$work/client.py" <<'CLIENT'
import socket, sys
n, port, path, token = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
auth = f"Authorization: Bearer {token}\r\n".encode() if token else b""
request = (f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\n".encode()
           + auth + b"Accept: */*\r\n\r\n")
for _ in range(n):
    s.sendall(request)
    got = b""
    while not (b"\r\n\r\n" in got and got.endswith(b"0123")):
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed")
        got += chunk
    if not got.startswith(b"HTTP/1.1 200"):
        sys.exit(f"unexpected response: {got[:200]!r}")
CLIENT

nginx -c "$work/nginx.conf" &
pids+=($!)

wait_port() {
    for _ in $(seq 1 600); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "callgrind.sh: nothing listening on $1" >&2
    exit 1
}
wait_port "$origin_port"

# One run of N requests to PATH (with TOKEN unless empty); prints the instruction count.
measure() {
    local n=$1 path=$2 token=$3
    # The epoll driver: valgrind does not know io_uring's shared-memory completions.
    valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.$n.out" \
        ./target/release/shardgate run --config "$work/gateway.yaml" \
        --listen "127.0.0.1:$gateway_port" --log-level warn --driver legacy \
        2>"$work/valgrind.$n.err" &
    local pid=$!
    wait_port "$gateway_port"
    python3 "$work/client.py" "$n" "$gateway_port" "$path" "$token"
    kill -TERM "$pid"
    wait "$pid" || true
    grep -o 'Collected : [0-9]*' "$work/valgrind.$n.err" | grep -o '[0-9]*$'
}

# Instructions per request for PATH and TOKEN.
per_request() {
    local i1 i2
    i1=$(measure "$n1" "$1" "$2")
    i2=$(measure "$n2" "$1" "$2")
    echo $(( (i2 - i1) / (n2 - n1) ))
}

mkdir -p bench/out
unsecured=$(per_request /bench "")
cp "$work/callgrind.$n2.out" bench/out/
echo "instructions per request: $unsecured"
if [ "$jwt" = 1 ]; then
    # The same request, token included, to the unsecured API (the token is forwarded) and
    # to the secured one (validated through the cache, then removed): what security costs,
    # apart from what a larger request head costs.
    carried=$(per_request /bench "$token")
    secured=$(per_request /sec/bench "$token")
    cp "$work/callgrind.$n2.out" "bench/out/callgrind-jwt.$n2.out"
    echo "instructions per request carrying a token to the unsecured API: $carried"
    echo "instructions per request with the token validated (repeated, cached): $secured" \
        "($(( (secured - carried) * 1000 / carried )) per mille vs the same request unsecured)"
fi
echo "profile: callgrind_annotate bench/out/callgrind.$n2.out"
