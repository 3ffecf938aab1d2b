"""What the end-to-end benchmarks share: the real processes (gunicorn + `flask worker`s and `flask sender`s) on
PostgreSQL and Redis with the development stand-ins, clean stores, signed webhooks, percentiles and the results
file.

`pipeline_latency.py`, `outbound_burst.py` and `capacity.py` start the service the way production runs it
(one gunicorn web process, separate RQ worker processes), with DEV_TOOLS on so the Graph API stand-in and
the local analyser answer inside the web process. The database and the Redis db they are given are
emptied first: never point them at data you keep.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

RESULTS_DIR = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent  # the virtualenv running the script also holds gunicorn, flask and alembic
HOST = "127.0.0.1"
DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/5"
APP_SECRET = "bench-app-secret-0123456789"
N8N_SECRET = "bench-n8n-secret-0123456789"
START_TIMEOUT_S = 90.0
STOP_GRACE_S = 15.0


class BenchError(RuntimeError):
    """The benchmark could not run (a process did not start, a migration failed): no figures."""


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """`--database-url` and `--redis-url`: the stores a benchmark empties and runs the service on."""
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL,
                        help="PostgreSQL for the service; its tables are TRUNCATED (default %(default)s)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL,
                        help="Redis db for the service; FLUSHED (default %(default)s)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def percentiles(seconds: Sequence[float], ranks: Sequence[int] = (50, 95), digits: int = 1) -> dict[str, float | None]:
    """Nearest-rank percentiles (`p50`, `p95`, ... as `ranks` says) and `max`, in milliseconds."""
    if not seconds:
        return {**{f"p{r}": None for r in ranks}, "max": None}
    ordered = sorted(seconds)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000, digits)

    return {**{f"p{r}": rank(r) for r in ranks}, "max": round(ordered[-1] * 1000, digits)}


def machine_info() -> dict[str, Any]:
    """What the figures depend on: cores, Python, platform, commit, and the load already on the machine."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "implementation": platform.python_implementation(),
            "platform": platform.platform(), "machine": platform.machine(), "git_commit": commit.stdout.strip(),
            "loadavg_1_5_15_before": os.getloadavg()}


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def write_results(name: str, results: dict[str, Any]) -> Path:
    """bench/results/<name>.json, with the load average after the run added to the machine section."""
    results.setdefault("machine", {})["loadavg_1_5_15_after"] = os.getloadavg()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"{name}.json"
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten {out.relative_to(ROOT)}")
    return out


def stop_on_sigterm(signum: int, frame: object) -> None:
    """A CI job killed with SIGTERM still runs the `finally` blocks that stop the processes."""
    raise SystemExit(128 + signum)


def run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S")


# --------------------------------------------------------------------------- environment and stores


