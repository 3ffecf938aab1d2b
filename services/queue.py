"""RQ wiring: queue names, enqueue helpers and retry policies.

The database is the truth; RQ only carries work. A job id is derived from a database id (RQ
allows only `[A-Za-z0-9_-]`, a wamid has dots) and enqueued with `unique=True`, so a message is
queued at most once however many times the webhook, the sweeper or a retry asks for it.
"""

from __future__ import annotations

import logging
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Callback, Queue, Retry, get_current_job
from rq.exceptions import DuplicateJobError

log = logging.getLogger(__name__)

# Listening order for workers: a farmer waiting for an answer comes before everything else.
INBOUND = "inbound"
OUTBOUND = "outbound"
ANALYSIS = "analysis"
DEFAULT = "default"
QUEUE_NAMES = (INBOUND, OUTBOUND, ANALYSIS, DEFAULT)

JOB_TIMEOUT = {INBOUND: 60, OUTBOUND: 60, ANALYSIS: 600, DEFAULT: 300}


def get_queue(name: str, connection: Redis) -> Queue:
    return Queue(name, connection=connection, default_timeout=JOB_TIMEOUT[name])


def backoff_intervals(base: int, retries: int) -> list[int]:
    """`base ** n` seconds for attempt n (4, 16, 64, 256 for base 4): WhatsApp's advice for 131056,
    and gentle enough for throughput limits and transient errors too."""
    return [base**n if base else 0 for n in range(1, retries + 1)]


def retry_policy(base: int, retries: int = 4) -> Retry:
    return Retry(max=retries, interval=backoff_intervals(base, retries))


def is_final_attempt() -> bool:
    """Inside an RQ job: no retry is left (or no job at all), so a failure now is the last word."""
    job = get_current_job()
    return job is None or not job.retries_left


def inbound_retry() -> Retry:
    """A farmer's message whose handling failed (database hiccup, deploy) is tried again, soon."""
    return Retry(max=3, interval=[5, 30, 120])


def enqueue_unique(connection: Redis, queue: str, func: str, job_id: str, *args: Any,
                   retry: Retry | None = None, on_failure: Callback | None = None) -> bool:
    """Enqueue once. True if queued now, False if already there. RedisError propagates."""
    try:
        get_queue(queue, connection).enqueue(
            func, *args, job_id=job_id, unique=True, retry=retry, on_failure=on_failure, result_ttl=3600,
            failure_ttl=30 * 86400,
        )
    except DuplicateJobError:
        return False
    return True


def try_enqueue_unique(connection: Redis, queue: str, func: str, job_id: str, *args: Any,
                       retry: Retry | None = None, on_failure: Callback | None = None) -> bool:
    """Like `enqueue_unique`, but a Redis outage is logged, not raised: the sweeper catches up."""
    try:
        return enqueue_unique(connection, queue, func, job_id, *args, retry=retry, on_failure=on_failure)
    except RedisError as exc:
        log.warning("redis unavailable, job %s left for the sweeper", job_id, extra={"reason": repr(exc)})
        return False
