"""A burst of new farmers: N (300; 60 with --quick) write "merhaba" within S seconds (10; 5 with --quick).

Targets: "burst of 300 new farmers within 10 s: p95 < 5 s, last < 15 s, all answered, none twice, in order".

The service runs as in production (`make run` with REDIS_URL: gunicorn 2x8, `flask worker` processes, a
`flask sender`) on PostgreSQL and Redis, with DEV_TOOLS on so the Graph API stand-in records the replies
inside the web process (and posts sent/delivered/read status webhooks back to it); `--graph apart` runs
`bench/graph_stand_in.py` in a process of its own instead (the same transcripts, no status webhooks).
This script plays Meta: one reference farmer first writes alone (its answers are what every farmer must
get, in that order), then the N farmers, evenly spread over S seconds, each post one signed webhook. A
farmer's wait runs from the start of its POST to the stand-in's own timestamp of the bot's first answer
(and of its last answer); the poll that notices it does not count.

Checked: every farmer answered, nobody answered twice (the same number of answers as the reference
farmer), and in order (the same kinds of message, with the same buttons, in the same order). The CPU
seconds each process used during the burst (Linux /proc, `harness.Service.cpu_seconds`) are reported
per message, minus what the processes use idle over the same time. Exit code 1 when something was
lost, doubled or out of order (2: it could not run); nothing about time is asserted.

    .venv/bin/python bench/burst.py [--quick] [--farmers N] [--seconds S] [--workers W] [--graph web|apart]
                                    [--database-url URL] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from redis import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness
from devtools import store, webhook_bodies
from devtools.chat import choices
from settings import load_settings

NAME = "burst"
TARGET_P95_S = 5.0
TARGET_LAST_S = 15.0
ANSWER_TIMEOUT_S = 180.0
IDLE_SAMPLE_S = 5.0
SETTLE_S = 2.0  # after the last answer: a doubled one would arrive now
GRAPHS = ("web", "apart")  # where the Graph API stand-in runs: see `run_service`


def shape(entry: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """What must be alike in every farmer's answers: the kind of message and the buttons it offers."""
    body = entry["body"]
    return str(body.get("type", "")), tuple(c["title"] for c in choices(body))


def answers(redis: Redis, phone: str) -> list[dict[str, Any]]:
    return [e for e in store.transcript(redis, phone) if e["dir"] == "out"]


@dataclass
class Drive:
    """What one run of N farmers over S seconds measured."""

    sent_at: dict[str, float] = field(default_factory=dict)  # phone -> POST start (epoch seconds)
    statuses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    first_wait_s: list[float] = field(default_factory=list)
    last_wait_s: list[float] = field(default_factory=list)
    answered: int = 0
    doubled: int = 0
    out_of_order: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds over the run, idle use removed
    cpu_idle_per_s: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


def drive(svc: harness.Service, redis: Redis, phones: list[str], seconds: float, reference: list[Any],
          number_id: str, say: str = "merhaba") -> Drive:
    """Each phone posts `say` once, evenly spread over `seconds`; wait for every answer; check and measure."""
    run = Drive()
    lock = threading.Lock()
    local = threading.local()

    def post(phone: str) -> None:
        session = getattr(local, "http", None) or requests.Session()
        local.http = session
        body = webhook_bodies.messages_body([webhook_bodies.text(phone, say)], sender=phone, name="Bench Çiftçi",
                                            phone_number_id=number_id)
        started = time.time()
        try:
            status = harness.post_webhook(session, svc.base, body)
        except requests.RequestException as exc:
            with lock:
                run.errors.append(f"{phone[-4:]}: {type(exc).__name__}")
            return
        with lock:
            run.sent_at[phone] = started
            run.statuses.append(status)

    idle_before = svc.cpu_seconds()
    time.sleep(IDLE_SAMPLE_S)
    idle_after = svc.cpu_seconds()
    run.cpu_idle_per_s = {k: v / IDLE_SAMPLE_S for k, v in cpu_delta(idle_before, idle_after).items()}

    cpu_before = svc.cpu_seconds()
    began = time.monotonic()
    gap = seconds / max(1, len(phones))
    with ThreadPoolExecutor(max_workers=32) as pool:
        for i, phone in enumerate(phones):
            delay = began + i * gap - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(post, phone)

    def all_answered() -> bool:
        return all(len(answers(redis, p)) >= len(reference) for p in phones)

    harness.wait_until(all_answered, ANSWER_TIMEOUT_S, 0.5)
    time.sleep(SETTLE_S)
    run.wall_s = time.monotonic() - began
    used = cpu_delta(cpu_before, svc.cpu_seconds())
    run.cpu_s = {k: max(0.0, v - run.cpu_idle_per_s.get(k, 0.0) * run.wall_s) for k, v in used.items()}
    for phone in phones:
        got = answers(redis, phone)
        if phone not in run.sent_at or not got:
            continue
        run.answered += 1
        run.doubled += len(got) > len(reference)
        run.out_of_order += [shape(e) for e in got[:len(reference)]] != reference
        run.first_wait_s.append(got[0]["at"] - run.sent_at[phone])
        run.last_wait_s.append(got[min(len(got), len(reference)) - 1]["at"] - run.sent_at[phone])
    return run


