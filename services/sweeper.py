"""Queue again the work nobody holds: committed but never queued (Redis was down, or lost it), or held by
a worker that died (its lease expired). Runs in the one scheduler process.

- `sweep_unqueued` (every `SWEEP_INTERVAL_SECONDS`, and at once when Redis is back): inbound messages
  not yet handled (and not waiting on the hand-off list, `services.handoff`; one whose farmer row is
  gone is given its farmer again first), charged analyses (`queued`, or `processing` without a live
  lease), callback results stored while Redis was down, and photos kept for support during a takeover
  still waiting to be downloaded (`services.support_photos`).
- `requeue_expired` (every `EXPIRED_SWEEP_SECONDS`): rows whose lease expired, so a killed worker's
  message or analysis runs again within a lease's length and a few seconds.
- `release_overdue` (every `EXPIRED_SWEEP_SECONDS`): RQ's scheduled jobs (retries after a backoff, deadline
  checks) overdue by more than `OVERDUE_GRACE_SECONDS`, queued. RQ moves them in one worker that holds
  its scheduler lock; when that worker dies, the lock outlives it by up to a minute and the others try for
  it only at their maintenance pass, ten minutes apart. This is the net under that gap.
- `end_overdue` (every `SWEEP_INTERVAL_SECONDS`): analyses still `processing`, held by no worker,
  `ANALYSIS_MAX_WAIT_SECONDS` after they were queued (N8N accepted one in callback mode and never posted
  its result, or every attempt to end it failed): ended failed, refunded once, the farmer told.

A row's job is queued again only when RQ holds no live work for it: no job, a finished one, or one
that started longer ago than a lease lasts (its worker, if alive, would have renewed the row's lease).
A job waiting in RQ (queued, scheduled for a retry) is left alone, and so is a failed one (support's).
`unique=True` makes a race with the webhook harmless. Outbound messages need no sweeping: the outbox's
senders read them from the database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import func, select

from models import Analysis, AnalysisStatus, Direction, Message, MessageStatus, PhotoState, utcnow
from services import context, support_photos
from services.analysis import FINISH_ANALYSIS, end_if_overdue, enqueue_analysis, overdue_since
from services.farmer_identity import reattach_orphans
from services.handoff import HANDLE_INBOUND, waiting
from services.leases import LEASE_SECONDS, lease_free
from services.queue import ANALYSIS, INBOUND, QUEUE_NAMES, enqueue_unique, get_queue, inbound_retry

log = logging.getLogger(__name__)

BATCH = 500
EXPIRED_SWEEP_SECONDS = 5
OVERDUE_GRACE_SECONDS = 15  # RQ's own scheduler moves a due job within a second or two


def sweep_unqueued(grace_seconds: int | None = None) -> int:
    """Queue inbound messages not yet handled, charged analyses and photos kept for support whose job RQ does
    not hold."""
    settings = context.settings()
    grace = settings.SWEEP_GRACE_SECONDS if grace_seconds is None else grace_seconds
    now = utcnow()
    cutoff = now - timedelta(seconds=grace)
    with context.db().session() as session, session.begin():
        reattach_orphans(session, cutoff, now)  # a message that lost its farmer could not be claimed
    with context.db().reader() as session:
        inbound = session.scalars(
            select(Message.id)
            .where(Message.direction == Direction.INBOUND.value, Message.status == MessageStatus.RECEIVED.value,
                   Message.created_at <= cutoff, lease_free(Message, now))
            .order_by(Message.id).limit(BATCH)
        ).all()
        analyses = session.scalars(
            select(Analysis.id)
            .where(((Analysis.status == AnalysisStatus.QUEUED.value) & (Analysis.queued_at <= cutoff))
                   | ((Analysis.status == AnalysisStatus.PROCESSING.value) & Analysis.n8n_requested_at.is_(None)
                      & Analysis.result.is_(None) & (Analysis.processing_at <= cutoff)),
                   lease_free(Analysis, now))
            .order_by(Analysis.id).limit(BATCH)
        ).all()
        answered = session.scalars(select(Analysis.id).where(Analysis.status == AnalysisStatus.PROCESSING.value,
                                                             Analysis.result.is_not(None))
                                   .order_by(Analysis.id).limit(BATCH)).all()
        photos = session.scalars(select(Message.id).where(Message.photo_state == PhotoState.WAITING.value,
                                                          Message.processed_at <= cutoff)
                                 .order_by(Message.id).limit(BATCH)).all()
    redis = context.redis()
    handed_off = set(waiting(redis)) if inbound else set()  # a backlog the workers have not reached yet
    queued = sum(_requeue_inbound(redis, i, now) for i in inbound if i not in handed_off)
    queued += sum(_requeue_analysis(redis, i, now) for i in analyses)
    for analysis_id in answered:
        if not Job.exists(f"finish-{analysis_id}", connection=redis):
            queued += enqueue_unique(redis, ANALYSIS, FINISH_ANALYSIS, f"finish-{analysis_id}", analysis_id)
    queued += sum(_requeue_photo(redis, i, now) for i in photos)
    if queued:
        log.warning("sweeper queued %d job(s) that were missing", queued)
    return queued


def requeue_expired() -> int:
    """Queue again the messages and analyses whose worker stopped renewing its lease (it died)."""
    now = utcnow()
    with context.db().reader() as session:
        inbound = session.scalars(
            select(Message.id).where(Message.direction == Direction.INBOUND.value,
                                     Message.status == MessageStatus.RECEIVED.value,
                                     Message.lease_owner.is_not(None), Message.lease_until < now)
            .order_by(Message.id).limit(BATCH)).all()
        analyses = session.scalars(
            select(Analysis.id).where(Analysis.status.in_((AnalysisStatus.QUEUED.value,
                                                           AnalysisStatus.PROCESSING.value)),
                                      Analysis.lease_owner.is_not(None), Analysis.lease_until < now)
            .order_by(Analysis.id).limit(BATCH)).all()
    redis = context.redis()
    queued = sum(_requeue_inbound(redis, i, now) for i in inbound)
    queued += sum(_requeue_analysis(redis, i, now) for i in analyses)
    if queued:
        log.warning("sweeper queued %d job(s) whose worker stopped holding them", queued)
    return queued


def end_overdue() -> int:
    """End the analyses that waited longer than `ANALYSIS_MAX_WAIT_SECONDS` with nobody working on them
    (`services.analysis.end_if_overdue`, which checks each again under its row's lock). How many it ended."""
    now = utcnow()
    with context.db().reader() as session:
        overdue = session.scalars(
            select(Analysis.id).where(
                Analysis.status == AnalysisStatus.PROCESSING.value, lease_free(Analysis, now),
                func.coalesce(Analysis.queued_at, Analysis.received_at, Analysis.created_at) <= overdue_since(now))
            .order_by(Analysis.id).limit(BATCH)).all()
    ended = sum(end_if_overdue(analysis_id, now) for analysis_id in overdue)
    if ended:
        log.warning("sweeper ended %d analysis(es) that got no result within the maximum wait", ended)
    return ended


def _requeue_inbound(redis: Redis, message_id: int, now: datetime) -> bool:
    job_id = f"inbound-{message_id}"
    return _requeue(redis, job_id, now, lambda: enqueue_unique(redis, INBOUND, HANDLE_INBOUND, job_id, message_id,
                                                               retry=inbound_retry()))


def _requeue_analysis(redis: Redis, analysis_id: int, now: datetime) -> bool:
    return _requeue(redis, f"analysis-{analysis_id}", now, lambda: enqueue_analysis(redis, analysis_id))


def _requeue_photo(redis: Redis, message_id: int, now: datetime) -> bool:
    return _requeue(redis, support_photos.job_id(message_id), now,
                    lambda: support_photos.enqueue_keep(redis, message_id))


def _requeue(redis: Redis, job_id: str, now: datetime, enqueue: Callable[[], bool]) -> bool:
    try:
        job: Job | None = Job.fetch(job_id, connection=redis)
    except NoSuchJobError:
        job = None
    if not abandoned(job, now):
        return False
    if job is not None:
        job.delete()  # a dead worker's job: RQ would notice only minutes later
        log.warning("job of a worker that stopped holding its lease queued again", extra={"job_id": job_id})
    return enqueue()


def abandoned(job: Job | None, now: datetime) -> bool:
    """RQ holds no live work for this job id: none at all, a finished one, or one that started longer
    ago than a lease lasts (a live worker would have renewed the row's lease, so it is not running)."""
    if job is None:
        return True
    status = job.get_status(refresh=False)
    if status == JobStatus.FINISHED:
        return True
    if status == JobStatus.STARTED:
        return job.started_at is None or job.started_at < now - timedelta(seconds=LEASE_SECONDS)
    return False  # waiting in RQ (queued, scheduled for a retry), or failed/stopped/canceled: support's


def release_overdue(now: datetime | None = None) -> int:
    """Queue the scheduled RQ jobs whose time passed more than `OVERDUE_GRACE_SECONDS` ago (RQ's scheduler
    is not running). A job queued twice by a race with RQ's scheduler runs twice: every job is idempotent."""
    redis = context.redis()
    due_by = int(((now or utcnow()) - timedelta(seconds=OVERDUE_GRACE_SECONDS)).timestamp())
    released = 0
    for name in QUEUE_NAMES:
        queue = get_queue(name, redis)
        registry = queue.scheduled_job_registry
        job_ids = registry.get_jobs_to_schedule(due_by)
        for job in Job.fetch_many(job_ids, connection=redis):
            if job is not None:
                queue.enqueue_job(job)
                released += 1
        for job_id in job_ids:
            registry.remove(job_id)
    if released:
        log.warning("sweeper queued %d scheduled job(s) RQ's scheduler left overdue", released)
    return released
