"""A loopback HTTP proxy in front of the moto S3 server that injects the object store's faults on cue.

A test arms `Fault`s (which requests: method and a regex on the path with its query; what happens; how many times),
points boto3 at the proxy through `AWS_ENDPOINT_URL`, and reads back `hits` to show each fault really happened.
Requests that match no armed fault are forwarded to moto unchanged. Faults are what real S3 does under load or on a
bad network: `503 SlowDown`, `500 InternalError`, a connection reset before the request lands or after it landed
(the reply lost), and a response cut off mid-body.
"""

from __future__ import annotations

import http.client
import re
import socket
import struct
import threading
from dataclasses import dataclass
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}  # the proxy sets its own
EXPECT = "expect"  # 100-continue is answered by the proxy itself, so not passed on


class Action(Enum):
    SLOW_DOWN = "503 SlowDown, not forwarded"
    INTERNAL_ERROR = "500 InternalError, not forwarded"
    RESET = "connection reset before forwarding: the request never lands"
    RESET_AFTER = "forwarded, then the connection reset: the request landed, its reply is lost"
    CUT_BODY = "forwarded, then half the response body and a reset"


ERRORS = {
    Action.SLOW_DOWN: (503, "SlowDown", "Please reduce your request rate."),
    Action.INTERNAL_ERROR: (500, "InternalError", "We encountered an internal error. Please try again."),
}


@dataclass
class Fault:
    """Do `action` to the next `times` requests (None: every one) whose method and path (with query) match."""

    method: str
    path: str  # a regex searched in the request's path and query
    action: Action
    times: int | None = 1

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and self.times != 0 and re.search(self.path, path) is not None


class FaultProxy:
    """The proxy's server thread, its armed faults and the record of what it did (`hits`: action, method, path)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.faults: list[Fault] = []
        self.hits: list[tuple[Action, str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def arm(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def hit(self, action: Action) -> int:
        """How many requests got `action`."""
        return sum(1 for done, _, _ in self.hits if done is action)

    def take(self, method: str, path: str) -> Action | None:
        """The action for this request, if an armed fault matches it (spending one of its `times`)."""
        with self._lock:
            fault = next((f for f in self.faults if f.matches(method, path)), None)
            if fault is None:
                return None
            if fault.times is not None:
                fault.times -= 1
            self.hits.append((fault.action, method, path))
            return fault.action

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        passed = {name: value for name, value in headers.items() if name.lower() != EXPECT}
        connection.request(method, path, body=body, headers=passed)
        return connection.getresponse()

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pool expects

        def log_message(self, *args) -> None:  # quiet
            pass

        def handle_one_request(self) -> None:
            """Every method alike: HEAD, GET, PUT, POST, DELETE."""
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline or not self.parse_request():
                self.close_connection = True
                return
            assert "chunked" not in self.headers.get("Transfer-Encoding", ""), "the proxy reads Content-Length bodies"
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            action = proxy.take(self.command, self.path)
            if action in ERRORS:
                self._send_error(*ERRORS[action])
            elif action is Action.RESET:
                self._reset()
            else:
                self._relay(proxy.forward(self.command, self.path, dict(self.headers), body), action)

        def _relay(self, response: http.client.HTTPResponse, action: Action | None) -> None:
            data = response.read()
            self.send_response(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            length = response.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
            self.send_header("Content-Length", length or "0")
            if action is Action.RESET_AFTER:
                self._reset()
                return
            self.end_headers()
            self.wfile.write(data[: len(data) // 2] if action is Action.CUT_BODY else data)
            if action is Action.CUT_BODY:
                self.wfile.flush()
                self._reset()

        def _send_error(self, status: int, code: str, message: str) -> None:
            xml = (
                f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
            )
            data = xml.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _reset(self) -> None:
            """Close with an RST, not a FIN: what a dropped connection looks like to the client."""
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

    return Handler
