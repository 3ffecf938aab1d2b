"""RQ job entry points. Each runs inside the app (settings, database, Redis) and is safe to run twice."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, has_app_context
from rq import get_current_job

from models import Direction, Message, MessageStatus, utcnow
from services import context
from services.logs import correlation

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

_worker_app: Flask | None = None
_worker_app_lock = threading.Lock()


def _app() -> Flask:
    """The app a worker process runs jobs in, built once from the environment."""
    global _worker_app
    with _worker_app_lock:
        if _worker_app is None:
            from app import create_app  # late: app imports services

            _worker_app = create_app()
        return _worker_app


def app_job(func: F) -> F:
    """Run the job inside an app context, with the RQ job id as the logs' correlation id."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        job = get_current_job()
        with correlation(job.id if job else None):
            if has_app_context():
                return func(*args, **kwargs)
            with _app().app_context():
                return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@app_job
def handle_inbound(message_id: int) -> str:
    """Handle one inbound message. Until the conversation exists it only marks the message processed."""
    with context.db().session() as session, session.begin():
        message = session.get(Message, message_id)
        if message is None or message.direction != Direction.INBOUND:
            log.warning("inbound job for an unknown message", extra={"message_id": message_id})
            return "missing"
        if message.processed_at is not None:
            return "already processed"
        message.attempts += 1
        message.status = MessageStatus.PROCESSED.value
        message.processed_at = utcnow()
        log.info("inbound message processed", extra={"message_id": message_id, "type": message.type})
    return "processed"
