"""What `make run` does: migrate, seed the demo data, start the processes, say where to go, stop on Ctrl-C.

`python -m devtools.run` (after the virtual environment is installed). Settings come from the
process environment, then `.env`, like every process of the app, so `PORT`, `REDIS_URL`,
`WHATSAPP_API_BASE` and `N8N_WEBHOOK_URL` set there win over the development stand-ins.

- No `REDIS_URL` (embedded default): one gunicorn process (one worker, 8 threads) holding the
  in-process Redis and the worker threads (jobs with the scheduler's periodic tasks, and the outbox).
- `REDIS_URL` set: gunicorn (two workers) + `WORKER_PROCESSES` x `flask worker` (default 2) + `flask sender`
  + `flask scheduler`.

Every child shares one metrics directory (`PROMETHEUS_MULTIPROC_DIR`), made fresh and empty at each start
and removed at the stop, as docs/OPERATIONS.md asks of production: `/metrics` from either gunicorn worker
serves the counts of every process (the sender's sends too), not only its own.

The banner with the simulator's address and the admin login is printed once `/health/live` answers.
From then on it supervises: a child that exits, whatever the reason, is started again after a pause
(1 s, doubling up to 30 s while it keeps failing within a minute of starting) with a log line; the
others keep running, so a dead worker never takes the web server down. Ctrl-C or SIGTERM stops every
child: each runs in its own process group, which gets SIGTERM, then SIGKILL after
`STOP_GRACE_SECONDS`; nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import requests
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from settings import PROJECT_ROOT, Settings, load_settings

START_TIMEOUT_SECONDS = 60
STOP_GRACE_SECONDS = 10
RESTART_FIRST_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
HEALTHY_AFTER_SECONDS = 60.0  # a child that ran this long starts again after the first, short pause


class Stop(Exception):
    """SIGTERM (or SIGINT) arrived: stop the children and leave."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean stop short
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Stop(signal.Signals(signum).name)


def migrate(database_url: str) -> None:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["configure_logging"] = False
    command.upgrade(cfg, "head")


def commands(settings: Settings) -> list[tuple[str, list[str]]]:
    """The processes to start: (name, argv)."""
    python = sys.executable
    # As the Procfile: gthread, 8 threads a process (docs/OPERATIONS.md says why); one process when the
    # queue lives in it (embedded Redis), else one per core of a 2-core machine.
    workers = "1" if settings.embedded_redis else "2"
    web = [python, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{settings.PORT}", "--workers", workers,
           "--worker-class", "gthread", "--threads", "8", "--log-level", "info", "--no-control-socket",
           "--graceful-timeout", "5"]
    if settings.embedded_redis:
        return [("web", web)]
    flask = [python, "-m", "flask", "--app", "app:create_app"]
    rq_workers = [("worker" if n == 1 else f"worker{n}", [*flask, "worker"])
                  for n in range(1, max(1, settings.WORKER_PROCESSES) + 1)]
    return [("web", web), *rq_workers, ("sender", [*flask, "sender"]), ("scheduler", [*flask, "scheduler"])]


def metrics_directory() -> Path:
    """A new, empty directory for the children's metrics files: counts of an earlier run never add up with
    this one's (prometheus-client reads every file in it)."""
    return Path(tempfile.mkdtemp(prefix="ziraai-metrics-"))


def child_environment(metrics_dir: Path) -> dict[str, str]:
    """The children's environment: ours, with the metrics directory they share."""
    return {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}


