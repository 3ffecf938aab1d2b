"""Fault injection against real PostgreSQL, real Redis and real worker processes (QUALITY.md, reliability).

Each test breaks one thing on purpose while farmers are talking to the bot, and then checks the
same four promises: nothing lost (every message and analysis reaches an end state), nothing charged
twice (the usage ledger), every farmer answered (by what the Graph API stand-in received), and
every failure visible to support (message and analysis rows, RQ's failed registry, the logs).

- Redis stopped during webhook traffic, then started again empty.
- PostgreSQL connections of a running job terminated (`pg_terminate_backend`) mid-transaction.
- N8N slow, then down (circuit breaker), then back; N8N flapping and failing.
- Graph API 429 / 131056 / 5xx bursts.
- The same webhook delivered 3 times at once, for 100 bodies, through a real gunicorn.

A worker killed with SIGKILL in the middle of an analysis is `tests/test_worker_kill.py`.

Marked `faults`; skipped unless `TEST_DATABASE_URL` (PostgreSQL) and `TEST_REDIS_URL` are set. The
Redis-outage test starts a private `redis-server` on a free port and never touches the shared one.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from sqlalchemy import create_engine, func, select, text

from app import create_app
from bot import replies
from devtools import webhook_bodies
from models import Analysis, Farmer, Message, UsageLedger
from services import quota
from services.circuit import CircuitBreaker
from services.queue import ANALYSIS, INBOUND, OUTBOUND, get_queue
from services.whatsapp.outbox import send_pending
from tests.chat import Farmer as FarmerChat
from tests.conftest import PHONE_NUMBER_ID, TEST_DATABASE_URL, TEST_REDIS_URL, make_settings, sign
from tests.fault_helpers import (
    BAD_GATEWAY,
    PAIR_RATE,
    RATE_LIMIT,
    SERVICE_ERROR,
    Process,
    flask_command,
    free_port,
    graph_stand_in,
    n8n_stand_in,
    private_redis,
    run_flask,
    service_env,
    wait_until,
    worker,
)
from tests.test_analysis_pipeline import leaf_jpeg

REAL_SERVICES = TEST_DATABASE_URL.startswith("postgresql") and bool(TEST_REDIS_URL)
pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(not REAL_SERVICES, reason="fault tests need real PostgreSQL and Redis "
                                                 "(TEST_DATABASE_URL=postgresql+psycopg://..., TEST_REDIS_URL)"),
]
QUEUED = "sıraya alındı"
RESULT = "6/10"  # the health score of tests/fixtures/n8n/result_full_tr.json


@pytest.fixture
def web_apps() -> Iterator[list[Flask]]:
    """Apps a test builds with its own settings; their connection pools are closed at the end."""
    apps: list[Flask] = []
    yield apps
    for web in apps:
        web.extensions["db"].engine.dispose()


def services(web_apps: list[Flask], database_url: str, **overrides: Any) -> tuple[Flask, dict[str, str]]:
    """The web app for these settings (tiers seeded) and the environment giving a process the same."""
    settings = make_settings(database_url, LOG_LEVEL="INFO", **overrides)
    web = create_app(settings)
    web_apps.append(web)
    with web.extensions["db"].session() as s, s.begin():
        quota.seed_tiers(s)
    return web, service_env(settings)


def phone(i: int) -> str:
    return f"9053300{i:05d}"


def text_body(sender: str, body: str, wamid: str) -> dict[str, Any]:
    message = webhook_bodies.text(sender, body, wamid=wamid)
    return webhook_bodies.messages_body([message], sender=sender, name="Çiftçi", phone_number_id=PHONE_NUMBER_ID)


def post(client: Any, body: dict[str, Any]) -> int:
    raw = json.dumps(body).encode()
    return client.post("/webhooks/whatsapp", data=raw, content_type="application/json",
                       headers={"X-Hub-Signature-256": sign(raw)}).status_code


def ledger(session: Any) -> tuple[int, int]:
    """(charges, refunds) in the usage ledger."""
    kinds = dict(session.execute(select(UsageLedger.kind, func.count()).group_by(UsageLedger.kind)).all())
    return kinds.get("charge", 0), kinds.get("refund", 0)


def inbound_statuses(session: Any) -> dict[str, int]:
    return dict(session.execute(select(Message.status, func.count()).where(Message.direction == "in")
                                .group_by(Message.status)).all())


def outbound_rows(session: Any, phone_digits: str | None = None) -> list[Message]:
    query = select(Message).where(Message.direction == "out").order_by(Message.id)
    if phone_digits:
        query = query.where(Message.phone == "+" + phone_digits)
    session.expire_all()
    return list(session.scalars(query))


def assert_answered_once_each(session: Any, graph: Any, phones: list[str]) -> None:
    """Every reply row was sent, and sent exactly once: the stand-in got one message per row."""
    for p in phones:
        rows = outbound_rows(session, p)
        assert rows, f"farmer {p} got no answer"
        assert [r.status for r in rows] == ["accepted"] * len(rows), [(r.id, r.status, r.error_code) for r in rows]
        assert len({r.wamid for r in rows}) == len(rows)
        assert len(graph.sent_to(p)) == len(rows), (p, graph.texts(p))


def submit_button(farmer: FarmerChat) -> dict[str, Any]:
    """The farmer's tap on `Gönder` of the confirmation just shown, as a message (not yet delivered)."""
    [send] = [b["reply"]["id"] for b in farmer.last_bodies[-1]["interactive"]["action"]["buttons"]
              if b["reply"]["id"].startswith("submit:")]
    return farmer._message("interactive", {"type": "button_reply", "button_reply": {"id": send, "title": "Gönder"}})


