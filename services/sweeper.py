"""Re-enqueue work that was committed but never queued (Redis was down at the time): inbound
messages, pending outbound messages, and charged analyses.

Runs periodically in the one scheduler process. A message whose job still exists in RQ (queued,
running, scheduled for retry, or failed and waiting for support) is left alone; `unique=True`
makes a race with the webhook harmless.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from rq.job import Job
from sqlalchemy import select

from models import Analysis, Direction, Message, MessageStatus, utcnow
from services import context
from services.queue import ANALYSIS, INBOUND, enqueue_unique, inbound_retry

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
            queued += enqueue_unique(redis, INBOUND, HANDLE_INBOUND, job_id, message_id, retry=inbound_retry())
        else:
            queued += enqueue_delivery(redis, message_id)
    queued += _sweep_analyses(redis, cutoff)
    if queued:
        log.warning("sweeper queued %d job(s) that were missing", queued)
    return queued


def _sweep_analyses(redis, cutoff) -> int:  # type: ignore[no-untyped-def]
    """Analyses charged and `queued` whose `run_analysis` job never reached Redis (or was lost), and
    callback results stored while Redis was down."""
    from services.analysis import FINISH_ANALYSIS, enqueue_analysis

    with context.db().reader() as session:
        waiting = session.scalars(select(Analysis.id).where(Analysis.status == "queued", Analysis.queued_at <= cutoff)
                                  .order_by(Analysis.id).limit(BATCH)).all()
        answered = session.scalars(select(Analysis.id).where(Analysis.status == "processing",
                                                             Analysis.result.is_not(None))
                                   .order_by(Analysis.id).limit(BATCH)).all()
    queued = 0
    for analysis_id in waiting:
        if not Job.exists(f"analysis-{analysis_id}", connection=redis):
            queued += enqueue_analysis(redis, analysis_id)
    for analysis_id in answered:
        if not Job.exists(f"finish-{analysis_id}", connection=redis):
            queued += enqueue_unique(redis, ANALYSIS, FINISH_ANALYSIS, f"finish-{analysis_id}", analysis_id)
    return queued
