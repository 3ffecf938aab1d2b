"""RQ jobs, the worker entry point (a real worker process where Redis is real), the embedded
worker thread, the scheduler's single leader, and the shared send-rate limit."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import fakeredis
import pytest
from sqlalchemy import select

from models import Message
from services.jobs import handle_inbound
from services.queue import INBOUND
from services.ratelimit import SlidingWindowLimiter
from services.scheduler import LOCK_KEY, Periodic, Schedule
from services.worker import start_embedded_worker
from settings import PROJECT_ROOT
from tests.helpers import (
    APP_SECRET,
    REAL_REDIS,
    TEST_REDIS_URL,
    fixture_bytes,
    post_webhook,
    queued_job_ids,
    run_jobs,
)


def statuses(session) -> list[str]:
    """Statuses of the farmers' (inbound) messages, oldest first."""
    return list(session.scalars(select(Message.status).where(Message.direction == "in").order_by(Message.id)))


def test_inbound_job_marks_processed_and_is_safe_twice(app, client, session, graph):
    post_webhook(client, fixture_bytes("two_messages_one_change.json"))
    run_jobs(app)
    assert statuses(session) == ["processed", "processed"]
    sent = len(graph.sent)
    assert sent >= 2  # the farmer got answers
    first = session.scalar(select(Message).order_by(Message.id))
    assert handle_inbound(first.id) == "already processed"
    assert len(graph.sent) == sent  # and nothing twice
    assert handle_inbound(999999) == "missing"


def test_embedded_worker_thread_runs_jobs(app, client, session, graph):
    stop = start_embedded_worker(app, poll=0.05)
    try:
        post_webhook(client, fixture_bytes("text.json"))
        deadline = time.monotonic() + 30
        while statuses(session) != ["processed"] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
    assert statuses(session) == ["processed"]


def test_only_one_scheduler_runs_periodic_work(app):
    runs: list[str] = []
    a = Schedule([Periodic("a", lambda: runs.append("a"), every=0)], "scheduler-a", 30)
    b = Schedule([Periodic("b", lambda: runs.append("b"), every=0)], "scheduler-b", 30)
    a.tick()
    b.tick()  # a holds the lock: b waits
    a.tick()
    assert runs == ["a", "a"]
    app.extensions["redis"].delete(LOCK_KEY)  # a died and its lock expired
    b.tick()
    assert runs == ["a", "a", "b"]


def test_a_scheduler_says_once_when_it_starts_leading_and_when_it_stands_by(app, caplog):
    a = Schedule([], "scheduler-a", 30)
    b = Schedule([], "scheduler-b", 30)
    with caplog.at_level(logging.INFO, logger="services.scheduler"):
        a.tick()
        b.tick()
        a.tick()
        b.tick()
        app.extensions["redis"].delete(LOCK_KEY)  # a was killed and its lock expired
        b.tick()
        b.tick()
    said = [(r.getMessage().split(";")[0]) for r in caplog.records if r.name == "services.scheduler"]
    assert said == ["scheduler: leading", "scheduler: standing by", "scheduler: leading"]


def test_a_failing_periodic_task_does_not_stop_the_others(app):
    runs: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    Schedule([Periodic("boom", boom, 0), Periodic("ok", lambda: runs.append("ok"), 0)], "s", 30).tick()
    assert runs == ["ok"]


def test_after_redis_failed_or_lost_the_lock_every_task_catches_up_at_once(app, monkeypatch):
    """The first tick, a tick after Redis failed, and one after Redis came back empty run every task now
    (the catch-up form where there is one); otherwise a task waits for its interval."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from services import scheduler

    runs: list[str] = []
    schedule = Schedule([Periodic("sweep", lambda: runs.append("sweep"), 3600, catch_up=lambda: runs.append("all")),
                         Periodic("other", lambda: runs.append("other"), 3600)], "s", 30)
    schedule.tick()
    schedule.tick()  # nothing due
    assert runs == ["all", "other"]
    real = scheduler.hold_leadership

    def down(me: str, ttl: int) -> str | None:
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(scheduler, "hold_leadership", down)
    schedule.tick()
    monkeypatch.setattr(scheduler, "hold_leadership", real)
    schedule.tick()  # Redis answers again, our lock still there
    assert runs == ["all", "other"] * 2
    app.extensions["redis"].flushdb()  # restarted empty between two ticks
    schedule.tick()
    assert runs == ["all", "other"] * 3


def test_rate_limit_is_shared_and_never_exceeded_in_any_second():
    """Several threads (standing in for worker processes) share one limit of 20/s."""
    server = fakeredis.FakeServer()
    limit, per_thread, threads = 20, 15, 4
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        limiter = SlidingWindowLimiter(fakeredis.FakeRedis(server=server), "test:mps", limit)
        for _ in range(per_thread):
            admitted_at = limiter.acquire()  # the shared clock of the Redis server
            with lock:
                stamps.append(admitted_at)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    stamps.sort()
    assert len(stamps) == per_thread * threads
    # Count admissions in every window of one second that starts at an admission.
    busiest = max(sum(1 for s in stamps[i:] if s - start < 1.0) for i, start in enumerate(stamps))
    assert busiest <= limit
    assert busiest >= limit // 2  # and it does let traffic through


def test_rate_limiter_rejects_a_zero_limit():
    with pytest.raises(ValueError):
        SlidingWindowLimiter(fakeredis.FakeRedis(), "k", 0)


@pytest.mark.skipif(not REAL_REDIS, reason="a separate worker process needs a real Redis (TEST_REDIS_URL)")
def test_real_worker_process_handles_the_queue(app, client, session, database_url):
    post_webhook(client, fixture_bytes("two_entries.json"))
    assert len(queued_job_ids(app, INBOUND)) == 2
    env = {**os.environ, "APP_ENV": "test", "DATABASE_URL": database_url, "REDIS_URL": TEST_REDIS_URL,
           "WHATSAPP_APP_SECRET": APP_SECRET, "LOG_LEVEL": "WARNING"}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app:create_app", "worker", "--burst"],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert statuses(session) == ["processed", "processed"]
    assert queued_job_ids(app, INBOUND) == []


def test_each_redis_outage_starts_the_workers_reconnect_backoff_again_at_one_second(app, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError
    from rq.exceptions import StopRequested

    from services import worker as worker_module

    clock = [0.0]
    slept: list[float] = []
    # Each entry: how long RQ's loop ran (fake seconds) before Redis failed it; None: the stop request.
    runs = iter([0.0, 0.0, 0.0, 120.0, 0.0, None])

    class Loop:
        stop_requested = False

        def work(self, **_kwargs):
            ran = next(runs)
            if ran is None:
                raise StopRequested()
            clock[0] += ran
            raise RedisConnectionError("Redis went away")

    monkeypatch.setattr(worker_module, "make_worker", lambda _app, _queues: Loop())
    monkeypatch.setattr(worker_module, "time", SimpleNamespace(monotonic=lambda: clock[0], sleep=slept.append,
                                                               time=time.time))
    worker_module.run_worker(app, (INBOUND,), burst=False)
    assert slept == [1.0, 2.0, 4.0, 1.0, 2.0]  # the fourth failure came after two minutes of work