def service_env(database_url: str, redis_url: str, port: int, media_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of every process of the service (and of this script's own app instance).
    Empty `WHATSAPP_API_BASE` / `N8N_WEBHOOK_URL` count as unset: the stand-ins answer."""
    env = {**os.environ, "APP_ENV": "development", "DEV_TOOLS": "true", "DATABASE_URL": database_url,
           "REDIS_URL": redis_url, "PORT": str(port), "PUBLIC_BASE_URL": f"http://{HOST}:{port}",
           "WHATSAPP_APP_SECRET": APP_SECRET, "N8N_SECRET": N8N_SECRET, "WHATSAPP_API_BASE": "",
           "N8N_WEBHOOK_URL": "", "MEDIA_DIR": str(media_dir), "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


def migrate(env: dict[str, str]) -> None:
    done = subprocess.run([str(BIN / "alembic"), "upgrade", "head"], cwd=ROOT, env=env, capture_output=True)
    if done.returncode != 0:
        raise BenchError(f"alembic upgrade head failed:\n{done.stdout.decode()}{done.stderr.decode()}")


def reset_stores(database_url: str, redis_url: str) -> None:
    """Empty every table (then put back the tiers the migration seeds) and the Redis db, as the tests do."""
    from models import Base
    from models.db import Database
    from services.quota import seed_tiers

    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            names = ", ".join(t.name for t in Base.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()
    db = Database(database_url)
    try:
        with db.session() as session, session.begin():
            seed_tiers(session)
    finally:
        db.engine.dispose()
    with Redis.from_url(redis_url) as redis:
        redis.flushdb()


def prepare(env: dict[str, str], database_url: str, redis_url: str) -> None:
    """Migrate, empty the stores, and make this process's own `create_app()` see the service's settings."""
    migrate(env)
    reset_stores(database_url, redis_url)
    os.environ.update(env)


# --------------------------------------------------------------------------- the processes


def log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


@dataclass
class Service:
    """The running processes: gunicorn at `base`, and the `flask worker`s; logs under bench/results/."""

    base: str
    redis_url: str
    procs: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by each started process with everything it forked (Linux /proc):
        the processes of its session, alive (utime + stime) or reaped (cutime + cstime)."""
        tick = os.sysconf("SC_CLK_TCK")
        sessions = {proc.pid: name for name, proc, _ in self.procs}
        used = dict.fromkeys(sessions.values(), 0.0)
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, pgrp, session, ...
            except (OSError, IndexError):
                continue
            name = sessions.get(int(fields[3]))
            if name is not None:
                used[name] += sum(int(v) for v in fields[11:15]) / tick
        return used

    def check_alive(self) -> None:
        for name, proc, log in self.procs:
            if proc.poll() is not None:
                raise BenchError(f"{name} exited with {proc.returncode}:\n{log_tail(log)}")


def _spawn(name: str, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own group: Ctrl-C reaches us, we stop it below


def _stop(procs: list[tuple[str, subprocess.Popen[bytes], Path]]) -> None:
    """SIGTERM every process group (RQ finishes the current job, gunicorn drains), SIGKILL what is left."""
    for _, proc, _ in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for _, proc, _ in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # also a work-horse its worker left behind
        proc.wait()


def http_ok(port: int, path: str) -> bool:
    """GET `path` on this host answers 200 (never through a proxy from the environment)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=1)  # not urllib: no proxy from the environment
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


@contextlib.contextmanager
def service(env: dict[str, str], *, workers: int, senders: int = 0, web_workers: int = 2, web_threads: int = 8,
            tag: str = "bench", graph_port: int | None = None) -> Iterator[Service]:
    """gunicorn (wsgi:app) + `workers` x `flask worker` + `senders` x `flask sender` (the outbox), ready
    when `/health/live` answers and every RQ worker has registered in Redis; everything is stopped when
    the block ends, whatever happened. With `graph_port`, `bench/graph_stand_in.py` also runs there as the
    process `graph`, writing the replies to the dev tools' transcripts in `REDIS_URL` (`env` must point
    `WHATSAPP_API_BASE` at it: `graph_api_base`)."""
    from rq import Worker

    port = int(env["PORT"])
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    svc = Service(env["PUBLIC_BASE_URL"], env["REDIS_URL"])
    web = [str(BIN / "gunicorn"), "wsgi:app", "-b", f"{HOST}:{port}", "-w", str(web_workers), "-k", "gthread",
           "--threads", str(web_threads), "--log-level", "warning", "--no-control-socket", "--graceful-timeout", "5"]
    flask = [str(BIN / "flask"), "--app", "app:create_app", "worker"]
    try:
        if graph_port is not None:
            graph = [sys.executable, str(ROOT / "bench" / "graph_stand_in.py"), "--port", str(graph_port),
                     "--redis-url", env["REDIS_URL"]]
            log = RESULTS_DIR / f"{tag}-graph.log"
            svc.procs.append(("graph", _spawn("graph", graph, env, log), log))
        log = RESULTS_DIR / f"{tag}-web.log"
        svc.procs.append(("web", _spawn("web", web, env, log), log))
        for k in range(workers):
            log = RESULTS_DIR / f"{tag}-worker{k + 1}.log"
            svc.procs.append((f"worker{k + 1}", _spawn(f"worker{k + 1}", flask, env, log), log))
        for k in range(senders):
            log = RESULTS_DIR / f"{tag}-sender{k + 1}.log"
            svc.procs.append((f"sender{k + 1}", _spawn(f"sender{k + 1}", [*flask[:-1], "sender"], env, log), log))
        deadline = time.monotonic() + START_TIMEOUT_S
        with Redis.from_url(env["REDIS_URL"]) as redis:
            while not (http_ok(port, "/health/live") and Worker.count(connection=redis) >= workers
                       and (graph_port is None or http_ok(graph_port, "/bench/received"))):
                svc.check_alive()
                if time.monotonic() > deadline:
                    raise BenchError(f"the service was not ready after {START_TIMEOUT_S:.0f} s")
                time.sleep(0.2)
        yield svc
    finally:
        _stop(svc.procs)


def graph_api_base(graph_port: int) -> str:
    """The `WHATSAPP_API_BASE` of the service when `bench/graph_stand_in.py` listens on `graph_port`."""
    return f"http://{HOST}:{graph_port}/v21.0"


# --------------------------------------------------------------------------- playing Meta


def post_webhook(session: Any, base: str, body: dict[str, Any]) -> int:
    """POST a Meta-shaped body to our webhook, signed with the app secret; the HTTP status."""
    from devtools import webhook_bodies

    response = webhook_bodies.post_signed(base + "/webhooks/whatsapp", body, APP_SECRET, timeout=30, session=session)
    return response.status_code


def wait_until(check: Any, timeout: float, interval: float = 0.05) -> Any:
    """Poll `check()` until it returns something truthy; None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