def ready_to_submit(web: Flask, graph: Any, i: int, crop: str = "domates") -> tuple[FarmerChat, dict[str, Any]]:
    """A farmer who consented, sent a photo and is looking at the confirmation (all handled in this process)."""
    media_id = f"77000{i}"
    graph.media[media_id] = leaf_jpeg()
    farmer = FarmerChat(web, graph, phone=phone(i), name=f"Çiftçi {i}", queues=(INBOUND, OUTBOUND))
    farmer.onboard()
    farmer.photo(crop, media_id=media_id)
    farmer.taps("Geç")
    return farmer, submit_button(farmer)


def analyses_done(session: Any, count: int) -> bool:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(Analysis)
                          .where(Analysis.status.in_(("completed", "failed")))) == count


# --- Redis ------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs the redis-server program for a private server")
def test_redis_stopped_during_webhook_traffic_then_restarted(app, session, database_url, web_apps, caplog):
    """Webhooks answer 200 while Redis is down (the rows are committed), a running worker survives the
    outage, the sweeper queues what Redis never got (or lost: it restarts empty), every farmer is answered
    once per message, and the outage is in the logs."""
    farmers = [phone(i) for i in range(4)]
    with private_redis() as red, graph_stand_in() as graph:
        web, env = services(web_apps, database_url, REDIS_URL=red.url, WHATSAPP_API_BASE=graph.base)
        client = web.test_client()
        with worker(env) as w:
            for i, p in enumerate(farmers):
                assert post(client, text_body(p, "Merhaba", f"wamid.R1-{i}")) == 200
            wait_until(lambda: inbound_statuses(session) == {"processed": 4}, 60, what="the first messages")

            red.stop()
            for i, p in enumerate(farmers):
                assert post(client, text_body(p, "yardım", f"wamid.R2-{i}")) == 200
            assert post(client, text_body(farmers[0], "yardım", "wamid.R2-0")) == 200  # Meta re-delivers one
            assert inbound_statuses(session) == {"processed": 4, "received": 4}  # committed, nothing lost
            assert caplog.text.count("left for the sweeper") == 4

            red.start()  # empty: whatever was queued before is gone too
            run_flask(env, "sweep", "--grace", "0")
            wait_until(lambda: inbound_statuses(session) == {"processed": 8}, 90, what="the swept messages")
            wait_until(lambda: all(r.status == "accepted" for r in outbound_rows(session)), 30,
                       what="every reply sent")
        assert "could not connect to Redis" in w.log()  # the worker saw the outage and carried on
    assert_answered_once_each(session, graph, farmers)
    attempts = session.scalars(select(Message.attempts).where(Message.direction == "in")).all()
    assert attempts == [1] * 8  # each message handled once
    assert ledger(session) == (0, 0)


