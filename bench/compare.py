#!/usr/bin/env python3
"""Peer comparison: shardgate vs nginx vs haproxy, measured in one run on this machine.

Every proxy gets one worker pinned to the same core (PROXY_CPU), in front of the same nginx
origins (pinned with the load generator to ORIGIN_CPU), with an upstream keep-alive pool and
logging off. Targets are interleaved over rounds so that machine drift hits all of them
equally. Figures that mean something on a shared 2-core box are ratios within one run.

Scenarios (all by default):
  plain     closed loop (max requests/s, proxy CPU time per request, and the whole machine's
            busy CPU time per request: proxy, origin and load generator, which shows work a
            proxy hands to the others) and open loop at a fixed rate (half of nginx's
            maximum: p50/p99/p99.9 from the intended send time) for bodies of 64 B, 4 KiB,
            64 KiB and 1 MiB
  https     TLS termination with the same certificate (ECDSA P-256), body 64 B
  jwt       shardgate only: the same small GET through a JWT-secured API (one repeated token)
            and an unsecured one, interleaved: the cost of security per request
  failover  open loop while the primary of a failover group is killed and restarted:
            client-visible errors, latency spike, time until traffic is back on the primary
  h2        HTTP/2 with h2load (Debian nghttp2-client): h2 over TLS (shardgate, nginx,
            haproxy) and h2c with prior knowledge (shardgate, haproxy; nginx 1.22 serves h2c
            only on a port without HTTP/1.1, so it is left out), 1 and 100 streams per
            connection: proxy CPU per request and p99 from h2load's per-request log
  faults    the outages that refuse nothing, next to a killed primary: the primary of a
            failover group [primary, backup] with 2 s timeouts everywhere is killed, frozen
            (SIGSTOP), black-holed (iptables DROP; root only) or slow (answers after 3 s) for
            the middle third of an open-loop run at 2,000 req/s: errors, p99, max, time until
            the backup serves, time until the primary serves again
  idle      RSS per idle keep-alive client connection (10,000 connections by default; haproxy
            is held to the open-file limit's share when that is lower)

Opt-in (--scenarios syscalls, needs strace): system calls per request of each proxy on the
64 B closed loop, counted by `strace -c -f` attached for one measurement. ptrace slows every
target down, so only the counts mean something, not the rates. shardgate's socket I/O goes
through io_uring: its count is io_uring_enter calls, each of which submits and reaps many
operations.

Opt-in (--scenarios chunked): the closed loop of `plain` for the bodies of 64 KiB and more,
sent chunked by the origin (nginx's SSI filter over the same files: 32 KiB chunks), which is
how a streamed or filtered body reaches a proxy; with `body_relay: splice` shardgate splices
each chunk's payload and checks the framing around it.

Opt-in (--scenarios trickle): the same closed loop, with the origin writing each body 2 KiB
at a time (nginx with sendfile off and 2 KiB output buffers, every write its own segment):
with `body_relay: splice` shardgate splices each piece as it comes.

Usage: bench/compare.py [--rounds N] [--duration S] [--scenarios plain,https,h2,...]
                        [--bodies 64,4096,65536] [--conns N] [--out DIR] [--no-build]
                        [--variant NAME=BINARY]... [--upstream NAME=KEY:VALUE]...
                        [--driver loadgen|wrk]
--driver wrk drives the closed-loop measurements with wrk instead of loadgen (installed from
Debian packages when missing); open-loop figures always come from loadgen.
Only 127.0.0.1 is contacted. Every process started is killed by PID at the end.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROXY_CPU, LOAD_CPU = 0, 1
ORIGIN_PORTS = (18081, 18082)
FAILOVER_PRIMARY, FAILOVER_BACKUP = 18083, 18084
FAULT_PRIMARY, FAULT_BACKUP = 18085, 18086
PORTS = {"nginx": 18090, "haproxy": 18091, "shardgate": 18092, "haproxy-tcp": 18089}
# The L4 floor: haproxy in `mode tcp` forwards bytes without parsing HTTP, so its CPU per
# request is what an epoll proxy costs on this box before any HTTP work. Only the plain and
# syscalls scenarios can use it (it routes nothing, terminates no TLS, holds no pool).
L4_TARGETS = {"haproxy-tcp"}
TLS_PORTS = {"nginx": 18190, "haproxy": 18191, "shardgate": 18192}
# HTTP/2: h2 over TLS on its own ports for the peers (their HTTPS ports stay HTTP/1.1 as the
# https scenario measures them); shardgate's HTTPS and plain listeners serve both.
H2_TLS_PORTS = {"nginx": 18290, "haproxy": 18291}
H2C_PORTS = {"haproxy": 18391}
BODY_PATHS = {64: "/b64", 4096: "/b4k", 65536: "/b64k", 1048576: "/b1m"}
JWT_ISSUER = "https://localhost/dev-only"
TICK = os.sysconf("SC_CLK_TCK")

STARTED = []  # Popen objects, killed at exit
DRIVER = "loadgen"  # closed-loop client: loadgen or wrk (--driver)


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def ensure_tools(install, extra=()):
    needed = ("nginx", "haproxy", "openssl", "taskset") + tuple(extra)
    missing = [t for t in needed if not shutil.which(t)]
    if missing and install and os.geteuid() == 0 and shutil.which("apt-get"):
        log(f"installing {missing} (Debian packages)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update", "-qq"], env=env)
        pkgs = {"nginx": "nginx", "haproxy": "haproxy", "openssl": "openssl", "taskset": "util-linux",
                "wrk": "wrk", "strace": "strace", "h2load": "nghttp2-client"}
        run(["apt-get", "install", "-y", "-qq"] + [pkgs[m] for m in missing], env=env)
    still = [t for t in needed if not shutil.which(t)]
    if still:
        sys.exit(f"compare.py: missing tools {still}")


def raise_fd_limit():
    """In the child: room for tens of thousands of connections (root may raise the hard limit)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in (200_000, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(wanted, hard)))
            return
        except (ValueError, OSError):
            continue


def start(name, cmd, cpu, **kw):
    """Starts a process pinned to `cpu` in its own process group."""
    proc = subprocess.Popen(["taskset", "-c", str(cpu)] + cmd, start_new_session=True, preexec_fn=raise_fd_limit,
                            stdout=kw.pop("stdout", subprocess.DEVNULL),
                            stderr=kw.pop("stderr", subprocess.DEVNULL), **kw)
    proc.bench_name = name
    STARTED.append(proc)
    return proc


