#!/usr/bin/env python3
"""Scripted HTTP/2 clients for tests/http2.rs (python `h2` and `hpack` from PyPI).

    h2client.py requests ADDR SPEC_JSON [--tls]   many requests multiplexed on one connection
    h2client.py flood ADDR KIND COUNT [PATH]      ping | settings | priority | reset |
                                                  continuation | empty
    h2client.py zero-window ADDR PATH             window 0, then wait for the stream's fate
    h2client.py slow ADDR PATH                    one request; reports GOAWAY and the response

Each prints one JSON object on stdout. Bodies are the deterministic pattern `body(n)` so that
both sides can check them by length and digest. Every wait is bounded (socket timeouts).
"""

import hashlib
import json
import socket
import ssl
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
from hpack import Encoder

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
WAIT = 20.0


def body(n):
    pattern = b"0123456789abcdefghijklmnopqrstuvwxyz"
    return (pattern * (n // len(pattern) + 1))[:n]


def connect(addr, tls):
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=WAIT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
        assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
    return sock


def run_requests(addr, spec, tls):
    """Sends every request of `spec` at once on one connection, then reads all answers."""
    sock = connect(addr, tls)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    streams = {}
    pending = {}
    for req in spec:
        sid = conn.get_next_available_stream_id()
        headers = [
            (":method", req.get("method", "GET")),
            (":scheme", "https" if tls else "http"),
            (":path", req["path"]),
            (":authority", req.get("authority", "localhost")),
        ] + [tuple(h) for h in req.get("headers", [])]
        payload = body(req["body_len"]) if "body_len" in req else req.get("body", "").encode()
        trailers = [tuple(t) for t in req.get("trailers", [])]
        no_body = not payload and not trailers
        conn.send_headers(sid, headers, end_stream=no_body)
        streams[sid] = {"status": None, "headers": [], "body": b"", "trailers": [], "reset": None}
        if not no_body:
            pending[sid] = [payload, trailers]
    sock.sendall(conn.data_to_send())
    deadline = time.time() + WAIT
    done = set()
    while len(done) < len(streams) and time.time() < deadline:
        # Send what the windows allow.
        for sid, (payload, trailers) in list(pending.items()):
            while payload:
                window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if window <= 0:
                    break
                chunk, payload = payload[:window], payload[window:]
                conn.send_data(sid, chunk, end_stream=not payload and not trailers)
            pending[sid][0] = payload
            if not payload:
                if trailers:
                    conn.send_headers(sid, trailers, end_stream=True)
                del pending[sid]
        sock.sendall(conn.data_to_send())
        data = sock.recv(65536)
        if not data:
            break
        for event in conn.receive_data(data):
            s = streams.get(getattr(event, "stream_id", None))
            if isinstance(event, h2.events.ResponseReceived):
                hdrs = [(k.decode(), v.decode()) for k, v in event.headers]
                s["status"] = int(dict(hdrs)[":status"])
                s["headers"] = [h for h in hdrs if not h[0].startswith(":")]
            elif isinstance(event, h2.events.DataReceived):
                s["body"] += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.TrailersReceived):
                s["trailers"] = [(k.decode(), v.decode()) for k, v in event.headers]
            elif isinstance(event, h2.events.StreamEnded):
                done.add(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                s["reset"] = int(event.error_code)
                done.add(event.stream_id)
                pending.pop(event.stream_id, None)
        sock.sendall(conn.data_to_send())
    out = []
    for sid in sorted(streams):
        s = streams[sid]
        out.append({
            "status": s["status"], "headers": s["headers"], "trailers": s["trailers"],
            "body_len": len(s["body"]), "body_sha256": hashlib.sha256(s["body"]).hexdigest(),
            "body": s["body"][:2000].decode("latin-1"), "reset": s["reset"], "done": sid in done,
        })
    sock.close()
    return {"responses": out, "pattern_sha256": {str(r.get("body_len", 0)): hashlib.sha256(body(r.get("body_len", 0))).hexdigest() for r in spec}}


def frame(kind, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", sid) + payload


def read_frames(sock, until, answer_pings=False):
    """Reads frames until `until(kind, flags, sid, payload)` is true, EOF or the deadline;
    answers PINGs when asked to (a graceful GOAWAY waits for one round trip)."""
    buf = b""
    frames = []
    deadline = time.time() + WAIT
    closed = False
    while time.time() < deadline:
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            kind, flags = buf[3], buf[4]
            sid = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            payload = buf[9:9 + length]
            buf = buf[9 + length:]
            frames.append((kind, flags, sid, payload))
            if answer_pings and kind == PING and not flags & ACK:
                sock.sendall(frame(PING, ACK, 0, payload))
            if until(kind, flags, sid, payload):
                return frames, closed
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, socket.timeout, BrokenPipeError):
            closed = True
            break
        if not data:
            closed = True
            break
        buf += data
    return frames, closed


def get_block(encoder, path, authority="localhost"):
    return encoder.encode([(":method", "GET"), (":scheme", "http"), (":path", path), (":authority", authority)])


def flood(addr, kind, count, path):
    sock = connect(addr, False)
    enc = Encoder()
    out = [PREFACE, frame(SETTINGS, 0, 0), frame(SETTINGS, ACK, 0)]
    if kind == "ping":
        out += [frame(PING, 0, 0, struct.pack(">Q", i)) for i in range(count)]
    elif kind == "settings":
        out += [frame(SETTINGS, 0, 0) for _ in range(count)]
    elif kind == "priority":
        out += [frame(PRIORITY, 0, 1 + 2 * i, b"\x00\x00\x00\x00\x10") for i in range(count)]
    elif kind == "reset":
        # CVE-2023-44487: open a stream and reset it at once, over and over.
        for i in range(count):
            sid = 1 + 2 * i
            out.append(frame(HEADERS, END_STREAM | END_HEADERS, sid, get_block(enc, path)))
            out.append(frame(RST_STREAM, 0, sid, struct.pack(">I", 8)))
    elif kind == "continuation":
        # CVE-2024-27316 class: a header block that never ends.
        out.append(frame(HEADERS, END_STREAM, 1, get_block(enc, path)))
        filler = enc.encode([("x-filler", "a" * 100)])
        out += [frame(CONTINUATION, 0, 1, filler) for _ in range(count)]
    elif kind == "empty":
        out.append(frame(HEADERS, END_HEADERS, 1, get_block(enc, path)))
        out += [frame(DATA, 0, 1) for _ in range(count)]
    else:
        raise SystemExit(f"unknown flood {kind}")
    sent_all = True
    try:
        sock.sendall(b"".join(out))
    except (BrokenPipeError, ConnectionResetError):
        sent_all = False
    frames, closed = read_frames(sock, lambda k, f, s, p: k == GOAWAY)
    goaway = [f for f in frames if f[0] == GOAWAY]
    code = int.from_bytes(goaway[0][3][4:8], "big") if goaway else None
    # After GOAWAY the connection must end.
    if goaway and not closed:
        _, closed = read_frames(sock, lambda *a: False)
    return {
        "goaway": code,
        "closed": closed,
        "sent_all": sent_all,
        "ping_acks": sum(1 for f in frames if f[0] == PING and f[1] & ACK),
        "settings_acks": sum(1 for f in frames if f[0] == SETTINGS and f[1] & ACK),
        "responses": sum(1 for f in frames if f[0] == HEADERS),
        "resets": sum(1 for f in frames if f[0] == RST_STREAM),
    }


def concurrent(addr, path, count):
    """Opens `count` streams at once; counts answers and refusals (RST_STREAM REFUSED_STREAM)."""
    sock = connect(addr, False)
    enc = Encoder()
    out = [PREFACE, frame(SETTINGS, 0, 0)]
    out += [frame(HEADERS, END_STREAM | END_HEADERS, 1 + 2 * i, get_block(enc, path)) for i in range(count)]
    sock.sendall(b"".join(out))
    seen = {}

    def outcome(kind, flags, sid, payload):
        if sid and kind == RST_STREAM:
            seen[sid] = "refused" if int.from_bytes(payload[:4], "big") == 7 else "reset"
        elif sid and flags & END_STREAM and kind in (DATA, HEADERS):
            seen.setdefault(sid, "answered")
        return len(seen) == count

    frames, _ = read_frames(sock, outcome)
    settings = [f for f in frames if f[0] == SETTINGS and not f[1] & ACK]
    advertised = {}
    if settings:
        p = settings[0][3]
        advertised = {str(int.from_bytes(p[i:i + 2], "big")): int.from_bytes(p[i + 2:i + 6], "big") for i in range(0, len(p), 6)}
    values = list(seen.values())
    return {"answered": values.count("answered"), "refused": values.count("refused"), "settings": advertised}


def zero_window(addr, path):
    sock = connect(addr, False)
    enc = Encoder()
    # SETTINGS_INITIAL_WINDOW_SIZE (4) = 0: the server may send no DATA on any stream.
    sock.sendall(PREFACE + frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 0)) + frame(HEADERS, END_STREAM | END_HEADERS, 1, get_block(enc, path)))
    frames, closed = read_frames(sock, lambda k, f, s, p: k in (RST_STREAM, GOAWAY) and s in (0, 1))
    reset = [int.from_bytes(f[3][:4], "big") for f in frames if f[0] == RST_STREAM and f[2] == 1]
    headers = any(f[0] == HEADERS and f[2] == 1 for f in frames)
    data = sum(len(f[3]) for f in frames if f[0] == DATA)
    ping_ack = False
    if not closed:
        sock.sendall(frame(PING, 0, 0, b"stillok!"))
        more, closed = read_frames(sock, lambda k, f, s, p: k == PING and f & ACK)
        ping_ack = any(f[0] == PING and f[1] & ACK and f[3] == b"stillok!" for f in more)
    return {"headers": headers, "reset": reset[0] if reset else None, "data": data, "ping_ack": ping_ack}


