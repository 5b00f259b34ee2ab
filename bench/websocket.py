#!/usr/bin/env python3
"""WebSocket relay cost: shardgate vs haproxy vs nginx, in one run on this machine.

Each proxy (one worker, pinned to PROXY_CPU like compare.py's targets) sits in front of the
same echo origin (tests/peers/ws_echo.py, python `websockets`), and a python `websockets`
client on the other CPU keeps CONNS tunnels busy for SECONDS, each sending MESSAGE-byte
binary messages and reading the echo back. Reported per proxy: MB relayed per second (both
directions), and the proxy's CPU time per MB relayed (utime+stime from /proc over the run),
with its ratio to haproxy's. The client and the origin are the slow parts here, so MB/s
barely separates proxies; CPU per MB does.

Usage: bench/websocket.py [--seconds 8] [--conns 8] [--message 262144] [--rounds 3]
Needs: python3 websockets (pip install websockets==13.1), haproxy, nginx, a release build.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (the harness' process helpers)

ROOT = compare.ROOT
PORTS = {"shardgate": 18292, "haproxy": 18291, "nginx": 18290}

CLIENT = r"""
import asyncio, os, sys, time, json
from websockets.asyncio.client import connect

async def one(url, size, until, moved):
    payload = os.urandom(size)
    async with connect(url, max_size=None, ping_interval=None) as ws:
        while time.time() < until:
            await ws.send(payload)
            echoed = await ws.recv()
            moved[0] += len(payload) + len(echoed)

async def main():
    url, conns, size, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    moved = [0]
    until = time.time() + seconds
    started = time.time()
    await asyncio.gather(*(one(url, size, until, moved) for _ in range(conns)))
    print(json.dumps({"bytes": moved[0], "seconds": time.time() - started}))

asyncio.run(main())
"""


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--conns", type=int, default=8)
    p.add_argument("--message", type=int, default=256 * 1024)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-build", action="store_true")
    args = p.parse_args()
    if not args.no_build:
        compare.run(["cargo", "build", "--release", "-p", "shardgate"], cwd=ROOT, stdout=subprocess.DEVNULL)
    tmp = Path(tempfile.mkdtemp(prefix="shardgate-ws-bench-"))
    try:
        port_file = tmp / "origin.port"
        compare.start("origin", [sys.executable, str(ROOT / "tests/peers/ws_echo.py"), "origin",
                                 str(port_file)], compare.LOAD_CPU)
        for _ in range(200):
            if port_file.exists():
                break
            time.sleep(0.05)
        origin = int(port_file.read_text())
        api = tmp / "ws.yaml"
        api.write_text(f"""asyncapi: 2.0.0
info: {{title: ws, version: '1'}}
x-wso2-basePath: /ws
x-wso2-disable-security: true
servers: {{production: {{url: 'ws://127.0.0.1:{origin}', protocol: ws}}}}
channels:
  /*: {{publish: {{}}}}
""")
        gw = tmp / "gw.yaml"
        gw.write_text(f"listeners: {{http: ['127.0.0.1:{PORTS['shardgate']}'], https: []}}\n"
                      f"workers: 1\nadmin: null\napis: [{api}]\n")
        haproxy = tmp / "haproxy.cfg"
        haproxy.write_text(f"""global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout tunnel 300s
frontend fe
  bind 127.0.0.1:{PORTS['haproxy']}
  default_backend ws
backend ws
  server o 127.0.0.1:{origin}
""")
        nginx = tmp / "nginx.conf"
        nginx.write_text(f"""worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{PORTS['nginx']};
    location /ws/ {{
      proxy_pass http://127.0.0.1:{origin}/;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 300s;
    }}
  }}
}}
""")
        procs = {
            "shardgate": compare.start("shardgate", [str(ROOT / "target/release/shardgate"), "run", "--config",
                                                     str(gw), "--log-level", "error"], compare.PROXY_CPU),
            "haproxy": compare.start("haproxy", ["haproxy", "-f", str(haproxy)], compare.PROXY_CPU),
            "nginx": compare.start("nginx", ["nginx", "-c", str(nginx)], compare.PROXY_CPU),
        }
        for port in PORTS.values():
            compare.wait_port(port)
        time.sleep(0.5)
        pids = {t: compare.group_pids(proc) for t, proc in procs.items()}
        results = {t: [] for t in procs}
        for r in range(args.rounds):
            for t in list(procs)[r % 3:] + list(procs)[:r % 3]:
                before = sum(compare.cpu_seconds(pids[t]))
                out = subprocess.run(["taskset", "-c", str(compare.LOAD_CPU), sys.executable, "-c", CLIENT,
                                      f"ws://127.0.0.1:{PORTS[t]}/ws/bench", str(args.conns),
                                      str(args.message), str(args.seconds)],
                                     capture_output=True, text=True)
                if out.returncode != 0:
                    sys.exit(f"websocket.py: the client failed against {t}:\n{out.stderr[-2000:]}")
                cpu = sum(compare.cpu_seconds(pids[t])) - before
                moved = json.loads(out.stdout)
                mb = moved["bytes"] / 1e6
                results[t].append({"mb_s": mb / moved["seconds"], "cpu_ms_per_mb": cpu * 1e3 / mb})
                compare.log(f"  round {r + 1} {t:10} {mb / moved['seconds']:8.1f} MB/s "
                            f"{cpu * 1e3 / mb:6.3f} ms CPU per MB")
        base = compare.median([m["cpu_ms_per_mb"] for m in results["haproxy"]])
        print(f"\n### WebSocket relay ({args.conns} tunnels, {args.message} B messages echoed, "
              f"{args.seconds:.0f} s x {args.rounds} rounds, medians)")
        print("| proxy | MB/s relayed (both ways) | proxy CPU ms per MB | vs haproxy |")
        print("|---|---:|---:|---:|")
        for t in procs:
            cpu = compare.median([m["cpu_ms_per_mb"] for m in results[t]])
            rate = compare.median([m["mb_s"] for m in results[t]])
            print(f"| {t} | {rate:.1f} | {cpu:.3f} | {cpu / base:.2f} |")
    finally:
        compare.stop_all()


if __name__ == "__main__":
    main()
