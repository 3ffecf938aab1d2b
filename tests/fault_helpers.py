"""Stand-ins and process control for the fault-injection tests (`tests/test_faults.py`).

Each stand-in speaks real HTTP on its own port, so the code under test is the production client
code in separate worker processes: a Graph API that answers from a script of errors (or refuses
everything for a while, or lets the test act before it answers), an N8N that can be slow, down (its
port closed) or flapping, a private `redis-server` that can be stopped, killed, frozen and started
again, `flask worker` / `sender` / `scheduler` / `sweep` / gunicorn processes with their logs kept,
and `make run`'s supervisor.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import redis

from settings import PROJECT_ROOT, Settings
from tests.conftest import APP_SECRET, FIXTURES, N8N_SECRET, TEST_REDIS_URL, make_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "") -> Any:
    """Poll until `predicate()` is truthy; its value, or AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (our timeouts) is part of the test, not noise


def _answer(handler: BaseHTTPRequestHandler, status: int, body: bytes, kind: str = "application/json") -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", kind)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


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


RATE_LIMIT = GraphError(429, 130429, "(#130429) Rate limit hit")
PAIR_RATE = GraphError(400, 131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit")
SERVICE_ERROR = GraphError(500, 131000, "Something went wrong")
BAD_GATEWAY = GraphError(502, None)


def _digits(phone: str) -> str:
    return "".join(c for c in phone if c.isdigit())


class GraphStandIn:
    """The Graph API: each recipient's message sends are refused by its script first (in order, or
    `always`; everybody's, in turn by `refuse_in_turn`, until `refuse_until` on the monotonic clock),
    then accepted with a fresh wamid. `before_accepting(body)` runs before an accepted send is answered.
    Mark-as-read calls are always accepted."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []  # accepted message bodies: what the farmers received
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
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                error = None
                with outer._lock:
                    if body.get("status") == "read":
                        outer.reads += 1
                    else:
                        to = _digits(str(body.get("to", "")))
                        script = outer.scripts.get(to)
                        error = outer.always.get(to) or (script.pop(0) if script else None)
                        if error is None and time.monotonic() < outer.refuse_until:
                            error = outer.refuse_in_turn[len(outer.refused) % len(outer.refuse_in_turn)]
                        if error is not None:
                            outer.refused.append((to, error.http_status, error.code))
                    wamid = f"wamid.GRAPH{next(outer._ids)}"
                if error is not None:
                    _answer(self, error.http_status, error.body(),
                            "application/json" if error.code is not None else "text/html")
                    return
                if body.get("status") != "read":
                    if outer.before_accepting is not None:
                        outer.before_accepting(body)
                    with outer._lock:
                        outer.sent.append(body)
                        outer.wamids.append(wamid)
                _answer(self, 200, json.dumps({"messaging_product": "whatsapp", "messages": [{"id": wamid}]}).encode())

            def do_GET(self) -> None:  # media: /v21.0/<id> (metadata), then /files/<id> (bytes)
                media_id = self.path.rstrip("/").rsplit("/", 1)[-1]
                if media_id not in outer.media:
                    _answer(self, 404, b'{"error": {"message": "unknown media", "code": 100}}')
                elif "/files/" in self.path:
                    _answer(self, 200, outer.media[media_id], "image/jpeg")
                else:
                    url = f"http://127.0.0.1:{outer.httpd.server_address[1]}/files/{media_id}"
                    _answer(self, 200, json.dumps({"url": url, "mime_type": "image/jpeg", "id": media_id}).encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/v21.0"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def sent_to(self, phone: str) -> list[dict[str, Any]]:
        with self._lock:
            return [b for b in self.sent if _digits(str(b.get("to", ""))) == _digits(phone)]

    def wamids_to(self, phone: str) -> list[str]:
        """The wamids of the messages this farmer received, in the order they arrived."""
        with self._lock:
            return [w for w, b in zip(self.wamids, self.sent, strict=True) if _digits(str(b.get("to", ""))) ==
                    _digits(phone)]

    def texts(self, phone: str | None = None) -> list[str]:
        from devtools.terminal_chat import describe

        bodies = self.sent_to(phone) if phone else list(self.sent)
        return [describe(b) for b in bodies]


@contextlib.contextmanager
def graph_stand_in() -> Iterator[GraphStandIn]:
    graph = GraphStandIn()
    try:
        yield graph
    finally:
        graph.close()


# --- N8N ----------------------------------------------------------------------------------------------

RESULT_OK = (FIXTURES / "n8n" / "result_full_tr.json").read_text()
RESULT_FAILED = (FIXTURES / "n8n" / "result_failed.json").read_text()


class N8NStandIn:
    """N8N's webhook in sync mode. `mode`: `ok`; `slow` (answers after `slow_seconds`); `error` (HTTP 500);
    `flap` (every other request fails with 500, starting with the first). `by_crop` overrides the mode for
    one crop: also `failed_result` (a `success: false` answer). `flap` counts only the requests it answers.
    `hold_next = True` keeps the next request waiting (`arrived` is set) until `release` is set.
    `stop()` closes the port (connections refused) and `start()` opens the same port again."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.slow_seconds = 3.0
        self.by_crop: dict[str, str] = {}
        self.requests: list[tuple[int, str | None, str]] = []  # (analysis id, crop, what we answered)
        self.hold_next = False
        self.arrived = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._flaps = itertools.count(1)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/webhook/plant-analysis"
        self.httpd: ThreadingHTTPServer | None = None
        self.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                analysis_id, crop = int(body["analysis_id"]), body.get("crop_type")
                with outer._lock:
                    hold, outer.hold_next = outer.hold_next, False
                    mode = outer.by_crop.get(crop or "", outer.mode)
                    if mode == "flap":
                        mode = "error" if next(outer._flaps) % 2 else "ok"
                    outer.requests.append((analysis_id, crop, mode))
                if hold:
                    outer.arrived.set()
                    outer.release.wait(60)
                if mode == "slow":
                    time.sleep(outer.slow_seconds)
                if mode == "error":
                    _answer(self, 500, b'{"message": "Error in workflow"}')
                    return
                result = RESULT_FAILED if mode == "failed_result" else RESULT_OK
                _answer(self, 200, result.replace("{{analysis_id}}", str(analysis_id)).encode())

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def start(self) -> None:
        self.httpd = _QuietServer(("127.0.0.1", self.port), self._handler())
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def answered(self, what: str | None = None) -> list[tuple[int, str | None, str]]:
        with self._lock:
            return [r for r in self.requests if what is None or r[2] == what]


class SlowN8N:
    """N8N that takes its time on the first request, then answers; with `first_delay=0` it answers every
    request at once. Serve it with `threading.Thread(target=n8n.httpd.serve_forever, daemon=True)`."""

    def __init__(self, first_delay: float = 30) -> None:
        self.requests: list[dict[str, Any]] = []
        self.first_arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                outer.requests.append(body)
                if len(outer.requests) == 1:
                    outer.first_arrived.set()
                    time.sleep(first_delay)
                _answer(self, 200, RESULT_OK.replace("{{analysis_id}}", str(body["analysis_id"])).encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/webhook/plant-analysis"


@contextlib.contextmanager
def n8n_stand_in() -> Iterator[N8NStandIn]:
    n8n = N8NStandIn()
    try:
        yield n8n
    finally:
        n8n.stop()


# --- Redis --------------------------------------------------------------------------------------------


class PrivateRedis:
    """A `redis-server` of the test's own (never the machine's shared one), without persistence: a
    restart comes back empty, the worst case for the jobs that were queued in it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_until(lambda: _pings(client), 10, 0.05, "the private redis-server to start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)  # a frozen server cannot stop
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def kill(self) -> None:
        """SIGKILL: gone at once, everything in it lost."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)
        self.process = None

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a hung server, a saturated network)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- processes ----------------------------------------------------------------------------------------


def service_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a separate process exactly these settings (every field, none from `.env`)."""
    env = {**os.environ}
    for f in fields(Settings):
        if f.name != "missing":
            env[f.name] = str(getattr(settings, f.name))
    return env


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return found


class Process:
    """A child process whose stderr (the JSON logs) is kept in a file the test can read."""

    def __init__(self, args: list[str], env: dict[str, str], *, new_session: bool = False) -> None:
        self._log = tempfile.NamedTemporaryFile(prefix="ziraai-fault-", suffix=".log", delete=False)  # noqa: SIM115
        weakref.finalize(self, Path(self._log.name).unlink, missing_ok=True)  # the log lives as long as we do
        self.process = subprocess.Popen(args, cwd=PROJECT_ROOT, env=env, stdout=self._log if new_session else
                                        subprocess.DEVNULL, stderr=self._log, start_new_session=new_session)

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (RQ: finish the current job, stop the scheduler), then SIGKILL for what is left."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                for pid in (*children(self.process.pid), self.process.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()


def flask_command(env: dict[str, str], *args: str) -> Process:
    return Process([sys.executable, "-m", "flask", "--app", "app:create_app", *args], env)


@contextlib.contextmanager
def worker(env: dict[str, str], *queues: str) -> Iterator[Process]:
    """A long-running `flask worker` (with RQ's scheduler, which moves retries and delayed jobs back)."""
    with running(env, "worker", *(f"--queue={q}" for q in queues)) as process:
        yield process


@contextlib.contextmanager
def running(env: dict[str, str], *args: str) -> Iterator[Process]:
    """A long-running `flask` command (`sender`, `scheduler`, ...), stopped when the block ends."""
    process = flask_command(env, *args)
    try:
        yield process
    finally:
        process.stop()


class Supervisor:
    """`make run`'s launcher (`python -m devtools.run`) with REDIS_URL: gunicorn, worker, sender and
    scheduler, restarted when they exit. Its log (and its children's) is kept."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = Process([sys.executable, "-m", "devtools.run"],
                               {**env, "PORT": str(self.port), "PYTHONUNBUFFERED": "1"}, new_session=True)

    def child(self, name: str) -> int | None:
        """The pid of the running child whose command line ends with `name` (`worker`, `sender`...)."""
        for pid in children(self.process.process.pid):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")[-1] == name.encode():
                    return pid
        return None

    def stop(self) -> None:
        """Ctrl-C: the supervisor stops its children itself."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.process.pid, signal.SIGINT)
        self.process.stop(timeout=30)


@contextlib.contextmanager
def supervised(env: dict[str, str]) -> Iterator[Supervisor]:
    supervisor = Supervisor(env)
    try:
        wait_until(lambda: "Ctrl-C stops everything" in supervisor.process.log()
                   or supervisor.process.process.poll() is not None, 90, what="make run's banner")
        assert supervisor.process.process.poll() is None, supervisor.process.log()[-3000:]
        yield supervisor
    finally:
        supervisor.stop()


def worker_process(database_url: str, graph_base: str, n8n_url: str, *, burst: bool,
                   queues: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    """A `flask worker` on the test's database and TEST_REDIS_URL, its log on `stderr` (a pipe)."""
    env = {**os.environ, "APP_ENV": "test", "DATABASE_URL": database_url, "REDIS_URL": TEST_REDIS_URL,
           "WHATSAPP_APP_SECRET": APP_SECRET, "WHATSAPP_API_BASE": graph_base, "WHATSAPP_TOKEN": "test-token-abc",
           "N8N_WEBHOOK_URL": n8n_url, "N8N_SECRET": N8N_SECRET, "PUBLIC_BASE_URL": "https://bot.test",
           "ANALYSIS_RETRY_SECONDS": "0", "RETRY_BACKOFF_BASE": "0", "LOG_LEVEL": "WARNING",
           "MEDIA_DIR": make_settings(database_url).MEDIA_DIR}
    args = [sys.executable, "-m", "flask", "--app", "app:create_app", "worker"] + (["--burst"] if burst else [])
    args += [f"--queue={q}" for q in queues]
    return subprocess.Popen(args, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def run_flask(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    """Run a `flask` command to the end; its log. Fails the test if it fails."""
    process = flask_command(env, *args)
    try:
        code = process.wait(timeout)
    finally:
        process.stop()
    log = process.log()
    assert code == 0, log[-3000:]
    return log
