"""Worker processes, the outbox sender and the embedded worker threads.

Production: `flask worker` runs an RQ worker over the queues in priority order, inside the app's
settings, and keeps running when Redis goes away (`run_worker`); `flask sender` sends the outbox
(`run_sender`). Embedded default (no REDIS_URL): two threads run the queued jobs with the periodic
tasks, and the outbox, against the in-process fakeredis.

The worker does not fork: it runs every job in its own process (RQ's SimpleWorker), so a job reuses
the process's database pool and HTTP sessions instead of paying a fork and fresh connections each
time. Job timeouts are still enforced (SIGALRM in the main thread; a timer in the embedded thread).
A worker on the `inbound` queue also takes the webhook's hand-off (`services.handoff`) first: one
BLPOP waits on the hand-off list and the RQ queues together. Untrusted images are decoded in a
separate process (`services.isolation`), so a hostile image cannot take the worker down.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from types import FrameType
from typing import Any

from flask import Flask
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.exceptions import NoSuchJobError, StopRequested
from rq.job import Job
from rq.timeouts import JobTimeoutException, TimerDeathPenalty
from rq.worker import WorkerStatus
from sqlalchemy.exc import SQLAlchemyError

from services import handoff, isolation
from services.queue import ANALYSIS, INBOUND, JOB_TIMEOUT, QUEUE_NAMES, get_queue
from services.redis_conn import as_text, connect
from services.scheduler import Schedule, periodic_tasks
from services.whatsapp.sender import Sender

log = logging.getLogger(__name__)

RECONNECT_MAX_SECONDS = 10.0
HEARTBEAT_EVERY = 5.0  # seconds between the idle loop's heartbeats (RQ's worker key lives 480 s)
PRESENCE_KEY = "ziraai:workers:alive"  # sorted set: worker name -> when it was last heard from
PRESENCE_SECONDS = 3 * HEARTBEAT_EVERY  # a worker not heard from for this long is not counted


class AppWorker(SimpleWorker):
    """RQ's non-forking worker: each job runs in this process (connections reused, no fork per job).
    On the `inbound` queue it also handles the hand-off's messages, before any RQ job. It remembers
    whether it was asked to stop (RQ's loop also ends when Redis fails it)."""

    stop_requested = False

    def __init__(self, queues: list[Queue], *args: Any, **kwargs: Any) -> None:
        super().__init__(queues, *args, **kwargs)
        self.takes_handoff = any(q.name == INBOUND for q in queues)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]  # RQ leaves it untyped

    def dequeue_job_and_maintain_ttl(self, timeout: int | None,
                                     max_idle_time: int | None = None) -> tuple[Job, Queue] | None:
        """The next RQ job, after handling every handed-off message that is waiting. Waiting (`timeout`
        seconds at a time; None: burst, no wait) watches the hand-off list and the queues in one BLPOP,
        the hand-off first: a farmer's new message wakes the worker as a job would."""
        if not self.takes_handoff:
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        if timeout is None:
            while (message_id := handoff.take(self.connection)) is not None:
                if not self.handle_handed_off(message_id):
                    return None
            return super().dequeue_job_and_maintain_ttl(None, max_idle_time)
        self.set_state(WorkerStatus.IDLE)
        keys = [handoff.HANDOFF_KEY, *(q.key for q in self.queues)]
        beat = 0.0
        while True:
            if time.monotonic() - beat >= HEARTBEAT_EVERY:  # not once per message: two round trips each
                self.heartbeat()
                beat = time.monotonic()
            if self.should_run_maintenance_tasks:
                self.run_maintenance_tasks()  # type: ignore[no-untyped-call]  # RQ leaves it untyped
            woke = self.connection.blpop(keys, timeout)
            if woke is None:
                continue
            key, value = (as_text(part) for part in woke)
            if key == handoff.HANDOFF_KEY:
                message_id = handoff.parse_id(value)
                if message_id is not None and not self.handle_handed_off(message_id):
                    return None
                continue
            queue = next(q for q in self.queues if q.key == key)
            try:
                job = self.job_class.fetch(value or "", connection=self.connection, serializer=self.serializer)
            except NoSuchJobError:
                continue
            self.heartbeat()
            return job, queue

    def handle_handed_off(self, message_id: int) -> bool:
        """Handle one handed-off message within the inbound job timeout, busy meanwhile (a stop request
        waits for it). False when a stop was requested: the worker's loop then ends. The state is the
        process's own (what a stop request reads); the copy in Redis that `rq info` shows stays idle, as
        a message takes milliseconds and writing it twice per message would cost two round trips."""
        self._state = WorkerStatus.BUSY
        deadline = self.death_penalty_class(JOB_TIMEOUT[INBOUND], JobTimeoutException,
                                            job_id=f"inbound-{message_id}")
        try:
            handoff.handle(self.connection, message_id, deadline)
        finally:
            self._state = WorkerStatus.IDLE
        return not self.stop_requested