def slow(addr, path):
    """One request; reports whether GOAWAY came before the response ended."""
    sock = connect(addr, False)
    enc = Encoder()
    sock.sendall(PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_STREAM | END_HEADERS, 1, get_block(enc, path)))
    print(json.dumps({"sent": True}), flush=True)
    frames, closed = read_frames(sock, lambda k, f, s, p: s == 1 and f & END_STREAM and k in (DATA, HEADERS), True)
    if not closed:
        more, closed = read_frames(sock, lambda *a: False, True)
        frames += more
    order = [("goaway" if f[0] == GOAWAY else "end" if f[2] == 1 and f[1] & END_STREAM else "other") for f in frames]
    goaway = [f for f in frames if f[0] == GOAWAY]
    data = b"".join(f[3] for f in frames if f[0] == DATA and f[2] == 1)
    return {
        "goaway_before_end": "goaway" in order and order.index("goaway") < order.index("end") if "end" in order else False,
        # A graceful shutdown may announce the highest id first and the real last one after.
        "last_stream_id": int.from_bytes(goaway[-1][3][:4], "big") & 0x7FFFFFFF if goaway else None,
        "ended": "end" in order,
        "body": data.decode("latin-1"),
        "closed_after": closed,
    }


def two(addr, path):
    """Two requests on one connection; the second after a line on stdin (the test reloads
    the gateway in between). Reports both statuses and whether GOAWAY followed."""
    sock = connect(addr, False)
    enc = Encoder()
    sock.sendall(PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_STREAM | END_HEADERS, 1, get_block(enc, path)))
    first, _ = read_frames(sock, lambda k, f, s, p: s == 1 and f & END_STREAM, True)
    goaway_before = any(f[0] == GOAWAY for f in first)
    print(json.dumps({"first_done": True, "goaway_before": goaway_before}), flush=True)
    sys.stdin.readline()
    sock.sendall(frame(HEADERS, END_STREAM | END_HEADERS, 3, get_block(enc, path)))
    frames, closed = read_frames(sock, lambda k, f, s, p: s == 3 and f & END_STREAM, True)
    if not closed:
        more, closed = read_frames(sock, lambda *a: False, True)
        frames += more
    status = any(f[0] == HEADERS and f[2] == 3 for f in frames)
    return {"second_answered": status, "goaway": any(f[0] == GOAWAY for f in frames), "closed": closed}


def main():
    cmd = sys.argv[1]
    if cmd == "requests":
        result = run_requests(sys.argv[2], json.loads(sys.argv[3]), "--tls" in sys.argv[4:])
    elif cmd == "flood":
        result = flood(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else "/")
    elif cmd == "concurrent":
        result = concurrent(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "zero-window":
        result = zero_window(sys.argv[2], sys.argv[3])
    elif cmd == "two":
        result = two(sys.argv[2], sys.argv[3])
    elif cmd == "slow":
        result = slow(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"unknown command {cmd}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
