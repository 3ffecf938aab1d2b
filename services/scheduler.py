"""The one process that runs periodic work. A Redis lock makes a second scheduler wait, not double up."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask
from redis.exceptions import RedisError

from services import context
from services.sweeper import sweep_unqueued

log = logging.getLogger(__name__)

LOCK_KEY = "ziraai:scheduler:leader"


@dataclass
class Periodic:
    name: str
    func: Callable[[], object]
    every: float
    next_run: float = 0.0


def periodic_tasks(app: Flask) -> list[Periodic]:
    return [Periodic("sweep_unqueued", sweep_unqueued, app.extensions["settings"].SWEEP_INTERVAL_SECONDS)]


def _hold_leadership(me: str, ttl: int) -> bool:
    redis = context.redis()
    if redis.set(LOCK_KEY, me, nx=True, ex=ttl):
        return True
    if redis.get(LOCK_KEY) == me.encode():
        redis.expire(LOCK_KEY, ttl)
        return True
    return False


def tick(tasks: list[Periodic], me: str, lock_ttl: int) -> None:
    """One pass: run every task that is due, if we are the leader. Errors are logged, never fatal."""
    try:
        if not _hold_leadership(me, lock_ttl):
            return
    except RedisError as exc:
        log.warning("scheduler: redis unavailable, skipping this tick", extra={"reason": repr(exc)})
        return
    now = time.monotonic()
    for task in tasks:
        if now < task.next_run:
            continue
        task.next_run = now + task.every
        try:
            task.func()
        except Exception:
            log.exception("periodic task %s failed", task.name)


def run_scheduler(app: Flask, stop: threading.Event, poll: float = 1.0) -> None:
    me = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
    tasks = periodic_tasks(app)
    lock_ttl = int(max(10, 3 * poll))
    log.info("scheduler started", extra={"tasks": [t.name for t in tasks]})
    with app.app_context():
        while not stop.is_set():
            tick(tasks, me, lock_ttl)
            stop.wait(poll)
