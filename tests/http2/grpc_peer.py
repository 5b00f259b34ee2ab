#!/usr/bin/env python3
"""gRPC peers for tests/http2_upstream.rs (grpcio from PyPI), with raw-bytes messages (no
generated code): `echo.Echo/{Unary,ServerStream,ClientStream,Fail,Slow}`.

    grpc_peer.py server PORT_FILE [CERT KEY]    serve (h2c, or TLS with ALPN h2) until killed
    grpc_peer.py client ADDR CALLS_JSON         run calls through ADDR (h2c); print JSON
"""

import json
import sys
import time
from concurrent import futures

import grpc


def unary(request, context):
    context.set_trailing_metadata((("x-served-by", "python-grpc"),))
    return b"echo:" + request


def server_stream(request, context):
    for i in range(int(request)):
        yield f"msg-{i}".encode()


def client_stream(requests, context):
    parts = [r for r in requests]
    return f"{len(parts)}:{b'+'.join(parts).decode()}".encode()


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def slow(request, context):
    time.sleep(3)
    return b"late"


def serve(port_file, cert=None, key=None):
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("echo.Echo", handlers),))
    if cert:
        creds = grpc.ssl_server_credentials([(open(key, "rb").read(), open(cert, "rb").read())])
        port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with open(port_file + ".tmp", "w") as f:
        f.write(str(port))
    import os
    os.rename(port_file + ".tmp", port_file)
    server.wait_for_termination(timeout=600)


def call(channel, spec):
    method = spec["method"]
    path = spec.get("prefix", "/echo.Echo/") + method
    try:
        if method in ("Unary", "Fail", "Slow"):
            fn = channel.unary_unary(path)
            response, call = fn.with_call(spec.get("request", "").encode(), timeout=20)
            trailing = {k: v for k, v in call.trailing_metadata() or ()}
            return {"code": "OK", "response": response.decode(), "trailing": trailing}
        if method == "ServerStream":
            fn = channel.unary_stream(path)
            return {"code": "OK", "responses": [m.decode() for m in fn(spec["request"].encode(), timeout=20)]}
        if method == "ClientStream":
            fn = channel.stream_unary(path)
            response = fn(iter([m.encode() for m in spec["requests"]]), timeout=20)
            return {"code": "OK", "response": response.decode()}
    except grpc.RpcError as e:
        return {"code": e.code().name, "details": e.details()}
    raise SystemExit(f"unknown method {method}")


def main():
    if sys.argv[1] == "server":
        serve(*sys.argv[2:])
    elif sys.argv[1] == "client":
        channel = grpc.insecure_channel(sys.argv[2])
        print(json.dumps([call(channel, spec) for spec in json.loads(sys.argv[3])]), flush=True)
    else:
        raise SystemExit("usage: grpc_peer.py server|client ...")


if __name__ == "__main__":
    main()
