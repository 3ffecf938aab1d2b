"""Fault injection against real PostgreSQL, real Redis and real worker processes (the reliability bar).

Each test breaks one thing on purpose while farmers are talking to the bot, and then checks the
same four promises: nothing lost (every message and analysis reaches an end state), nothing charged
twice (the usage ledger), every farmer answered (by what the Graph API stand-in received), and
every failure visible to support (message and analysis rows, RQ's failed registry, the logs).

- A worker killed with SIGKILL mid-analysis under `make run`'s supervisor: restarted, the webhook
  answering meanwhile, the analysis completed within 90 s and charged once.
- Redis killed while a job runs and started again empty: the worker keeps running, the work completes.
- Redis frozen (SIGSTOP): the webhook still answers quickly (p99 under 0.5 s), and once Redis is back
  the scheduler queues what the webhook could not.
- PostgreSQL connections of a running job terminated (`pg_terminate_backend`) mid-transaction, and
  while replies are being recorded as sent: no reply twice.
- N8N slow, then down (circuit breaker), then back; N8N flapping and failing.
- Graph API 429 / 131056 / 5xx bursts, and everything refused for 20 s: each farmer's replies still
  arrive in the order they were written.
- The same webhook delivered 3 times at once, for 100 bodies, through a real gunicorn.

Marked `faults`; skipped unless `TEST_DATABASE_URL` (PostgreSQL) and `TEST_REDIS_URL` are set. Tests that
stop, kill or freeze Redis start a private `redis-server` on a free port and never touch the shared one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import threading
import time
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
from services.queue import ANALYSIS, INBOUND, get_queue
from services.whatsapp.outbox import send_pending
from tests.chat import Farmer as FarmerChat
from tests.fault_helpers import (
    Process,
    children,
    flask_command,
    private_redis,
    running,
    service_env,
    supervised,
    worker,
)
from tests.helpers import (
    PHONE_NUMBER_ID,
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    free_port,
    make_settings,
    queued_job_ids,
    sign,
    wait_until,
)
from tests.stand_ins import BAD_GATEWAY, PAIR_RATE, RATE_LIMIT, SERVICE_ERROR, graph_stand_in, n8n_stand_in
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


def ledger(session: Any, farmer_id: int | None = None) -> tuple[int, int]:
    """(charges, refunds) in the usage ledger (of one farmer: `make run` seeds demo farmers' too)."""
    query = select(UsageLedger.kind, func.count()).group_by(UsageLedger.kind)
    if farmer_id is not None:
        query = query.where(UsageLedger.farmer_id == farmer_id)
    kinds = dict(session.execute(query).all())
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
    return farmer.message("interactive", {"type": "button_reply", "button_reply": {"id": send, "title": "Gönder"}})


def ready_to_submit(web: Flask, graph: Any, i: int, crop: str = "domates") -> tuple[FarmerChat, dict[str, Any]]:
    """A farmer who consented, sent a photo and is looking at the confirmation (all handled in this process)."""
    media_id = f"77000{i}"
    graph.media[media_id] = leaf_jpeg()
    farmer = FarmerChat(web, graph, phone=phone(i), name=f"Çiftçi {i}", queues=(INBOUND,))
    farmer.onboard()
    farmer.photo(crop, media_id=media_id)
    farmer.taps("Geç")
    return farmer, submit_button(farmer)


def analyses_done(session: Any, count: int, farmer_id: int | None = None) -> bool:
    session.expire_all()
    query = select(func.count()).select_from(Analysis).where(Analysis.status.in_(("completed", "failed")))
    if farmer_id is not None:
        query = query.where(Analysis.farmer_id == farmer_id)
    return session.scalar(query) == count


def consent_tap(sender: str, wamid: str) -> dict[str, Any]:
    message = webhook_bodies.interactive_reply(sender, "button_reply", "consent:yes", "Kabul ediyorum", wamid=wamid)
    return webhook_bodies.messages_body([message], sender=sender, name="Çiftçi", phone_number_id=PHONE_NUMBER_ID)


def all_sent(session: Any) -> bool:
    rows = outbound_rows(session)
    return bool(rows) and all(r.status == "accepted" for r in rows)


needs_redis_server = pytest.mark.skipif(not shutil.which("redis-server"),
                                        reason="needs the redis-server program for a private server")


# --- processes and Redis ------------------------------------------------------------------------------------


@needs_redis_server
def test_a_worker_killed_mid_analysis_is_restarted_and_the_analysis_completes_within_90_s(
        app, session, database_url, web_apps):
    """SIGKILL to the worker and its work-horse while N8N works on an analysis, under `make run`'s
    supervisor, nobody acting: the supervisor starts the worker again, the webhook answers meanwhile,
    the analysis's lease expires, the sweeper queues it again and it completes, charged once, within
    90 s of the kill (the deadline below). A message sent right after the kill is answered too."""
    other = phone(2)
    with private_redis() as red, graph_stand_in() as graph, n8n_stand_in() as n8n:
        web, env = services(web_apps, database_url, REDIS_URL=red.url, WHATSAPP_API_BASE=graph.base,
                            N8N_WEBHOOK_URL=n8n.url)
        farmer, tap = ready_to_submit(web, graph, 1)
        farmer_id = session.scalar(select(Farmer.id))  # the only one until make run seeds its demo farmers
        n8n.hold_next = True
        with supervised(env) as run:
            farmer.deliver(tap, run=False)  # stored and queued; the supervised worker takes it
            assert n8n.arrived.wait(60), run.process.log()[-3000:]
            worker_pid = run.child("worker")
            assert worker_pid is not None
            for pid in (*children(worker_pid), worker_pid):  # the work-horse runs in a session of its own
                os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            n8n.release.set()  # its answer goes nowhere
            raw = json.dumps(text_body(other, "Merhaba", "wamid.AFTER-KILL")).encode()
            answer = requests.post(f"{run.base}/webhooks/whatsapp", data=raw, timeout=10,
                                   headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(raw)})
            assert answer.status_code == 200

            wait_until(lambda: analyses_done(session, 1, farmer_id), killed_at + 90 - time.monotonic(),
                       what="the analysis to complete within 90 s of the kill")
            wait_until(lambda: any(RESULT in t for t in graph.texts(farmer.phone)), 30, what="the result")
            wait_until(lambda: graph.sent_to(other), 30, what="the answer to the message sent after the kill")
            log = run.process.log()
            assert run.child("worker") not in (None, worker_pid)

    assert "supervisor: worker exited with signal SIGKILL; restarting in 1 s" in log
    assert "job of a worker that stopped holding its lease queued again" in log
    analysis = session.scalar(select(Analysis).where(Analysis.farmer_id == farmer_id))  # make run's demo has others
    assert (analysis.status, analysis.attempts) == ("completed", 2)
    assert ledger(session, farmer_id) == (1, 0)
    assert len(n8n.requests) == 2
    assert_answered_once_each(session, graph, [farmer.phone, other])