def stop_all():
    for proc in reversed(STARTED):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + 5
    for proc in STARTED:
        try:
            proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    STARTED.clear()


def wait_port(port, timeout=10.0, tls=False, stderr_file=None):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    said = ""
    if stderr_file is not None and stderr_file.exists():
        said = "; it said:\n" + "\n".join(stderr_file.read_text(errors="replace").splitlines()[-20:])
    sys.exit(f"compare.py: nothing listening on {port}{said}")


def group_pids(proc):
    """The pids of a started process's group (nginx has a master and a worker)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == proc.pid:  # pgrp
            pids.append(int(entry))
    return pids


def cpu_seconds(pids):
    """(user, system) CPU seconds of the processes, all their threads included."""
    user = system = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        user += int(fields[11])
        system += int(fields[12])
    return user / TICK, system / TICK


def box_busy_seconds():
    """CPU seconds every core of the machine spent busy (not idle, not waiting for I/O)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]
    user, nice, system, idle, iowait, irq, softirq = map(int, fields)
    return (user + nice + system + irq + softirq) / TICK


def rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


# ---------------------------------------------------------------- configurations

def write_origin(tmp, port_list, name, access_log=None):
    root = tmp / "www"
    root.mkdir(exist_ok=True)
    for size, path in BODY_PATHS.items():
        (root / path.lstrip("/")).write_bytes(b"x" * size)
    servers = "\n".join(
        f"  server {{ listen 127.0.0.1:{p}; root {root}; location / {{ default_type text/plain; }}"
        # The same files chunked, as nginx streams a filtered body: 32 KiB chunks (its
        # default output buffers).
        f" location /chunked/ {{ alias {root}/; default_type text/plain; ssi on; ssi_types *; }}"
        # The same files in 2 KiB writes, each its own segment: a backend that streams its
        # body in small pieces (an application server flushing as it goes).
        f" location /trickle/ {{ alias {root}/; default_type text/plain; sendfile off;"
        f" output_buffers 1 2k; postpone_output 0; tcp_nodelay on; }} }}"
        for p in port_list)
    log_line = f"access_log {access_log} timed;" if access_log else "access_log off;"
    conf = tmp / f"{name}.conf"
    conf.write_text(f"""worker_processes 1;
daemon off;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}.err;
events {{ worker_connections 40000; }}
http {{
  log_format timed '$msec';
  {log_line}
  keepalive_requests 10000000;
  keepalive_timeout 300s;
{servers}
}}
""")
    return conf


def write_nginx_proxy(tmp, cert, key):
    conf = tmp / "nginx-proxy.conf"
    ups = "\n".join(f"    server 127.0.0.1:{p};" for p in ORIGIN_PORTS)
    conf.write_text(f"""worker_processes 1;
daemon off;
worker_rlimit_nofile 200000;
pid {tmp}/nginx-proxy.pid;
error_log {tmp}/nginx-proxy.err;
events {{ worker_connections 120000; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  upstream origins {{
{ups}
    keepalive 1024;
  }}
  upstream failover {{
    server 127.0.0.1:{FAILOVER_PRIMARY} max_fails=1 fail_timeout=2s;
    server 127.0.0.1:{FAILOVER_BACKUP} backup;
    keepalive 64;
  }}
  upstream faults {{
    server 127.0.0.1:{FAULT_PRIMARY} max_fails=1 fail_timeout=2s;
    server 127.0.0.1:{FAULT_BACKUP} backup;
    keepalive 64;
  }}
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_next_upstream error timeout;
  server {{
    listen 127.0.0.1:{PORTS['nginx']};
    listen 127.0.0.1:{TLS_PORTS['nginx']} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_session_tickets on;
    location /fo/ {{ proxy_pass http://failover/; }}
    location /ff/ {{
      proxy_pass http://faults/;
      proxy_connect_timeout 2s;
      proxy_send_timeout 2s;
      proxy_read_timeout 2s;
    }}
    location / {{ proxy_pass http://origins; }}
  }}
  server {{
    listen 127.0.0.1:{H2_TLS_PORTS['nginx']} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    http2_max_concurrent_streams 100;
    location / {{ proxy_pass http://origins; }}
  }}
}}
""")
    return conf


