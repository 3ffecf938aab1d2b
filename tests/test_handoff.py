"""The inbound hand-off (webhook -> one RPUSH -> a worker handles the message in its own process), its
recovery by the sweeper and RQ's retries, and the non-forking worker's job timeouts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from rq.job import Job, JobStatus
from rq.timeouts import JobTimeoutException
from sqlalchemy import func, select

from models import Direction, Message
from services import conversation, handoff
from services.queue import INBOUND, JOB_TIMEOUT, get_queue
from services.sweeper import sweep_unqueued
from services.worker import AppWorker
from settings import PROJECT_ROOT
from tests.helpers import (
    APP_SECRET,
    REAL_REDIS,
    TEST_REDIS_URL,
    fixture_bytes,
    post_webhook,
    queued_job_ids,
    run_jobs,
    wait_until,
)


def inbound(session) -> list[Message]:
    session.expire_all()
    return list(session.scalars(select(Message).where(Message.direction == "in").order_by(Message.id)))


def outbound_count(session) -> int:
    return session.scalar(select(func.count()).select_from(Message).where(Message.direction == Direction.OUTBOUND))


def overrun(*_: object) -> str:
    """Sleeps past any test timeout: only the death penalty ends it."""
    time.sleep(30)
    return "finished"


def test_the_webhook_hands_new_messages_over_in_one_list_and_queues_no_rq_job(app, client, session):
    post_webhook(client, fixture_bytes("two_messages_one_change.json"))
    ids = [m.id for m in inbound(session)]
    assert len(ids) == 2
    assert handoff.waiting(app.extensions["redis"]) == ids
    assert get_queue(INBOUND, app.extensions["redis"]).job_ids == []
    post_webhook(client, fixture_bytes("two_messages_one_change.json"))  # Meta's retry: nothing new
    assert handoff.waiting(app.extensions["redis"]) == ids


def test_a_worker_handles_the_handed_off_messages_and_empties_the_list(app, client, session, graph):
    post_webhook(client, fixture_bytes("two_messages_one_change.json"))
    run_jobs(app)
    assert [m.status for m in inbound(session)] == ["processed", "processed"]
    assert handoff.waiting(app.extensions["redis"]) == []
    assert len(graph.sent) >= 2


def test_a_lost_push_is_found_by_the_sweeper_and_a_waiting_one_is_left_to_the_workers(app, client, session, graph):
    post_webhook(client, fixture_bytes("text.json"))
    with app.app_context():
        assert sweep_unqueued(grace_seconds=0) == 0  # still on the list: the workers will get to it
        app.extensions["redis"].delete(handoff.HANDOFF_KEY)  # the push was lost
        assert sweep_unqueued(grace_seconds=0) == 1
    message_id = inbound(session)[0].id
    assert queued_job_ids(app, INBOUND) == [f"inbound-{message_id}"]
    run_jobs(app)
    assert [m.status for m in inbound(session)] == ["processed"]


def test_a_message_handed_off_twice_is_answered_once(app, client, session, graph):
    post_webhook(client, fixture_bytes("text.json"))
    message_id = inbound(session)[0].id
    assert handoff.push(app.extensions["redis"], [message_id, message_id])
    assert len(handoff.waiting(app.extensions["redis"])) == 3
    run_jobs(app)
    assert [m.status for m in inbound(session)] == ["processed"]
    assert outbound_count(session) == 1
    assert len(graph.sent) == 1


def test_a_farmers_later_message_popped_first_still_has_the_earlier_one_handled_before_it(app, client, session,
                                                                                          graph):
    post_webhook(client, fixture_bytes("two_messages_one_change.json"))
    redis = app.extensions["redis"]
    first, second = (m.id for m in inbound(session))
    redis.delete(handoff.HANDOFF_KEY)
    handoff.push(redis, [second, first])  # another worker was slow to take the first one
    with app.app_context():
        assert handoff.handle(redis, handoff.take(redis) or 0)
    rows = inbound(session)
    assert [m.status for m in rows] == ["processed", "processed"]
    assert rows[0].processed_at is not None and rows[1].processed_at is not None
    assert rows[0].processed_at <= rows[1].processed_at
    with app.app_context():
        assert handoff.handle(redis, handoff.take(redis) or 0)  # the first id, late: nothing to do
    assert len(graph.sent) == 2


def test_a_failed_first_attempt_goes_to_rq_with_the_retries_that_are_left(app, client, session, monkeypatch):
    post_webhook(client, fixture_bytes("text.json"))
    message_id = inbound(session)[0].id

    def broken(_: int) -> str:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(conversation, "handle_inbound", broken)
    redis = app.extensions["redis"]
    with app.app_context():
        assert not handoff.handle(redis, handoff.take(redis) or 0)
    job = Job.fetch(f"inbound-{message_id}", connection=redis)
    assert job.get_status() == JobStatus.SCHEDULED and job.retries_left == 2
    assert [m.status for m in inbound(session)] == ["received"]  # not given up: RQ tries again


def test_a_handed_off_message_that_overruns_the_job_timeout_is_stopped_and_left_to_rq(app, client, session,
                                                                                       monkeypatch):
    post_webhook(client, fixture_bytes("text.json"))
    message_id = inbound(session)[0].id
    monkeypatch.setitem(JOB_TIMEOUT, INBOUND, 1)
    monkeypatch.setattr(conversation, "handle_inbound", overrun)
    redis = app.extensions["redis"]
    with app.app_context():
        AppWorker([get_queue(INBOUND, redis)], connection=redis).work(burst=True)
    assert Job.fetch(f"inbound-{message_id}", connection=redis).get_status() == JobStatus.SCHEDULED
    assert handoff.waiting(redis) == []


def test_the_non_forking_worker_stops_a_job_that_overruns_its_timeout_and_runs_the_next(app):
    redis = app.extensions["redis"]
    queue = get_queue(INBOUND, redis)
    slow = queue.enqueue(overrun, job_timeout=1)
    quick = queue.enqueue("os.getpid")
    AppWorker([queue], connection=redis).work(burst=True)
    slow.refresh()
    assert slow.get_status() == JobStatus.FAILED
    result = slow.latest_result()
    assert result is not None and JobTimeoutException.__name__ in (result.exc_string or "")
    assert quick.return_value() == os.getpid()  # same process: no work-horse


@pytest.mark.skipif(not REAL_REDIS, reason="a separate worker process needs a real Redis (TEST_REDIS_URL)")
def test_a_real_worker_process_takes_the_hand_off_while_waiting_and_survives_a_job_that_overruns(
        app, client, session, database_url):
    """One `flask worker` (not in burst mode): a message handed off while it waits wakes it; an RQ job
    that overruns its timeout fails, and the worker goes on with the next message; SIGTERM stops it."""
    env = {**os.environ, "APP_ENV": "test", "DATABASE_URL": database_url, "REDIS_URL": TEST_REDIS_URL,
           "WHATSAPP_APP_SECRET": APP_SECRET, "WHATSAPP_API_BASE": "http://127.0.0.1:9", "LOG_LEVEL": "WARNING",
           "PYTHONPATH": str(PROJECT_ROOT)}
    worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app:create_app", "worker"], cwd=PROJECT_ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        redis = app.extensions["redis"]
        wait_until(lambda: any(w.pid == worker.pid for w in AppWorker.all(connection=redis)), 60,
                   what="the worker to register")
        slow = get_queue(INBOUND, redis).enqueue("tests.test_handoff.overrun", job_timeout=1)
        post_webhook(client, fixture_bytes("text.json"))
        wait_until(lambda: [m.status for m in inbound(session)] == ["processed"], 60, what="the message handled")
        wait_until(lambda: slow.get_status(refresh=True) == JobStatus.FAILED, 60, what="the slow job to fail")
        post_webhook(client, fixture_bytes("text_turkish_upper.json"))
        wait_until(lambda: all(m.status == "processed" for m in inbound(session)) and len(inbound(session)) == 2,
                   60, what="the next message handled")
        assert worker.poll() is None  # the overrun cost the job, not the worker
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
    assert code == 0, (worker.stderr.read() if worker.stderr else "")[-3000:]
