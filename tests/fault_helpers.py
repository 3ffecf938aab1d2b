"""Process control for the fault-injection tests (`tests/test_faults.py`).

A private `redis-server` that can be stopped, killed, frozen and started again, `flask worker` /
`sender` / `scheduler` / `sweep` / gunicorn processes with their logs kept, and `make run`'s
supervisor. The Graph API and N8N they talk to are the stand-ins of `tests/stand_ins.py`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import redis

from settings import PROJECT_ROOT, Settings
from tests.helpers import APP_SECRET, N8N_SECRET, TEST_REDIS_URL, free_port, make_settings, wait_until

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
    """`make run`'s launcher (`python -m devtools.run`) with REDIS_URL: gunicorn, one worker, sender and
    scheduler, restarted when they exit. Its log (and its children's) is kept."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        # One worker: the tests kill "the" worker and expect its job to come back through its lease.
        self.process = Process([sys.executable, "-m", "devtools.run"],
                               {**env, "PORT": str(self.port), "PYTHONUNBUFFERED": "1", "WORKER_PROCESSES": "1"},
                               new_session=True)

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
