"""RQ's failed-job registries, for operators: list what failed and why, and put jobs back in their queue.

Used by `flask requeue-failed`, the dashboard at `/admin/rq` and the admin API (`admin.jobs`). One rule
for all three: a failed analysis was refunded and the farmer was told, so its job is requeued only when
forced (the analysis would run for free).
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass
from datetime import datetime

from redis import Redis
from redis.exceptions import RedisError
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry
from sqlalchemy import select

from models import Analysis, AnalysisStatus
from models.db import Database
from services.queue import QUEUE_NAMES, get_queue

log = logging.getLogger(__name__)

JOB_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,100}")
_ANALYSIS_JOB_RE = re.compile(r"analysis-(\d{1,18})(?:-wait-\d+)?")


class Requeue(enum.StrEnum):
    REQUEUED = "requeued"
    NOT_FOUND = "not_found"  # in no failed registry (of the queue asked for)
    REFUNDED = "refunded"  # a failed, refunded analysis: only with force


@dataclass(frozen=True)
class FailedJob:
    id: str
    queue: str
    function: str | None
    exc_summary: str | None  # the exception's last line
    ended_at: datetime | None
    args: tuple[str, ...] = ()  # each as repr() shows it, shortened
    enqueued_at: datetime | None = None


def registries(redis: Redis, queue: str | None = None) -> list[FailedJobRegistry]:
    """The failed registries of our queues (of one queue when named; ValueError for an unknown one)."""
    if queue is not None and queue not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {queue!r}; queues: {', '.join(QUEUE_NAMES)}")
    return [FailedJobRegistry(queue=get_queue(name, redis)) for name in ([queue] if queue else QUEUE_NAMES)]


def failed_ids(redis: Redis, queue: str | None = None) -> list[tuple[str, str]]:
    """Every failed job as (queue, job id), oldest failure first."""
    return [(r.name, job_id) for r in registries(redis, queue) for job_id in r.get_job_ids()]


def latest_failed(redis: Redis, queue: str, limit: int = 50) -> list[FailedJob]:
    """The queue's most recent failures, newest first."""
    registry = registries(redis, queue)[0]
    ids = registry.get_job_ids(0, limit - 1, desc=True)
    return [describe(job, queue) for job in Job.fetch_many(ids, connection=redis) if job is not None]


def _safe_repr(value: object, limit: int = 500) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(job: Job, queue: str) -> FailedJob:
    """What operators are shown of a failed job, wherever they look (API, dashboard, console)."""
    try:
        function = job.func_name
        args = tuple(_safe_repr(a) for a in job.args)
    except Exception:  # a payload that cannot be deserialised must not hide the job
        function, args = None, ()
    return FailedJob(job.id, queue, function, exc_summary(job), job.ended_at, args, job.enqueued_at)


def exc_summary(job: Job) -> str | None:
    """The last line of the job's exception; None when it has none or it cannot be read, so that one
    unreadable result never hides the other failed jobs from a listing (the reason is logged)."""
    try:
        result = job.latest_result()
        text = result.exc_string if result is not None else None
    except RedisError as exc:
        log.warning("failed job's exception not read: Redis failed",
                    extra={"job_id": job.id, "reason": repr(exc)[:200]})
        return None
    except Exception as exc:  # a stored result rq cannot restore (its base64, zlib or pickle is broken)
        log.warning("failed job's exception not read: its result is unreadable",
                    extra={"job_id": job.id, "reason": repr(exc)[:200]})
        return None
    lines = [line for line in str(text or "").strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else None


def refunded_analysis(db: Database, job_id: str) -> bool:
    """Is this the job of an analysis that ended as failed (and so was refunded)?"""
    match = _ANALYSIS_JOB_RE.fullmatch(job_id)
    if match is None:
        return False
    with db.reader() as session:
        status = session.scalar(select(Analysis.status).where(Analysis.id == int(match.group(1))))
    return status == AnalysisStatus.FAILED.value


def requeue(redis: Redis, db: Database, job_id: str, *, queue: str | None = None,
            force: bool = False) -> tuple[Requeue, str | None]:
    """Move one failed job back to the end of its queue: (outcome, the queue it was in)."""
    if not JOB_ID_RE.fullmatch(job_id):
        return Requeue.NOT_FOUND, None
    registry = next((r for r in registries(redis, queue) if job_id in r), None)
    if registry is None:
        return Requeue.NOT_FOUND, None
    if not force and refunded_analysis(db, job_id):
        return Requeue.REFUNDED, registry.name
    try:
        registry.requeue(job_id)
    except (NoSuchJobError, InvalidJobOperation):  # expired, or requeued by someone else just now
        return Requeue.NOT_FOUND, registry.name
    return Requeue.REQUEUED, registry.name