def reference_answers(svc: harness.Service, redis: Redis, number_id: str, phone: str,
                      say: str = "merhaba") -> list[Any]:
    """What a farmer writing alone gets: the shapes of its answers, once they stopped coming."""
    body = webhook_bodies.messages_body([webhook_bodies.text(phone, say)], sender=phone, name="Bench Çiftçi",
                                        phone_number_id=number_id)
    if harness.post_webhook(requests.Session(), svc.base, body) != 200:
        raise harness.BenchError("the reference farmer's webhook was refused")
    if not harness.wait_until(lambda: answers(redis, phone), 60, 0.1):
        raise harness.BenchError("the reference farmer got no answer within 60 s")
    time.sleep(SETTLE_S)
    return [shape(e) for e in answers(redis, phone)]


def cpu_rows(run: Drive, messages: int) -> dict[str, Any]:
    """CPU milliseconds per message: the worker side (workers + senders), and the web side. When the Graph
    stand-in ran in a process of its own (`graph`), also its CPU and the total of the service's own
    processes (web + workers + senders: webhook + job + reply)."""
    workers = sum(v for k, v in run.cpu_s.items() if k.startswith("worker"))
    senders = sum(v for k, v in run.cpu_s.items() if k.startswith("sender"))
    web = run.cpu_s.get("web", 0.0)
    per = max(1, messages)
    rows = {"worker_ms_per_message": round(workers * 1000 / per, 2),
            "sender_ms_per_message": round(senders * 1000 / per, 2),
            "worker_side_ms_per_message": round((workers + senders) * 1000 / per, 2),
            "web_ms_per_request": round(web * 1000 / per, 2)}
    if "graph" in run.cpu_s:
        rows["graph_stand_in_ms_per_message"] = round(run.cpu_s["graph"] * 1000 / per, 2)
        rows["total_ms_per_message"] = round((web + workers + senders) * 1000 / per, 2)
    return {**rows, "cpu_s_by_process": {k: round(v, 3) for k, v in run.cpu_s.items()},
            "idle_cpu_ms_per_s_by_process": {k: round(v * 1000, 2) for k, v in run.cpu_idle_per_s.items()}}


def run_service(args: argparse.Namespace, body: Callable[[harness.Service, Redis, str], Any], tag: str = NAME) -> Any:
    """Start the production topology on clean stores and run `body(svc, redis, phone_number_id)` in it.
    `args.graph == "apart"`: the Graph API stand-in is `bench/graph_stand_in.py` in a process of its own
    (no status webhooks); else the development stand-in inside the web process (status webhooks back)."""
    graph_port = harness.free_port() if args.graph == "apart" else None
    extra = {} if graph_port is None else {"WHATSAPP_API_BASE": harness.graph_api_base(graph_port)}
    with tempfile.TemporaryDirectory(prefix="bench-media-") as media_dir:
        env = harness.service_env(args.database_url, args.redis_url, harness.free_port(), Path(media_dir), **extra)
        harness.prepare(env, args.database_url, args.redis_url)
        with harness.service(env, workers=args.workers, senders=args.senders, tag=tag, graph_port=graph_port) as svc, \
                Redis.from_url(args.redis_url) as redis:
            return body(svc, redis, load_settings().WHATSAPP_PHONE_NUMBER_ID)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--farmers", type=int, help="new farmers (default 300, 60 with --quick)")
    parser.add_argument("--seconds", type=float, help="spread over this many seconds (default 10, 5 with --quick)")
    parser.add_argument("--workers", type=int, default=2, help="`flask worker` processes (default %(default)s)")
    parser.add_argument("--senders", type=int, default=1, help="`flask sender` processes (default %(default)s)")
    parser.add_argument("--graph", choices=GRAPHS, default="web",
                        help="the Graph API stand-in inside the web process, with status webhooks back, or apart: "
                             "bench/graph_stand_in.py in its own process, none (default %(default)s)")
    harness.add_store_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="60 farmers over 5 s, for CI")
    args = parser.parse_args(argv)
    args.farmers = args.farmers or (60 if args.quick else 300)
    args.seconds = args.seconds or (5.0 if args.quick else 10.0)
    if not 1 <= args.farmers <= 2000 or not 0 < args.seconds <= 120 or not 1 <= args.workers <= 16 \
            or not 1 <= args.senders <= 8:
        parser.error("--farmers 1..2000, --seconds 0..120, --workers 1..16, --senders 1..8")
    return args


