"""The lean Graph API stand-in of `outbound_burst.py`, in a process of its own (so its CPU is its own).

The tests' `GraphStandIn` (tests/stand_ins.py: Python's threaded HTTP server, keep-alive here) answers
every send 200 with a fresh wamid and records the body with its arrival time; it posts no status
webhooks back (the full loop with statuses is the dev stand-in's run in `outbound_burst.py`).
`GET /bench/received` answers what arrived so far: `[[arrival time, recipient digits, text], ...]`.

    .venv/bin/python bench/graph_stand_in.py     # prints its port, serves until SIGTERM
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.stand_ins import GraphStandIn, Reply, Request, json_reply

RECEIVED_PATH = "/bench/received"


class BenchGraph(GraphStandIn):
    def handle(self, request: Request) -> Reply:
        if request.method == "GET" and request.path == RECEIVED_PATH:
            with self.lock:
                return json_reply([[at, str(body.get("to", "")), str((body.get("text") or {}).get("body", ""))]
                                   for at, body in zip(self.sent_at, self.sent, strict=True)])
        return super().handle(request)


def main() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    graph = BenchGraph(keep_alive=True).start()
    print(graph.port, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    graph.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
