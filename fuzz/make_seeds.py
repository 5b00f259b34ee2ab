#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/seeds/<target>/.

The seeds are the byte-string fixtures of the project's own tests (request and response heads,
chunked bodies, YAML/JSON definitions and gateway files), the example configuration, and a few
hand-written inputs, each prefixed with the control bytes its target reads (see the target's
module in fuzz/src/). scripts/fuzz.sh merges them into the checked-in corpus (fuzz/corpus/);
re-run this after adding fixtures. Needs python3 and, for the signed JWT seed, openssl.

    python3 fuzz/make_seeds.py
"""

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "seeds")

# Where the fixtures are.
HTTP_SOURCES = [
    "src/http/request.rs",
    "src/http/response.rs",
    "src/http/forward.rs",
    "src/http/head.rs",
    "src/http/chunked.rs",
    "src/proxy/mod.rs",
    "src/proxy/forward.rs",
    "src/proxy/io.rs",
    "tests/proxy_http1.rs",
    "tests/differential.rs",
    "tests/security.rs",
    "bench/codec.rs",
]
CONFIG_SOURCES = [
    "src/snapshot/tests.rs",
    "src/config/locate.rs",
    "src/config/gateway.rs",
    "src/config/openapi.rs",
    "src/config/endpoint.rs",
    "src/config/cors.rs",
    "src/config/jwt.rs",
    "src/config/apictl.rs",
    "tests/security.rs",
    "tests/cli_check.rs",
    "tests/support/mod.rs",
    "tests/proxy_http1.rs",
]

RAW = re.compile(r'b?r(#*)"(.*?)"\1', re.S)
QUOTED = re.compile(r'(?<![\'\w])b?"((?:[^"\\]|\\.)*)"', re.S)
ESCAPE = re.compile(r'\\(\n\s*|x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)', re.S)


def unescape(body):
    def one(m):
        e = m.group(1)
        if e[0] == "\n":
            return ""
        if e[0] == "x":
            return chr(int(e[1:], 16))
        if e[0] == "u":
            return chr(int(e[2:-1], 16))
        return {"n": "\n", "r": "\r", "t": "\t", "0": "\0"}.get(e, e)

    return ESCAPE.sub(one, body)


def literals(path):
    """Every string and byte-string literal of a Rust file, as bytes."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        text = f.read()
    out = []
    for m in RAW.finditer(text):
        out.append(m.group(2).encode("utf-8"))
    text = RAW.sub("", text)
    for m in QUOTED.finditer(text):
        # Byte strings hold \xNN as bytes; strings as UTF-8 of that code point.
        is_bytes = text[m.start()] == "b"
        value = unescape(m.group(1))
        out.append(value.encode("latin-1") if is_bytes and all(ord(c) < 256 for c in value)
                   else value.encode("utf-8"))
    return out


written = {}


