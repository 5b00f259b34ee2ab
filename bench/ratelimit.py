#!/usr/bin/env python3
"""Rate-limit benchmark (issue 18): do throttling tiers hold, and what do they cost?

Scenarios (all by default):
  local   one gateway (2 shards), a tier of LIMIT per 1 s, loadgen open loop at 2 x LIMIT for
          DURATION s: requests admitted in each window, against the limit
  redis   two gateways (1 shard each) sharing the tier through a redis-server started here,
          loadgen open loop at 2 x LIMIT in total, half to each: admitted per window by both
  cpu     one gateway (1 shard, pinned): the same small GET through an API with a tier that is
          never reached and through one without a tier, closed loop, interleaved rounds:
          proxy CPU time per request

Admitted per window: each gateway's /metrics is read 0.9 s into every second; the difference
between two readings is what the window in between admitted, since at twice the limit a window
is exhausted long before 0.9 s (and the last 0.1 s of the one before admits nothing).

Usage: bench/ratelimit.py [--limit N] [--duration S] [--rounds N] [--scenarios local,redis,cpu]
                          [--no-build]
Uses bench/compare.py's helpers (nginx origin, pinning, /proc CPU accounting). Only 127.0.0.1
is contacted; every process started is killed by PID at the end.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402
from compare import ROOT, PROXY_CPU, LOAD_CPU  # noqa: E402

# Origins on ports of our own: compare.py's fixed ones may be in use by another run.
ORIGIN_PORTS = ()
SERIES = 'shardgate_rate_limit_requests_total{api="/rl",tier="Bench",outcome="admitted"}'


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_gateway(tmp, name, port, admin, workers, limit, redis=None, instances=1):
    apis = tmp / f"{name}-apis"
    apis.mkdir(exist_ok=True)
    urls = ", ".join(f"'http://127.0.0.1:{p}'" for p in ORIGIN_PORTS)
    for base, tier in (("/rl", "x-wso2-throttling-tier: Bench\n"), ("/free", ""),
                       ("/huge", "x-wso2-throttling-tier: Huge\n")):
        (apis / f"{base.strip('/')}.yaml").write_text(f"""openapi: 3.0.1
