"""The one process that runs periodic work. A Redis lock makes a second scheduler wait, not double up.

After Redis failed to answer, or came back without our lock (restarted empty), every task runs at once
and the sweep takes even the newest rows: what the webhook could not queue meanwhile is queued as soon
as Redis answers, not a sweep interval later.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask, current_app
from redis.exceptions import RedisError

from models import utcnow
from services import context, deletion
from services.redis_conn import quick
from services.sweeper import EXPIRED_SWEEP_SECONDS, end_overdue, release_overdue, requeue_expired, sweep_unqueued

log = logging.getLogger(__name__)

LOCK_KEY = "ziraai:scheduler:leader"
DELETION_CHECK_SECONDS = 3600.0


@dataclass
class Periodic:
    name: str
    func: Callable[[], object]
    every: float
    catch_up: Callable[[], object] | None = None  # instead of `func` when Redis is back
    next_run: float = 0.0


@dataclass
class Schedule:
    tasks: list[Periodic]
    me: str
    lock_ttl: int
    catching_up: bool = field(default=True)  # at start, and after Redis failed or lost our lock
    leading: bool | None = None  # as last said in the log (None: not yet)

    def tick(self) -> None:
        """One pass: run every task that is due, if we are the leader. Errors are logged, never fatal."""
        try:
            leadership = hold_leadership(self.me, self.lock_ttl)
        except RedisError as exc:
            log.warning("scheduler: redis unavailable, skipping this tick", extra={"reason": repr(exc)})
            self.catching_up = True
            return
        self._say_role(leadership is not None)
        if leadership is None:
            return
        catching_up = self.catching_up or leadership == "taken"
        self.catching_up = False
        now = time.monotonic()
        for task in self.tasks:
            if now < task.next_run and not catching_up:
                continue
            task.next_run = now + task.every
            try:
                (task.catch_up if catching_up and task.catch_up else task.func)()
            except Exception:
                log.exception("periodic task %s failed", task.name)

    def _say_role(self, leading: bool) -> None:
        """One log line when this scheduler starts or stops leading: which one does the periodic work."""
        if leading == self.leading:
            return
        self.leading = leading
        if leading:
            log.info("scheduler: leading; the periodic tasks run here")
        else:
            log.info("scheduler: standing by; another scheduler leads (this one takes over if it stops)")


def periodic_tasks(app: Flask) -> list[Periodic]:
    every = app.extensions["settings"].SWEEP_INTERVAL_SECONDS
    return [Periodic("sweep_unqueued", sweep_unqueued, every, catch_up=lambda: sweep_unqueued(grace_seconds=0)),
            Periodic("requeue_expired", requeue_expired, EXPIRED_SWEEP_SECONDS),
            Periodic("release_overdue", release_overdue, EXPIRED_SWEEP_SECONDS),
            Periodic("end_overdue", end_overdue, every),
            Periodic("erase_due_deletions", erase_due_deletions, DELETION_CHECK_SECONDS)]


def erase_due_deletions() -> int:
    """KVKK: a deletion request nobody carried out is carried out on its last day (services/deletion.py)."""
    return deletion.erase_due(context.db(), current_app.extensions["storage"], utcnow())


def hold_leadership(me: str, ttl: int) -> str | None:
    """`kept` (we were leader), `taken` (we became leader: at start, after the lock expired or Redis lost
    it) or None (another scheduler leads). Asked with short timeouts, so a Redis that hangs is noticed
    (and caught up with once it answers) like one that is down."""
    redis = quick(context.redis())
    if redis.set(LOCK_KEY, me, nx=True, ex=ttl):
        return "taken"
    if redis.get(LOCK_KEY) == me.encode():
        redis.expire(LOCK_KEY, ttl)
        return "kept"
    return None


def scheduler_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def run_scheduler(app: Flask, stop: threading.Event, poll: float = 1.0) -> None:
    schedule = Schedule(periodic_tasks(app), scheduler_name(), int(max(10, 3 * poll)))
    log.info("scheduler started", extra={"tasks": [t.name for t in schedule.tasks]})
    with app.app_context():
        while not stop.is_set():
            schedule.tick()
            stop.wait(poll)
