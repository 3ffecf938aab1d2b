"""RQ wiring: queue names, enqueue helpers and retry policies.

The database is the truth; RQ only carries work. A job id is derived from a database id (RQ
allows only `[A-Za-z0-9_-]`, a wamid has dots) and enqueued with `unique=True`, so a message is
queued at most once however many times the webhook, the sweeper or a retry asks for it. Outbound
messages are not RQ jobs: the outbox's senders take them from the database
(`services.whatsapp.outbox`).
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Callback, Queue, Retry, get_current_job
from rq.exceptions import DuplicateJobError

from services.redis_conn import quick

log = logging.getLogger(__name__)

# Listening order for workers: a farmer waiting for an answer comes before everything else.
INBOUND = "inbound"
ANALYSIS = "analysis"
DEFAULT = "default"
QUEUE_NAMES = (INBOUND, ANALYSIS, DEFAULT)

JOB_TIMEOUT = {INBOUND: 60, ANALYSIS: 600, DEFAULT: 300}
# After Redis failed to answer an enqueue, further enqueues through the same client are left to the
# sweeper at once for this long, instead of each waiting for its own timeout.
UNANSWERED_PAUSE_SECONDS = 1.0

_unanswered_until: weakref.WeakKeyDictionary[Redis, float] = weakref.WeakKeyDictionary()


def get_queue(name: str, connection: Redis) -> Queue:
    return Queue(name, connection=connection, default_timeout=JOB_TIMEOUT[name])


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
    """Like `enqueue_unique`, but it gives up quickly (200 ms, no retry) and logs instead of raising when
    Redis does not answer: the work is committed, and the sweeper queues it once Redis is back."""
    client = quick(connection)
    if time.monotonic() < _unanswered_until.get(client, 0.0):
        log.warning("redis unavailable, job %s left for the sweeper", job_id,
                    extra={"reason": "Redis did not answer a moment ago"})
        return False
    try:
        return enqueue_unique(client, queue, func, job_id, *args, retry=retry, on_failure=on_failure)
    except RedisError as exc:
        _unanswered_until[client] = time.monotonic() + UNANSWERED_PAUSE_SECONDS
        log.warning("redis unavailable, job %s left for the sweeper", job_id, extra={"reason": repr(exc)})
        return False