def haproxy_maxconn():
    """haproxy refuses to start unless two descriptors per connection fit the open-file
    limit, which only a privileged process can raise past its hard value."""
    raise_fd_limit()
    import resource
    return min(60_000, (resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 200) // 2)


def write_haproxy(tmp, pem):
    conf = tmp / "haproxy.cfg"
    conf.write_text(f"""global
  nbthread 1
  maxconn {haproxy_maxconn()}
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:{PORTS['haproxy']}
  bind 127.0.0.1:{TLS_PORTS['haproxy']} ssl crt {pem}
  bind 127.0.0.1:{H2_TLS_PORTS['haproxy']} ssl crt {pem} alpn h2,http/1.1
  bind 127.0.0.1:{H2C_PORTS['haproxy']} proto h2
  use_backend failover if {{ path_beg /fo/ }}
  use_backend faults if {{ path_beg /ff/ }}
  default_backend origins
backend origins
  balance roundrobin
  http-reuse always
  server o1 127.0.0.1:{ORIGIN_PORTS[0]}
  server o2 127.0.0.1:{ORIGIN_PORTS[1]}
backend failover
  http-reuse always
  http-request set-path %[path,regsub(^/fo/,/)]
  option redispatch
  retries 1
  server primary 127.0.0.1:{FAILOVER_PRIMARY} check inter 500 fall 1 rise 1
  server backup 127.0.0.1:{FAILOVER_BACKUP} backup
backend faults
  http-reuse always
  http-request set-path %[path,regsub(^/ff/,/)]
  timeout connect 2s
  timeout server 2s
  option redispatch
  retries 1
  retry-on conn-failure empty-response response-timeout
  server primary 127.0.0.1:{FAULT_PRIMARY} check inter 500 fall 1 rise 1
  server backup 127.0.0.1:{FAULT_BACKUP} backup
""")
    return conf


def write_haproxy_tcp(tmp):
    conf = tmp / "haproxy-tcp.cfg"
    conf.write_text(f"""global
  nbthread 1
  maxconn {haproxy_maxconn()}
defaults
  mode tcp
  timeout connect 5s
  timeout client 300s
  timeout server 300s
frontend fe
  bind 127.0.0.1:{PORTS['haproxy-tcp']}
  default_backend origins
backend origins
  balance roundrobin
  server o1 127.0.0.1:{ORIGIN_PORTS[0]}
  server o2 127.0.0.1:{ORIGIN_PORTS[1]}
""")
    return conf


def http_targets(targets):
    """The targets that speak HTTP (everything but the L4 floor)."""
    return {t: pids for t, pids in targets.items() if t not in L4_TARGETS}


# Per target: extra `upstream:` settings (`--upstream NAME=KEY:VALUE`), to A/B a setting.
UPSTREAM_SETTINGS = {}


def write_shardgate_apis(tmp):
    """The API definitions every shardgate target serves, written once before any starts:
    rewriting them while an earlier target loads would hand it a truncated file."""
    apis = tmp / "sg-apis"
    apis.mkdir(exist_ok=True)
    urls = ", ".join(f"'http://127.0.0.1:{p}'" for p in ORIGIN_PORTS)
    (apis / "bench.yaml").write_text(f"""openapi: 3.0.1
info: {{title: bench, version: '1'}}
x-wso2-basePath: /
x-wso2-disable-security: true
x-wso2-production-endpoints: {{urls: [{urls}], type: load_balance}}
paths:
  /*: {{get: {{}}}}
""")
    (apis / "failover.yaml").write_text(f"""openapi: 3.0.1
info: {{title: failover, version: '1'}}
x-wso2-basePath: /fo
x-wso2-disable-security: true
x-wso2-production-endpoints:
  urls: ['http://127.0.0.1:{FAILOVER_PRIMARY}', 'http://127.0.0.1:{FAILOVER_BACKUP}']
  type: failover
paths:
  /*: {{get: {{}}}}
""")
    (apis / "faults.yaml").write_text(f"""openapi: 3.0.1
info: {{title: faults, version: '1'}}
x-wso2-basePath: /ff
x-wso2-disable-security: true
x-wso2-production-endpoints:
  urls: ['http://127.0.0.1:{FAULT_PRIMARY}', 'http://127.0.0.1:{FAULT_BACKUP}']
  type: failover
  advanceEndpointConfig: {{timeoutInMillis: 2000}}
paths:
  /*: {{get: {{}}}}
""")
    (apis / "secured.yaml").write_text(f"""openapi: 3.0.1
info: {{title: secured, version: '1'}}
x-wso2-basePath: /sec
x-wso2-production-endpoints: {{urls: [{urls}], type: load_balance}}
paths:
  /*: {{get: {{}}}}
""")


def write_shardgate(tmp, cert, key, name="shardgate"):
    upstream_extra = "".join(f"  {k}: {v}\n" for k, v in UPSTREAM_SETTINGS.get(name, []))
    conf = tmp / f"{name}.yaml"
    conf.write_text(f"""jwt:
  issuers: [{{issuer: {JWT_ISSUER}, certificate: {ROOT / 'config/dev-only/jwt-dev-only.cert.pem'}}}]
listeners:
  http: ["127.0.0.1:{PORTS[name]}"]
  https: ["127.0.0.1:{TLS_PORTS[name]}"]
workers: 1
admin: null
apis: [sg-apis/]
tls:
  certificates: [{{certificate_chain: {cert}, private_key: {key}}}]
upstream:
  max_idle_per_endpoint: 1024
{upstream_extra}suspension: {{initial_ms: 500, max_ms: 2000}}
health_check: {{interval_ms: 500, timeout_ms: 300, unhealthy_threshold: 1, healthy_threshold: 1}}
""")
    return conf


# ---------------------------------------------------------------- load

def loadgen(url, duration, conns, out_json, rate=None, extra=(), svg=None, warmup="1s"):
    cmd = ["taskset", "-c", str(LOAD_CPU), str(ROOT / "target/release/loadgen"), "-t", "1",
           "-c", str(conns), "-d", f"{duration}s", "--warmup", warmup, "--timeout", "5s",
           "--no-progress", "-q", "--json", str(out_json)]
    if rate:
        cmd += ["--rate", str(int(rate))]
    if svg:
        cmd += ["--svg", str(svg)]
    cmd += list(extra) + [url]
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out_json.read_text())


WRK_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def wrk_seconds(text):
    """A wrk latency ("812.00us", "1.02ms", "2.00s") in seconds."""
    for unit in ("us", "ms", "s", "m"):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * WRK_UNITS[unit]
    raise ValueError(f"wrk latency {text!r}")


def wrk(url, duration, conns, extra=()):
    """A closed-loop run with wrk, its summary shaped like the loadgen JSON fields measure()
    reads. wrk has no open loop (its latencies are not corrected for coordinated omission),
    so open-loop figures always come from loadgen."""
    headers = []
    extra = list(extra)
    for i, arg in enumerate(extra):
        if arg == "-H":
            headers += ["-H", extra[i + 1]]
    # wrk does not verify certificates, which is what loadgen's -k asks for.
    cmd = ["taskset", "-c", str(LOAD_CPU), "wrk", "-t", "1", "-c", str(conns), "-d", f"{duration}s",
           "--latency", "--timeout", "5s"] + headers + [url]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True).stdout
    pct, completed, errors, rps, max_s = {}, 0, 0, 0.0, float("nan")
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("50%", "75%", "90%", "99%"):
            pct["p" + parts[0][:-1]] = wrk_seconds(parts[1])
        elif parts[:1] == ["Latency"] and len(parts) >= 4:
            max_s = wrk_seconds(parts[3])
        elif len(parts) > 2 and parts[1] == "requests" and parts[2] == "in":
            completed = int(parts[0])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            errors += int(parts[-1])
        elif line.strip().startswith("Socket errors:"):
            errors += sum(int(p.strip(",")) for p in parts[3::2])
        elif parts[:1] == ["Requests/sec:"]:
            rps = float(parts[1])
    if not completed:
        sys.exit(f"compare.py: wrk produced no result for {url}:\n{out}")
    return {
        "requests": {"completed": completed, "errors": errors, "statusErrors": 0},
        "summary": {"requestsPerSec": rps},
        "latencyPercentiles": {"p50": pct.get("p50", float("nan")), "p99": pct.get("p99", float("nan")),
                               "p99.9": float("nan"), "p100": max_s},
        "honesty": {"couldNotKeepUp": False},
    }