info: {{title: {base.strip('/')}, version: '1'}}
x-wso2-basePath: {base}
x-wso2-disable-security: true
{tier}x-wso2-production-endpoints: {{urls: [{urls}], type: load_balance}}
paths:
  /*: {{get: {{}}}}
""")
    redis_lines = f"  redis: redis://127.0.0.1:{redis}\n  instances: {instances}\n" if redis else ""
    conf = tmp / f"{name}.yaml"
    conf.write_text(f"""listeners:
  http: ["127.0.0.1:{port}"]
  https: []
workers: {workers}
admin: "127.0.0.1:{admin}"
apis: [{name}-apis/]
upstream:
  max_idle_per_endpoint: 1024
rate_limits:
  tiers:
    Bench: {{requests: {limit}, per: 1s}}
    Huge: {{requests: 4000000000, per: 1d}}
{redis_lines}""")
    return conf


def start_gateway(tmp, name, cpu, workers, limit, redis=None, instances=1):
    port, admin = free_port(), free_port()
    conf = write_gateway(tmp, name, port, admin, workers, limit, redis, instances)
    proc = compare.start(name, [str(ROOT / "target/release/shardgate"), "run", "--config", str(conf)], cpu,
                         stderr=open(tmp / f"{name}.log", "w"))
    compare.wait_port(port)
    compare.wait_port(admin)
    return proc, port, admin


def metric(admin, series):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=2) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(series + " ") or line.startswith(series + "{") and series.endswith("}"):
                return int(line.rsplit(" ", 1)[1])
            if line.startswith(series) and series.endswith("}"):
                return int(line.rsplit(" ", 1)[1])
    return 0


def admitted(admin):
    return metric(admin, SERIES)


def per_window(admins, seconds):
    """Readings 0.9 s into each of the next `seconds` seconds; admitted per window between."""
    readings = []
    for _ in range(seconds + 1):
        now = time.time()
        time.sleep((int(now) + 1.9 - now) % 1.0 or 1.0)
        readings.append(sum(admitted(a) for a in admins))
    return [b - a for a, b in zip(readings, readings[1:])]


def hold(name, admins, urls, limit, duration):
    """Runs loadgen at 2 x limit over `urls` (round robin) and reads the windows."""
    rate = 2 * limit
    windows = []
    sampler = threading.Thread(target=lambda: windows.extend(per_window(admins, duration)))
    cmd = ["taskset", "-c", str(LOAD_CPU), str(ROOT / "target/release/loadgen"), "-t", "1", "-c", "64",
           "-R", str(rate), "-d", f"{duration + 4}s", "--timeout", "5s", "--no-progress", "-q"] + urls
    load = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)  # the first windows are under way before the readings start
    batches_before = sum(metric(a, "shardgate_rate_limit_redis_batches_total") for a in admins)
    sampler.start()
    sampler.join()
    batches = sum(metric(a, "shardgate_rate_limit_redis_batches_total") for a in admins) - batches_before
    load.wait()
    worst = max(abs(w - limit) for w in windows)
    row = (name, rate, len(windows), min(windows), statistics.median(windows), max(windows),
           100.0 * worst / limit, sum(windows), batches)
    compare.log(f"{name}: windows {windows}")
    return row


def cpu(tmp, rounds, duration):
    proc, port, _ = start_gateway(tmp, "sg-cpu", PROXY_CPU, 1, 1000)
    pids = compare.group_pids(proc)
    results = {"no tier": [], "tier": []}
    for r in range(rounds):
        order = [("no tier", "/free/b64"), ("tier", "/huge/b64")]
        if r % 2:
            order.reverse()
        for label, path in order:
            m = compare.measure("shardgate", pids, f"http://127.0.0.1:{port}{path}", duration, 64,
                                tmp / "cpu.json")
            compare.log(f"cpu {label}: {m['rps']:.0f} rps, {m['cpu_us_per_req']:.2f} us/req, errors {m['errors']}")
            if m["errors"]:
                import json
                compare.log(json.dumps(json.loads((tmp / "cpu.json").read_text())["requests"]))
            results[label].append(m)
    compare.stop_all()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=5000)
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpu-duration", type=int, default=8)
    parser.add_argument("--scenarios", default="local,redis,cpu")
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    global ORIGIN_PORTS
    ORIGIN_PORTS = (free_port(), free_port())
    scenarios = args.scenarios.split(",")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "shardgate", "-p", "loadgen"], cwd=ROOT, check=True)
    compare.ensure_tools(install=True)
    if "redis" in scenarios and not shutil.which("redis-server"):
        sys.exit("ratelimit.py: the redis scenario needs redis-server (apt-get install -y redis-server)")
    tmp = Path(tempfile.mkdtemp(prefix="sg-ratelimit-"))
    os.chmod(tmp, 0o755)
    rows, cpu_results = [], None
    try:
        compare.start("origin", ["nginx", "-c", str(compare.write_origin(tmp, ORIGIN_PORTS, "origin"))], LOAD_CPU)
        for p in ORIGIN_PORTS:
            compare.wait_port(p)
        limit = args.limit
        if "local" in scenarios:
            _, port, admin = start_gateway(tmp, "sg-local", "0,1", 2, limit)
            rows.append(hold("one instance, 2 shards", [admin], [f"http://127.0.0.1:{port}/rl/b64"], limit,
                             args.duration))
            compare.stop_all()
            compare.start("origin", ["nginx", "-c", str(compare.write_origin(tmp, ORIGIN_PORTS, "origin"))], LOAD_CPU)
        if "redis" in scenarios:
            redis_port = free_port()
            compare.start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                                    "--save", "", "--appendonly", "no"], LOAD_CPU)
            compare.wait_port(redis_port)
            _, port_a, admin_a = start_gateway(tmp, "sg-a", PROXY_CPU, 1, limit, redis_port, 2)
            _, port_b, admin_b = start_gateway(tmp, "sg-b", PROXY_CPU, 1, limit, redis_port, 2)
            rows.append(hold("two instances through Redis", [admin_a, admin_b],
                             [f"http://127.0.0.1:{port_a}/rl/b64", f"http://127.0.0.1:{port_b}/rl/b64"],
                             limit, args.duration))
            compare.stop_all()
            compare.start("origin", ["nginx", "-c", str(compare.write_origin(tmp, ORIGIN_PORTS, "origin"))], LOAD_CPU)
        if "cpu" in scenarios:
            cpu_results = cpu(tmp, args.rounds, args.cpu_duration)
    finally:
        compare.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n### Tier of {args.limit} per second at twice the limit, {args.duration} windows")
    print("| setup | offered req/s | windows | min admitted | median | max | worst deviation | admitted total | Redis batches |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, rate, n, lo, med, hi, dev, total, batches in rows:
        print(f"| {name} | {rate} | {n} | {lo} | {med:.0f} | {hi} | {dev:.2f} % | {total} | {batches} |")
    if cpu_results:
        base = statistics.median(m["cpu_us_per_req"] for m in cpu_results["no tier"])
        tier = statistics.median(m["cpu_us_per_req"] for m in cpu_results["tier"])
        print(f"\n### CPU per request, {args.rounds} interleaved rounds of {args.cpu_duration} s (closed loop, 64 connections)")
        print("| API | rps (median) | proxy CPU us/req (median) | vs no tier |")
        print("|---|---:|---:|---:|")
        for label, value in (("no tier", base), ("tier (never reached)", tier)):
            key = "no tier" if label == "no tier" else "tier"
            rps = statistics.median(m["rps"] for m in cpu_results[key])
            print(f"| {label} | {rps:.0f} | {value:.2f} | {value / base:.3f} |")


if __name__ == "__main__":
    main()