def banner(settings: Settings, admin_password: str | None, admin_email: str, codes: Sequence[str]) -> str:
    base = f"http://127.0.0.1:{settings.PORT}"
    stand_in = settings.whatsapp_api_base.startswith(settings.PUBLIC_BASE_URL.rstrip("/") + "/dev/graph/")
    local_analyser = settings.n8n_url.endswith("/dev/n8n/analyze") and not settings.N8N_WEBHOOK_URL
    database = "the database at DATABASE_URL" if settings.DATABASE_URL else "a SQLite file in instance/"
    where = database + (" + in-process Redis" if settings.embedded_redis else " + Redis at REDIS_URL")
    if admin_password:
        login = f"{admin_email} / {admin_password}   <- shown once, save it"
    else:
        login = (f"{admin_email} (password shown on the first run; a new one: "
                 ".venv/bin/flask --app app:create_app seed-demo --new-admin-password)")
    lines = [
        "",
        "=" * 78,
        f"  ZiraAI WhatsApp bot is up ({where})",
        "",
        f"  Chat as a farmer:   {base}/dev/chat" if settings.DEV_TOOLS and not settings.is_production else
        "  (development tools are off: no simulator)",
        f"  Staff console:      {base}/console   (sign in with the admin login below)",
        f"  Admin login:        {login}",
        f"  Admin API:          {base}/api/v1   (docs: {base}/api/v1/docs, document: {base}/api/v1/openapi.json)",
    ]
    if codes:
        lines.append(f"  Sponsor codes:      {'  '.join(codes)}   (Demo Tarım A.Ş., tier M: type one in the chat)")
    lines += [
        "  Graph API:          " + ("local stand-in " + settings.whatsapp_api_base if stand_in
                                    else settings.whatsapp_api_base + "  (WHATSAPP_API_BASE)"),
        "  Plant analysis:     " + ("local analyser (colour estimate) " + settings.n8n_url if local_analyser
                                    else (settings.n8n_url or "not configured") + "  (N8N_WEBHOOK_URL)"),
        f"  Webhook for Meta:   {settings.PUBLIC_BASE_URL.rstrip('/')}/webhooks/whatsapp",
        "",
        "  Ctrl-C stops everything.",
        "=" * 78,
        "",
    ]
    return "\n".join(lines)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Child:
    """A supervised process: how to start it, and when to start it again after it exited."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    pause: float = RESTART_FIRST_SECONDS
    restart_at: float | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, cwd=PROJECT_ROOT, env=self.env, start_new_session=True)
        self.started_at = time.monotonic()
        self.restart_at = None

    def check(self, now: float) -> None:
        """Start it again when its pause is over; notice (and log) that it exited."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                print(f"supervisor: starting {self.name} again", file=sys.stderr, flush=True)
                self.start()
            return
        assert self.process is not None
        code = self.process.poll()
        if code is None:
            return
        _signal_group(self.process, signal.SIGKILL)  # what it started (RQ's scheduler child) goes with it
        if now - self.started_at >= HEALTHY_AFTER_SECONDS:
            self.pause = RESTART_FIRST_SECONDS
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}"
        print(f"supervisor: {self.name} exited with {how}; restarting in {self.pause:.0f} s",
              file=sys.stderr, flush=True)
        self.restart_at = now + self.pause
        self.pause = min(RESTART_MAX_SECONDS, self.pause * 2)


def supervise(children: Sequence[Child], poll: float = 0.5) -> None:
    """Keep every child running until a signal (Stop) ends it."""
    while True:
        now = time.monotonic()
        for child in children:
            child.check(now)
        time.sleep(poll)


def wait_until_up(url: str, children: Sequence[Child], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children:
            if child.process is not None and child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited with code {child.process.returncode} while starting "
                                   "(is the port already in use? set PORT)")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def _signal_group(child: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signum)  # each child leads its own process group (start_new_session)


def stop(children: Sequence[Child]) -> None:
    """SIGTERM to every child's process group; SIGKILL to whatever is left after the grace period.

    Only SIGTERM, once: gunicorn's threaded workers can deadlock when a terminal's SIGINT and their
    master's SIGQUIT arrive together, which is why the children do not share the terminal's group."""
    running = [(c.name, c.process) for c in children if c.process is not None]
    for _, process in running:
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for name, process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop in {STOP_GRACE_SECONDS} s: killed", file=sys.stderr)
        _signal_group(process, signal.SIGKILL)  # also a work-horse or gunicorn worker left behind
        process.wait()


def main() -> int:
    settings = load_settings()
    if not port_free(settings.PORT):
        print(f"make run: port {settings.PORT} is in use (another `make run`?); choose another: PORT=8001 make run",
              file=sys.stderr)
        return 1
    url = make_url(settings.database_url).render_as_string(hide_password=True)
    print(f"database: {url} (migrating to the latest version)", flush=True)
    migrate(settings.database_url)
    admin_password, admin_email, codes = None, "", []
    if settings.DEV_TOOLS and not settings.is_production:
        from devtools.demo import seed_demo
        from models.db import Database

        db = Database(settings.database_url)
        try:
            seed = seed_demo(db)
        finally:
            db.engine.dispose()
        for line in seed.lines():
            if seed.admin_password is None or not line.startswith("admin login"):  # the password: in the banner
                print(f"demo data: {line}", flush=True)
        admin_password, admin_email, codes = seed.admin_password, seed.admin_email, seed.unused_codes

    metrics_dir = metrics_directory()
    env = child_environment(metrics_dir)
    children = [Child(name, argv, env) for name, argv in commands(settings)]
    # Both explicitly: a shell that starts us in the background would have left SIGINT ignored.
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        for child in children:
            child.start()
        wait_until_up(f"http://127.0.0.1:{settings.PORT}/health/live", children, START_TIMEOUT_SECONDS)
        print(banner(settings, admin_password, admin_email, codes), flush=True)
        supervise(children)
        return 0
    except Stop:
        print("\nstopping...", flush=True)
        return 0
    except RuntimeError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop(children)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        print("stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
