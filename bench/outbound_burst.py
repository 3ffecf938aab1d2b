"""Outbound burst: 1,000 replies queued at once, sent by `flask sender` processes under the shared rate limit.

Target (bench/README.md): "outbound burst of 1,000 replies, WHATSAPP_MAX_MPS=80, this 2-core machine, a lean
Graph stand-in (no status webhooks posted back): >= 70 messages/s sustained, never above 80 in any 1 s
window, none lost or doubled" (and each farmer's replies in order).

The senders run as in production (`--senders` x `flask sender`, each `WHATSAPP_SEND_CONCURRENCY` sends
in flight, PostgreSQL, Redis; gunicorn is up but idle). Once they are up, this script does what the
code does for replies: one transaction writes N outbound text messages to the outbox (`queue_message`,
status `pending`, due at once) for 100 recipients, each recipient's in order. The senders claim them
from the database in batches (the first pending message of each recipient at a time) and send them
concurrently, each send taking its slot of the shared limiter in Redis first.

Three runs:
- `lean`: the Graph stand-in is `bench/graph_stand_in.py` in a process of its own (Python's threaded
  HTTP server with keep-alive; it records each send with its arrival time and posts nothing back):
  the target's setting. Its CPU is reported apart from the senders'.
- `binding`: the same with a limit of 8/s, which the senders exceed by far, so the limiter must hold
  them back.
- `statuses`: the full loop: the development stand-in inside gunicorn (devtools/graph_api.py), which
  keeps a transcript in Redis and POSTs signed `sent`, `delivered`, `read` webhooks back for every
  message: the rate, and the web side's CPU (the stand-in plus our webhook handling those statuses).

Each run: the largest number of arrivals inside any 1-second window (every window that starts at an
arrival, sliding), the sustained rate (arrivals - 1 over first to last arrival), the total time from the
first enqueue, lost (queued, never arrived), doubled (arrived more than once), order violations (a
recipient's message arriving before an earlier-queued one), CPU per message. Anything lost, doubled or
out of order (or a row not `accepted` with its own wamid) exits 1 (2: it could not run).

    .venv/bin/python bench/outbound_burst.py --database-url URL --redis-url URL [--quick] [--messages N]
        [--mps 80] [--senders 2] [--concurrency 32] [--graph-latency-ms 0] [--only lean binding statuses]
"""

from __future__ import annotations

import argparse
import bisect
import http.client
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis import Redis
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness
from devtools import store

NAME = "outbound_burst"
PHONES = 100  # recipients cycled over (the dev stand-in keeps the last 500 messages per phone)
DRAIN_TIMEOUT_S = 300.0
STALL_S = 40.0  # nothing new arrived for this long: something was lost (beyond a limiter wait and one retry)
RUNS = ("lean", "binding", "statuses")
RATE_TARGET = 70.0  # messages/s sustained at WHATSAPP_MAX_MPS=80 (scaled for another --mps)


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most arrivals inside any half-open window [t, t + window) that starts at an arrival."""
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)), default=0)


def phone(n: int) -> str:
    return f"9055600{n % PHONES:05d}"


def queue_burst(count: int, tag: str) -> list[int]:
    """Write `count` pending outbound messages in one transaction, the way the conversation and the
    analysis pipeline hand replies to the outbox; the senders take it from there."""
    from app import create_app
    from models import utcnow
    from services.whatsapp import messages
    from services.whatsapp.outbox import queue_message

    app = create_app()
    with app.app_context():
        db = app.extensions["db"]
        with db.session() as session, session.begin():
            ids = [queue_message(session, "+" + phone(n), messages.text(phone(n), f"{tag} #{n}"), utcnow()).id
                   for n in range(count)]
    db.engine.dispose()
    return ids


def transcript_arrivals(redis: Redis, tag: str) -> list[tuple[float, str, str]]:
    """(arrival time, recipient, text) of this burst's messages in the dev stand-in's transcripts."""
    found = []
    for n in range(PHONES):
        for entry in store.transcript(redis, phone(n)):
            body = (entry["body"].get("text") or {}).get("body", "")
            if entry["dir"] == "out" and body.startswith(tag + " #"):
                found.append((float(entry["at"]), phone(n), body))
    return found


def unread(redis: Redis, tag: str) -> int:
    """This burst's messages whose `read` status webhook the dev stand-in has not delivered yet."""
    wamids = [entry["wamid"] for n in range(PHONES) for entry in store.transcript(redis, phone(n))
              if entry["dir"] == "out" and (entry["body"].get("text") or {}).get("body", "").startswith(tag + " #")]
    return sum(1 for wamid in wamids if store.get_status(redis, wamid) != "read")


