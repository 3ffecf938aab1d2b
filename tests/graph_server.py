"""A Graph API stand-in on a real port, for tests where separate worker processes send messages."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class GraphServer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.media: dict[str, bytes] = {}  # media id -> file, served by the two-step download
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server._lock:
                    if body.get("status") != "read":
                        server.sent.append(body)
                    wamid = f"wamid.STUB{next(server._ids)}"
                answer = json.dumps({"messaging_product": "whatsapp", "messages": [{"id": wamid}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self) -> None:  # media download: /v21.0/<id> (metadata), then /files/<id> (bytes)
                media_id = self.path.rstrip("/").rsplit("/", 1)[-1]
                if media_id not in server.media:
                    self.send_response(404)
                    self.end_headers()
                    return
                if "/files/" in self.path:
                    answer, kind = server.media[media_id], "image/jpeg"
                else:
                    url = f"http://127.0.0.1:{server.httpd.server_address[1]}/files/{media_id}"
                    answer, kind = json.dumps({"url": url, "mime_type": "image/jpeg", "id": media_id}).encode(), \
                        "application/json"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/v21.0"

    def texts(self) -> list[str]:
        from devtools.terminal_chat import describe

        with self._lock:
            return [describe(b) for b in self.sent]


@contextmanager
def graph_server() -> Iterator[GraphServer]:
    server = GraphServer()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