def measure(target, pids, url, duration, conns, out_json, rate=None, extra=(), svg=None):
    user_before, system_before = cpu_seconds(pids)
    box_before = box_busy_seconds()
    t0 = time.time()
    if DRIVER == "wrk" and rate is None:
        result = wrk(url, duration, conns, extra)
    else:
        result = loadgen(url, duration, conns, out_json, rate, extra, svg)
    elapsed = time.time() - t0
    user_after, system_after = cpu_seconds(pids)
    box = box_busy_seconds() - box_before
    user, system = user_after - user_before, system_after - system_before
    cpu = user + system
    requests = result["requests"]
    # The warmup is excluded from the loadgen figures but not from /proc: scale CPU by the
    # share of the run that was measured.
    measured_share = duration / max(elapsed, duration)
    completed = requests["completed"]
    pct = result["latencyPercentiles"]
    return {
        "rps": result["summary"]["requestsPerSec"],
        "completed": completed,
        "errors": requests["errors"] + requests["statusErrors"],
        "p50_us": pct["p50"] * 1e6, "p99_us": pct["p99"] * 1e6, "p999_us": pct["p99.9"] * 1e6,
        "max_us": pct["p100"] * 1e6,
        "cpu_us_per_req": cpu * measured_share * 1e6 / completed if completed else float("nan"),
        # Everything the machine did for the requests: proxy, origin and load generator. A
        # proxy can lower its own CPU by handing work to the others (splice holds the origin's
        # socket pages, so the origin writes into cold ones): this column shows it.
        "box_us_per_req": box * measured_share * 1e6 / completed if completed else float("nan"),
        "user_share": user / cpu if cpu else float("nan"),
        "keptUp": not result["honesty"]["couldNotKeepUp"],
    }


def median(values):
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------- scenarios

def plain(targets, args, tmp, results, scenario="plain", prefix="", open_loop=True):
    bodies = args.bodies if scenario == "plain" else [b for b in args.bodies if b >= 65536]
    for body in bodies:
        path = prefix + BODY_PATHS[body]
        closed = {t: [] for t in targets}
        for r in range(args.rounds):
            names = list(targets)
            order = names[r % len(names):] + names[:r % len(names)]
            for t in order:
                url = f"http://127.0.0.1:{PORTS[t]}{path}"
                m = measure(t, targets[t], url, args.duration, args.conns, tmp / f"c-{t}.json")
                closed[t].append(m)
                log(f"  closed {scenario} body={body} round={r + 1} {t:10} {m['rps']:9.0f} rps {m['cpu_us_per_req']:6.2f} us/req box {m['box_us_per_req']:6.1f} us/req errors {m['errors']}")
        if not open_loop:
            results.append((scenario, body, None, closed, None))
            continue
        rate = 0.5 * median([m["rps"] for m in closed["nginx"]])
        opened = {t: [] for t in targets}
        for r in range(args.rounds):
            names = list(targets)
            order = names[r % len(names):] + names[:r % len(names)]
            for t in order:
                url = f"http://127.0.0.1:{PORTS[t]}{path}"
                # The first round's latency spectrum and timeline, as a chart per target.
                svg = Path(args.charts) / f"latency-{body}B-{t}.svg" if args.charts and r == 0 else None
                m = measure(t, targets[t], url, args.duration, args.conns, tmp / f"o-{t}.json", rate=rate,
                            svg=svg)
                opened[t].append(m)
                log(f"  open   body={body} round={r + 1} {t:10} p99 {m['p99_us']:8.0f} us p99.9 {m['p999_us']:8.0f} us")
        results.append(("plain", body, rate, closed, opened))


def jwt(targets, args, tmp, results):
    """The cost of JWT security with a repeated token (the per-shard cache's case): the same
    small GET through an unsecured and a secured API of the same gateway, interleaved."""
    token = subprocess.run(
        [str(ROOT / "target/release/shardgate"), "token", "--key",
         str(ROOT / "config/dev-only/jwt-dev-only.key.pem"), "--issuer", JWT_ISSUER, "--ttl", "1h"],
        check=True, capture_output=True, text=True).stdout.strip()
    header = ("-H", f"Authorization: Bearer {token}")
    gateways = [t for t in targets if t not in ("nginx", "haproxy")]
    closed = {}
    for t in gateways:
        closed[f"{t} unsecured"], closed[f"{t} JWT"] = [], []
    for r in range(args.rounds):
        for t in gateways:
            cases = [("unsecured", "/b64"), ("JWT", "/sec/b64")]
            for case, path in (cases if r % 2 == 0 else cases[::-1]):
                url = f"http://127.0.0.1:{PORTS[t]}{path}"
                m = measure(t, targets[t], url, args.duration, args.conns, tmp / "j.json", extra=header)
                if m["errors"]:
                    sys.exit(f"compare.py: {case} requests to {t} failed (is the token accepted?)")
                closed[f"{t} {case}"].append(m)
                log(f"  jwt round={r + 1} {t:10} {case:9} {m['rps']:9.0f} rps {m['cpu_us_per_req']:6.2f} us/req")
    results.append(("jwt", 64, None, closed, None))


def https(targets, args, tmp, results):
    closed = {t: [] for t in targets}
    for r in range(args.rounds):
        names = list(targets)
        order = names[r % len(names):] + names[:r % len(names)]
        for t in order:
            url = f"https://localhost:{TLS_PORTS[t]}/b64"
            m = measure(t, targets[t], url, args.duration, args.conns, tmp / f"t-{t}.json", extra=("-k",))
            closed[t].append(m)
            log(f"  https round={r + 1} {t:10} {m['rps']:9.0f} rps {m['cpu_us_per_req']:6.2f} us/req")
    results.append(("https", 64, None, closed, None))


