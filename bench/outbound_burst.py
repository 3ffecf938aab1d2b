"""Outbound burst: 1,000 replies queued at once, sent by several sender processes under the shared rate limit.

Target: "outbound burst of 1,000 replies: never above the configured rate in any 1 s window
(baseline: the configured 80/s)".

The service runs as in production (gunicorn with the Graph API stand-in, `--workers` `flask sender`
processes, PostgreSQL, Redis) with `WHATSAPP_MAX_MPS` set (default 80). Once it is up, this script
does what the code does for replies: one transaction writes N outbound text messages to the outbox
(`queue_message`, status `pending`, due at once). The senders take them from the database (the first
pending message of each recipient at a time) and send them through the client, which takes a slot
of the shared sliding-window limiter in Redis before each POST. The stand-in records each message
with its own arrival time; from those times the script computes the largest number of sends inside
any 1-second window (every window that starts at an arrival, the worst case) against the limit, the
total time from the first enqueue to the last arrival, and the effective rate.

Nothing lost: N rows written, N messages recorded by the stand-in, each row's text exactly once, every
row accepted with its own wamid; otherwise the exit code is 1 (2: it could not run).

    .venv/bin/python bench/outbound_burst.py [--quick] [--messages N] [--mps 80] [--workers 4]
"""

from __future__ import annotations

import argparse
import bisect
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from redis import Redis
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness
from devtools import store