def lean_arrivals(port: int, tag: str) -> list[tuple[float, str, str]]:
    """The same from the lean stand-in (`GET /bench/received`)."""
    from bench.graph_stand_in import RECEIVED_PATH

    conn = http.client.HTTPConnection(harness.HOST, port, timeout=10)  # not urllib: no proxy from the environment
    try:
        conn.request("GET", RECEIVED_PATH)
        received = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    return [(float(at), to, body) for at, to, body in received if body.startswith(tag + " #")]


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a live process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:13]) / os.sysconf("SC_CLK_TCK")


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


def order_violations(seen: list[tuple[float, str, str]]) -> int:
    """Adjacent arrivals to one recipient whose burst numbers go down (queued later, arrived earlier)."""
    by_phone: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for at, to, body in seen:
        by_phone[to].append((at, int(body.rsplit("#", 1)[1])))
    violations = 0
    for arrivals in by_phone.values():
        numbers = [n for _, n in sorted(arrivals)]
        violations += sum(1 for a, b in itertools.pairwise(numbers) if b < a)
    return violations


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, help="replies queued at once (default 1000, 200 with --quick)")
    parser.add_argument("--mps", type=int, default=80, help="WHATSAPP_MAX_MPS (default %(default)s)")
    parser.add_argument("--binding-mps", type=int, default=8,
                        help="the limit of the `binding` run, below what the senders reach (default %(default)s)")
    parser.add_argument("--binding-messages", type=int, help="messages of that run (default 100, 40 with --quick)")
    parser.add_argument("--senders", type=int, default=2, help="`flask sender` processes (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="WHATSAPP_SEND_CONCURRENCY, sends in flight per sender (default %(default)s)")
    parser.add_argument("--graph-latency-ms", type=int, default=0,
                        help="the lean stand-in holds each answer this long, as Graph's 100-300 ms (default 0)")
    parser.add_argument("--only", nargs="+", choices=RUNS, help="run only these")
    harness.add_store_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="200 messages (40 in the binding run), for CI")
    args = parser.parse_args(argv)
    if args.messages is None:
        args.messages = 200 if args.quick else 1000
    if args.binding_messages is None:
        args.binding_messages = 40 if args.quick else 100
    if not 1 <= args.messages <= 20_000 or not 1 <= args.mps <= 1000 or not 1 <= args.senders <= 16 \
            or not 1 <= args.binding_mps <= 1000 or not 1 <= args.binding_messages <= 20_000 \
            or not 1 <= args.concurrency <= 256 or not 0 <= args.graph_latency_ms <= 5000:
        parser.error("--messages 1..20000, --mps 1..1000, --binding-mps 1..1000, --binding-messages 1..20000, "
                     "--senders 1..16, --concurrency 1..256, --graph-latency-ms 0..5000")
    return args


def report(results: dict[str, Any]) -> None:
    p = results["parameters"]
    print(f"\noutbound burst: replies queued at once to {PHONES} recipients, {p['senders']} flask senders x "
          f"{p['concurrency']} sends in flight, lean Graph answering after {p['graph_latency_ms']} ms, PostgreSQL + "
          f"Redis (load average before "
          f"{results['machine']['loadavg_1_5_15_before'][0]:.2f})")
    print(f"{'run':<9}{'limit/s':>8}{'msgs':>6}{'max 1 s':>8}{'rate/s':>8}{'total s':>8}{'lost':>5}{'twice':>6}"
          f"{'order':>6}{'sender ms/msg':>14}{'Graph ms/msg':>13}  targets")
    for run in results["runs"]:
        f = run["figures"]
        cpu = f["cpu_ms_per_message"]
        graph = cpu.get("stand_in", cpu.get("web"))
        verdicts = " ".join("-" if t["pass"] is None else "PASS" if t["pass"] else "MISS" for t in run["targets"])
        print(f"{run['name']:<9}{run['mps']:>8}{run['messages']:>6}{f['max_in_any_1s_window']:>8}"
              f"{f['effective_rate_per_s']:>8.1f}{f['total_s']:>8.2f}{f['lost']:>5}{f['doubled']:>6}"
              f"{f['order_violations']:>6}{cpu['senders']:>14.2f}{graph:>13.2f}  {verdicts}"
              f"{'' if run['ok'] else '  LOST, DOUBLED OR OUT OF ORDER'}")
    print("(Graph ms/msg: the lean stand-in's process, or in the `statuses` run the web process: the dev "
          "stand-in and the status webhooks it posts back)")
    for run in results["runs"]:
        if not run["ok"]:
            print(f"  check of {run['name']}: {run['check']}")