def make_worker(app: Flask, queues: tuple[str, ...] = QUEUE_NAMES) -> AppWorker:
    """An RQ worker on a Redis connection of its own: RQ stretches its connection's socket timeout to
    its long blocking poll, which the app's calls (rate limits, enqueues) must not inherit."""
    redis = connect(app.extensions["settings"].REDIS_URL)
    if ANALYSIS in queues:
        isolation.warm_up()  # the image helper process, started before the first photo needs it
    return AppWorker([get_queue(q, redis) for q in queues], connection=redis)


def run_worker(app: Flask, queues: tuple[str, ...] = QUEUE_NAMES, *, burst: bool = False) -> None:
    """`flask worker`: RQ's work loop, started again with backoff (1 s doubling to 10 s, from 1 s again for
    each outage) whenever it ends without a stop request. RQ's loop ends or raises when Redis goes away
    while a job runs. SIGTERM/SIGINT stop it as RQ does. While it runs, the process says it is alive
    (`keep_present`), which `/health/ready` counts."""
    stop = threading.Event()
    if not burst:
        keep_present(connect(app.extensions["settings"].REDIS_URL), stop)
    try:
        _work_until_stopped(app, queues, burst)
    finally:
        stop.set()


def _work_until_stopped(app: Flask, queues: tuple[str, ...], burst: bool) -> None:
    delay = 1.0
    while True:
        worker = None
        started = time.monotonic()
        try:
            worker = make_worker(app, queues)  # RQ asks Redis already here
            worker.work(burst=burst, with_scheduler=True, logging_level="INFO")
            reason = "RQ's work loop ended"
        except StopRequested:
            return
        except (RedisError, OSError) as exc:
            reason = repr(exc)[:200]
        if burst or (worker is not None and worker.stop_requested):
            return
        if time.monotonic() - started > RECONNECT_MAX_SECONDS:
            delay = 1.0  # it worked for a while: a new outage, not the same one
        log.warning("worker: Redis unavailable; reconnecting in %.0f s", delay, extra={"reason": reason})
        try:
            time.sleep(delay)  # RQ's signal handlers are still installed: SIGTERM raises StopRequested here
        except StopRequested:
            return
        delay = min(RECONNECT_MAX_SECONDS, delay * 2)


def keep_present(redis: Redis, stop: threading.Event) -> threading.Thread:
    """Every `HEARTBEAT_EVERY` seconds, from a thread of its own (a long job does not delay it), this
    process writes that it is alive; a killed worker stops at once, so `/health/ready` stops counting it
    within `PRESENCE_SECONDS` (RQ's own registration outlives a SIGKILL by minutes). On stop it leaves."""
    name = f"{socket.gethostname()[:60]}:{os.getpid()}"

    def beat() -> None:
        while True:
            now = time.time()
            try:
                if stop.is_set():
                    redis.zrem(PRESENCE_KEY, name)
                    return
                pipe = redis.pipeline(transaction=False)
                pipe.zadd(PRESENCE_KEY, {name: now})
                pipe.zremrangebyscore(PRESENCE_KEY, "-inf", now - 60 * PRESENCE_SECONDS)  # the long gone
                pipe.execute()
            except RedisError:
                pass  # Redis away: not counted meanwhile, and the work loop says so
            stop.wait(HEARTBEAT_EVERY)

    thread = threading.Thread(target=beat, name="worker-presence", daemon=True)
    thread.start()
    return thread


