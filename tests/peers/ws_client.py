"""A WebSocket client for the gateway's tests (python `websockets`, a real peer).

Usage: ws_client.py URL SCENARIO [HEADER=VALUE ...]. Prints one JSON object with what
happened; exit code 0 unless the script itself broke.

Scenarios:
  echo      text, binary, ping/pong, a 16 MiB binary message, then a clean close
  whoami    sends "whoami", prints the origin's answer (which backend, handshake headers)
  handshake only opens: prints the HTTP status when the handshake is refused
  hold SECS opens, sends nothing for SECS seconds, reports whether the server closed it
"""
import asyncio
import json
import os
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


async def main():
    url, scenario = sys.argv[1], sys.argv[2]
    args = sys.argv[3:]
    hold = float(args.pop(0)) if scenario == "hold" else 0
    headers = [tuple(a.split("=", 1)) for a in args]
    result = {}
    ssl_context = None
    if url.startswith("wss://"):
        import ssl
        # The gateway's test listener serves a generated self-signed certificate.
        ssl_context = ssl.create_default_context()
        ssl_context.check_hostname = False
        ssl_context.verify_mode = ssl.CERT_NONE
    try:
        async with connect(url, additional_headers=headers, max_size=None, ssl=ssl_context,
                           ping_interval=None, open_timeout=20) as ws:
            result["status"] = 101
            if scenario == "echo":
                await ws.send("hello")
                result["text"] = await ws.recv()
                await ws.send(b"\x00\x01binary\xff")
                result["binary"] = (await ws.recv()).hex()
                pong = await ws.ping(b"p1")
                await asyncio.wait_for(pong, 20)
                result["pong"] = True
                big = os.urandom(16 * 1024 * 1024)
                await ws.send(big)
                echoed = await asyncio.wait_for(ws.recv(), 60)
                result["big_ok"] = echoed == big
                await ws.close()
                result["close_code"] = getattr(ws, "close_code", None) or ws.protocol.close_code
            elif scenario == "whoami":
                await ws.send("whoami")
                result["answer"] = json.loads(await ws.recv())
            elif scenario == "hold":
                try:
                    await asyncio.wait_for(ws.recv(), hold)
                    result["closed_by_server"] = False
                except asyncio.TimeoutError:
                    result["closed_by_server"] = False
                except ConnectionClosed:
                    result["closed_by_server"] = True
    except InvalidStatus as e:
        result["status"] = e.response.status_code
        result["body"] = e.response.body.decode(errors="replace") if e.response.body else ""
    except (OSError, ConnectionClosed, asyncio.TimeoutError) as e:
        result["error"] = repr(e)
    print(json.dumps(result))


asyncio.run(main())
