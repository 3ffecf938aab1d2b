"""Worker processes and the embedded worker thread.

Production: `flask worker` runs an RQ worker (a forked work-horse per job) over the queues in
priority order, inside the app's settings. Embedded default (no REDIS_URL): one thread runs the
queued jobs and the periodic tasks against the in-process fakeredis.
"""

from __future__ import annotations

import logging
import threading

from flask import Flask
from rq import Queue, SimpleWorker, Worker
from rq.job import Job
from rq.timeouts import TimerDeathPenalty

from services.metrics import enter_work_horse
from services.queue import QUEUE_NAMES, get_queue
from services.scheduler import periodic_tasks, tick

log = logging.getLogger(__name__)


class AppWorker(Worker):
    """RQ's forking worker, whose work-horses share one metrics file per worker (see services.metrics)."""

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        enter_work_horse()
        super().main_work_horse(job, queue)


def make_worker(app: Flask, queues: tuple[str, ...] = QUEUE_NAMES, *, simple: bool = False) -> Worker:
    redis = app.extensions["redis"]
    cls = SimpleWorker if simple else AppWorker
    return cls([get_queue(q, redis) for q in queues], connection=redis)


class ThreadWorker(SimpleWorker):
    """RQ uses signals (stop requests, SIGALRM job timeouts), which Python allows only in the main
    thread: no handlers, and a timer thread enforces job timeouts instead."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass


def start_embedded_worker(app: Flask, poll: float = 0.2) -> threading.Event:
    """Run jobs and periodic tasks in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    redis = app.extensions["redis"]

    def loop() -> None:
        worker = ThreadWorker([get_queue(q, redis) for q in QUEUE_NAMES], connection=redis)
        tasks = periodic_tasks(app)
        with app.app_context():
            while not stop.is_set():
                try:
                    worker.work(burst=True, with_scheduler=True, logging_level="WARNING")
                    tick(tasks, f"embedded:{threading.get_ident()}", 30)
                except Exception:
                    log.exception("embedded worker loop error")
                stop.wait(poll)

    threading.Thread(target=loop, name="embedded-worker", daemon=True).start()
    log.info("embedded worker thread started (no REDIS_URL: in-process fakeredis)")
    return stop
