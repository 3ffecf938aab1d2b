"""The lean Graph API stand-in of `outbound_burst.py`, in a process of its own (so its CPU is its own).

The tests' `GraphStandIn` (tests/stand_ins.py: Python's threaded HTTP server, keep-alive here) answers
every send 200 with a fresh wamid and records the body with its arrival time; it posts no status
webhooks back (the full loop with statuses is the dev stand-in's run in `outbound_burst.py`).
`GET /bench/received` answers what arrived so far: `[[arrival time, recipient digits, text], ...]`.
`--latency-ms` holds each answer that long, as Graph's 100-300 ms do (the arrival time is still when the
request came in).

    .venv/bin/python bench/graph_stand_in.py [--latency-ms 0]    # prints its port, serves until SIGTERM
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.stand_ins import GraphStandIn, Reply, Request, json_reply

RECEIVED_PATH = "/bench/received"


class BenchGraph(GraphStandIn):
    def __init__(self, latency: float) -> None:
        super().__init__(keep_alive=True)
        self.latency = latency

    def handle(self, request: Request) -> Reply:
        if request.method == "GET" and request.path == RECEIVED_PATH:
            with self.lock:
                return json_reply([[at, str(body.get("to", "")), str((body.get("text") or {}).get("body", ""))]
                                   for at, body in zip(self.sent_at, self.sent, strict=True)])
        reply = super().handle(request)
        if self.latency:
            time.sleep(self.latency)
        return reply


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=int, default=0, help="hold each answer this long (default 0)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    graph = BenchGraph(args.latency_ms / 1000).start()
    print(graph.port, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    graph.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