@needs_redis_server
def test_redis_killed_mid_job_and_restarted_empty_the_worker_carries_on(app, session, database_url, web_apps):
    """Redis is killed while a work-horse waits for N8N; the analysis ends while Redis is still gone (so RQ
    cannot record it), and Redis comes back empty. The worker process keeps running (it reconnects),
    `/health/ready` is red meanwhile, webhooks still store messages; the analysis is completed and its
    result sent, and the scheduler queues the messages Redis never got: every farmer answered once,
    charged once, nobody acting."""
    farmers = [phone(i) for i in range(2, 5)]
    with private_redis() as red, graph_stand_in() as graph, n8n_stand_in() as n8n:
        web, env = services(web_apps, database_url, REDIS_URL=red.url, WHATSAPP_API_BASE=graph.base,
                            N8N_WEBHOOK_URL=n8n.url)
        client = web.test_client()
        farmer, tap = ready_to_submit(web, graph, 1)
        n8n.hold_next = True
        with worker(env) as w, running(env, "sender"), running(env, "scheduler"):
            farmer.deliver(tap, run=False)
            assert n8n.arrived.wait(60), w.log()[-3000:]
            red.kill()
            ready = client.get("/health/ready")
            assert ready.status_code == 503 and ready.json is not None
            assert ready.json["checks"]["redis"]["status"] == "error"
            for i, p in enumerate(farmers):
                assert post(client, text_body(p, "Merhaba", f"wamid.K{i}")) == 200  # stored, left for the sweeper
            n8n.release.set()
            wait_until(lambda: analyses_done(session, 1), 30, what="the analysis that was running")
            time.sleep(8)  # RQ tries to record the job's end, longer than redis-py's own reconnection attempts
            red.start()  # empty: whatever was queued is gone
            wait_until(lambda: inbound_statuses(session).get("received") is None, 60, what="the messages")
            wait_until(lambda: all_sent(session), 30, what="every reply sent")
            assert w.process.poll() is None  # the same worker process all along
            assert client.get("/health/ready").status_code == 200
            log = w.log()

    assert "worker: Redis unavailable; reconnecting" in log
    assert session.scalar(select(Analysis.status)) == "completed"
    assert ledger(session) == (1, 0)
    assert_answered_once_each(session, graph, [farmer.phone, *farmers])


