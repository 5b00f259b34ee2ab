#!/usr/bin/env bash
# Starts shardgate as the extra target of ../shared/bench/peers.sh: one API at "/" over the
# harness's origins ($BENCH_ORIGINS), round robin, no security, logs off. Usage:
#   EXTRA_TARGET=shardgate=http://127.0.0.1:18092/ \
#   EXTRA_CMD="$PWD/bench/shardgate-for-peers.sh 18092" ../shared/bench/peers.sh
set -euo pipefail
port=${1:-18092}
here=$(cd "$(dirname "$0")/.." && pwd)
api="${BENCH_TMP:?BENCH_TMP is set by peers.sh}/shardgate-api.yaml"
urls=$(echo "${BENCH_ORIGINS:?}" | tr ',' '\n' | sed 's|^|      - http://|' )
cat >"$api" <<YAML
openapi: 3.0.1
info: {title: bench, version: '1'}
x-wso2-basePath: /
x-wso2-disable-security: true
x-wso2-production-endpoints:
  type: load_balance
  urls:
$urls
paths:
  /*:
    get: {}
YAML
exec "$here/target/release/shardgate" run --api "$api" --listen "127.0.0.1:$port" \
  --workers 1 --admin off --log-level warn
