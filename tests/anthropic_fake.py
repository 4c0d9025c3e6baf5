"""A local stand-in for the Anthropic Messages API, so the real SDK runs end to end.

Point the SDK at it with ``ANTHROPIC_BASE_URL``; script replies with ``reply``
(or one ``always`` reply for every request, as a gateway gives); read back what
the SDK sent in ``requests``. ``unreachable_url`` is an endpoint where nothing
can answer.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import quote, quote_plus

from tiller.trainer.advisor.types import TOOL_NAME


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def payload(self) -> bytes:
        """A text ``body`` is sent as it is (an HTML page, broken JSON); anything else as JSON."""
        return self.body.encode() if isinstance(self.body, str) else json.dumps(self.body).encode()


def tool_message(tool_input: Any, *, name: str = TOOL_NAME, stop_reason: str = "tool_use") -> dict:
    return {
        "id": "msg_fake01", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "tool_use", "id": "toolu_fake01", "name": name, "input": tool_input}],
        "stop_reason": stop_reason, "stop_sequence": None, "usage": {"input_tokens": 900, "output_tokens": 120},
    }


def text_message(text: str) -> dict:
    return {
        "id": "msg_fake02", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "stop_sequence": None, "usage": {"input_tokens": 900, "output_tokens": 40},
    }


def error_body(kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}}


def key_echo(key: str) -> str:
    """What a careless gateway says about a key it refuses: the key raw, URL-encoded, JSON-escaped, and cut."""
    upstream = json.dumps({"x-api-key": key}).replace("/", "\\/")  # as PHP's json_encode escapes slashes
    return (f"invalid x-api-key {key} (GET /auth?key={quote(key, safe='')}&k={quote_plus(key)}); upstream said "
            f"{upstream}; key ends …{key[-20:]}")


def key_leaks(data: str | bytes, key: str) -> list[str]:
    """The spellings of ``key`` found in ``data``: whole, encoded, or 16 characters of it in a row."""
    forms = {key, quote(key, safe=""), quote_plus(key), json.dumps(key)[1:-1].replace("/", "\\/")}
    forms |= {key[i:i + 16] for i in range(len(key) - 15)}
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return sorted(form for form in forms if form in text)


WRONG_PATH = Reply(404, error_body("not_found_error", "Not Found"))


class FakeAnthropic:
    def __init__(self):
        self.replies: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.always: Reply | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the stdlib's name)
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                fake.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                      "json": json.loads(body or b"null")})
                # Like the real API, a wrong path (a base URL ending in /v1) is a 404 naming no model.
                reply = fake.next_reply() if self.path.split("?")[0] == "/v1/messages" else WRONG_PATH
                time.sleep(reply.delay)
                payload = reply.payload()
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", reply.content_type)
                    self.send_header("content-length", str(len(payload)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def reply(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def next_reply(self) -> Reply:
        if self.replies:
            return self.replies.pop(0)
        return self.always or Reply(500, error_body("api_error", "no reply scripted"))

    def __enter__(self) -> "FakeAnthropic":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def unreachable_url() -> Iterator[str]:
    """A local URL that refuses every connection, for as long as the block runs.

    The port is bound (so no other server, in this process or another, can take
    it) but not listening (so a connection is refused at once). A hard-coded
    "nothing listens here" port such as 9 is shared with the whole machine, and
    a port found free and then closed can be handed to the next server that asks.
    """
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{holder.getsockname()[1]}"
