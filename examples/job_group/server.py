"""The server of the JobGroup example: an HTTP echo server for one client.

POST /echo answers with the request body and the server's work unit (so that a client can check
it reached its own work unit's server); POST /shutdown ends the server with success. Without a
shutdown within --timeout seconds the server fails, so that a lost client cannot leave it running.
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


class _Handler(BaseHTTPRequestHandler):
    server: _EchoServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/echo":
            reply = {"echo": body.decode(), "work_unit": os.environ.get("XM_WORK_UNIT_ID")}
            self._send(200, json.dumps(reply).encode())
        elif self.path == "/shutdown":
            self._send(200, b"{}")
            self.server.done = True
        else:
            self._send(404, b"{}")

    def _send(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


class _EchoServer(HTTPServer):
    done = False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="the port to listen on")
    parser.add_argument("--bind", default="0.0.0.0", help="the address to listen on")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a client")
    flags = parser.parse_args()

    server = _EchoServer((flags.bind, flags.port), _Handler)
    server.timeout = 0.5  # handle_request() returns this often to check the deadline
    print(
        f"{os.environ.get('XM_JOB_NAME', 'server')} listening on {flags.bind}:{flags.port}",
        flush=True,
    )
    deadline = time.monotonic() + flags.timeout
    with server:
        while not server.done:
            if time.monotonic() > deadline:
                print(f"no client shut the server down within {flags.timeout} s", file=sys.stderr)
                return 1
            server.handle_request()
    print("shut down by the client", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
