"""RQ job entry points. Each runs inside the app (settings, database, Redis) and is safe to run twice."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, has_app_context
from rq import get_current_job

from services import conversation, metrics, runtime_settings
from services.logs import correlation

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

_bound_app: Flask | None = None


def bind_app(app: Flask) -> None:
    """Make `app` the one this process's jobs run in when no app context is active (a worker's forked
    work-horse). The entry points that run jobs call it: `flask worker`/`sender`/`scheduler` and wsgi."""
    global _bound_app
    _bound_app = app


def _app() -> Flask:
    if _bound_app is None:
        raise RuntimeError("no app to run the job in: the process's entry point must call services.jobs.bind_app")
    return _bound_app


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
                    runtime_settings.start_of_job()
                    result = func(*args, **kwargs)
                else:
                    with _app().app_context():
                        runtime_settings.start_of_job()
                        result = func(*args, **kwargs)
        except BaseException:
            # RQ retries while retries are left (a permanent failure sets them to 0 first)
            if counted and job is not None:
                metrics.job(job.origin, "retried" if job.retries_left else "failed", time.perf_counter() - started)
            raise
        if counted and job is not None:
            metrics.job(job.origin, "succeeded", time.perf_counter() - started)
        return result

    return wrapper  # type: ignore[return-value]


@app_job
def handle_inbound(message_id: int) -> str:
    """The `inbound` job: run the conversation for this farmer's waiting messages, in order."""
    return conversation.handle_inbound(message_id)
