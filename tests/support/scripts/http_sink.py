#!/usr/bin/env python3
"""A test HTTP server that records every request it gets.

    http_sink.py LOG [--status N] [--delay SECONDS]

Listens on 127.0.0.1 (a free port, printed as the first line on stdout),
answers every request with status N (default 200) after SECONDS (default 0),
and appends one JSON line per request to LOG: method, path, query, headers
(lower-case names), body (text). Python's http.server: an implementation
independent of the client under test.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

log_path = sys.argv[1]
status = 200
delay = 0.0
args = sys.argv[2:]
while args:
    if args[0] == "--status":
        status = int(args[1])
        args = args[2:]
    elif args[0] == "--delay":
        delay = float(args[1])
        args = args[2:]
    else:
        sys.exit(f"unknown argument {args[0]}")
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_any(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        entry = {
            "method": self.command,
            "path": parts.path,
            "query": parts.query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
        }
        with lock, open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        if delay:
            time.sleep(delay)
        answer = b'{"ok": true}' if status < 400 else b"server error"
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except OSError:
            pass

    do_GET = do_POST = do_PUT = handle_any

    def log_message(self, *a):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
