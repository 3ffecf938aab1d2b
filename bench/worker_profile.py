"""The worker's own CPU per inbound message, in one quiet process, with an optional cProfile.

N new farmers (100) each write "merhaba": the webhooks are posted through the Flask test client first
(their CPU is not counted), then this process handles the handed-off messages one by one as a
`flask worker` does (`services.handoff.handle`: lease, conversation, reply row, mark-read, the reply
sent), against PostgreSQL and Redis, with the lean Graph stand-in (`bench/graph_stand_in.py`) in a
process of its own. Printed: CPU ms per message (`time.process_time`: this process, all threads), the SQL
statements and transactions per message (counted, so repeatable where CPU time is noisy) and, with
`--profile`, the functions that took it. A profile of the code, not a benchmark of the service:
`inbound_cpu.py` measures the deployed topology. It TRUNCATES the database and FLUSHES the Redis db.

    .venv/bin/python bench/worker_profile.py --database-url URL --redis-url URL [--messages N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    harness.add_store_arguments(parser)
    args = parser.parse_args(argv)

    graph = subprocess.Popen([sys.executable, str(harness.ROOT / "bench" / "graph_stand_in.py")],
                             stdout=subprocess.PIPE, text=True)
    try:
        port = int((graph.stdout.readline() if graph.stdout else "").strip())
        env = harness.service_env(args.database_url, args.redis_url, harness.free_port(),
                                  Path(tempfile.mkdtemp(prefix="ziraai-bench-media-")),
                                  WHATSAPP_API_BASE=f"http://127.0.0.1:{port}/v21.0")
        harness.prepare(env, args.database_url, args.redis_url)
        return run(args)
    finally:
        graph.terminate()
        graph.wait()


def run(args: argparse.Namespace) -> int:
    from redis import Redis
    from sqlalchemy import event

    from app import create_app
    from models.db import DriverStatement
    from services import handoff, signing

    app = create_app()
    client = app.test_client()
    number_id = app.extensions["settings"].phone_number_ids[0]
    for n in range(args.messages + 5):  # the first five warm the caches and the connections up
        value = {"messaging_product": "whatsapp",
                 "metadata": {"display_phone_number": "905550000000", "phone_number_id": number_id},
                 "contacts": [{"wa_id": f"9055531{n:05d}", "profile": {"name": "Bench"}}],
                 "messages": [{"from": f"9055531{n:05d}", "id": f"wamid.PROFILE{n}",
                               "timestamp": str(int(time.time())), "type": "text", "text": {"body": "merhaba"}}]}
        body = {"object": "whatsapp_business_account",
                "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}]}
        raw = json.dumps(body).encode()
        signature = signing.meta_signature(raw, harness.APP_SECRET)
        response = client.post("/webhooks/whatsapp", data=raw, content_type="application/json",
                               headers={"X-Hub-Signature-256": signature})
        if response.status_code != 200:
            print(f"webhook answered {response.status_code}", file=sys.stderr)
            return 2
    redis = Redis.from_url(args.redis_url)
    with app.app_context():
        for _ in range(5):
            message_id = handoff.take(redis)
            if message_id is not None:
                handoff.handle(redis, message_id)
        ids = []
        while (message_id := handoff.take(redis)) is not None:
            ids.append(message_id)
        counted = {"statements": 0, "transactions": 0, "checkouts": 0}
        engine = app.extensions["db"].engine

        def statement(*_: object) -> None:
            counted["statements"] += 1

        def transaction(*_: object) -> None:
            counted["transactions"] += 1

        def checkout(*_: object) -> None:
            counted["checkouts"] += 1

        event.listen(engine, "before_cursor_execute", statement)
        on_driver = DriverStatement.rows  # these run on the driver, past SQLAlchemy's events: counted here

        def driver_statement(self: DriverStatement, *args: Any, **kwargs: Any) -> Any:
            if engine.dialect.name == "postgresql":
                counted["statements"] += 1
            return on_driver(self, *args, **kwargs)

        DriverStatement.rows = driver_statement  # type: ignore[method-assign]
        event.listen(engine, "commit", transaction)
        event.listen(engine.pool, "checkout", checkout)
        profiler = cProfile.Profile(time.process_time) if args.profile else None
        started = time.process_time()
        if profiler:
            profiler.enable()
        for message_id in ids:
            handoff.handle(redis, message_id)
        if profiler:
            profiler.disable()
        used = time.process_time() - started
        DriverStatement.rows = on_driver  # type: ignore[method-assign]
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", transaction)
        event.remove(engine.pool, "checkout", checkout)
    n = max(1, len(ids))
    print(f"{len(ids)} messages: {used * 1000 / n:.2f} ms of CPU per message (this process); "
          f"{counted['statements'] / n:.1f} SQL statements, {counted['transactions'] / n:.1f} commits and "
          f"{counted['checkouts'] / n:.1f} pool checkouts per message")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