def senders_idle(svc: harness.Service, timeout: float = 60.0) -> None:
    """Wait until the senders have started (imports, connections) and idle, so that their start-up is not
    counted as CPU of the burst: their CPU time stops growing."""
    def senders_cpu() -> float:
        return sum(v for k, v in svc.cpu_seconds().items() if k.startswith("sender"))

    deadline = time.monotonic() + timeout
    last = senders_cpu()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        svc.check_alive()
        now = senders_cpu()
        if now - last < 0.02:
            return
        last = now


def drain(count: int, seen: Callable[[], list[tuple[float, str, str]]], svc: harness.Service) -> None:
    """Wait until the stand-in has `count` messages, or nothing new arrived for STALL_S (something was lost)."""
    last_count, last_change = -1, time.monotonic()
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        got = len(seen())
        if got >= count:
            break
        if got != last_count:
            last_count, last_change = got, time.monotonic()
        elif time.monotonic() - last_change > STALL_S:
            break
        svc.check_alive()
        time.sleep(0.5)
    time.sleep(1.0)  # a message sent twice would arrive now


def run_phase(args: argparse.Namespace, name: str, messages: int, mps: int) -> dict[str, Any]:
    """Start the senders with this limit (and the lean stand-in, unless `statuses`), queue the burst,
    wait until it is sent; the figures and the check."""
    tag = f"burst {harness.run_id()} {name}"
    lean = name != "statuses"
    stand_in: subprocess.Popen[bytes] | None = None
    graph_port = 0
    statuses_done = None
    with tempfile.TemporaryDirectory(prefix="bench-media-") as media_dir:
        extra = {"WHATSAPP_MAX_MPS": str(mps), "WHATSAPP_SEND_CONCURRENCY": str(args.concurrency)}
        try:
            if lean:
                stand_in = subprocess.Popen([sys.executable, str(harness.ROOT / "bench" / "graph_stand_in.py"),
                                             "--latency-ms", str(args.graph_latency_ms)],
                                            cwd=harness.ROOT, stdout=subprocess.PIPE, start_new_session=True)
                assert stand_in.stdout is not None
                graph_port = int(stand_in.stdout.readline() or 0)
                if not graph_port:
                    raise harness.BenchError("the lean Graph stand-in did not start")
                extra["WHATSAPP_API_BASE"] = f"http://{harness.HOST}:{graph_port}/v21.0"
            env = harness.service_env(args.database_url, args.redis_url, harness.free_port(), Path(media_dir),
                                      **extra)
            harness.prepare(env, args.database_url, args.redis_url)
            with harness.service(env, workers=0, senders=args.senders, tag=f"{NAME}-{name}") as svc, \
                    Redis.from_url(args.redis_url) as redis:

                def seen() -> list[tuple[float, str, str]]:
                    return lean_arrivals(graph_port, tag) if lean else transcript_arrivals(redis, tag)

                senders_idle(svc)
                print(f"{name}: queueing {messages} replies, WHATSAPP_MAX_MPS={mps} ...", flush=True)
                cpu_before = svc.cpu_seconds()
                graph_before = process_cpu_seconds(stand_in.pid) if stand_in else 0.0
                started = time.time()
                ids = queue_burst(messages, tag)
                queued = time.time() - started
                drain(messages, seen, svc)
                if not lean:  # the full loop: until the stand-in has posted every `read` back to us
                    harness.wait_until(lambda: unread(redis, tag) == 0, 120, interval=0.5)
                    statuses_done = time.time() - started
                cpu_after = svc.cpu_seconds()
                graph_after = process_cpu_seconds(stand_in.pid) if stand_in else 0.0
                arrived = seen()
                rows = rows_check(args.database_url, ids)
        finally:
            if stand_in is not None:
                stand_in.send_signal(signal.SIGTERM)
                try:
                    stand_in.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    stand_in.kill()
                    stand_in.wait()

    times = sorted(at for at, _, _ in arrived)
    texts = Counter(body for _, _, body in arrived)
    peak = max_in_window(times)
    first, last = (times[0], times[-1]) if times else (started, started)
    sending = last - first
    rate = round((len(times) - 1) / sending, 1) if sending > 0 else 0.0
    senders_cpu = sum(v - cpu_before[k] for k, v in cpu_after.items() if k.startswith("sender"))
    lost = messages - len(texts)
    doubled = sum(n - 1 for n in texts.values() if n > 1)
    violations = order_violations(arrived)
    cpu = {"senders": round(1000 * senders_cpu / messages, 2)}
    if lean:
        cpu["stand_in"] = round(1000 * (graph_after - graph_before) / messages, 2)
    else:
        cpu["web"] = round(1000 * (cpu_after["web"] - cpu_before["web"]) / messages, 2)
    check = {**rows, "recorded": len(arrived), "distinct_texts": len(texts)}
    ok = (lost == 0 and doubled == 0 and violations == 0 and rows["rows"] == messages
          and rows["distinct_wamids"] == messages and rows["pending"] == 0 and rows["failed"] == 0)
    if lean:
        targets = [{"name": f"{name}: max in any 1 s window <= {mps}", "measured": peak, "pass": peak <= mps}]
    else:  # the web process timestamps a send when a thread gets to it: its own queue bunches them (no target)
        targets = [{"name": f"{name}: max in any 1 s window (web stand-in)", "measured": peak, "pass": None}]
    if name == "lean":
        floor = round(RATE_TARGET * mps / 80, 1)
        targets.append({"name": f"{name}: sustained messages/s >= {floor:g} at {mps}/s", "measured": rate,
                        "pass": rate >= floor})
    targets.append({"name": f"{name}: lost / doubled / out of order", "measured": f"{lost}/{doubled}/{violations}",
                    "pass": lost == doubled == violations == 0})
    return {
        "name": name, "messages": messages, "mps": mps,
        "figures": {"max_in_any_1s_window": peak, "queue_s": round(queued, 2), "total_s": round(last - started, 2),
                    "sending_s": round(sending, 2), "effective_rate_per_s": rate,
                    "statuses_done_s": round(statuses_done, 2) if statuses_done is not None else None,
                    "lost": lost, "doubled": doubled,
                    "order_violations": violations, "cpu_ms_per_message": cpu,
                    "messages_per_core_second": round(messages / senders_cpu, 1) if senders_cpu else None,
                    "per_second": dict(sorted(Counter(int(t - first) for t in times).items()))},
        "targets": targets, "check": check, "ok": ok,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, harness.stop_on_sigterm)
    machine = harness.machine_info()
    phases = {"lean": (args.messages, args.mps), "binding": (args.binding_messages, args.binding_mps),
              "statuses": (args.messages, args.mps)}
    try:
        runs = [run_phase(args, name, *phases[name]) for name in (args.only or RUNS)]
    except harness.BenchError as exc:
        print(f"benchmark could not run: {exc}", file=sys.stderr)
        return 2
    results = {
        "benchmark": NAME, "run_id": harness.run_id(), "machine": machine,
        "parameters": {"messages": args.messages, "mps": args.mps, "binding_mps": args.binding_mps,
                       "binding_messages": args.binding_messages, "senders": args.senders,
                       "concurrency": args.concurrency, "graph_latency_ms": args.graph_latency_ms,
                       "quick": args.quick, "database_url": args.database_url,
                       "redis_url": args.redis_url, "recipients": PHONES},
        "runs": runs,
        "targets": [target for run in runs for target in run["targets"]],
        "ok": all(run["ok"] for run in runs),
    }
    report(results)
    harness.write_results(NAME, results)
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
