"""The lean Graph API stand-in of `outbound_burst.py`, in a process of its own (so its CPU is its own).

The tests' `GraphStandIn` (tests/stand_ins.py: Python's threaded HTTP server, keep-alive here) answers
every send 200 with a fresh wamid and records the body with its arrival time; it posts no status
webhooks back (the full loop with statuses is the dev stand-in's run in `outbound_burst.py`).
`GET /bench/received` answers what arrived so far: `[[arrival time, recipient digits, text], ...]`.
`--latency-ms` holds each answer that long, as Graph's 100-300 ms do (the arrival time is still when the
request came in). With `--redis-url` each accepted send (not a mark-read) is also added to its recipient's
transcript in that Redis (`devtools.store`, the keys the development stand-in writes), so what reads the
transcripts (`burst.answers`) works unchanged against this process; still no status webhooks.

    .venv/bin/python bench/graph_stand_in.py [--latency-ms 0] [--port 0] [--redis-url URL]
                                             # prints its port, serves until SIGTERM
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from pathlib import Path

from redis import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools import store
from tests.stand_ins import GraphStandIn, Reply, Request, json_reply

RECEIVED_PATH = "/bench/received"


class BenchGraph(GraphStandIn):
    def __init__(self, latency: float, port: int = 0, redis: Redis | None = None) -> None:
        super().__init__(keep_alive=True)
        self.port = port
        self.latency = latency
        self.redis = redis

    def handle(self, request: Request) -> Reply:
        if request.method == "GET" and request.path == RECEIVED_PATH:
            with self.lock:
                return json_reply([[at, str(body.get("to", "")), str((body.get("text") or {}).get("body", ""))]
                                   for at, body in zip(self.sent_at, self.sent, strict=True)])
        reply = super().handle(request)
        if self.redis is not None and request.method == "POST" and reply.status == 200:
            body = request.json()
            if body.get("status") != "read":
                wamid = json.loads(reply.body)["messages"][0]["id"]
                store.append(self.redis, store.digits(str(body.get("to", ""))), "out", wamid, body)
        if self.latency:
            time.sleep(self.latency)
        return reply


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=int, default=0, help="hold each answer this long (default 0)")
    parser.add_argument("--port", type=int, default=0, help="listen here (default 0: a free port)")
    parser.add_argument("--redis-url", help="also write each send to the dev tools' transcripts in this Redis")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    redis = Redis.from_url(args.redis_url) if args.redis_url else None
    graph = BenchGraph(args.latency_ms / 1000, args.port, redis).start()
    print(graph.port, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    graph.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
