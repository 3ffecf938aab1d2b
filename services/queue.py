"""RQ wiring: queue names, enqueue helpers and retry policies.

The database is the truth; RQ only carries work. A job id is derived from a database id (RQ
allows only `[A-Za-z0-9_-]`, a wamid has dots) and enqueued with `unique=True`, so a message is
queued at most once however many times the sweeper or a retry asks for it. A new inbound message is
not an RQ job at first: the webhook hands it to the workers on a Redis list (`services.handoff`), and
only a failed first attempt, or the sweeper, makes it one. Outbound messages are not RQ jobs: the
outbox's senders take them from the database (`services.whatsapp.outbox`).
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Callback, Queue, Retry, get_current_job
from rq.exceptions import DuplicateJobError
from rq.job import Job

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

# A farmer's message whose handling failed (database hiccup, deploy) is tried again, soon: the first
# attempt, then one after each interval.
INBOUND_RETRY_INTERVALS = (5, 30, 120)

_unanswered_until: weakref.WeakKeyDictionary[Redis, float] = weakref.WeakKeyDictionary()
_retried_on_failure: ContextVar[bool] = ContextVar("retried_on_failure", default=False)


def get_queue(name: str, connection: Redis) -> Queue:
    return Queue(name, connection=connection, default_timeout=JOB_TIMEOUT[name])


def is_final_attempt() -> bool:
    """Inside an RQ job: no retry is left (or no job at all), so a failure now is the last word. A first
    attempt outside RQ (`retried_on_failure`) is never the last."""
    if _retried_on_failure.get():
        return False
    job = get_current_job()
    return job is None or not job.retries_left


@contextlib.contextmanager
def retried_on_failure() -> Iterator[None]:
    """Mark the work in this block as a first attempt whose failure the caller hands to RQ's retries
    (`schedule_inbound_retries`), so it must not give up on a message as a last attempt would."""
    token = _retried_on_failure.set(True)
    try:
        yield
    finally:
        _retried_on_failure.reset(token)


def inbound_retry() -> Retry:
    """A farmer's message whose handling failed (database hiccup, deploy) is tried again, soon."""
    return Retry(max=len(INBOUND_RETRY_INTERVALS), interval=list(INBOUND_RETRY_INTERVALS))


def schedule_inbound_retries(connection: Redis, func: str, message_id: int) -> bool:
    """A first attempt at a message failed outside RQ (the hand-off): RQ takes over with the retries that
    are left, as if its own first attempt had failed (the job runs after the first interval, with one
    retry fewer). False if RQ already holds a job for the message (the sweeper queued one, say)."""
    job_id = f"inbound-{message_id}"
    if Job.exists(job_id, connection=connection):
        return False
    get_queue(INBOUND, connection).enqueue_in(
        timedelta(seconds=INBOUND_RETRY_INTERVALS[0]), func, message_id, job_id=job_id,
        retry=Retry(max=len(INBOUND_RETRY_INTERVALS) - 1, interval=list(INBOUND_RETRY_INTERVALS[1:])),
        result_ttl=3600, failure_ttl=30 * 86400,
    )
    return True


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
    return try_quickly(connection, lambda client: enqueue_unique(client, queue, func, job_id, *args, retry=retry,
                                                                 on_failure=on_failure), f"job {job_id}")


def try_quickly(connection: Redis, action: Callable[[Redis], bool], what: str | Callable[[], str]) -> bool:
    """Run `action` on a quick client of `connection` (200 ms, no retry); when Redis does not answer, log
    that `what` is left for the sweeper and return False. After one unanswered call, the next ones
    through the same client give up at once for `UNANSWERED_PAUSE_SECONDS`. `what` may be a function,
    called only for that log line (the webhook's path does not format it when all goes well)."""
    client = quick(connection)
    if _unanswered_until and time.monotonic() < _unanswered_until.get(client, 0.0):
        log.warning("redis unavailable, %s left for the sweeper", what if isinstance(what, str) else what(),
                    extra={"reason": "Redis did not answer a moment ago"})
        return False
    try:
        return action(client)
    except RedisError as exc:
        _unanswered_until[client] = time.monotonic() + UNANSWERED_PAUSE_SECONDS
        log.warning("redis unavailable, %s left for the sweeper", what if isinstance(what, str) else what(),
                    extra={"reason": repr(exc)})
        return False
