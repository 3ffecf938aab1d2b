"""Worker processes, the outbox sender and the embedded worker threads.

Production: `flask worker` runs an RQ worker (a forked work-horse per job) over the queues in
priority order, inside the app's settings, and keeps running when Redis goes away (`run_worker`);
`flask sender` sends the outbox (`run_sender`). Embedded default (no REDIS_URL): two threads run the
queued jobs with the periodic tasks, and the outbox, against the in-process fakeredis.
"""

from __future__ import annotations

import logging
import threading
import time
from types import FrameType

from flask import Flask
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker, Worker
from rq.exceptions import StopRequested
from rq.job import Job
from rq.timeouts import TimerDeathPenalty
from sqlalchemy.exc import SQLAlchemyError

from services.metrics import enter_work_horse
from services.queue import QUEUE_NAMES, get_queue
from services.redis_conn import connect
from services.scheduler import Schedule, periodic_tasks
from services.whatsapp.sender import Sender

log = logging.getLogger(__name__)

RECONNECT_MAX_SECONDS = 10.0


class AppWorker(Worker):
    """RQ's forking worker, whose work-horses share one metrics file per worker (see services.metrics),
    and which remembers whether it was asked to stop (RQ's loop also ends when Redis fails it)."""

    stop_requested = False

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        enter_work_horse()
        super().main_work_horse(job, queue)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]  # RQ leaves it untyped


def make_worker(app: Flask, queues: tuple[str, ...] = QUEUE_NAMES) -> AppWorker:
    """An RQ worker on a Redis connection of its own: RQ stretches its connection's socket timeout to
    its long blocking poll, which the app's calls (rate limits, enqueues) must not inherit."""
    redis = connect(app.extensions["settings"].REDIS_URL)
    return AppWorker([get_queue(q, redis) for q in queues], connection=redis)


def run_worker(app: Flask, queues: tuple[str, ...] = QUEUE_NAMES, *, burst: bool = False) -> None:
    """`flask worker`: RQ's work loop, started again with backoff (1 s doubling to 10 s) whenever it
    ends without a stop request. RQ's loop ends or raises when Redis goes away while a job runs; a job
    in progress meanwhile finishes in its work-horse. SIGTERM/SIGINT stop it as RQ does."""
    delay = 1.0
    while True:
        worker = None
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
        log.warning("worker: Redis unavailable; reconnecting in %.0f s", delay, extra={"reason": reason})
        try:
            time.sleep(delay)  # RQ's signal handlers are still installed: SIGTERM raises StopRequested here
        except StopRequested:
            return
        delay = min(RECONNECT_MAX_SECONDS, delay * 2)


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


class ThreadWorker(SimpleWorker):
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
