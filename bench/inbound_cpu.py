"""CPU per handled inbound message: N signed text messages (200; 60 with --quick) at a steady rate through
the production topology, and the CPU seconds the processes used for them.

Target: "CPU per handled inbound message (webhook + job + reply), worker side <= 15 ms". Two rows against
it: the worker side (as the target says), and the whole of it, web + worker side.

The same topology and checks as `burst.py` (gunicorn 2x8, `flask worker` processes, a `flask sender`,
PostgreSQL + Redis), at a rate the machine keeps up with (default 10 messages/s), so the figure is the
cost of a message, not of a queue. The Graph API stand-in is `bench/graph_stand_in.py` in a process of
its own: it answers the sends and the mark-reads, writes each reply to the farmer's transcript in Redis
(the keys the development stand-in writes, which the checks read) and posts no status webhooks back, so
the web processes handle only the N inbound webhooks. Each of N new farmers writes "merhaba" once; every
one must be answered once, in the reference farmer's order. CPU comes from /proc (utime + stime of each
process and everything it forked), minus what each process uses idle over the same time:
- worker side = the `flask worker`s (hand-off, conversation, the reply written and sent, mark-read) plus
  the `flask sender` (the replies the worker could not send);
- web per request = gunicorn's processes: signature, parse, rows, the hand-off RPUSH;
- webhook + job + reply = web + worker side; the stand-in's own CPU is reported apart, in none of these.
`--graph web` runs the development stand-in inside the web process instead, as before (its sends and the
sent/delivered/read status webhooks it posts back then count as web; no total row). Exit code 1 when
something was lost, doubled or out of order (2: it could not run); nothing about time is asserted.

    .venv/bin/python bench/inbound_cpu.py [--quick] [--messages N] [--rate R] [--workers W] [--graph apart|web]
                                          [--database-url URL] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

import requests
from redis import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import burst, harness

NAME = "inbound_cpu"
TARGET_MS = 15.0


def target_row(name: str, measured: float) -> dict[str, Any]:
    return {"name": name, "target": f"<= {TARGET_MS:g} ms", "measured": measured, "pass": measured <= TARGET_MS}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, help="messages, one per new farmer (default 200, 60 with --quick)")
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second (default %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="`flask worker` processes (default %(default)s)")
    parser.add_argument("--senders", type=int, default=1, help="`flask sender` processes (default %(default)s)")
    parser.add_argument("--graph", choices=burst.GRAPHS, default="apart",
                        help="the Graph API stand-in in a process of its own (no status webhooks), or inside the "
                             "web process with status webhooks back (default %(default)s)")
    harness.add_store_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="60 messages, for CI")
    args = parser.parse_args(argv)
    args.messages = args.messages or (60 if args.quick else 200)
    if not 1 <= args.messages <= 5000 or not 0 < args.rate <= 200 or not 1 <= args.workers <= 16 \
            or not 1 <= args.senders <= 8:
        parser.error("--messages 1..5000, --rate 0..200, --workers 1..16, --senders 1..8")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, harness.stop_on_sigterm)
    machine = harness.machine_info()
    phones = [f"9055520{n:05d}" for n in range(args.messages)]

    def body(svc: harness.Service, redis: Redis, number_id: str) -> tuple[list[Any], burst.Drive]:
        print("the reference farmer writes alone ...", flush=True)
        reference = burst.reference_answers(svc, redis, number_id, "905552999999")
        print(f"{args.messages} messages at {args.rate:g}/s ...", flush=True)
        run = burst.drive(svc, redis, phones, args.messages / args.rate, reference, number_id)
        svc.check_alive()
        return reference, run

    try:
        reference, run = burst.run_service(args, body, NAME)
    except (harness.BenchError, requests.RequestException) as exc:
        print(f"benchmark could not run: {exc}", file=sys.stderr)
        return 2
    cpu = burst.cpu_rows(run, args.messages)
    complete = run.answered == args.messages and not run.doubled and not run.out_of_order
    targets = [target_row(f"worker-side CPU ms per inbound (<= {TARGET_MS:g})", cpu["worker_side_ms_per_message"])]
    if "total_ms_per_message" in cpu:
        targets.append(target_row(f"webhook+job+reply CPU ms/inbound (<= {TARGET_MS:g})",
                                  cpu["total_ms_per_message"]))
    results = {
        "benchmark": NAME, "run_id": harness.run_id(), "machine": machine,
        "parameters": {"messages": args.messages, "rate_per_s": args.rate, "workers": args.workers,
                       "senders": args.senders, "graph": args.graph, "quick": args.quick,
                       "database_url": args.database_url, "redis_url": args.redis_url,
                       "answers_per_farmer": len(reference)},
        "cpu": cpu, "wait_ms": {"first_answer": harness.percentiles(run.first_wait_s)},
        "check": {"answered": run.answered, "doubled": run.doubled, "out_of_order": run.out_of_order},
        "targets": targets, "errors": run.errors, "ok": complete and not run.errors,
    }
    print(f"\n{args.messages} messages at {args.rate:g}/s, {args.workers} flask workers, {args.senders} sender, "
          f"Graph stand-in {'apart' if args.graph == 'apart' else 'inside web'}; "
          f"load avg before {machine['loadavg_1_5_15_before'][0]:.2f}")
    print(f"CPU ms per message: worker {cpu['worker_ms_per_message']} + sender {cpu['sender_ms_per_message']} "
          f"= worker side {cpu['worker_side_ms_per_message']}; web per request {cpu['web_ms_per_request']}")
    if "total_ms_per_message" in cpu:
        print(f"webhook + job + reply (web + worker side) {cpu['total_ms_per_message']}; "
              f"Graph stand-in (apart, not counted) {cpu['graph_stand_in_ms_per_message']}")
    else:
        print("(web includes the Graph stand-in and the status webhooks it posts back)")
    print(f"idle CPU ms/s by process: {cpu['idle_cpu_ms_per_s_by_process']}")
    print(f"answered {run.answered}/{args.messages}, {run.doubled} twice, {run.out_of_order} out of order; "
          f"first answer p50 {run.first_wait_s and harness.percentiles(run.first_wait_s)['p50']} ms")
    for row in targets:
        print(f"{row['name']:<44}{row['measured']:>10}  {'PASS' if row['pass'] else 'MISS'}")
    harness.write_results(NAME, results)
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