def put(target, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    if name in written.setdefault(target, set()):
        return
    written[target].add(name)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


REQUEST_LINE = re.compile(rb"^(\r\n)*[!-~]{1,24} \S")


def http_seeds():
    requests, responses, bodies = [], [], []
    for path in HTTP_SOURCES:
        for lit in literals(path):
            if len(lit) < 4:
                continue
            if lit.startswith(b"HTTP/"):
                responses.append(lit)
            elif REQUEST_LINE.match(lit) and (b"HTTP/" in lit or b"\n" in lit):
                requests.append(lit)
            elif path.endswith("chunked.rs") or re.match(rb"^ ?[0-9a-fA-FzZ]+[ \t;\r\n]", lit):
                bodies.append(lit)
    # Requests whose body is chunked also seed the chunked target with their body.
    for r in requests:
        head_end = r.find(b"\r\n\r\n")
        if b"chunked" in r.lower() and head_end >= 0:
            bodies.append(r[head_end + 4:])
    for i, r in enumerate(requests):
        mid = len(r) // 2
        split = struct.pack("<HH", mid, min(len(r), mid + 7))
        # Default limits, proxy choices cycling through the flag bits.
        put("request_head", bytes([(i % 32) << 1, 0, 0, 0]) + split + r)
        if i % 5 == 0:  # small limits: 161-byte head, 41-byte request line, 6 fields
            put("request_head", bytes([1 | (i % 32) << 1, 20, 10, 5]) + split + r)
    for i, r in enumerate(responses):
        put("response_head", bytes([(i % 32) << 1, 0, 0, 0]) + r)
        if i % 5 == 0:
            put("response_head", bytes([1 | (i % 32) << 1, 20, 10, 5]) + r)
    for i, b in enumerate(bodies):
        n = len(b)
        splits = struct.pack("<HHH", n // 3, n // 2, (2 * n) // 3)
        put("chunked", bytes([0, 0, 0]) + splits + b)
        if i % 4 == 0:  # small limits: 9-byte size lines, 17-byte trailer section
            put("chunked", bytes([1, 8, 16]) + splits + b)
    print(f"request_head {len(requests)}, response_head {len(responses)}, chunked {len(bodies)}")


ROUTER_SEEDS = [
    """A /petstore/v1
R get /pet/findByStatus
R get /pet/{petId}
R delete /pet/{petId}
R post /pet
R get /store/*
R get /
R get /files/{name}.json
R get /files/{name}
L GET /petstore/v1/pet/findByStatus
L DELETE /petstore/v1/pet/findByStatus
L GET /petstore/v1/pet/42
L PUT /petstore/v1/pet/42
L GET /petstore/v1/files/a.json
L GET /petstore/v1/files/.json
L GET /petstore/v1/store
L GET /petstore/v1/store/a/b/c
L GET /petstore/v1/
L GET /petstore/v1
L GET /petstore/v1//
L GET /petstore/v12
L FOO /petstore/v1/pet
""",
    """A /
R get /{a}
R get /a/{b}/c
R put /{a}/{b}/*
R get /v{n}
R get /{x}-{y}.{z}
A /api
R get /*
A /api/v2
R post /items/{id}
L GET /
L GET /x
L GET /v2
L GET /a/b/c
L PUT /a/b/c/d
L GET /1-2.3
L GET /api/anything/here
L POST /api/v2/items/7/
L GET /api/v2/items/7
L GET api
L GET
""",
    "A /a/b/c\nA /a\nA /a/b\nR get /x\nL GET /a/b/x\nL GET /a/b/c/x\nL GET /a/x\n",
]


def router_seeds():
    for s in ROUTER_SEEDS:
        put("router", s.encode())
    # Many children: past the segment map's switch from a scan to a hash table.
    many = "".join(f"A /api{i}\nR get /r{i}/{{id}}\n" for i in range(12))
    many += "".join(f"L GET /api{i}/r{i}/x\n" for i in range(0, 12, 3))
    put("router", many.encode())


GATEWAY_KEYS = re.compile(rb"^(listeners|workers|admin|apis|tls|upstream|timeouts|limits|suspension|"
                          rb"health_check|cors|access_log|jwt):", re.M)


def config_seeds():
    defs, gateways = [], []
    for path in CONFIG_SOURCES:
        for lit in literals(path):
            if b"openapi" in lit or b"swagger" in lit:
                defs.append(lit)
            elif GATEWAY_KEYS.search(lit):
                gateways.append(lit)
    for name in ["config/gateway.yaml"]:
        with open(os.path.join(ROOT, name), "rb") as f:
            gateways.append(f.read())
    for name in ["config/apis/petstore.yaml"]:
        with open(os.path.join(ROOT, name), "rb") as f:
            defs.append(f.read())
    for g in gateways:
        put("config", b"\x00" + g)
    for d in defs:
        if d.lstrip().startswith(b"{"):
            put("config", b"\x02" + d)
        else:
            put("config", b"\x01" + d)
            put("config", b"\x03" + d)
    # JSON renderings of the YAML definitions.
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        for d in defs:
            try:
                value = yaml.safe_load(d)
                put("config", b"\x02" + json.dumps(value, indent=1, default=str).encode())
            except Exception:
                pass
    # line_of: a field path line, then the text.
    with open(os.path.join(ROOT, "config/apis/petstore.yaml"), "rb") as f:
        pet = f.read()
    for p in [b"paths./pet.get", b"paths", b"x-wso2-production-endpoints.urls[0]", b"a[3].b"]:
        put("config", b"\x04" + p + b"\n" + pet)
    put("config", b"\x04paths./pet.get.urls[1]\n{\"paths\": {\"/pet\": {\"get\": {\"urls\": [\"a\",\n \"b\"]}}}}\n")
    print(f"config: {len(defs)} definitions, {len(gateways)} gateway files")


DEV_ISSUER = "https://localhost/dev-only"
FUZZ_ISSUER = "https://fuzz.invalid/hmac"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def dev_token(claims, header=None):
    header = header or {"alg": "RS256", "typ": "JWT"}
    signing_input = b64(json.dumps(header).encode()) + b"." + b64(json.dumps(claims).encode())
    key = os.path.join(ROOT, "config/dev-only/jwt-dev-only.key.pem")
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing_input,
                         capture_output=True, check=True).stdout
    return signing_input + b"." + b64(sig)


def jwt_input(flags, now, steps, raw, header=b"", payload=b""):
    return bytes([flags]) + struct.pack("<I", now) + bytes(steps) + raw + b"\0" + header + b"\0" + payload


def jwt_seeds():
    now = 1_700_000_000
    try:
        token = dev_token({"iss": DEV_ISSUER, "sub": "dev", "iat": now, "exp": now + 3600,
                           "keytype": "PRODUCTION"})
        sandbox = dev_token({"iss": DEV_ISSUER, "sub": "x", "exp": now + 60, "nbf": now - 10,
                             "keytype": "SANDBOX", "aud": ["a", "b"]})
        for raw in [b"Bearer " + token, token, b"bearer   " + sandbox + b"  ", token + b"=="]:
            put("jwt", jwt_input(0x10, now, [1, 0x85, 2], raw))
        put("jwt", jwt_input(0x30, now + 3590, [0x83, 3, 0x81], b"Bearer " + token))
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"no signed dev token ({e}); skipping", file=sys.stderr)
    hmac_header = [b'{"alg":"HS256","typ":"JWT"}', b'{"alg":"HS384"}', b'{"alg":"HS512","kid":"k1"}']
    payloads = [
        {"iss": FUZZ_ISSUER, "exp": now + 100, "aud": "fuzz-aud"},
        {"iss": FUZZ_ISSUER, "exp": now + 100, "aud": ["x", "other-aud"], "keytype": "SANDBOX",
         "sub": "s", "nbf": now},
        {"iss": FUZZ_ISSUER, "exp": now - 1, "aud": "fuzz-aud"},
        {"iss": FUZZ_ISSUER, "exp": 1.7e9, "aud": "fuzz-aud", "nbf": now + 1000},
        {"iss": FUZZ_ISSUER, "aud": "fuzz-aud"},
        {"iss": DEV_ISSUER, "exp": now + 100},
        {"iss": FUZZ_ISSUER, "exp": now + 100, "aud": "nope", "keytype": "bogus"},
    ]
    for i, p in enumerate(payloads):
        alg = i % 3
        flags = alg | (4 if i % 2 else 0) | ((i % 4) << 4)
        put("jwt", jwt_input(flags, now, [i, 0x90, 7], b"Bearer a.b.c", hmac_header[alg],
                             json.dumps(p).encode()))
    for raw in [b"Basic dXNlcjpwYXNz", b"Bearer", b"Bearer a b", b"Bearerabc",
                b"Bearer eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.", b"Bearer ~+/=="]:
        put("jwt", jwt_input(0x10, now, [0, 0, 0], raw))
    put("jwt", jwt_input(0x20, now, [1, 1, 1], b"", b'{"alg":"RS256"}', b'{"iss":"' + DEV_ISSUER.encode() + b'","exp":9}'))


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    http_seeds()
    router_seeds()
    config_seeds()
    jwt_seeds()
    for target, names in sorted(written.items()):
        print(f"{target}: {len(names)} seeds")


if __name__ == "__main__":
    main()
