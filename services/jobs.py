"""RQ job entry points. Each runs inside the app (settings, database, Redis) and is safe to run twice."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, has_app_context
from rq import get_current_job

from services import conversation, metrics
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
    """Run the job inside an app context, with the RQ job id as the logs' correlation id, and count
    the attempt in the job metrics (only when it is the job itself, not one of its callbacks)."""
    name = f"{func.__module__}.{func.__qualname__}"

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        job = get_current_job()
        counted = job is not None and job.func_name == name
        started = time.perf_counter()
        try:
            with correlation(job.id if job else None):
                if has_app_context():
                    result = func(*args, **kwargs)
                else:
                    with _app().app_context():
                        result = func(*args, **kwargs)
        except BaseException:
            if counted:  # RQ retries while retries are left (a permanent failure sets them to 0 first)
                metrics.job(job.origin, "retried" if job.retries_left else "failed", time.perf_counter() - started)
            raise
        if counted:
            metrics.job(job.origin, "succeeded", time.perf_counter() - started)
        return result

    return wrapper  # type: ignore[return-value]


@app_job
def handle_inbound(message_id: int) -> str:
    """The `inbound` job: run the conversation for this farmer's waiting messages, in order."""
    return conversation.handle_inbound(message_id)
