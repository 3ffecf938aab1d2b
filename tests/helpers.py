"""Plain helpers the tests import: constants, fixture files, signatures, settings, running jobs, polling.

Fixtures live in `tests/conftest.py` (pytest finds them there); everything a test calls by name lives
here, so no test imports from conftest.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Executor
from functools import cache, partial
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from models import Base
from services import context, handoff, runtime_settings, signing, whatsapp
from services.queue import INBOUND, QUEUE_NAMES, get_queue
from services.redis_conn import quick
from services.whatsapp.outbox import DUE_BATCH, Transmitted, settle, take_due, transmit
from services.worker import AppWorker
from settings import PROJECT_ROOT, load_settings

FIXTURES = Path(__file__).parent / "fixtures"
APP_SECRET = "test-app-secret-0123456789"
VERIFY_TOKEN = "test-verify-token"
GRAPH = "https://graph.test/v21.0"
PHONE_NUMBER_ID = "106540352242922"
N8N_URL = "https://n8n.test/webhook/plant-analysis"
N8N_SECRET = "test-n8n-secret-0123456789"
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
REAL_REDIS = bool(TEST_REDIS_URL)


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / "whatsapp" / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    return json.loads(fixture_bytes(name))


def sign(raw: bytes, secret: str = APP_SECRET) -> str:
    return signing.meta_signature(raw, secret)


def n8n_headers(raw: bytes, analysis_id: int, purpose: signing.Purpose = signing.Purpose.RESULT,
                secret: str = N8N_SECRET, now: float | None = None) -> dict[str, str]:
    """The `X-ZiraAI-Signature` header (version 2) N8N or the service would send with `raw`."""
    return {signing.HEADER: signing.sign(raw, purpose=purpose, analysis_id=analysis_id, secrets=(secret,),
                                         now=time.time() if now is None else now)}


def post_webhook(client: FlaskClient, raw: bytes | dict[str, Any], secret: str = APP_SECRET):
    if isinstance(raw, dict):
        raw = json.dumps(raw).encode()
    return client.post("/webhooks/whatsapp", data=raw, content_type="application/json",
                       headers={"X-Hub-Signature-256": sign(raw, secret)})


def run_concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
    """Every call at once, each from its own thread released together; their results in the calls' order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def post_concurrently(app: Flask, bodies: list[dict[str, Any]]) -> None:
    """Every body posted to the webhook at once, each from its own thread (as Meta's concurrent deliveries
    arrive); each must be answered 200."""
    responses = run_concurrently([partial(post_webhook, app.test_client(), body) for body in bodies])
    assert [r.status_code for r in responses] == [200] * len(bodies)


def migrate(url: str) -> None:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.attributes["database_url"] = url
    cfg.attributes["configure_logging"] = False
    command.upgrade(cfg, "head")


@cache
def media_dir() -> Path:
    """One temporary media directory for the whole run (never the checkout's)."""
    return Path(tempfile.mkdtemp(prefix="ziraai-media-"))


def make_settings(database_url: str, **overrides: Any):
    base = {
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "PASSWORD_HASH": "pbkdf2:sha256:1",  # staff passwords: a cheap hash (production refuses it)
        "REDIS_URL": TEST_REDIS_URL,
        "WHATSAPP_APP_SECRET": APP_SECRET,
        "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
        "WHATSAPP_API_BASE": GRAPH,
        "WHATSAPP_TOKEN": "test-token-abc",
        "WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
        "TESTING": True,
        "EMBEDDED_WORKER": False,
        "RETRY_BACKOFF_BASE": 0,
        "ANALYSIS_RETRY_SECONDS": 0,
        "N8N_WEBHOOK_URL": N8N_URL,
        "N8N_SECRET": N8N_SECRET,
        "PUBLIC_BASE_URL": "https://bot.test",
        "MEDIA_DIR": str(media_dir()),
        "SWEEP_GRACE_SECONDS": 0,
        "LOG_LEVEL": "INFO",
    }
    return load_settings({**base, **overrides}, environ={}, dotenv_path=None)


def clean_stores(app: Flask) -> None:
    """Empty every table and the app's Redis db, so each test starts from nothing."""
    db = app.extensions["db"]
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            names = ", ".join(t.name for t in Base.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
    app.extensions["redis"].flushdb()


def set_runtime(app: Flask, **values: Any) -> None:
    """Change runtime settings (e.g. quiet hours) as the admin API does, and tell every process."""
    with app.app_context(), app.extensions["db"].session() as s, s.begin():
        runtime_settings.save(s, values, None)
    with app.app_context():
        runtime_settings.announce()


def run_jobs(app: Flask, queues: tuple[str, ...] = QUEUE_NAMES) -> None:
    """Run the handed-off messages and the queued jobs the way a worker does (same process, no fork),
    until the hand-off and the queues are empty, then send what the outbox still holds due, as a sender would."""
    redis = app.extensions["redis"]
    with app.app_context():  # the jobs run in this app's settings, even inside another app's context
        AppWorker([get_queue(q, redis) for q in queues], connection=redis).work(burst=True)
    send_outbox(app)


def send_due(limit: int = DUE_BATCH, pool: Executor | None = None) -> int:
    """One pass of a sender, made of the senders' own steps (`take_due`, `transmit`, `settle`) but
    finished before it returns, so a test can count what one pass did: claim what may go now, send it
    (concurrently through `pool` when given), record it. Returns how many rows were tried or settled; a
    RedisError (the shared rate limit is unreachable) ends the pass after the sends done so far are recorded."""
    batch = take_due(limit)
    client, redis = whatsapp.client(), quick(context.redis())
    if pool is not None:
        results = list(pool.map(lambda out: transmit(client, redis, out), batch.sends))
    else:
        results = []
        for out in batch.sends:  # one after the other; after a limiter failure the rest are not tried
            failed = next((r.unsent for r in results if r.unsent is not None), None)
            results.append(Transmitted(out, unsent=failed) if failed else transmit(client, redis, out))
    outcomes = settle(results)
    return batch.settled + sum(1 for outcome in outcomes if outcome != "waiting")


def send_outbox(app: Flask) -> None:
    """Sender passes until nothing is due (retries are due at once: the tests' backoff base is 0)."""
    with app.app_context():
        for _ in range(100):
            if not send_due():
                return
    raise AssertionError("the outbox still had due messages after 100 passes")


def queued_job_ids(app: Flask, queue: str) -> list[str]:
    """The jobs waiting on `queue`; on `inbound`, first the handed-off messages, named as the job that
    would carry each one (`inbound-<id>`): the webhook hands new messages over that way."""
    redis = app.extensions["redis"]
    handed_off = [f"inbound-{i}" for i in handoff.waiting(redis)] if queue == INBOUND else []
    return handed_off + get_queue(queue, redis).job_ids


def free_port() -> int:
    """A port nobody listens on right now (for a server that must know its port before it starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float = 20, interval: float = 0.1, what: str = "") -> Any:
    """Poll until `predicate()` is truthy and return its value; AssertionError naming `what` after
    `timeout` seconds. Tests wait for a state this way, never with a fixed sleep that hopes it came."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        time.sleep(interval)


def png_of_size(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of any size, written row by row: it costs neither memory nor time.

    20000 x 20000 zero pixels compress to about 50 KB; decoding them would take 400 MB.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
