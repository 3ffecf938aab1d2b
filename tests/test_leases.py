"""Leases on work in progress, and the sweeper that queues again what a dead worker held (in process; the
same with real processes, killed for real, is in tests/test_faults.py)."""

from __future__ import annotations

from datetime import timedelta

from rq.job import Job, JobStatus
from sqlalchemy import select

from models import Analysis, Message, utcnow
from services import handoff, leases
from services.queue import INBOUND, get_queue
from services.sweeper import release_overdue, requeue_expired, sweep_unqueued
from tests.helpers import fixture_bytes, post_webhook, wait_until


def _message(app, client) -> int:
    """A message carried by an RQ job: its hand-off was lost, and the sweeper queued it."""
    post_webhook(client, fixture_bytes("text.json"))
    app.extensions["redis"].delete(handoff.HANDOFF_KEY)
    with app.app_context():
        assert sweep_unqueued(grace_seconds=0) == 1
    with app.extensions["db"].reader() as s:
        return s.scalar(select(Message.id).where(Message.direction == "in"))


def _hold(app, message_id: int, owner: str, seconds: float) -> None:
    with app.extensions["db"].session() as s, s.begin():
        row = s.get_one(Message, message_id)
        row.lease_owner, row.lease_until = owner, utcnow() + timedelta(seconds=seconds)


def _started_long_ago(app, job_id: str) -> None:
    """As RQ leaves the job of a worker killed mid-job: `started`, and nobody finishes it."""
    job = Job.fetch(job_id, connection=app.extensions["redis"])
    get_queue(INBOUND, app.extensions["redis"]).remove(job)
    job.set_status(JobStatus.STARTED)
    job.started_at = utcnow() - timedelta(minutes=5)
    job.save()


def test_a_claim_is_refused_while_another_worker_holds_the_lease_and_taken_once_it_expired(app, client):
    message_id = _message(app, client)
    db = app.extensions["db"]
    with db.session() as s, s.begin():
        assert leases.claim(s, Message, message_id, owner="worker-a")
        assert leases.claim(s, Message, message_id, owner="worker-a")  # its own, again
        assert not leases.claim(s, Message, message_id, owner="worker-b")
    _hold(app, message_id, "worker-a", -1)  # worker-a stopped renewing
    with db.session() as s, s.begin():
        assert leases.claim(s, Message, message_id, owner="worker-b")
        leases.release(s, Message, message_id, "worker-a")  # not worker-a's any more: nothing happens
    with db.reader() as s:
        row = s.get_one(Message, message_id)
        assert row.lease_owner == "worker-b" and row.lease_until > utcnow()


def test_the_job_of_a_worker_that_died_is_queued_again_once_its_lease_expired(app, client):
    message_id = _message(app, client)
    job_id = f"inbound-{message_id}"
    _started_long_ago(app, job_id)
    _hold(app, message_id, "a worker still renewing", 20)
    assert requeue_expired() == 0
    assert sweep_unqueued(grace_seconds=0) == 0

    _hold(app, message_id, "a worker killed with SIGKILL", -1)
    assert requeue_expired() == 1
    assert get_queue(INBOUND, app.extensions["redis"]).job_ids == [job_id]
    assert requeue_expired() == 0  # queued once, however often the sweeper looks


def test_work_waiting_in_rq_is_left_alone(app, client):
    """A job queued or scheduled for a retry has no live lease and must not be queued a second time."""
    message_id = _message(app, client)
    assert get_queue(INBOUND, app.extensions["redis"]).job_ids == [f"inbound-{message_id}"]
    _hold(app, message_id, "gone", -1)
    assert requeue_expired() == 0 and sweep_unqueued(grace_seconds=0) == 0


def test_an_inbound_job_leaves_a_message_held_by_another_worker_to_it(app, client):
    from services.conversation import handle_inbound

    message_id = _message(app, client)
    _hold(app, message_id, "another worker", 20)
    assert handle_inbound(message_id) == "handled elsewhere"
    with app.extensions["db"].reader() as s:
        assert s.get_one(Message, message_id).status == "received"


def test_an_analysis_waiting_for_the_n8n_circuit_is_taken_over_by_its_waiting_job(app):
    from models import Farmer
    from services.analysis import CIRCUIT_WAIT

    db = app.extensions["db"]
    with db.session() as s, s.begin():
        farmer = Farmer(phone="+905321234567")
        s.add(farmer)
        s.flush()
        analysis = Analysis(farmer_id=farmer.id, status="processing", lease_owner=CIRCUIT_WAIT,
                            lease_until=utcnow() + timedelta(seconds=60))
        s.add(analysis)
    with db.session() as s, s.begin():
        assert not leases.claim(s, Analysis, analysis.id, owner="another job")
        assert leases.claim(s, Analysis, analysis.id, owner="the waiting job", taking_over=CIRCUIT_WAIT)


def test_every_kept_lease_is_renewed_while_its_work_runs_and_given_up_when_it_ends(app, client, monkeypatch):
    """One renewer thread per process serves every lease held at once; a block's end stops its renewals."""
    from models import Farmer

    monkeypatch.setattr(leases, "RENEW_EVERY", 0.05)
    message_id = _message(app, client)
    db = app.extensions["db"]
    with db.session() as s, s.begin():
        farmer = Farmer(phone="+905321234568")
        s.add(farmer)
        s.flush()
        analysis = Analysis(farmer_id=farmer.id, status="processing")
        s.add(analysis)
        s.flush()
        assert leases.claim(s, Message, message_id, owner="me", seconds=1)
        assert leases.claim(s, Analysis, analysis.id, owner="me", seconds=1)

    def renewed() -> bool:
        with db.reader() as s:
            soon = utcnow() + timedelta(seconds=leases.LEASE_SECONDS / 2)
            return all(s.get_one(m, i).lease_until > soon for m, i in ((Message, message_id), (Analysis, analysis.id)))

    with leases.kept(db, Message, message_id, "me"), leases.kept(db, Analysis, analysis.id, "me"):
        wait_until(renewed, 10, 0.05, what="both leases renewed")
    with db.reader() as s:
        assert s.get_one(Message, message_id).lease_owner is None
        assert s.get_one(Analysis, analysis.id).lease_owner is None


def test_a_retry_rqs_scheduler_left_overdue_is_queued_by_the_sweeper_and_a_due_one_left_to_rq(app):
    """A worker killed with its RQ scheduler leaves RQ's scheduler lock behind: nothing moves retries out of
    the scheduled registry for minutes. Those overdue past the grace are queued; fresh ones stay RQ's."""
    queue = get_queue(INBOUND, app.extensions["redis"])
    now = utcnow()
    queue.enqueue_at(now - timedelta(seconds=60), "builtins.print", job_id="inbound-retry-overdue")
    queue.enqueue_at(now - timedelta(seconds=2), "builtins.print", job_id="inbound-retry-just-due")
    assert release_overdue(now) == 1
    assert queue.job_ids == ["inbound-retry-overdue"]
    assert queue.scheduled_job_registry.get_job_ids() == ["inbound-retry-just-due"]
    assert release_overdue(now) == 0