@needs_redis_server
def test_redis_frozen_the_webhook_answers_within_half_a_second(app, session, database_url, web_apps):
    """Redis stops answering (SIGSTOP) with its connections open: each webhook gives up its enqueue after
    200 ms, the next ones at once for a second, so the p99 stays under 0.5 s (docs/OPERATIONS.md, section 9);
    `/health/ready` says 503 at once. Once Redis answers, the scheduler queues what the webhooks could not,
    and everyone is answered."""
    farmers = [phone(i) for i in range(30)]
    with private_redis() as red, graph_stand_in() as graph:
        web, env = services(web_apps, database_url, REDIS_URL=red.url, WHATSAPP_API_BASE=graph.base)
        client = web.test_client()
        assert post(client, text_body(phone(99), "Merhaba", "wamid.F-WARM")) == 200  # Redis connections open
        took: list[float] = []
        with worker(env), running(env, "scheduler"):
            red.freeze()
            try:
                for i, p in enumerate(farmers):
                    started = time.perf_counter()
                    assert post(client, text_body(p, "Merhaba", f"wamid.F{i}")) == 200
                    took.append(time.perf_counter() - started)
                started = time.perf_counter()
                assert client.get("/health/ready").status_code == 503
                ready_took = time.perf_counter() - started
            finally:
                red.thaw()
            wait_until(lambda: inbound_statuses(session) == {"processed": len(farmers) + 1}, 60,
                       what="the messages stored while Redis was frozen")
            wait_until(lambda: all_sent(session), 30, what="every reply sent")
    p99 = sorted(took)[math.ceil(0.99 * len(took)) - 1]
    assert p99 < 0.5, [round(t, 3) for t in took]
    assert ready_took < 1.5, ready_took  # a probe's answer, not three 2-second socket timeouts in a row
    assert_answered_once_each(session, graph, farmers)


# --- PostgreSQL ---------------------------------------------------------------------------------------------