def report(results: dict[str, Any]) -> None:
    p, w, c = results["parameters"], results["wait_ms"], results["cpu"]
    print(f"\nburst: {p['farmers']} new farmers over {p['seconds']:g} s, {p['workers']} flask workers, "
          f"{p['senders']} sender, gunicorn 2x8, PostgreSQL + Redis; load avg before "
          f"{results['machine']['loadavg_1_5_15_before'][0]:.2f}")
    print(f"{'ms':<32}{'p50':>9}{'p95':>9}{'max':>9}")
    for key, label in (("first_answer", "POST -> first answer"), ("last_answer", "POST -> last answer")):
        print(f"{label:<32}{harness.fmt(w[key]['p50']):>9}{harness.fmt(w[key]['p95']):>9}"
              f"{harness.fmt(w[key]['max']):>9}")
    where = ("the Graph stand-in answers inside web" if p["graph"] == "web" else
             f"the Graph stand-in apart: {c['graph_stand_in_ms_per_message']}")
    print(f"CPU ms per message: worker {c['worker_ms_per_message']}, sender {c['sender_ms_per_message']}, "
          f"worker side {c['worker_side_ms_per_message']}; web per request {c['web_ms_per_request']} ({where})")
    print()
    for row in results["targets"]:
        print(f"{row['name']:<44}{row['measured']!s:>12}  {'PASS' if row['pass'] else 'MISS'}")
    print(f"errors {len(results['errors'])}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, harness.stop_on_sigterm)
    machine = harness.machine_info()
    phones = [f"9055510{n:05d}" for n in range(args.farmers)]

    def body(svc: harness.Service, redis: Redis, number_id: str) -> tuple[list[Any], Drive]:
        print("the reference farmer writes alone ...", flush=True)
        reference = reference_answers(svc, redis, number_id, "905551999999")
        print(f"{args.farmers} farmers over {args.seconds:g} s ...", flush=True)
        run = drive(svc, redis, phones, args.seconds, reference, number_id)
        svc.check_alive()
        return reference, run

    try:
        reference, run = run_service(args, body)
    except (harness.BenchError, requests.RequestException) as exc:
        print(f"benchmark could not run: {exc}", file=sys.stderr)
        return 2
    first = harness.percentiles(run.first_wait_s)
    last = harness.percentiles(run.last_wait_s)
    complete = run.answered == args.farmers and not run.doubled and not run.out_of_order and \
        run.statuses.count(200) == args.farmers
    p95_s = None if first["p95"] is None else round(first["p95"] / 1000, 2)
    max_s = None if first["max"] is None else round(first["max"] / 1000, 2)
    results = {
        "benchmark": NAME, "run_id": harness.run_id(), "machine": machine,
        "parameters": {"farmers": args.farmers, "seconds": args.seconds, "workers": args.workers,
                       "senders": args.senders, "graph": args.graph, "quick": args.quick,
                       "database_url": args.database_url, "redis_url": args.redis_url,
                       "answers_per_farmer": len(reference)},
        "wait_ms": {"first_answer": first, "last_answer": last}, "wall_s": round(run.wall_s, 1),
        "check": {"answered": run.answered, "doubled": run.doubled, "out_of_order": run.out_of_order,
                  "webhook_200": run.statuses.count(200)},
        "cpu": cpu_rows(run, args.farmers),
        "targets": [
            {"name": f"burst p95 wait s (< {TARGET_P95_S:g})", "target": f"< {TARGET_P95_S:g} s", "measured": p95_s,
             "pass": p95_s is not None and p95_s < TARGET_P95_S},
            {"name": f"burst last wait s (< {TARGET_LAST_S:g})", "target": f"< {TARGET_LAST_S:g} s",
             "measured": max_s, "pass": max_s is not None and max_s < TARGET_LAST_S},
            {"name": "burst: all answered, none twice, in order", "target": "all",
             "measured": f"{run.answered}/{args.farmers}, {run.doubled} twice, {run.out_of_order} out of order",
             "pass": complete},
        ],
        "errors": run.errors, "ok": complete and not run.errors,
    }
    report(results)
    harness.write_results(NAME, results)
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
