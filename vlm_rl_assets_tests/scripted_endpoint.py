"""An OpenAI-compatible chat endpoint on loopback that answers from a script, for judge tests.

Each POST to /v1/chat/completions takes the next scripted reply: valid scores, garbage, an empty
body, a sleep past the client's timeout, an HTTP error. Past the script (or `max_requests`) it
answers 503, so a runaway client cannot loop; it shuts itself down after `lifetime_s` regardless.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    status: int = 200
    content: str | None = None  # the assistant message, wrapped in a chat completion
    body: str | None = None  # or the raw body
    sleep_s: float = 0.0


def scores(facts: float, hallucination: float, style: float, reason: str = "scripted") -> Reply:
    return Reply(content=json.dumps({"facts": facts, "hallucination": hallucination, "style": style, "reason": reason}))


GARBAGE = Reply(content="What a lovely answer, I would give it an eight.")
EMPTY_BODY = Reply(body="")
HTTP_500 = Reply(status=500, body="internal server error")


def too_slow(seconds: float) -> Reply:
    return Reply(content=scores(9, 9, 9).content, sleep_s=seconds)


class ScriptedEndpoint:
    def __init__(
        self,
        script: list[Reply],
        *,
        models: tuple[str, ...] = ("judge",),
        max_requests: int = 50,
        lifetime_s: float = 60.0,
    ) -> None:
        self.script, self.models, self.max_requests, self.lifetime_s = list(script), models, max_requests, lifetime_s
        self.requests: list[dict] = []  # chat payloads received, in order
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def _next(self, payload: dict, headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append(payload)
            self.headers.append(headers)
            if not self.script or len(self.requests) > self.max_requests:
                return Reply(status=503, body="script exhausted")
            return self.script.pop(0)

    def __enter__(self) -> ScriptedEndpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, json.dumps({"object": "list", "data": [{"id": m} for m in endpoint.models]}))
                else:
                    self._send(404, "not found")

            def do_POST(self) -> None:
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                if self.path != "/v1/chat/completions":
                    self._send(404, "not found")
                    return
                reply = endpoint._next(payload, dict(self.headers))
                time.sleep(reply.sleep_s)
                body = reply.body
                if body is None:
                    body = json.dumps(
                        {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply.content}}]}
                    )
                try:
                    self._send(reply.status, body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True  # a sleeping handler must not hold up shutdown
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self._timer = threading.Timer(self.lifetime_s, self._server.shutdown)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()