def _blocked_backend(observer: Any, statement: str) -> int | None:
    """The backend of ours waiting for a row lock in a statement starting with `statement` (the job we are
    holding up; not, say, a lease renewal that happens to touch the same row)."""
    return observer.execute(text(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND wait_event_type = 'Lock' AND query LIKE :statement"), {"statement": statement + "%"}).scalar()


def _drop_when_blocked(observer: Any, blocker: Any, statement: str) -> None:
    """Terminate the waiting job's connection, then let go of the lock it was waiting for."""
    pid = wait_until(lambda: _blocked_backend(observer, statement), 60, 0.05, what="a job waiting for our lock")
    assert observer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    blocker.rollback()


def test_postgres_connection_dropped_mid_job(app, session, database_url, web_apps):
    """Twice: the `Gönder` job after it charged (before commit), retried by RQ; and the analysis job after N8N
    answered, which stores the result again on a new connection without asking N8N again. Both complete; the
    farmer is charged once and gets the result."""
    with graph_stand_in() as graph, n8n_stand_in() as n8n:
        web, env = services(web_apps, database_url, WHATSAPP_API_BASE=graph.base, N8N_WEBHOOK_URL=n8n.url)
        farmer, tap = ready_to_submit(web, graph, 1)
        farmer.deliver(tap, run=False)  # stored and queued; the worker process will run it
        tap_id = session.scalar(select(Message.id).where(Message.wamid == tap["id"]))

        engine, locks = create_engine(database_url, isolation_level="AUTOCOMMIT"), create_engine(database_url)
        try:
            with engine.connect() as observer, locks.connect() as holder, locks.connect() as gate, worker(env) as w:
                # 1. Hold the tap's row: the job charges, then waits to mark it processed; drop it there.
                #    (The farmer's conversation is held first, so the job has taken its lease on the tap
                #    before we hold that row.)
                opened = gate.begin()
                gate.execute(text("SELECT id FROM conversations FOR UPDATE"))
                wait_until(lambda: _blocked_backend(observer, "SELECT conversations"), 60, 0.05,
                           what="the job waiting for the conversation")
                blocker = holder.begin()
                holder.execute(text("SELECT id FROM messages WHERE id = :id FOR UPDATE"), {"id": tap_id})
                opened.rollback()
                n8n.hold_next = True
                _drop_when_blocked(observer, blocker, "UPDATE messages SET status")
                # RQ retries it after 5 s (inbound_retry); it charges again from scratch, once.
                assert n8n.arrived.wait(60), w.log()[-3000:]

                # 2. N8N has the request; hold the analysis row so the job waits to store the result; drop it.
                #    The job stores it again on a new connection (`STORE_PAUSES`): no retry, no second call.
                analysis_id = session.scalar(select(Analysis.id))
                blocker = holder.begin()
                holder.execute(text("SELECT id FROM analyses WHERE id = :id FOR UPDATE"), {"id": analysis_id})
                n8n.release.set()
                _drop_when_blocked(observer, blocker, "SELECT analyses")
                wait_until(lambda: analyses_done(session, 1), 60, what="the analysis to end")
                wait_until(lambda: any(RESULT in t for t in graph.texts(farmer.phone)), 30, what="the result")
                log = w.log()
        finally:
            engine.dispose()
            locks.dispose()

        analysis = session.get(Analysis, analysis_id)
        assert analysis.status == "completed" and analysis.attempts == 1
        assert ledger(session) == (1, 0)  # charged once although the charging transaction ran twice
        assert len(n8n.requests) == 1  # N8N's answer was not lost with the connection
        texts = graph.texts(farmer.phone)
        assert sum(QUEUED in t for t in texts) == 1 and sum(RESULT in t for t in texts) == 1
        # Visible: the failures in the worker's log, and the retries used in RQ.
        assert log.count("terminating connection due to administrator command") >= 2
        redis = web.extensions["redis"]
        assert Job.fetch(f"inbound-{tap_id}", connection=redis).retries_left == 2
        assert Job.fetch(f"analysis-{analysis_id}", connection=redis).retries_left == 3
        assert "could not store the result; trying again on a new connection" in log
        assert_answered_once_each(session, graph, [farmer.phone])


def test_connections_terminated_while_replies_are_recorded_no_reply_is_sent_twice(app, session, database_url,
                                                                                  web_apps):
    """Graph accepts a reply, and the worker's write of its wamid finds its database connection
    terminated: twice per farmer (the privacy notice, and the first of the two replies to the consent).
    The wamid is kept in Redis and written again on a new connection: no reply sent twice, and the
    second reply follows at once (the sweeper runs every 2 s meanwhile, as if minutes had passed)."""
    farmers = [phone(i) for i in range(3)]
    engine, locks = create_engine(database_url, isolation_level="AUTOCOMMIT"), create_engine(database_url)
    to_drop = dict.fromkeys(farmers, 2)
    dropped: list[str] = []

    def drop_the_recording(body: dict[str, Any]) -> None:
        """Called before the stand-in answers 200: hold the farmer's pending replies, so the write of the
        wamid waits; then terminate the connection that waits, and let go."""
        to = _digits_of(body)
        if not to_drop.get(to):
            return
        to_drop[to] -= 1
        holder = locks.connect()
        held = holder.begin()
        holder.execute(text("SELECT id FROM messages WHERE direction = 'out' AND status = 'pending' AND phone = :p "
                            "FOR UPDATE"), {"p": "+" + to})

        def drop() -> None:
            with engine.connect() as observer:
                _drop_when_blocked(observer, held, "UPDATE messages SET wamid")
            holder.close()
            dropped.append(to)

        threading.Thread(target=drop, daemon=True).start()

    try:
        with graph_stand_in() as graph:
            graph.before_accepting = drop_the_recording
            web, env = services(web_apps, database_url, WHATSAPP_API_BASE=graph.base, SWEEP_INTERVAL_SECONDS=2)
            client = web.test_client()
            with worker(env, INBOUND), running(env, "scheduler"):
                for i, p in enumerate(farmers):
                    assert post(client, text_body(p, "Merhaba", f"wamid.T{i}")) == 200
                wait_until(lambda: len(graph.sent) == len(farmers), 30, what="the privacy notices")
                for i, p in enumerate(farmers):
                    assert post(client, consent_tap(p, f"wamid.TC{i}")) == 200
                wait_until(lambda: len(graph.sent) == 3 * len(farmers), 30, what="the answers to the consent")
                wait_until(lambda: all_sent(session), 30, what="every reply recorded as sent")
                time.sleep(5)  # two more sweeps: nothing is sent again
    finally:
        engine.dispose()
        locks.dispose()
    assert sorted(dropped) == sorted(farmers * 2)  # each a connection terminated while writing a wamid
    assert_answered_once_each(session, graph, farmers)


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
        with worker(env, ANALYSIS) as w:
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
        with worker(env, ANALYSIS):
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
    """Each farmer's reply meets a burst of refusals: rate limit, pair rate limit, a bare 502, or 500
    forever. Retried with backoff (RETRY_BACKOFF_BASE=1) by the sender and sent once, or marked failed
    with Meta's error code in the message log, where support sees it."""
    farmers = [phone(i) for i in range(4)]
    a, b, c, d = farmers
    with graph_stand_in() as graph:
        graph.scripts = {a: [RATE_LIMIT, RATE_LIMIT], b: [PAIR_RATE] * 3, d: [BAD_GATEWAY]}
        graph.always = {c: SERVICE_ERROR}
        web, env = services(web_apps, database_url, WHATSAPP_API_BASE=graph.base, RETRY_BACKOFF_BASE=1)
        client = web.test_client()
        for i, p in enumerate(farmers):
            assert post(client, text_body(p, "Merhaba", f"wamid.G{i}")) == 200
        with worker(env), running(env, "sender"):
            wait_until(lambda: inbound_statuses(session) == {"processed": 4}, 60, what="the messages")
            wait_until(lambda: all(r.status in ("accepted", "failed") for r in outbound_rows(session)), 90,
                       what="every reply sent or given up")

        assert_answered_once_each(session, graph, [a, b, d])
        assert [r.attempts for r in outbound_rows(session, a)] == [3]  # one reply: the privacy notice
        assert [r.attempts for r in outbound_rows(session, b)] == [4]
        assert [r.attempts for r in outbound_rows(session, d)] == [2]
        assert all(r.error_code is None for p in (a, b, d) for r in outbound_rows(session, p))

        [given_up] = outbound_rows(session, c)
        assert graph.sent_to(c) == []
        assert (given_up.status, given_up.error_code) == ("failed", 131000)
        assert given_up.error_title == "Something went wrong"
        assert given_up.failed_at is not None and given_up.attempts == 5  # 1 try + 4 retries

        # Never sent twice once accepted or given up: a repeated send finds nothing to do.
        sent = len(graph.sent)
        with web.app_context():
            assert {send_pending(r.id) for r in outbound_rows(session)} == {"already sent"}
        assert len(graph.sent) == sent


def test_graph_refusing_everything_for_20_s_each_farmer_still_reads_the_replies_in_order(
        app, session, database_url, web_apps):
    """For 20 s Graph answers every send with 429 or 500, while three farmers keep writing (each message
    answered with one or two replies), and once more right after. The first reply of each farmer waits
    for its retries (RETRY_BACKOFF_BASE=2: 2, 6, 14, 30 s) and the later ones wait behind it; then they
    leave, and the stand-in receives every farmer's replies in the order they were written, none twice."""
    farmers = [phone(i) for i in range(3)]
    with graph_stand_in() as graph:
        web, env = services(web_apps, database_url, WHATSAPP_API_BASE=graph.base, RETRY_BACKOFF_BASE=2)
        client = web.test_client()
        steps = [lambda p, w: text_body(p, "Merhaba", w), consent_tap, lambda p, w: text_body(p, "yardım", w)]
        with worker(env, INBOUND), running(env, "sender"):
            graph.refuse_until = time.monotonic() + 20
            for k, step in enumerate(steps):
                for i, p in enumerate(farmers):
                    assert post(client, step(p, f"wamid.O{k}-{i}")) == 200
                time.sleep(3)
            wait_until(lambda: time.monotonic() > graph.refuse_until, 30, what="the end of the refusals")
            for i, p in enumerate(farmers):  # their answers could go at once, but wait their turn
                assert post(client, text_body(p, "kota", f"wamid.O-after-{i}")) == 200
            wait_until(lambda: inbound_statuses(session) == {"processed": 4 * len(farmers)}, 60, what="the messages")
            wait_until(lambda: all_sent(session), 60, what="every reply sent")

    assert len(graph.refused) >= 2 * len(farmers)  # every first reply refused, and retried
    for p in farmers:
        rows = {r.wamid: r for r in outbound_rows(session, p)}
        assert len(rows) >= 5  # 1 + 2 + 1 + 1 replies
        received = [rows[wamid].seq for wamid in graph.wamids_to(p)]
        assert received == list(range(1, len(rows) + 1)), received  # in order, each once
    assert_answered_once_each(session, graph, farmers)


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
        queued = queued_job_ids(web, INBOUND)  # handed off by the webhook
        assert sorted(queued) == sorted(f"inbound-{i}" for i in rows.values())  # one entry per message

        workers = [flask_command(env, "worker", "--burst", f"--queue={INBOUND}")
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
