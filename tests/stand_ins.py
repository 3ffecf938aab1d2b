"""HTTP stand-ins on real ports: the services the bot talks to (Graph API, N8N, ...) played by this process.

`HTTPStandIn` is the one small threaded server: `start()` / `stop()` (also a context manager), every
request kept in `received`, each answered by a handler function (or a subclass's `handle`). It speaks
real HTTP, so the code under test uses its production HTTP client, also from separate worker processes.
`GraphStandIn` and `N8NStandIn` are the two services most tests need; `serve_app` puts our own Flask app
on a real port (werkzeug's server) for clients that must go through HTTP.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from flask import Flask
from werkzeug.serving import make_server

from tests.helpers import FIXTURES

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Request:
    """What a stand-in received: `headers` is case-insensitive (`headers.get("content-length")`)."""

    method: str
    path: str
    headers: Message
    body: bytes
    at: float = 0.0  # time.time() when it had arrived (read in full)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"


def json_reply(data: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(data).encode())


Handler = Callable[[Request], Reply]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (our timeouts) is part of the test, not noise


class HTTPStandIn:
    """A threaded HTTP server answering every request with `handle(request)` (by default the `handler`
    given, else 404). `port=0` takes a free port at the first `start()`; later starts reuse it, so a
    stopped stand-in (connections refused) can come back where its clients expect it. `keep_alive`: HTTP/1.1
    connections that stay open for the client's next request (a benchmark's many sends); off by default,
    so that a stopped stand-in refuses every client at once."""

    def __init__(self, handler: Handler | None = None, *, port: int = 0, keep_alive: bool = False) -> None:
        self.handler = handler
        self.port = port
        self.keep_alive = keep_alive
        self.received: list[Request] = []
        self.errors: list[str] = []  # tracebacks of handler failures (answered 500)
        self.lock = threading.Lock()
        self._httpd: _Server | None = None

    @property
    def origin(self) -> str:
        """`http://127.0.0.1:<port>`: where its clients reach it."""
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def handle(self, request: Request) -> Reply:
        return self.handler(request) if self.handler is not None else Reply(404, b"{}")

    def start(self) -> Self:
        self._httpd = _Server((HOST, self.port), self._request_handler())
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answer(self, request: Request) -> Reply:
        with self.lock:
            self.received.append(request)
        try:
            return self.handle(request)
        except Exception:  # a broken stand-in must show, not hang its client
            with self.lock:
                self.errors.append(traceback.format_exc())
            return Reply(500, traceback.format_exc().encode(), "text/plain")

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if stand_in.keep_alive else "HTTP/1.0"
            disable_nagle_algorithm = True  # the headers and the body leave at once, not 40 ms apart

            def _dispatch(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                reply = stand_in._answer(Request(self.command, self.path, self.headers, body, time.time()))
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

            def log_message(self, *args: Any) -> None:
                pass

        return RequestHandler


@contextlib.contextmanager
def serve_app(app: Flask, port: int = 0) -> Iterator[str]:
    """Our app on a real port (werkzeug's threaded server) until the block ends; yields its base URL."""
    server = make_server(HOST, port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{HOST}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


# --- Graph API ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GraphError:
    """One refusal: the HTTP status and Meta's error code (None: a bare 5xx page, no JSON)."""

    http_status: int
    code: int | None
    title: str = "error"

    def body(self) -> bytes:
        if self.code is None:
            return b"<html><body>502 Bad Gateway</body></html>"
        return json.dumps({"error": {"message": self.title, "type": "OAuthException", "code": self.code,
                                     "error_data": {"details": self.title}, "fbtrace_id": "AbCdEf"}}).encode()

    def reply(self) -> Reply:
        return Reply(self.http_status, self.body(), "application/json" if self.code is not None else "text/html")


RATE_LIMIT = GraphError(429, 130429, "(#130429) Rate limit hit")
PAIR_RATE = GraphError(400, 131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit")
SERVICE_ERROR = GraphError(500, 131000, "Something went wrong")
BAD_GATEWAY = GraphError(502, None)


def _digits(phone: str) -> str:
    return "".join(c for c in phone if c.isdigit())


class GraphStandIn(HTTPStandIn):
    """The Graph API: each recipient's message sends are refused by its script first (in order, or
    `always`; everybody's, in turn by `refuse_in_turn`, until `refuse_until` on the monotonic clock),
    then accepted with a fresh wamid. `before_accepting(body)` runs before an accepted send is answered.
    Mark-as-read calls are always accepted. Media (`media[id] = bytes`) is served by the two-step
    download: `GET /v21.0/<id>` (metadata with a link), then `GET /files/<id>` (the bytes)."""

    def __init__(self, *, keep_alive: bool = False) -> None:
        super().__init__(keep_alive=keep_alive)
        self.sent: list[dict[str, Any]] = []  # accepted message bodies: what the farmers received
        self.sent_at: list[float] = []  # when each of `sent` arrived (time.time())
        self.wamids: list[str] = []  # the wamid answered for each of `sent`
        self.refused: list[tuple[str, int, int | None]] = []  # (recipient digits, HTTP status, code)
        self.refuse_until = 0.0
        self.refuse_in_turn: list[GraphError] = [RATE_LIMIT, SERVICE_ERROR]
        self.before_accepting: Callable[[dict[str, Any]], None] | None = None
        self.reads = 0
        self.media: dict[str, bytes] = {}
        self.scripts: dict[str, list[GraphError]] = {}
        self.always: dict[str, GraphError] = {}
        self._ids = itertools.count(1)

    @property
    def base(self) -> str:
        """What WHATSAPP_API_BASE should say."""
        return f"{self.origin}/v21.0"

    def handle(self, request: Request) -> Reply:
        if request.method == "GET":
            return self._media(request.path)
        body = json.loads(request.body or b"{}")
        error = None
        with self.lock:
            if body.get("status") == "read":
                self.reads += 1
            else:
                to = _digits(str(body.get("to", "")))
                script = self.scripts.get(to)
                error = self.always.get(to) or (script.pop(0) if script else None)
                if error is None and time.monotonic() < self.refuse_until:
                    error = self.refuse_in_turn[len(self.refused) % len(self.refuse_in_turn)]
                if error is not None:
                    self.refused.append((to, error.http_status, error.code))
            wamid = f"wamid.GRAPH{next(self._ids)}"
        if error is not None:
            return error.reply()
        if body.get("status") != "read":
            if self.before_accepting is not None:
                self.before_accepting(body)
            with self.lock:
                self.sent.append(body)
                self.sent_at.append(request.at)
                self.wamids.append(wamid)
        return json_reply({"messaging_product": "whatsapp", "messages": [{"id": wamid}]})

    def _media(self, path: str) -> Reply:
        media_id = path.rstrip("/").rsplit("/", 1)[-1]
        if media_id not in self.media:
            return Reply(404, b'{"error": {"message": "unknown media", "code": 100}}')
        if "/files/" in path:
            return Reply(200, self.media[media_id], "image/jpeg")
        return json_reply({"url": f"{self.origin}/files/{media_id}", "mime_type": "image/jpeg", "id": media_id})

    def sent_to(self, phone: str) -> list[dict[str, Any]]:
        with self.lock:
            return [b for b in self.sent if _digits(str(b.get("to", ""))) == _digits(phone)]

    def wamids_to(self, phone: str) -> list[str]:
        """The wamids of the messages this farmer received, in the order they arrived."""
        with self.lock:
            return [w for w, b in zip(self.wamids, self.sent, strict=True) if _digits(str(b.get("to", ""))) ==
                    _digits(phone)]

    def texts(self, phone: str | None = None) -> list[str]:
        from devtools.terminal_chat import describe

        if phone:
            bodies = self.sent_to(phone)
        else:
            with self.lock:
                bodies = list(self.sent)
        return [describe(b) for b in bodies]


@contextlib.contextmanager
def graph_stand_in() -> Iterator[GraphStandIn]:
    with GraphStandIn() as graph:
        yield graph


# --- N8N ----------------------------------------------------------------------------------------------

RESULT_OK = (FIXTURES / "n8n" / "result_full_tr.json").read_text()
RESULT_FAILED = (FIXTURES / "n8n" / "result_failed.json").read_text()
N8N_PATH = "/webhook/plant-analysis"


class N8NStandIn(HTTPStandIn):
    """N8N's webhook in sync mode. `mode`: `ok`; `slow` (answers after `slow_seconds`); `error` (HTTP 500);
    `flap` (every other request fails with 500, starting with the first). `by_crop` overrides the mode for
    one crop: also `failed_result` (a `success: false` answer). `flap` counts only the requests it answers.
    `hold_next = True` keeps the next request waiting (`arrived` is set) until `release` is set.
    `stop()` closes the port (connections refused) and `start()` opens the same port again."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = "ok"
        self.slow_seconds = 3.0
        self.by_crop: dict[str, str] = {}
        self.requests: list[tuple[int, str | None, str]] = []  # (analysis id, crop, what we answered)
        self.hold_next = False
        self.arrived = threading.Event()
        self.release = threading.Event()
        self._flaps = itertools.count(1)

    @property
    def url(self) -> str:
        """What N8N_WEBHOOK_URL should say."""
        return f"{self.origin}{N8N_PATH}"

    def handle(self, request: Request) -> Reply:
        body = request.json()
        analysis_id, crop = int(body["analysis_id"]), body.get("crop_type")
        with self.lock:
            hold, self.hold_next = self.hold_next, False
            mode = self.by_crop.get(crop or "", self.mode)
            if mode == "flap":
                mode = "error" if next(self._flaps) % 2 else "ok"
            self.requests.append((analysis_id, crop, mode))
        if hold:
            self.arrived.set()
            self.release.wait(60)
        if mode == "slow":
            time.sleep(self.slow_seconds)
        if mode == "error":
            return Reply(500, b'{"message": "Error in workflow"}')
        result = RESULT_FAILED if mode == "failed_result" else RESULT_OK
        return Reply(200, result.replace("{{analysis_id}}", str(analysis_id)).encode())

    def answered(self, what: str | None = None) -> list[tuple[int, str | None, str]]:
        with self.lock:
            return [r for r in self.requests if what is None or r[2] == what]


@contextlib.contextmanager
def n8n_stand_in() -> Iterator[N8NStandIn]:
    with N8NStandIn() as n8n:
        yield n8n