def h2load(url, duration, conns, streams, log_file):
    """One h2load run: (completed, failed, p99 seconds) from its per-request log."""
    cmd = ["taskset", "-c", str(LOAD_CPU), "h2load", "-t", "1", "-c", str(conns), "-m", str(streams),
           "-D", str(duration), "--warm-up-time", "1", "--log-file", str(log_file), url]
    Path(log_file).unlink(missing_ok=True)
    ran = subprocess.run(cmd, check=False, capture_output=True, text=True)
    out = ran.stdout + ran.stderr
    completed = failed = 0
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == ["requests:"]:
            # requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
            completed = int(parts[7])
            failed = int(parts[9]) + int(parts[11])
    # The log: start time, status, request duration (us), one line per request.
    durations = []
    for line in (Path(log_file).read_text() if Path(log_file).exists() else "").splitlines():
        fields = line.split()
        if len(fields) >= 3:
            durations.append(int(fields[2]))
    durations.sort()
    p99 = durations[int(0.99 * (len(durations) - 1))] / 1e6 if durations else float("nan")
    return completed, failed, p99, out


def h2(targets, args, tmp, results):
    """h2load against each HTTP/2 listener; CPU of the proxy per completed request."""
    endpoints = {
        "nginx h2": ("nginx", f"https://127.0.0.1:{H2_TLS_PORTS['nginx']}/b64"),
        "haproxy h2": ("haproxy", f"https://127.0.0.1:{H2_TLS_PORTS['haproxy']}/b64"),
        "haproxy h2c": ("haproxy", f"http://127.0.0.1:{H2C_PORTS['haproxy']}/b64"),
    }
    for name in targets:
        if name not in ("nginx", "haproxy"):
            endpoints[f"{name} h2"] = (name, f"https://127.0.0.1:{TLS_PORTS[name]}/b64")
            endpoints[f"{name} h2c"] = (name, f"http://127.0.0.1:{PORTS[name]}/b64")
    for streams in (1, 100):
        conns = args.h2_conns
        runs = {e: [] for e in endpoints}
        for r in range(args.rounds):
            order = list(endpoints)
            if r % 2:
                order.reverse()
            for e in order:
                target, url = endpoints[e]
                pids = targets[target]
                user0, sys0 = cpu_seconds(pids)
                t0 = time.time()
                completed, failed, p99, out = h2load(url, args.duration, conns, streams, tmp / "h2load.log")
                elapsed = time.time() - t0
                user1, sys1 = cpu_seconds(pids)
                cpu = (user1 - user0) + (sys1 - sys0)
                # The warm-up is in /proc's figure but not in h2load's count: scale by the
                # measured share of the run.
                share = args.duration / max(elapsed, args.duration)
                if not completed:
                    log(f"  h2 {e}: no requests completed:\n{out}")
                m = {"rps": completed / args.duration, "completed": completed, "errors": failed,
                     "p99_us": p99 * 1e6,
                     "cpu_us_per_req": cpu * share * 1e6 / completed if completed else float("nan")}
                runs[e].append(m)
                log(f"  h2 streams={streams} round={r + 1} {e:16} {m['rps']:9.0f} rps "
                    f"{m['cpu_us_per_req']:6.2f} us/req p99 {m['p99_us']:.0f} us")
        results.append(("h2", streams, conns, runs, None))


def strace_counts(path):
    """{syscall: calls} from the summary table that `strace -c -o path` writes."""
    counts = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        # "% time  seconds  usecs/call  calls  [errors]  syscall"; header, rules and total skipped.
        if len(parts) in (5, 6) and parts[-1] != "total" and parts[3].isdigit():
            counts[parts[-1]] = int(parts[3])
    return counts


