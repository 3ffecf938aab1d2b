"""Re-enqueue messages that were committed but never queued (Redis was down when they arrived).

Runs periodically in the one scheduler process. A message whose job still exists in RQ (queued,
running, scheduled for retry, or failed and waiting for support) is left alone; `unique=True`
makes a race with the webhook harmless.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from rq.job import Job
from sqlalchemy import select

from models import Direction, Message, MessageStatus, utcnow
from services import context
from services.queue import INBOUND, enqueue_unique

log = logging.getLogger(__name__)

HANDLE_INBOUND = "services.jobs.handle_inbound"
BATCH = 500


def sweep_unqueued(grace_seconds: int | None = None) -> int:
    """Enqueue inbound messages not yet processed and pending outbound messages without a job."""
    from services.whatsapp.outbox import enqueue_delivery  # late: outbox imports jobs

    settings = context.settings()
    grace = settings.SWEEP_GRACE_SECONDS if grace_seconds is None else grace_seconds
    cutoff = utcnow() - timedelta(seconds=grace)
    redis = context.redis()
    with context.db().reader() as session:
        rows = session.execute(
            select(Message.id, Message.direction)
            .where(
                ((Message.direction == Direction.INBOUND.value) & (Message.status == MessageStatus.RECEIVED.value))
                | ((Message.direction == Direction.OUTBOUND.value) & (Message.status == MessageStatus.PENDING.value)),
                Message.created_at <= cutoff,
            )
            .order_by(Message.id)
            .limit(BATCH)
        ).all()
    queued = 0
    for message_id, direction in rows:
        inbound = direction == Direction.INBOUND.value
        job_id = f"{'inbound' if inbound else 'outbound'}-{message_id}"
        if Job.exists(job_id, connection=redis):
            continue
        if inbound:
            queued += enqueue_unique(redis, INBOUND, HANDLE_INBOUND, job_id, message_id)
        else:
            queued += enqueue_delivery(redis, message_id)
    if queued:
        log.warning("sweeper queued %d message(s) that had no job", queued)
    return queued