def workers_present(redis: Redis, now: float) -> int:
    """How many worker processes said they were alive in the last `PRESENCE_SECONDS`."""
    return int(redis.zcount(PRESENCE_KEY, now - PRESENCE_SECONDS, "+inf"))


def run_sender(app: Flask, stop: threading.Event, idle: float = 0.5) -> None:
    """`flask sender`: send the outbox's due messages until `stop` is set, in batches, up to
    `WHATSAPP_SEND_CONCURRENCY` at once (services/whatsapp/sender.py). With nothing to do it waits
    `idle` seconds; Redis or the database failing makes it wait longer (1 s doubling to 10 s). On stop
    it finishes and records the sends in flight."""
    delay = 1.0
    with app.app_context():
        sender = Sender(app.extensions["settings"].WHATSAPP_SEND_CONCURRENCY)
        log.info("sender started", extra={"concurrency": sender.concurrency})
        try:
            while not stop.is_set():
                try:
                    busy = sender.turn()
                    delay = 1.0
                except (RedisError, SQLAlchemyError, TimeoutError) as exc:
                    log.warning("sender: cannot send now; trying again in %.0f s", delay,
                                extra={"reason": repr(exc)[:200]})
                    stop.wait(delay)
                    delay = min(RECONNECT_MAX_SECONDS, delay * 2)
                    continue
                except Exception:
                    log.exception("sender: unexpected error")
                    busy = 0
                if not busy:
                    stop.wait(idle)
            sender.drain()
        except (RedisError, SQLAlchemyError, TimeoutError) as exc:  # their leases expire; their wamids are in Redis
            log.warning("sender: stopped before the last sends were recorded", extra={"reason": repr(exc)[:200]})
        finally:
            sender.close()


class ThreadWorker(AppWorker):
    """RQ uses signals (stop requests, SIGALRM job timeouts), which Python allows only in the main
    thread: no handlers, and a timer thread enforces job timeouts instead."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass


EMBEDDED_WORKER_THREAD = "embedded-worker"


def embedded_worker_alive() -> bool:
    """Whether this process runs the embedded worker thread (no REDIS_URL: the jobs run in the web process)."""
    return any(t.name == EMBEDDED_WORKER_THREAD and t.is_alive() for t in threading.enumerate())


def start_embedded_worker(app: Flask, poll: float = 0.2) -> threading.Event:
    """Run jobs with the periodic tasks in one daemon thread and the outbox's sender in another (so
    sends never wait behind a backlog of jobs); set the returned event to stop both."""
    stop = threading.Event()
    redis = app.extensions["redis"]

    def jobs() -> None:
        worker = ThreadWorker([get_queue(q, redis) for q in QUEUE_NAMES], connection=redis)
        schedule = Schedule(periodic_tasks(app), f"embedded:{threading.get_ident()}", 30)
        with app.app_context():
            while not stop.is_set():
                try:
                    worker.work(burst=True, with_scheduler=True, logging_level="WARNING")
                    schedule.tick()
                except Exception:
                    log.exception("embedded worker loop error")
                stop.wait(poll)

    threading.Thread(target=jobs, name=EMBEDDED_WORKER_THREAD, daemon=True).start()
    threading.Thread(target=run_sender, args=(app, stop, poll), name="embedded-sender", daemon=True).start()
    log.info("embedded worker threads started (no REDIS_URL: in-process fakeredis)")
    return stop