# --- PostgreSQL ---------------------------------------------------------------------------------------------


def _blocked_backend(observer: Any) -> int | None:
    """The backend of ours that is waiting for a row lock (the job we are holding up)."""
    return observer.execute(text(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND wait_event_type = 'Lock'")).scalar()


def _drop_when_blocked(observer: Any, blocker: Any) -> None:
    """Terminate the waiting job's connection, then let go of the lock it was waiting for."""
    pid = wait_until(lambda: _blocked_backend(observer), 60, 0.1, what="a job waiting for our row lock")
    assert observer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    blocker.rollback()


def test_postgres_connection_dropped_mid_job(app, session, database_url, web_apps):
    """Twice: the `Gönder` job after it charged (before commit), and the analysis job after N8N answered.
    Both are retried by RQ and complete; the farmer is charged once and gets the result."""
    with graph_stand_in() as graph, n8n_stand_in() as n8n:
        web, env = services(web_apps, database_url, WHATSAPP_API_BASE=graph.base, N8N_WEBHOOK_URL=n8n.url)
        farmer, tap = ready_to_submit(web, graph, 1)
        farmer.deliver(tap, run=False)  # stored and queued; the worker process will run it
        tap_id = session.scalar(select(Message.id).where(Message.wamid == tap["id"]))

        engine, locks = create_engine(database_url, isolation_level="AUTOCOMMIT"), create_engine(database_url)
        try:
            with engine.connect() as observer, locks.connect() as holder, worker(env) as w:
                # 1. Hold the tap's row: the job charges, then waits to mark it processed; drop it there.
                blocker = holder.begin()
                holder.execute(text("SELECT id FROM messages WHERE id = :id FOR UPDATE"), {"id": tap_id})
                n8n.hold_next = True
                _drop_when_blocked(observer, blocker)
                # RQ retries it after 5 s (inbound_retry); it charges again from scratch, once.
                assert n8n.arrived.wait(60), w.log()[-3000:]

                # 2. N8N has the request; hold the analysis row so the job waits to store the result; drop it.
                analysis_id = session.scalar(select(Analysis.id))
                blocker = holder.begin()
                holder.execute(text("SELECT id FROM analyses WHERE id = :id FOR UPDATE"), {"id": analysis_id})
                n8n.release.set()
                _drop_when_blocked(observer, blocker)
                wait_until(lambda: analyses_done(session, 1), 60, what="the analysis to end")
                wait_until(lambda: any(RESULT in t for t in graph.texts(farmer.phone)), 30, what="the result")
                log = w.log()
        finally:
            engine.dispose()
            locks.dispose()

        analysis = session.get(Analysis, analysis_id)
        assert analysis.status == "completed" and analysis.attempts == 2
        assert ledger(session) == (1, 0)  # charged once although the charging transaction ran twice
        assert len(n8n.requests) == 2
        texts = graph.texts(farmer.phone)
        assert sum(QUEUED in t for t in texts) == 1 and sum(RESULT in t for t in texts) == 1
        # Visible: the failures in the worker's log, and the retries used in RQ.
        assert log.count("terminating connection due to administrator command") >= 2
        redis = web.extensions["redis"]
        assert Job.fetch(f"inbound-{tap_id}", connection=redis).retries_left == 2
        assert Job.fetch(f"analysis-{analysis_id}", connection=redis).retries_left == 2
        assert_answered_once_each(session, graph, [farmer.phone])


# --- N8N ----------------------------------------------------------------------------------------------------


def test_n8n_slow_then_down_opens_the_circuit_and_queued_analyses_wait(app, session, database_url, web_apps):
    """Timeouts open the shared breaker after CIRCUIT_FAILURES; while it is open no request reaches N8N and
    queued analyses wait without using their retries; one probe finds N8N down; when it is back every
    analysis completes, each with exactly one more request. Charged once each, nothing refunded."""
    with graph_stand_in() as graph, n8n_stand_in() as n8n:
        web, env = services(web_apps, database_url, WHATSAPP_API_BASE=graph.base, N8N_WEBHOOK_URL=n8n.url,
                            N8N_TIMEOUT_SECONDS=1, CIRCUIT_FAILURES=3, CIRCUIT_COOLDOWN_SECONDS=2)
        waiting = [ready_to_submit(web, graph, i) for i in range(3)]
        redis = web.extensions["redis"]
        breaker = CircuitBreaker(redis, "n8n")
        n8n.mode, n8n.slow_seconds = "slow", 2.5

        waiting[0][0].deliver(waiting[0][1])  # the first analysis is queued
        with worker(env, ANALYSIS, OUTBOUND) as w:
            wait_until(lambda: breaker.state() != "closed", 30, what="the circuit to open")
            assert [mode for _, _, mode in n8n.requests] == ["slow"] * 3  # exactly CIRCUIT_FAILURES calls
            n8n.stop()  # and now N8N is down: connections refused
            for farmer, tap in waiting[1:]:
                farmer.deliver(tap)
            ids = list(session.scalars(select(Analysis.id).order_by(Analysis.id)))
            scheduled = ScheduledJobRegistry(queue=get_queue(ANALYSIS, redis))

            def waits() -> list[Job]:
                try:
                    jobs = [Job.fetch(j, connection=redis) for j in scheduled.get_job_ids() if "-wait-" in j]
                except NoSuchJobError:  # one just left the registry to run
                    return []
                return jobs if {int(j.args[0]) for j in jobs} == set(ids) else []

            for job in wait_until(waits, 30, what="every analysis waiting for the circuit"):
                assert job.retries_left == 3  # waiting is not a retry
            assert len(n8n.requests) == 3
            wait_until(lambda: "N8N connection failed" in w.log(), 30, what="a probe to find N8N down")
            assert analyses_done(session, 0)  # nothing failed meanwhile

            n8n.mode = "ok"
            n8n.start()
            wait_until(lambda: analyses_done(session, 3), 60, what="every analysis to complete")
            wait_until(lambda: all(RESULT in " ".join(graph.texts(f.phone)) for f, _ in waiting), 30,
                       what="every result sent")

        assert [mode for _, _, mode in n8n.requests] == ["slow"] * 3 + ["ok"] * 3
        for analysis in session.scalars(select(Analysis)):
            assert analysis.status == "completed", analysis.failure_reason
        assert session.scalar(select(Analysis.attempts).where(Analysis.id == ids[0])) >= 4
        assert breaker.state() == "closed"
        assert ledger(session) == (3, 0)
        assert_answered_once_each(session, graph, [f.phone for f, _ in waiting])


def test_n8n_flapping_and_failing(app, session, database_url, web_apps):
    """N8N fails every other request, always for one crop, and answers `success: false` for another:
    retried analyses complete; the others end `failed` with the reason, are refunded once, the farmer is
    told kindly, and the jobs are in RQ's failed registry for support."""
    with graph_stand_in() as graph, n8n_stand_in() as n8n:
        web, env = services(web_apps, database_url, WHATSAPP_API_BASE=graph.base, N8N_WEBHOOK_URL=n8n.url,
                            CIRCUIT_FAILURES=50)
        n8n.mode, n8n.by_crop = "flap", {"biber": "error", "misir": "failed_result"}
        farmers = [ready_to_submit(web, graph, i, crop) for i, crop in enumerate(["domates", "domates", "biber",
                                                                                 "mısır"])]
        for farmer, tap in farmers:
            farmer.deliver(tap)
        with worker(env, ANALYSIS, OUTBOUND):
            wait_until(lambda: analyses_done(session, 4), 90, what="every analysis to end")
            wait_until(lambda: all(r.status == "accepted" for r in outbound_rows(session)), 30,
                       what="every answer sent")

        by_crop = {a.crop: a for a in session.scalars(select(Analysis))}
        assert by_crop.keys() == {"domates", "biber", "misir"}
        analyses = list(session.scalars(select(Analysis).order_by(Analysis.id)))
        assert [a.status for a in analyses] == ["completed", "completed", "failed", "failed"]
        assert any(mode == "error" for _, crop, mode in n8n.requests if crop == "domates")  # it did flap
        assert analyses[2].failure_reason.startswith("N8N unavailable after retries")
        assert [mode for aid, _, mode in n8n.requests if aid == analyses[2].id] == ["error"] * 4  # 1 + 3 retries
        assert analyses[3].failure_reason and "after retries" not in analyses[3].failure_reason
        assert ledger(session) == (4, 2)
        refunded = session.scalars(select(UsageLedger.analysis_id).where(UsageLedger.kind == "refund")).all()
        assert sorted(refunded) == [analyses[2].id, analyses[3].id]

        kind_failure = replies.analysis_failed("tr", False).text
        for (farmer, _), analysis in zip(farmers, analyses, strict=True):
            texts = graph.texts(farmer.phone)
            expected = RESULT if analysis.status == "completed" else kind_failure
            assert sum(expected in t for t in texts) == 1, texts
        failed = FailedJobRegistry(queue=get_queue(ANALYSIS, web.extensions["redis"])).get_job_ids()
        assert sorted(failed) == sorted(f"analysis-{a.id}" for a in analyses[2:])
        assert_answered_once_each(session, graph, [f.phone for f, _ in farmers])


# --- Graph API ------------------------------------------------------------------------------------------------


def test_graph_api_429_131056_and_5xx_bursts(app, session, database_url, web_apps):
    """Each farmer's replies meet a burst of refusals: rate limit, pair rate limit, a bare 502, or 500
    forever. Retried with backoff (RETRY_BACKOFF_BASE=1: RQ's scheduler brings them back) and sent once,
    or marked failed with Meta's error code in the message log and the job in RQ's failed registry."""
    farmers = [phone(i) for i in range(4)]
    a, b, c, d = farmers
    with graph_stand_in() as graph:
        graph.scripts = {a: [RATE_LIMIT, RATE_LIMIT], b: [PAIR_RATE] * 3, d: [BAD_GATEWAY]}
        graph.always = {c: SERVICE_ERROR}
        web, env = services(web_apps, database_url, WHATSAPP_API_BASE=graph.base, RETRY_BACKOFF_BASE=1)
        client = web.test_client()
        for i, p in enumerate(farmers):
            assert post(client, text_body(p, "Merhaba", f"wamid.G{i}")) == 200
        with worker(env):
            wait_until(lambda: inbound_statuses(session) == {"processed": 4}, 60, what="the messages")
            wait_until(lambda: all(r.status in ("accepted", "failed") for r in outbound_rows(session)), 90,
                       what="every reply sent or given up")

        assert_answered_once_each(session, graph, [a, b, d])
        assert [r.attempts for r in outbound_rows(session, a)] == [3]  # one reply: the privacy notice
        assert [r.attempts for r in outbound_rows(session, b)] == [4]  # one reply: the privacy notice
        assert [r.attempts for r in outbound_rows(session, d)] == [2]  # one reply: the privacy notice
        assert all(r.error_code is None for p in (a, b, d) for r in outbound_rows(session, p))

        given_up = outbound_rows(session, c)
        assert given_up and graph.sent_to(c) == []
        for row in given_up:  # what support sees in the message log
            assert (row.status, row.error_code, row.error_title) == ("failed", 131000, "Something went wrong")
            assert row.failed_at is not None and row.attempts == 6 - (row is not given_up[0])
        failed = FailedJobRegistry(queue=get_queue(OUTBOUND, web.extensions["redis"])).get_job_ids()
        assert sorted(failed) == sorted(f"outbound-{r.id}" for r in given_up)

        # Never sent twice once accepted: the sweeper and a repeated delivery find nothing to send.
        sent = len(graph.sent)
        run_flask(env, "sweep", "--grace", "0")
        with web.app_context():
            assert {send_pending(r.id, final=True) for r in outbound_rows(session)} == {"already sent"}
        assert len(graph.sent) == sent


# --- the same webhook three times at once -------------------------------------------------------------------


def test_same_webhook_three_times_concurrently_100_times_over_gunicorn(app, session, database_url, web_apps):
    """100 bodies (95 farmers saying hello, 5 tapping `Gönder`), each POSTed by 3 threads at once to a real
    gunicorn (2 processes x 4 threads): one row and one job per message, then (2 worker processes) one
    answer per message, one analysis and one charge per tap."""
    with graph_stand_in() as graph:
        web, env = services(web_apps, database_url, WHATSAPP_API_BASE=graph.base)
        tappers = [ready_to_submit(web, graph, 900 + i) for i in range(5)]
        before = {m.id for m in outbound_rows(session)}
        bodies = [text_body(phone(i), "Merhaba", f"wamid.C{i}") for i in range(95)]
        bodies += [farmer.body(tap) for farmer, tap in tappers]
        wamids = [b["entry"][0]["changes"][0]["value"]["messages"][0]["id"] for b in bodies]

        port = free_port()
        gunicorn = Process([sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{port}",
                            "--workers", "2", "--threads", "4"], {**env, "EMBEDDED_WORKER": "False"})
        statuses: list[int] = []
        try:
            wait_until(lambda: _live(port), 60, what="gunicorn to start")

            def deliver(raw: bytes, barrier: threading.Barrier) -> None:
                barrier.wait()
                response = requests.post(f"http://127.0.0.1:{port}/webhooks/whatsapp", data=raw, timeout=30,
                                         headers={"Content-Type": "application/json",
                                                  "X-Hub-Signature-256": sign(raw)})
                statuses.append(response.status_code)

            for start in range(0, len(bodies), 5):  # five bodies at a time, each by three threads at once
                threads = []
                for body in bodies[start:start + 5]:
                    raw, barrier = json.dumps(body).encode(), threading.Barrier(3)
                    threads += [threading.Thread(target=deliver, args=(raw, barrier)) for _ in range(3)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        finally:
            gunicorn.stop()
        assert statuses == [200] * 300

        rows = dict(session.execute(select(Message.wamid, Message.id).where(Message.wamid.in_(wamids))).all())
        assert len(rows) == 100
        queued = get_queue(INBOUND, web.extensions["redis"]).job_ids
        assert sorted(queued) == sorted(f"inbound-{i}" for i in rows.values())  # one job per message

        workers = [flask_command(env, "worker", "--burst", f"--queue={INBOUND}", f"--queue={OUTBOUND}")
                   for _ in range(2)]
        for w in workers:
            assert w.wait(240) == 0, w.log()[-3000:]
            w.stop()

    session.expire_all()
    assert session.scalars(select(Message.attempts).where(Message.wamid.in_(wamids))).all() == [1] * 100
    assert session.scalar(select(func.count()).select_from(Analysis)) == 5
    assert ledger(session) == (5, 0)
    new_rows = [m for m in outbound_rows(session) if m.id not in before]
    assert all(m.status == "accepted" for m in new_rows)
    per_farmer = {p: [m for m in new_rows if m.phone == "+" + p] for p in [phone(i) for i in range(95)]}
    answers = {len(v) for v in per_farmer.values()}
    assert len(answers) == 1 and answers.pop() >= 1  # every hello answered, all alike
    for farmer, _ in tappers:
        assert sum(QUEUED in t for t in graph.texts(farmer.phone)) == 1
    sent_after = [b for b in graph.sent if _digits_of(b) in {p for p in per_farmer}]
    assert len(sent_after) == sum(len(v) for v in per_farmer.values())  # none twice
    assert session.scalar(select(func.count()).select_from(Farmer)) == 100


def _digits_of(body: dict[str, Any]) -> str:
    return "".join(c for c in str(body.get("to", "")) if c.isdigit())


def _live(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200
    except requests.RequestException:
        return False