NAME = "outbound_burst"
PHONES = 100  # recipients cycled over (the stand-in keeps the last 500 messages per phone)
DRAIN_TIMEOUT_S = 300.0


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most arrivals inside any half-open window [t, t + window) that starts at an arrival."""
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)), default=0)


def queue_burst(count: int, tag: str) -> list[int]:
    """Write `count` pending outbound messages in one transaction, the way the conversation and the
    analysis pipeline hand replies to the outbox; the senders take it from there."""
    from app import create_app
    from services.whatsapp import messages
    from services.whatsapp.outbox import queue_message

    app = create_app()
    with app.app_context():
        db = app.extensions["db"]
        with db.session() as session, session.begin():
            ids = [queue_message(session, f"+9055600{n % PHONES:05d}",
                                 messages.text(f"9055600{n % PHONES:05d}", f"{tag} #{n}")).id for n in range(count)]
    db.engine.dispose()
    return ids


def arrivals(redis: Redis, tag: str) -> list[tuple[float, str]]:
    """(arrival time, text) of every message of this burst the stand-in recorded."""
    found = []
    for n in range(PHONES):
        for entry in store.transcript(redis, f"9055600{n:05d}"):
            body = (entry["body"].get("text") or {}).get("body", "")
            if entry["dir"] == "out" and body.startswith(tag + " #"):
                found.append((float(entry["at"]), body))
    return found


def rows_check(database_url: str, ids: list[int]) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text(
                "SELECT count(*), count(wamid), count(DISTINCT wamid), count(*) FILTER (WHERE status = 'pending'),"
                " count(*) FILTER (WHERE status = 'failed') FROM messages WHERE id = ANY(:ids)"), {"ids": ids}).one()
    finally:
        engine.dispose()
    return {"rows": row[0], "with_wamid": row[1], "distinct_wamids": row[2], "pending": row[3], "failed": row[4]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, help="replies queued at once (default 1000, 200 with --quick)")
    parser.add_argument("--mps", type=int, default=80, help="WHATSAPP_MAX_MPS (default %(default)s)")
    parser.add_argument("--binding-mps", type=int, default=8,
                        help="a second run with a limit below what the workers reach, so it binds (0: none; "
                             "default %(default)s)")
    parser.add_argument("--binding-messages", type=int, default=100,
                        help="messages of that second run (default %(default)s)")
    parser.add_argument("--workers", type=int, default=4, help="`flask sender` processes (default %(default)s)")
    parser.add_argument("--database-url", default=harness.DEFAULT_DATABASE_URL,
                        help="PostgreSQL for the service; its tables are TRUNCATED (default %(default)s)")
    parser.add_argument("--redis-url", default=harness.DEFAULT_REDIS_URL,
                        help="Redis db for the service; FLUSHED (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="200 messages, for CI")
    args = parser.parse_args(argv)
    if args.messages is None:
        args.messages = 200 if args.quick else 1000
    if not 1 <= args.messages <= 20_000 or not 1 <= args.mps <= 1000 or not 1 <= args.workers <= 16 \
            or not 0 <= args.binding_mps <= 1000 or not 1 <= args.binding_messages <= 20_000:
        parser.error("--messages 1..20000, --mps 1..1000, --binding-mps 0..1000, --binding-messages 1..20000, "
                     "--workers 1..16")
    return args


def report(results: dict[str, Any]) -> None:
    p = results["parameters"]
    print(f"\noutbound burst: replies queued at once, {p['workers']} flask senders, Graph API stand-in in "
          "gunicorn 2x8, PostgreSQL + Redis")
    print(f"{'WHATSAPP_MAX_MPS':>16}{'messages':>10}{'max in 1 s':>12}{'total s':>9}{'sending s':>11}"
          f"{'rate /s':>9}{'sender CPU ms/msg':>19}{'web CPU ms/msg':>16}  limit   nothing lost")
    for run in results["runs"]:
        r, cpu = run["figures"], run["figures"]["cpu_ms_per_message"]
        print(f"{run['mps']:>16}{run['messages']:>10}{r['max_in_any_1s_window']:>12}{r['total_s']:>9.2f}"
              f"{r['sending_s']:>11.2f}{r['effective_rate_per_s']:>9.1f}{cpu['workers']:>19.1f}{cpu['web']:>16.1f}"
              f"  {'PASS' if run['target']['pass'] else 'MISS':<8}{'OK' if run['ok'] else 'LOST OR DOUBLED'}")
    for run in results["runs"]:
        if not run["ok"]:
            print(f"  check at {run['mps']}/s: {run['check']}")


def run_phase(args: argparse.Namespace, messages: int, mps: int) -> dict[str, Any]:
    """Start the service with this limit, queue the burst, wait until it is sent; the figures and the check."""
    tag = f"burst {harness.run_id()} {mps}"
    with tempfile.TemporaryDirectory(prefix="bench-media-") as media_dir:
        env = harness.service_env(args.database_url, args.redis_url, harness.free_port(), Path(media_dir),
                                  WHATSAPP_MAX_MPS=str(mps))
        harness.prepare(env, args.database_url, args.redis_url)
        with harness.service(env, workers=0, senders=args.workers, tag=NAME) as svc, \
                Redis.from_url(args.redis_url) as redis:
            print(f"queueing {messages} replies, WHATSAPP_MAX_MPS={mps} ...", flush=True)
            cpu_before = svc.cpu_seconds()
            started = time.time()
            ids = queue_burst(messages, tag)
            queued = time.time() - started
            # Done when the stand-in has them all, or nothing new arrived for a while (something was lost).
            last_count, last_change = -1, time.monotonic()
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while time.monotonic() < deadline:
                count = len(arrivals(redis, tag))
                if count >= messages:
                    break
                if count != last_count:
                    last_count, last_change = count, time.monotonic()
                elif time.monotonic() - last_change > 40:  # beyond a limiter wait and one retry
                    break
                svc.check_alive()
                time.sleep(0.5)
            time.sleep(1.0)  # a message sent twice would arrive now
            cpu_after = svc.cpu_seconds()
            seen = arrivals(redis, tag)
            rows = rows_check(args.database_url, ids)

    times = [at for at, _ in seen]
    texts = Counter(body for _, body in seen)
    peak = max_in_window(times)
    first, last = (min(times), max(times)) if times else (started, started)
    sending = last - first
    workers_cpu = sum(v for k, v in cpu_after.items() if k.startswith("sender")) - \
        sum(v for k, v in cpu_before.items() if k.startswith("sender"))
    web_cpu = cpu_after["web"] - cpu_before["web"]
    check = {**rows, "recorded": len(seen), "distinct_texts": len(texts),
             "sent_twice": sum(1 for n in texts.values() if n > 1)}
    ok = (rows["rows"] == messages and len(seen) == messages and len(texts) == messages
          and rows["distinct_wamids"] == messages and rows["pending"] == 0 and rows["failed"] == 0)
    return {
        "messages": messages, "mps": mps,
        "figures": {"max_in_any_1s_window": peak, "queue_s": round(queued, 2), "total_s": round(last - started, 2),
                    "sending_s": round(sending, 2),
                    "effective_rate_per_s": round((len(times) - 1) / sending, 1) if sending > 0 else 0.0,
                    "cpu_ms_per_message": {"workers": round(1000 * workers_cpu / messages, 1),
                                           "web": round(1000 * web_cpu / messages, 1)},
                    "per_second": dict(sorted(Counter(int(t - first) for t in times).items()))},
        "target": {"name": f"max in any 1 s window <= {mps}", "measured": peak, "pass": peak <= mps},
        "check": check, "ok": ok,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, harness.stop_on_sigterm)
    machine = harness.machine_info()
    phases = [(args.messages, args.mps)]
    if args.binding_mps:
        phases.append((min(args.messages, args.binding_messages), args.binding_mps))
    try:
        runs = [run_phase(args, messages, mps) for messages, mps in phases]
    except harness.BenchError as exc:
        print(f"benchmark could not run: {exc}", file=sys.stderr)
        return 2
    results = {
        "benchmark": NAME, "run_id": harness.run_id(), "machine": machine,
        "parameters": {"messages": args.messages, "mps": args.mps, "binding_mps": args.binding_mps,
                       "workers": args.workers, "quick": args.quick, "database_url": args.database_url,
                       "redis_url": args.redis_url, "recipients": PHONES},
        "runs": runs,
        "targets": [run["target"] for run in runs],
        "ok": all(run["ok"] for run in runs),
    }
    report(results)
    harness.write_results(NAME, results)
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
