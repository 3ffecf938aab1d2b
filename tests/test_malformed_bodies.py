"""A request body that is not valid HTTP, through a real gunicorn: its parse errors (a bad chunk size, a chunk
without its CRLF) are the client's mistake, a 400 on every route that reads a body, logged without a
traceback. (Before: a 500 and an error-level traceback, unauthenticated, on every such route.)"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator

import pytest
import requests

from tests.fault_helpers import Process, service_env
from tests.helpers import free_port, make_settings, wait_until


def _live(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def gunicorn(database_url: str) -> Iterator[tuple[int, Process]]:
    port = free_port()
    env = service_env(make_settings(database_url))
    process = Process([sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{port}",
                       "--workers", "1"], env)
    try:
        wait_until(lambda: _live(port), 60, what="gunicorn to start")
        yield port, process
    finally:
        process.stop()


def _post_chunked(port: int, path: str, content_type: str, body: bytes) -> tuple[int, str, str]:
    """The status, the Content-Type and the body of one raw POST with `Transfer-Encoding: chunked`."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    header, _, content = answer.decode(errors="replace").partition("\r\n\r\n")
    lines = header.split("\r\n")
    content_types = [line.split(":", 1)[1].strip() for line in lines[1:] if line.lower().startswith("content-type:")]
    return int(lines[0].split()[1]), (content_types or [""])[0], content


@pytest.mark.parametrize(("path", "content_type", "answered_as"), [
    ("/api/v1/auth/login", "application/json", "application/problem+json"),
    ("/webhooks/whatsapp", "application/json", "application/problem+json"),
    ("/webhooks/n8n/1", "application/json", "application/problem+json"),
    ("/console/login", "application/x-www-form-urlencoded", "text/html"),
])
@pytest.mark.parametrize("body", [b"ZZ\r\nxx\r\n0\r\n\r\n", b"2\r\nxxyy\r\n0\r\n\r\n"],
                         ids=["bad chunk size", "chunk without its CRLF"])
def test_a_malformed_chunked_body_is_a_400_logged_without_a_traceback(gunicorn, path, content_type, answered_as,
                                                                       body):
    port, process = gunicorn
    status, answered_type, content = _post_chunked(port, path, content_type, body)
    assert status == 400, content
    assert answered_type.startswith(answered_as)
    log = process.log()
    assert "request body refused" in log
    assert "Traceback" not in log and "unhandled error" not in log
