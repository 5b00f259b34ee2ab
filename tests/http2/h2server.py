#!/usr/bin/env python3
"""An h2c (prior knowledge) upstream for tests/http2_upstream.rs (python `h2` from PyPI).

    h2server.py serve PORT_FILE [DELAY_MS [MAX_STREAMS]]

Answers every stream, after DELAY_MS, with 200, a JSON body saying which connection and
stream carried it and what arrived (method, path, headers, body length, trailers), and the
trailer `x-upstream-trailer: yes`. After MAX_STREAMS answers on a connection it sends GOAWAY
(as nginx does after its per-connection request limit). Runs until killed (at most 10
minutes).
"""

import json
import os
import socket
import sys
import threading
import time

import h2.config
import h2.connection
import h2.events

connections = 0
lock = threading.Lock()


def serve_connection(sock, index, delay, max_streams):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    streams = {}
    send_lock = threading.Lock()
    answered = [0]

    def answer(sid, info):
        time.sleep(delay)
        body = json.dumps(info).encode()
        with send_lock:
            conn.send_headers(sid, [(":status", "200"), ("content-type", "application/json")])
            conn.send_data(sid, body)
            conn.send_headers(sid, [("x-upstream-trailer", "yes")], end_stream=True)
            answered[0] += 1
            if max_streams and answered[0] == max_streams:
                conn.close_connection(last_stream_id=sid)
            try:
                sock.sendall(conn.data_to_send())
            except OSError:
                pass

    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            return
        if not data:
            return
        with send_lock:
            events = conn.receive_data(data)
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                headers = dict(event.headers)
                streams[event.stream_id] = {
                    "conn": index, "stream": event.stream_id, "method": headers.get(":method"),
                    "path": headers.get(":path"), "authority": headers.get(":authority"),
                    "headers": [[k, v] for k, v in event.headers if not k.startswith(":")],
                    "body_len": 0, "trailers": [],
                }
            elif isinstance(event, h2.events.DataReceived):
                streams[event.stream_id]["body_len"] += len(event.data)
                with send_lock:
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.TrailersReceived):
                streams[event.stream_id]["trailers"] = [[k, v] for k, v in event.headers]
            elif isinstance(event, h2.events.StreamEnded):
                threading.Thread(target=answer, args=(event.stream_id, streams.pop(event.stream_id)), daemon=True).start()
        with send_lock:
            out = conn.data_to_send()
        if out:
            try:
                sock.sendall(out)
            except OSError:
                return


def main():
    global connections
    port_file = sys.argv[2]
    delay = int(sys.argv[3]) / 1000 if len(sys.argv) > 3 else 0
    max_streams = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(600)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(listener.getsockname()[1]))
    os.rename(port_file + ".tmp", port_file)
    while True:
        try:
            sock, _ = listener.accept()
        except socket.timeout:
            return
        with lock:
            index = connections
            connections += 1
        threading.Thread(target=serve_connection, args=(sock, index, delay, max_streams), daemon=True).start()


if __name__ == "__main__":
    main()