def syscalls(targets, args, tmp, results):
    """System calls per request on the 64 B closed loop, counted by strace attached to every
    process of the target for one measurement (no warmup: every request counted is traced)."""
    if not shutil.which("strace"):
        sys.exit("compare.py: the syscalls scenario needs strace (apt-get install strace)")
    counted = {}
    for t, pids in targets.items():
        trace = tmp / f"strace-{t}.txt"
        attach = [arg for pid in pids for arg in ("-p", str(pid))]
        tracer = subprocess.Popen(["strace", "-c", "-f", "-q", "-o", str(trace)] + attach,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached to every thread before the first request
        result = loadgen(f"http://127.0.0.1:{PORTS[t]}/b64", args.duration, args.conns,
                         tmp / "s.json", warmup="0s")
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
        completed = result["requests"]["completed"]
        counts = strace_counts(trace)
        counted[t] = {"completed": completed, "counts": counts}
        log(f"  syscalls {t:10} {sum(counts.values()) / max(completed, 1):6.2f} per request")
    results.append(("syscalls", 64, None, counted, None))


def failover(targets, args, tmp, results, rate):
    """Per target: open loop through its failover route; the primary origin is killed after
    a third of the run and restarted after two thirds."""
    outcome = {}
    for t in targets:
        primary_log = tmp / f"primary-{t}.log"
        primary_conf = write_origin(tmp, [FAILOVER_PRIMARY], f"primary-{t}", access_log=primary_log)
        primary = start("primary", ["nginx", "-c", str(primary_conf)], LOAD_CPU)
        wait_port(FAILOVER_PRIMARY)
        time.sleep(1.5)  # health checks see it up
        duration = max(6, args.duration * 2)
        url = f"http://127.0.0.1:{PORTS[t]}/fo/b64"
        out = tmp / f"f-{t}.json"
        cmd = ["taskset", "-c", str(LOAD_CPU), str(ROOT / "target/release/loadgen"), "-t", "1",
               "-c", str(args.conns), "-d", f"{duration}s", "--timeout", "5s", "--rate", str(int(rate)),
               "--no-progress", "-q", "--json", str(out), url]
        gen = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(duration / 3)
        os.killpg(primary.pid, signal.SIGKILL)
        primary.wait()
        STARTED.remove(primary)
        time.sleep(duration / 3)
        restarted = time.time()
        primary = start("primary", ["nginx", "-c", str(primary_conf)], LOAD_CPU)
        gen.wait()
        result = json.loads(out.read_text())
        back = None
        try:
            times = [float(line) for line in primary_log.read_text().split() if float(line) > restarted]
            back = min(times) - restarted if times else None
        except (OSError, ValueError):
            pass
        os.killpg(primary.pid, signal.SIGTERM)
        primary.wait()
        STARTED.remove(primary)
        primary_log.unlink(missing_ok=True)
        req = result["requests"]
        outcome[t] = {
            "requests": req["completed"] + req["errors"],
            "errors": req["errors"] + req["statusErrors"],
            "status": result["statusCodeDistribution"],
            "p99_us": result["latencyPercentiles"]["p99"] * 1e6,
            "max_us": result["latencyPercentiles"]["p100"] * 1e6,
            "failback_s": back,
        }
        log(f"  failover {t:10} errors {outcome[t]['errors']} {result['errors']} max {outcome[t]['max_us']:.0f} us failback {back}")
    results.append(("failover", 64, rate, outcome, None))


SLOW_ORIGIN = """
import http.server, socketserver, sys, time
class Slow(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        time.sleep(3)
        self.send_response(200)
        self.send_header("Content-Length", "64")
        self.end_headers()
        self.wfile.write(b"s" * 64)
    def log_message(self, *a):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
Server(("127.0.0.1", int(sys.argv[1])), Slow).serve_forever()
"""


def iptables_usable():
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        return False
    rule = ["-p", "tcp", "--dport", "1", "-j", "DROP"]
    ok = subprocess.run(["iptables", "-I", "INPUT", *rule], stderr=subprocess.DEVNULL).returncode == 0
    if ok:
        subprocess.run(["iptables", "-D", "INPUT", *rule], stderr=subprocess.DEVNULL)
    return ok


def first_after(log_path, moment):
    try:
        times = [float(x) for x in log_path.read_text().split() if float(x) > moment]
        return min(times) - moment if times else None
    except (OSError, ValueError):
        return None


def faults(targets, args, tmp, results, rate=2000):
    """Per fault and target: open loop through the /ff/ failover route; the fault is applied
    to the primary for the middle third of the run."""
    modes = args.fault_modes.split(",")
    if "blackhole" in modes and not iptables_usable():
        log("  faults: blackhole skipped (needs root and a working iptables)")
        modes.remove("blackhole")
    backup_log = tmp / "fault-backup.log"
    backup = start("fault-backup", ["nginx", "-c", str(write_origin(tmp, [FAULT_BACKUP], "fault-backup",
                                                                 access_log=backup_log))], LOAD_CPU)
    wait_port(FAULT_BACKUP)
    outcome = {}
    drop = ["INPUT", "-p", "tcp", "--dport", str(FAULT_PRIMARY), "-j", "DROP"]
    for mode in modes:
        outcome[mode] = {}
        for t in targets:
            primary_log = tmp / f"fault-primary-{t}.log"
            primary_conf = write_origin(tmp, [FAULT_PRIMARY], f"fault-primary-{t}", access_log=primary_log)
            primary = start("fault-primary", ["nginx", "-c", str(primary_conf)], LOAD_CPU)
            wait_port(FAULT_PRIMARY)
            time.sleep(1.5)  # every proxy sees it healthy and pools connections to it
            duration = max(9, args.duration * 3)
            out = tmp / f"ff-{mode}-{t}.json"
            cmd = ["taskset", "-c", str(LOAD_CPU), str(ROOT / "target/release/loadgen"), "-t", "1",
                   "-c", str(args.conns), "-d", f"{duration}s", "--timeout", "10s", "--rate", str(rate),
                   "--no-progress", "-q", "--json", str(out), f"http://127.0.0.1:{PORTS[t]}/ff/b64"]
            gen = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(duration / 3)
            faulted = time.time()
            slow = None
            if mode == "kill" or mode == "slow":
                os.killpg(primary.pid, signal.SIGKILL)
                primary.wait()
                STARTED.remove(primary)
                if mode == "slow":
                    slow = start("slow-primary", [sys.executable, "-c", SLOW_ORIGIN, str(FAULT_PRIMARY)], LOAD_CPU)
            elif mode == "freeze":
                os.killpg(primary.pid, signal.SIGSTOP)
            elif mode == "blackhole":
                subprocess.run(["iptables", "-I", *drop], check=True)
            time.sleep(duration / 3)
            restored = time.time()
            if slow is not None:
                os.killpg(slow.pid, signal.SIGKILL)
                slow.wait()
                STARTED.remove(slow)
            if mode in ("kill", "slow"):
                primary = start("fault-primary", ["nginx", "-c", str(primary_conf)], LOAD_CPU)
            elif mode == "freeze":
                os.killpg(primary.pid, signal.SIGCONT)
            elif mode == "blackhole":
                subprocess.run(["iptables", "-D", *drop], check=True)
            gen.wait()
            result = json.loads(out.read_text())
            moved = first_after(backup_log, faulted)
            back = first_after(primary_log, restored)
            os.killpg(primary.pid, signal.SIGTERM)
            primary.wait()
            STARTED.remove(primary)
            primary_log.unlink(missing_ok=True)
            req = result["requests"]
            outcome[mode][t] = {
                "requests": req["completed"] + req["errors"],
                "errors": req["errors"] + req["statusErrors"],
                "p99_us": result["latencyPercentiles"]["p99"] * 1e6,
                "max_us": result["latencyPercentiles"]["p100"] * 1e6,
                "moved_s": moved,
                "back_s": back,
            }
            worst = max(result.get("timeline", []), key=lambda row: row.get("max", 0), default=None)
            log(f"  faults {mode:9} {t:10} errors {outcome[mode][t]['errors']} "
                f"max {outcome[mode][t]['max_us'] / 1000:.0f} ms moved {moved} back {back}; worst second {worst}")
            backup_log.write_text("")
            subprocess.run(["nginx", "-c", str(tmp / "fault-backup.conf"), "-s", "reopen"],
                           stderr=subprocess.DEVNULL)
    os.killpg(backup.pid, signal.SIGTERM)
    backup.wait()
    STARTED.remove(backup)
    results.append(("faults", 64, rate, outcome, None))


def idle(targets, args, tmp, results, count):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raise_fd_limit()
    count = min(count, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 100)
    outcome = {}
    for t in targets:
        pids = targets[t]
        before = rss_kb(pids)
        sockets = []
        # haproxy's maxconn bounds it where the open-file limit is low; the table shows the
        # count each target held.
        held = min(count, haproxy_maxconn() - 50) if t == "haproxy" else count
        for _ in range(held):
            s = socket.create_connection(("127.0.0.1", PORTS[t]))
            sockets.append(s)
        # One request on each, one connection at a time, so each holds whatever a served
        # keep-alive connection holds between requests. (All at once would measure the peak
        # of thousands of requests in flight instead, which allocators keep resident.)
        for s in sockets:
            s.settimeout(5)
            s.sendall(b"GET /b64 HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while b"x" * 64 not in got:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        time.sleep(2)
        after = rss_kb(pids)
        for s in sockets:
            s.close()
        outcome[t] = {"connections": held, "rss_before_kb": before, "rss_after_kb": after,
                      "bytes_per_conn": (after - before) * 1024 / held}
        log(f"  idle {t:10} {outcome[t]['bytes_per_conn']:8.0f} B/connection")
        time.sleep(1)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    results.append(("idle", None, None, outcome, None))


# ---------------------------------------------------------------- report

def report(results, targets, machine):
    lines = []
    add = lines.append
    add(f"machine: {machine}")
    for scenario, body, rate, a, b in results:
        if scenario in ("plain", "https", "chunked", "trickle"):
            title = {"plain": f"plain body={body} B",
                     "chunked": f"chunked body={body} B (the origin's 32 KiB chunks, closed loop)",
                     "trickle": f"trickle body={body} B (the origin's 2 KiB writes, closed loop)",
                     "https": "https body=64 B (TLS termination)"}[scenario]
            add(f"\n### {title}")
            add("| target | rps (median) | proxy CPU us/req | user share | CPU vs nginx | CPU vs L4 floor | box CPU us/req | box vs nginx | rps vs nginx | errors |"
                + (" p50 us | p99 us | p99.9 us |" if b else ""))
            add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if b else ""))
            ng_box = median([m.get("box_us_per_req", float("nan")) for m in a["nginx"]])
            ng_cpu = median([m["cpu_us_per_req"] for m in a["nginx"]])
            ng_rps = median([m["rps"] for m in a["nginx"]])
            floor = median([m["cpu_us_per_req"] for m in a["haproxy-tcp"]]) if "haproxy-tcp" in a else float("nan")
            for t in [t for t in targets if t in a]:
                cpu = median([m["cpu_us_per_req"] for m in a[t]])
                rps = median([m["rps"] for m in a[t]])
                errors = sum(m["errors"] for m in a[t])
                user_share = median([m["user_share"] for m in a[t]])
                # The floor forwards TLS bytes without terminating them: no HTTPS figure.
                vs_floor = "–" if floor != floor else f"{cpu / floor:.2f}"
                box = median([m.get("box_us_per_req", float("nan")) for m in a[t]])
                row = (f"| {t} | {rps:.0f} | {cpu:.2f} | {user_share:.0%} | {cpu / ng_cpu:.2f} | "
                       f"{vs_floor} | {box:.1f} | {box / ng_box:.2f} | {rps / ng_rps:.2f} | {errors} |")
                if b:
                    p = [median([m[k] for m in b[t]]) for k in ("p50_us", "p99_us", "p999_us")]
                    row += f" {p[0]:.0f} | {p[1]:.0f} | {p[2]:.0f} |"
                lines.append(row)
            if b:
                add(f"open loop at {rate:.0f} req/s (half of nginx's closed-loop maximum), latency from the intended send time")
        elif scenario == "jwt":
            add("\n### JWT-secured vs unsecured small GET (same gateway, repeated token)")
            add("| target | rps (median) | proxy CPU us/req | CPU vs unsecured |")
            add("|---|---:|---:|---:|")
            for name in a:
                base = median([m["cpu_us_per_req"] for m in a[name.rsplit(" ", 1)[0] + " unsecured"]])
                cpu = median([m["cpu_us_per_req"] for m in a[name]])
                rps = median([m["rps"] for m in a[name]])
                add(f"| {name} | {rps:.0f} | {cpu:.2f} | {cpu / base:.3f} |")
        elif scenario == "failover":
            add(f"\n### failover (open loop {rate:.0f} req/s, primary killed at 1/3, restarted at 2/3)")
            add("| target | requests | errors | p99 us | max us | back on primary after restart |")
            add("|---|---:|---:|---:|---:|---:|")
            for t in [t for t in targets if t in a]:
                o = a[t]
                back = f"{o['failback_s']:.2f} s" if o["failback_s"] is not None else "never"
                add(f"| {t} | {o['requests']} | {o['errors']} | {o['p99_us']:.0f} | {o['max_us']:.0f} | {back} |")
        elif scenario == "h2":
            streams, conns, runs = body, rate, a
            add(f"\n### HTTP/2 (h2load, {conns} connections, {streams} stream(s) per connection, body 64 B)")
            add("| target | rps (median) | proxy CPU us/req | CPU vs nginx h2 | p99 us | errors |")
            add("|---|---:|---:|---:|---:|---:|")
            ng = median([m["cpu_us_per_req"] for m in runs["nginx h2"]]) or float("nan")
            for name, ms in runs.items():
                cpu = median([m["cpu_us_per_req"] for m in ms])
                add(f"| {name} | {median([m['rps'] for m in ms]):.0f} | {cpu:.2f} | {cpu / ng:.2f} | "
                    f"{median([m['p99_us'] for m in ms]):.0f} | {sum(m['errors'] for m in ms)} |")
        elif scenario == "faults":
            add(f"\n### faults on the primary (open loop {rate:.0f} req/s, fault for the middle third, 2 s timeouts)")
            add("| fault | target | requests | errors | p99 ms | max ms | backup serves after | primary again after |")
            add("|---|---|---:|---:|---:|---:|---:|---:|")
            secs = lambda v: f"{v:.2f} s" if v is not None else "never"
            for mode, per_target in a.items():
                for t in [t for t in targets if t in per_target]:
                    o = per_target[t]
                    add(f"| {mode} | {t} | {o['requests']} | {o['errors']} | {o['p99_us'] / 1000:.1f} | "
                        f"{o['max_us'] / 1000:.0f} | {secs(o['moved_s'])} | {secs(o['back_s'])} |")
        elif scenario == "syscalls":
            add("\n### system calls per request (64 B closed loop under strace -c -f; counts only)")
            add("| target | requests | syscalls per request | largest (per request) |")
            add("|---|---:|---:|---|")
            for t in targets:
                o = a[t]
                per = {name: calls / max(o["completed"], 1) for name, calls in o["counts"].items()}
                top = sorted(per.items(), key=lambda kv: -kv[1])[:4]
                add(f"| {t} | {o['completed']} | {sum(per.values()):.2f} | "
                    + ", ".join(f"{name} {v:.2f}" for name, v in top) + " |")
        elif scenario == "idle":
            add("\n### idle keep-alive client connections")
            add("| target | connections | RSS before kB | RSS after kB | bytes per connection |")
            add("|---|---:|---:|---:|---:|")
            for t in [t for t in targets if t in a]:
                o = a[t]
                add(f"| {t} | {o['connections']} | {o['rss_before_kb']} | {o['rss_after_kb']} | {o['bytes_per_conn']:.0f} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--duration", type=int, default=4, help="seconds per measurement")
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--bodies", default="64,4096,65536,1048576")
    p.add_argument("--scenarios", default="plain,https,jwt,failover,h2,idle")
    p.add_argument("--idle-connections", default="10000,50000",
                   help="idle scenario: connection counts, each measured on its own")
    p.add_argument("--fault-modes", default="kill,freeze,slow,blackhole",
                   help="the faults scenario's faults, in order")
    p.add_argument("--h2-conns", type=int, default=16, help="h2load connections (h2 scenario)")
    p.add_argument("--out", default=str(ROOT / "bench/out"))
    p.add_argument("--charts", metavar="DIR",
                   help="write loadgen's SVG latency chart of each open-loop run (first round) here")
    p.add_argument("--driver", choices=("loadgen", "wrk"), default="loadgen",
                   help="closed-loop client (open loop is always loadgen: wrk cannot correct for "
                        "coordinated omission)")
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--no-install", action="store_true")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=BINARY",
                   help="another shardgate build as an extra target (A/B of a change)")
    p.add_argument("--upstream", action="append", default=[], metavar="NAME=KEY:VALUE",
                   help="an `upstream:` setting of one shardgate target (e.g. "
                        "watch=reuse_check:watch, with --variant watch=...): A/B of a setting")
    args = p.parse_args()
    global DRIVER
    DRIVER = args.driver
    variants = {}
    for i, spec in enumerate(args.variant):
        name, _, binary = spec.partition("=")
        if not binary or name in PORTS:
            sys.exit(f"compare.py: --variant wants a new NAME=BINARY, got {spec!r}")
        variants[name] = Path(binary).resolve()
        PORTS[name], TLS_PORTS[name] = 18093 + i, 18193 + i
    for spec in args.upstream:
        name, _, setting = spec.partition("=")
        key, _, value = setting.partition(":")
        if not value or (name != "shardgate" and name not in variants):
            sys.exit(f"compare.py: --upstream wants NAME=KEY:VALUE for a shardgate target, "
                     f"got {spec!r}")
        UPSTREAM_SETTINGS.setdefault(name, []).append((key, value))
    args.bodies = [int(b) for b in args.bodies.split(",")]
    args.idle_connections = [int(c) for c in args.idle_connections.split(",")]
    scenarios = args.scenarios.split(",")
    ensure_tools(not args.no_install, (["wrk"] if args.driver == "wrk" else [])
                 + (["strace"] if "syscalls" in scenarios else [])
                 + (["h2load"] if "h2" in scenarios else []))
    if not args.no_build:
        run(["cargo", "build", "--release", "-p", "shardgate", "-p", "loadgen"], cwd=ROOT,
            stdout=subprocess.DEVNULL)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.charts:
        Path(args.charts).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="shardgate-bench-"))
    # nginx workers drop root privileges: they must be able to read the origin files.
    tmp.chmod(0o755)
    try:
        key, cert = tmp / "key.pem", tmp / "cert.pem"
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        pem = tmp / "haproxy.pem"
        pem.write_bytes(cert.read_bytes() + key.read_bytes())
        origin = start("origin", ["nginx", "-c", str(write_origin(tmp, ORIGIN_PORTS, "origin"))], LOAD_CPU)
        backup = start("backup", ["nginx", "-c", str(write_origin(tmp, [FAILOVER_BACKUP], "backup"))], LOAD_CPU)
        for port in ORIGIN_PORTS + (FAILOVER_BACKUP,):
            wait_port(port)
        procs = {
            "nginx": start("nginx", ["nginx", "-c", str(write_nginx_proxy(tmp, cert, key))], PROXY_CPU),
            "haproxy": start("haproxy", ["haproxy", "-f", str(write_haproxy(tmp, pem))], PROXY_CPU),
            "haproxy-tcp": start("haproxy-tcp", ["haproxy", "-f", str(write_haproxy_tcp(tmp))], PROXY_CPU),
        }
        binaries = {"shardgate": ROOT / "target/release/shardgate"} | variants
        write_shardgate_apis(tmp)
        for name, binary in binaries.items():
            procs[name] = start(name, [str(binary), "run", "--config",
                                       str(write_shardgate(tmp, cert, key, name)), "--log-level", "error"],
                                PROXY_CPU, stderr=open(tmp / f"{name}.err", "w"))
        for t, port in PORTS.items():
            if t in procs:
                wait_port(port, stderr_file=tmp / f"{t}.err")
        time.sleep(0.5)
        targets = {t: group_pids(proc) for t, proc in procs.items()}
        log(f"# pids: {targets}")
        machine = (f"{os.cpu_count()} CPUs, {os.uname().release}, closed loop driven by {args.driver}, "
                   f"loadavg at start {os.getloadavg()[0]:.2f}")
        results = []
        started = time.time()
        if "plain" in scenarios:
            plain(targets, args, tmp, results)
        if "chunked" in scenarios:
            plain(targets, args, tmp, results, scenario="chunked", prefix="/chunked", open_loop=False)
        if "trickle" in scenarios:
            plain(targets, args, tmp, results, scenario="trickle", prefix="/trickle", open_loop=False)
        if "https" in scenarios:
            https(http_targets(targets), args, tmp, results)
        if "jwt" in scenarios:
            jwt(http_targets(targets), args, tmp, results)
        if "failover" in scenarios:
            rate = 0.5 * median([m["rps"] for m in results[0][3]["nginx"]]) if results else 5000
            failover(http_targets(targets), args, tmp, results, min(rate, 20000))
        if "faults" in scenarios:
            faults(http_targets(targets), args, tmp, results)
        if "h2" in scenarios:
            h2(http_targets(targets), args, tmp, results)
        if "syscalls" in scenarios:
            syscalls(targets, args, tmp, results)
        if "idle" in scenarios:
            for count in args.idle_connections:
                idle(http_targets(targets), args, tmp, results, count)
        text = report(results, list(targets), machine + f", loadavg at end {os.getloadavg()[0]:.2f}, "
                      f"{time.time() - started:.0f} s")
        print(text)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        (out_dir / f"compare-{stamp}.md").write_text(text + "\n")
        log(f"# written to {out_dir}/compare-{stamp}.md")
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
