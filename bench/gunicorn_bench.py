"""gunicorn config shared by both benchmarked servers (`-c bench/gunicorn_bench.py`): it only adds a log line.

A keep-alive connection stays with the worker that accepted it. If the load starts while one worker is
still importing the app, the other accepts every connection and the run measures a single worker, so
the benchmark waits until every worker has logged READY_MARKER (written once the app is loaded,
just before the worker starts accepting).
"""

from __future__ import annotations

from typing import Any

READY_MARKER = "bench-worker-ready"


def post_worker_init(worker: Any) -> None:
    """gunicorn hook: the app is loaded; the worker accepts connections right after this returns."""
    worker.log.warning("%s pid=%s", READY_MARKER, worker.pid)
