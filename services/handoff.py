"""The inbound hand-off: how the webhook tells the workers about new messages.

The webhook commits the message rows, then pushes their ids onto one Redis list (`push`: one RPUSH,
given up after 200 ms when Redis does not answer). A worker listening on the `inbound` queue pops the
ids one at a time, before any RQ job, and handles each message in its own process (`handle`): no RQ
job, no fork, the process's database and HTTP connections reused.

The database stays the truth, so nothing here must be exactly-once:
- a push that never reached Redis, or an id popped by a worker that died before claiming the message's
  lease, is found by the sweeper (`services.sweeper`: a received message nobody holds, after a grace);
- a worker killed while handling holds the message's lease: it expires and the sweeper queues it again;
- an id pushed or popped twice is harmless: `handle_inbound` claims the lease and skips what is done;
- a farmer's messages keep their order: `handle_inbound` locks the farmer's conversation and handles
  every waiting message of the farmer, oldest first, whichever worker popped which id;
- a failed first attempt goes to RQ (`schedule_inbound_retries`) with the retries that are left.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence

from redis import Redis

from services import conversation, metrics
from services.logs import correlation
from services.queue import INBOUND, retried_on_failure, schedule_inbound_retries, try_quickly
from services.redis_conn import as_text

log = logging.getLogger(__name__)

HANDOFF_KEY = "ziraai:inbound:handoff"
HANDLE_INBOUND = "services.jobs.handle_inbound"  # the RQ job that takes over a failed first attempt


def push(connection: Redis, message_ids: Sequence[int]) -> bool:
    """Hand new inbound messages to the workers in one RPUSH. False when Redis did not answer (logged):
    the rows are committed, and the sweeper finds them once Redis is back."""
    if not message_ids:
        return True
    ids = list(message_ids)
    return try_quickly(connection, lambda client: bool(client.rpush(HANDOFF_KEY, *ids)),
                       f"inbound message(s) {ids[:10]}")


def parse_id(value: bytes | str | None) -> int | None:
    """A popped entry as a message id; anything else (never pushed by us) is None."""
    text = as_text(value)
    if text is None or not text.isdigit():
        if text is not None:
            log.warning("hand-off entry ignored: not a message id", extra={"entry": text[:40]})
        return None
    return int(text)


def take(connection: Redis) -> int | None:
    """Pop the oldest handed-off message id without waiting; None when the list is empty."""
    while True:
        value = connection.lpop(HANDOFF_KEY)
        if value is None:
            return None
        message_id = parse_id(value)  # type: ignore[arg-type]  # a sync client answers bytes
        if message_id is not None:
            return message_id


def waiting(connection: Redis) -> list[int]:
    """The ids still on the list, oldest first (the sweeper leaves those to the workers)."""
    ids = (parse_id(v) for v in connection.lrange(HANDOFF_KEY, 0, -1))
    return [i for i in ids if i is not None]


def handle(connection: Redis, message_id: int,
           deadline: contextlib.AbstractContextManager[object] | None = None) -> bool:
    """Handle one handed-off message here, as RQ's first attempt would (within `deadline`, the worker's
    job timeout). A failure is logged and left to RQ's retries. True if it was handled without error.
    Runs inside the app's context."""
    started = time.perf_counter()
    with correlation(f"inbound-{message_id}"):
        try:
            with deadline or contextlib.nullcontext(), retried_on_failure():
                conversation.handle_inbound(message_id)
        except Exception:
            log.exception("handed-off message failed; RQ retries it", extra={"message_id": message_id})
            metrics.job(INBOUND, "retried", time.perf_counter() - started)
            try:
                schedule_inbound_retries(connection, HANDLE_INBOUND, message_id)
            except Exception:  # Redis too: the message is still `received`, so the sweeper queues it
                log.exception("could not queue the retry; left for the sweeper", extra={"message_id": message_id})
            return False
    metrics.job(INBOUND, "succeeded", time.perf_counter() - started)
    return True
