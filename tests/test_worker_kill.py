"""A worker killed with SIGKILL in the middle of `run_analysis` (while N8N is working): once a new
worker starts, the analysis completes, and the farmer was charged once. Real Redis and worker
processes (CI); the wait is RQ's own detection of the dead worker (its heartbeat TTL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from rq.registry import StartedJobRegistry
from sqlalchemy import func, select

from app import create_app
from models import Analysis, UsageLedger
from services import quota
from services.queue import ANALYSIS, get_queue
from settings import PROJECT_ROOT
from tests.chat import Farmer
from tests.conftest import APP_SECRET, FIXTURES, N8N_SECRET, REAL_REDIS, TEST_REDIS_URL, make_settings
from tests.graph_server import graph_server
from tests.test_analysis_pipeline import leaf_jpeg

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason="worker processes need a real Redis (TEST_REDIS_URL)")


class SlowN8N:
    """N8N that takes its time on the first request (long enough to be killed in), then answers;
    with `first_delay=0` it answers every request at once."""

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
                    time.sleep(first_delay)  # the worker calling us is killed meanwhile
                result = (FIXTURES / "n8n" / "result_full_tr.json").read_text()
                answer = result.replace("{{analysis_id}}", str(body["analysis_id"])).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/webhook/plant-analysis"


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (RQ's work-horse runs in a session of its own)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def worker(database_url: str, graph_base: str, n8n_url: str, *, burst: bool,
           queues: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    env = {**os.environ, "APP_ENV": "test", "DATABASE_URL": database_url, "REDIS_URL": TEST_REDIS_URL,
           "WHATSAPP_APP_SECRET": APP_SECRET, "WHATSAPP_API_BASE": graph_base, "WHATSAPP_TOKEN": "test-token-abc",
           "N8N_WEBHOOK_URL": n8n_url, "N8N_SECRET": N8N_SECRET, "PUBLIC_BASE_URL": "https://bot.test",
           "ANALYSIS_RETRY_SECONDS": "0", "RETRY_BACKOFF_BASE": "0", "LOG_LEVEL": "WARNING",
           "MEDIA_DIR": make_settings(database_url).MEDIA_DIR}
    args = [sys.executable, "-m", "flask", "--app", "app:create_app", "worker"] + (["--burst"] if burst else [])
    args += [f"--queue={q}" for q in queues]
    return subprocess.Popen(args, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def test_sigkill_mid_analysis_then_a_new_worker_completes_it(app, session, database_url):
    n8n = SlowN8N()
    threading.Thread(target=n8n.httpd.serve_forever, daemon=True).start()
    try:
        with graph_server() as graph:
            graph.media["1234567890123456"] = leaf_jpeg()
            web = create_app(make_settings(database_url, WHATSAPP_API_BASE=graph.base, N8N_WEBHOOK_URL=n8n.url))
            with web.extensions["db"].session() as s, s.begin():
                quota.seed_tiers(s)
            farmer = Farmer(web, graph, queues=("inbound",))
            farmer.onboard()
            farmer.photo("domates")
            farmer.taps("Geç")
            assert "sıraya alındı" in farmer.taps("Gönder")[0]
            analysis_id = session.scalar(select(Analysis.id))

            first = worker(database_url, graph.base, n8n.url, burst=False)
            assert n8n.first_arrived.wait(60), first.stderr.read() if first.poll() is not None else "no request"
            for pid in (*children(first.pid), first.pid):  # the work-horse (its own session) and the worker
                os.kill(pid, signal.SIGKILL)
            first.wait(10)
            assert session.scalar(select(Analysis.status).where(Analysis.id == analysis_id)) == "processing"

            # RQ notices a dead worker's job once its heartbeat lapses; a worker starting after that recovers it.
            registry = StartedJobRegistry(queue=get_queue(ANALYSIS, web.extensions["redis"]))
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and not registry.get_expired_job_ids():
                time.sleep(1)
            second = worker(database_url, graph.base, n8n.url, burst=True)
            _, err = second.communicate(timeout=120)
            assert second.returncode == 0, err[-2000:]

            session.expire_all()
            analysis = session.get(Analysis, analysis_id)
            assert analysis.status == "completed", analysis.failure_reason
            assert analysis.health_score == 6
            charges = session.scalar(select(func.count()).select_from(UsageLedger).where(UsageLedger.kind == "charge"))
            refunds = session.scalar(select(func.count()).select_from(UsageLedger).where(UsageLedger.kind == "refund"))
            assert (charges, refunds) == (1, 0)
            assert len(n8n.requests) == 2
            assert any("6/10" in text for text in graph.texts())
            web.extensions["db"].engine.dispose()
    finally:
        n8n.httpd.shutdown()
