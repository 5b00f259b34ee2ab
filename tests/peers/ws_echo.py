"""A WebSocket echo origin for the gateway's tests (python `websockets`, a real peer).

Usage: ws_echo.py NAME PORT_FILE. Listens on 127.0.0.1 (ephemeral port written to
PORT_FILE), echoes every message prefixed with nothing (text stays text, binary stays
binary), answers pings (the library does), and on a text message "whoami" sends back a JSON
line with its name and the handshake's path and headers. Paths under /refuse are answered
with HTTP 403 instead of switching. Runs until killed.
"""
import asyncio
import http
import json
import sys

from websockets.asyncio.server import serve


async def main():
    name, port_file = sys.argv[1], sys.argv[2]

    async def refuse(connection, request):
        if request.path.startswith("/refuse"):
            return connection.respond(http.HTTPStatus.FORBIDDEN, "refused by the origin\n")
        return None

    async def echo(ws):
        request = ws.request
        async for message in ws:
            if message == "whoami":
                await ws.send(json.dumps({
                    "backend": name,
                    "path": request.path,
                    "headers": {k.lower(): v for k, v in request.headers.raw_items()},
                }))
            else:
                await ws.send(message)

    async with serve(echo, "127.0.0.1", 0, process_request=refuse,
                                max_size=None, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        with open(port_file + ".tmp", "w") as f:
            f.write(str(port))
        import os
        os.rename(port_file + ".tmp", port_file)
        await asyncio.Future()


asyncio.run(main())
