"""Webhook ingress benchmark: our `POST /webhooks/whatsapp` against the same-work floor and bare Flask, in one run.

The ingress bar is a ratio against the "same-work floor" (`bench/floor_app.py`: the HMAC check, the JSON
parse, one prepared INSERT per message through a psycopg pool, one RPUSH, written by hand), and the ratio
to a bare Flask endpoint (`bench/bare_app.py`) is reported beside it. All three servers are started here
with the same gunicorn command line (only the app module differs), run side by side, and are driven by the
same load generator, one at a time:

1. throughput, in rounds: each round gives every server a closed loop of C keep-alive connections for D
   seconds after a warm-up (in an order that rotates from round to round) -> requests/s. A server's
   figure is the median of its rounds, and a ratio is the median of the ratios within each round, so a
   moment when other work slowed the machine, or a round whose connections landed unevenly on the
   gunicorn workers, weighs on one round's pair and not on one server;
2. latency: an open loop at R requests/s for S seconds per server, each latency measured from the time
   the request was *scheduled*, so a slow server cannot slow the client down and hide its queueing.

The load generator is this process: asyncio and raw HTTP/1.1 over `asyncio.open_connection`, with
every body and signature computed before the load starts. It prints figures and writes them to
bench/results/webhook_ingress.json; it asserts nothing about time. Besides requests/s it reports CPU per
request: the gunicorn workers' CPU time over the requests sent, and the same for the PostgreSQL backends
serving the server's connections (the database shares the machine's two cores). It exits 1 only when a
request failed or the database does not hold one message row per 200 the app (or the floor) returned
(2: it could not run).

    .venv/bin/python bench/webhook_ingress.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from redis import Redis
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness
from bench.harness import APP_SECRET, BIN, HOST, RESULTS_DIR, ROOT, BenchError
from services.handoff import HANDOFF_KEY
from services.signing import META_HEADER, meta_signature

FIXTURE = ROOT / "tests" / "fixtures" / "whatsapp" / "text.json"
GUNICORN_CONFIG = ROOT / "bench" / "gunicorn_bench.py"
READY_MARKER = "bench-worker-ready"  # logged by GUNICORN_CONFIG once a worker has loaded the app

ROUTE = "/webhooks/whatsapp"
SERVERS = {"bare": "bench.bare_app:app", "floor": "bench.floor_app:app", "app": "wsgi:app"}
# The floor's table: ours (`messages`) copied with its columns, NOT NULLs and indexes; made for the run, then dropped.
FLOOR_TABLE = "floor_messages"
FLOOR_QUEUE = "floor:inbound"
RANKS = (50, 90, 99)  # the latency percentiles reported (milliseconds, 2 decimals)
fmt = partial(harness.fmt, digits=2)

# The targets in bench/README.md (its `webhook_ingress.py` section).
TARGET_RATIO = 0.8  # app / floor requests/s
TARGET_P50_MS = 5.0
TARGET_P99_MS = 20.0

REQUEST_TIMEOUT_S = 30.0
MAX_IDLE_S = 1.0  # below gunicorn's 2 s keep-alive: never reuse a connection the server may be closing
# A keep-alive connection stays with the gunicorn worker that accepted it, and a burst of connects
# tends to be accepted by one worker; spreading the first connects (inside the warm-up) spreads the load.
CONNECT_STAGGER_S = 0.02
PREOPENED = 4  # open-loop connections opened before the schedule starts
FAILURES = (OSError, EOFError, TimeoutError, asyncio.LimitOverrunError, ValueError)  # ProtocolError is a ValueError


class ProtocolError(ValueError):
    """The server answered something this small HTTP/1.1 client does not handle."""


# --------------------------------------------------------------------------- load generator


class Connection:
    """One keep-alive HTTP/1.1 connection sending pre-encoded requests, one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.last_used = time.perf_counter()

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        """Send one request, read one response: (status, body, whether the server closes the connection)."""
        self.writer.write(request)
        await self.writer.drain()
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        version, _, rest = head[0].partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise ProtocolError(f"bad status line {head[0][:80]!r}")
        length, close = 0, version == "HTTP/1.0"
        for line in head[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection":
                close = value == "close"
            elif name == "transfer-encoding" and value != "identity":
                raise ProtocolError(f"transfer-encoding {value!r} not supported")
        body = await self.reader.readexactly(length)
        self.last_used = time.perf_counter()
        return int(rest[:3]), body, close

    def reusable(self, now: float) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing() and now - self.last_used < MAX_IDLE_S

    def close(self) -> None:
        self.writer.close()


@dataclass
class Tally:
    """Every answer and failure one phase saw, plus the 200 latencies it measured (seconds)."""

    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def answer(self, status: int, body: bytes) -> None:
        self.statuses[status] += 1
        if status != 200:
            self._sample(f"HTTP {status}: {body[:300].decode('utf-8', 'replace').strip()}")

    def failure(self, exc: BaseException) -> None:
        self.failures[type(exc).__name__] += 1
        self._sample(f"{type(exc).__name__}: {exc}")

    def _sample(self, line: str) -> None:
        """Keep the first few distinct errors verbatim, for the report."""
        if len(self.samples) < 5 and line not in self.samples:
            self.samples.append(line)

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200) + sum(self.failures.values())

    def as_dict(self) -> dict[str, Any]:
        return {"statuses": {str(k): v for k, v in sorted(self.statuses.items())}, "failures": dict(self.failures),
                "errors": self.errors, "error_samples": self.samples}


async def closed_loop(port: int, requests: list[bytes], concurrency: int, warmup: float,
                      duration: float) -> dict[str, Any]:
    """C connections each sending its next request as soon as the previous answer arrives: the
    server's capacity. Only 200s completed inside [warm-up end, warm-up end + D] count."""
    feed = iter(requests)
    tally = Tally()
    exhausted = False
    window_start = time.perf_counter() + warmup
    window_end = window_start + duration

    async def worker(k: int) -> None:
        nonlocal exhausted
        conn: Connection | None = None
        await asyncio.sleep(k * CONNECT_STAGGER_S)
        while time.perf_counter() < window_end:
            request = next(feed, None)
            if request is None:
                exhausted = True
                break
            sent = time.perf_counter()
            try:
                if conn is None:
                    conn = await Connection.open(port)
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    status, body, close = await conn.exchange(request)
            except FAILURES as exc:
                tally.failure(exc)
                if conn is not None:
                    conn.close()
                conn = None
                continue
            done = time.perf_counter()
            tally.answer(status, body)
            if status == 200 and window_start <= done <= window_end:
                tally.latencies.append(done - sent)
            if close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    if exhausted:
        raise BenchError(f"ran out of the {len(requests)} precomputed requests: raise --max-rps")
    return {"requests_per_s": round(len(tally.latencies) / duration, 1), "measured_requests": len(tally.latencies),
            "sent_requests": sum(tally.statuses.values()) + sum(tally.failures.values()),
            "closed_loop_latency_ms": harness.percentiles(tally.latencies, RANKS, 2), **tally.as_dict()}


async def open_loop(port: int, requests: list[bytes], rate: float) -> dict[str, Any]:
    """Request i is sent at start + i/R whatever the server is doing, on an idle connection if one
    is free, else on a new one; latency runs from the scheduled time (no coordinated omission)."""
    tally = Tally()
    idle = [await Connection.open(port) for _ in range(PREOPENED)]
    opened = len(idle)
    lags: list[float] = []

    async def one(request: bytes, scheduled: float) -> None:
        nonlocal opened
        conn: Connection | None = None
        now = time.perf_counter()
        while idle and conn is None:
            candidate = idle.pop()  # most recently used first: the others may go idle and be dropped
            if candidate.reusable(now):
                conn = candidate
            else:
                candidate.close()
        try:
            if conn is None:
                conn = await Connection.open(port)
                opened += 1
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                status, body, close = await conn.exchange(request)
        except FAILURES as exc:
            tally.failure(exc)
            if conn is not None:
                conn.close()
            return
        if status == 200:
            tally.latencies.append(time.perf_counter() - scheduled)
        tally.answer(status, body)
        if close:
            conn.close()
        else:
            idle.append(conn)

    tasks = []
    start = time.perf_counter() + 0.05
    for i, request in enumerate(requests):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(time.perf_counter() - scheduled)
        tasks.append(asyncio.create_task(one(request, scheduled)))
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()
    return {"rate": rate, "sent_requests": len(requests), "latency_ms": harness.percentiles(tally.latencies, RANKS, 2),
            "send_lag_ms": harness.percentiles(lags, RANKS, 2), "connections_opened": opened, **tally.as_dict()}


def request_label(run_id: str, server: str) -> str:
    """The start of every wamid this run sends to `server`: unique per run, and countable afterwards."""
    return f"wamid.bench-{run_id}-{server}-"


def build_requests(label: str, count: int, farmers: int, port: int) -> list[bytes]:
    """`count` complete signed requests, wamid `label` + n, senders cycling over `farmers`:
    done before the load so the client spends its CPU on sending, not on JSON and HMAC."""
    template = json.loads(FIXTURE.read_bytes())
    value = template["entry"][0]["changes"][0]["value"]
    message, contact = value["messages"][0], value["contacts"][0]
    message["timestamp"] = str(int(time.time()))
    requests = []
    for n in range(count):
        phone = f"9053200{n % farmers:05d}"
        message["id"] = f"{label}{n}"
        message["from"] = contact["wa_id"] = phone
        body = json.dumps(template, ensure_ascii=False).encode()
        signature = meta_signature(body, APP_SECRET)
        head = (f"POST {ROUTE} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n{META_HEADER}: {signature}\r\n\r\n")
        requests.append(head.encode() + body)
    return requests


# --------------------------------------------------------------------------- servers and stores


def gunicorn_command(module: str, bind: str, args: argparse.Namespace) -> list[str]:
    """The one command line every server shares; only `module` (and the free port) differ. A sync worker
    is one thread (gunicorn would turn `sync` with threads into gthread)."""
    threads = ["--threads", str(args.threads)] if args.worker_class == "gthread" else []
    return [str(BIN / "gunicorn"), "-c", str(GUNICORN_CONFIG.relative_to(ROOT)), "-w", str(args.workers),
            "-k", args.worker_class, *threads, "-b", bind, "--log-level", "warning", module]


def wait_ready(proc: subprocess.Popen[bytes], port: int, workers: int, log_path: Path,
               timeout: float = 60.0) -> None:
    """Wait until every worker has loaded the app (else the first one up takes all the keep-alive
    connections) and `GET /health/live` answers 200; fail at once if gunicorn dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"gunicorn exited with {proc.returncode} before it was ready:\n"
                             f"{harness.log_tail(log_path, 40)}")
        ready = log_path.read_text(errors="replace").count(READY_MARKER) >= workers
        if ready and harness.http_ok(port, "/health/live"):
            return
        time.sleep(0.1)
    raise BenchError(f"gunicorn not ready after {timeout:.0f} s:\n{harness.log_tail(log_path, 40)}")


@contextlib.contextmanager
def gunicorn(module: str, port: int, args: argparse.Namespace, env: dict[str, str], log_path: Path, *,
             wrapper: Sequence[str] = (), ready_timeout: float = 60.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run gunicorn (under `wrapper`, a command that runs the one after it, if any) until the block ends,
    then SIGTERM it and wait, whatever happened inside."""
    with log_path.open("wb") as log:
        command = [*wrapper, *gunicorn_command(module, f"{HOST}:{port}", args)]
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # Ctrl-C reaches us only; we stop it below
        try:
            wait_ready(proc, port, args.workers, log_path, ready_timeout)
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=35)  # gunicorn's graceful timeout is 30 s
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """The same environment for every server; the bare app ignores it, the floor takes what it needs."""
    return {**os.environ, "APP_ENV": "development", "DATABASE_URL": args.database_url, "REDIS_URL": args.redis_url,
            "WHATSAPP_APP_SECRET": APP_SECRET, "LOG_LEVEL": "WARNING", "FLOOR_POOL_SIZE": str(args.threads)}


def floor_table(database_url: str, *, create: bool) -> None:
    """(Re)create the floor's table as a copy of `messages` (columns, NOT NULLs, indexes; its own id
    sequence), or drop it: it is not part of the schema and must not outlive the run."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {FLOOR_TABLE}"))
            if create:
                conn.execute(text(f"CREATE TABLE {FLOOR_TABLE} "
                                  "(LIKE messages INCLUDING CONSTRAINTS INCLUDING INDEXES)"))
                conn.execute(text(f"ALTER TABLE {FLOOR_TABLE} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY"))
    finally:
        engine.dispose()


def count_stored(database_url: str, redis_url: str, wamid_prefix: str, *, table: str = "messages",
                 queue: str = HANDOFF_KEY) -> dict[str, int]:
    """This run's message rows (by wamid prefix, so another writer cannot inflate them), all rows,
    farmers and queued inbound work; the last three only help explain a mismatch."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            ours = conn.execute(text(f"SELECT count(*) FROM {table} WHERE wamid LIKE :p"), {"p": wamid_prefix + "%"})
            messages = int(ours.scalar_one())
            all_messages = int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
            farmers = int(conn.execute(text("SELECT count(*) FROM farmers")).scalar_one())
    finally:
        engine.dispose()
    with Redis.from_url(redis_url) as redis:
        queued = int(redis.llen(queue))
    return {"messages": messages, "all_messages": all_messages, "farmers": farmers, "queued_inbound": queued}


# --------------------------------------------------------------------------- the run


def worker_cpu_seconds(master_pid: int) -> dict[int, float]:
    """CPU seconds used so far by each child of the gunicorn master (Linux /proc; empty elsewhere).
    The client shares the machine, so CPU per request says more than requests/s alone."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, ..., utime, stime
        except (OSError, IndexError):
            continue
        if int(fields[1]) == master_pid:
            used[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / tick
    return used


def database_cpu_seconds(database_url: str) -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL backend connected to this database (not this query's own):
    the servers' connections. Only meaningful with the database on this machine (Linux /proc)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            pids = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                     "AND pid <> pg_backend_pid()")).scalars().all()
    finally:
        engine.dispose()
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone, or another machine's
        used[int(pid)] = (int(fields[11]) + int(fields[12])) / tick
    return used


def per_request_ms(seconds: dict[Any, float], requests: int) -> float | None:
    return round(1000 * sum(seconds.values()) / requests, 3) if seconds and requests else None


async def measure_throughput(port: int, master_pid: int, requests: list[bytes], args: argparse.Namespace, *,
                             database: bool) -> dict[str, Any]:
    """One closed-loop phase, with the CPU the server's workers and (`database`) the database backends used
    during it."""
    db_before = database_cpu_seconds(args.database_url) if database else {}
    before, client_before = worker_cpu_seconds(master_pid), time.process_time()
    throughput = await closed_loop(port, requests, args.concurrency, args.warmup, args.duration)
    after, client_cpu = worker_cpu_seconds(master_pid), time.process_time() - client_before
    db_after = database_cpu_seconds(args.database_url) if database else {}
    throughput["client_cpu_s"] = round(client_cpu, 2)  # the load generator shares the machine's cores
    # whole phase, warm-up included; a lopsided split between the workers means unbalanced load
    throughput["worker_cpu_s"] = {str(pid): round(after[pid] - before.get(pid, 0.0), 2) for pid in after}
    # the backends of the server's connections (a new one: all its CPU)
    throughput["database_cpu_s"] = {str(pid): round(db_after[pid] - db_before.get(pid, 0.0), 2) for pid in db_after}
    return throughput


def combine_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's throughput over its rounds: the median requests/s, everything else summed (CPU per
    request over all the requests sent)."""
    sent = sum(r["sent_requests"] for r in rounds)
    statuses: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    worker_cpu: Counter[str] = Counter()
    database_cpu: Counter[str] = Counter()
    for r in rounds:
        statuses.update(r["statuses"])
        failures.update(r["failures"])
        worker_cpu.update(r["worker_cpu_s"])
        database_cpu.update(r["database_cpu_s"])
    return {
        "requests_per_s": round(statistics.median(r["requests_per_s"] for r in rounds), 1),
        "rounds_requests_per_s": [r["requests_per_s"] for r in rounds],
        "measured_requests": sum(r["measured_requests"] for r in rounds),
        "sent_requests": sent,
        "rounds_closed_loop_latency_ms": [r["closed_loop_latency_ms"] for r in rounds],
        "statuses": dict(sorted(statuses.items())),
        "failures": dict(failures),
        "errors": sum(r["errors"] for r in rounds),
        "error_samples": list(dict.fromkeys(line for r in rounds for line in r["error_samples"]))[:5],
        "client_cpu_s": round(sum(r["client_cpu_s"] for r in rounds), 2),
        "worker_cpu_s": {pid: round(cpu, 2) for pid, cpu in worker_cpu.items()},
        "worker_cpu_ms_per_request": per_request_ms(dict(worker_cpu), sent),
        "database_cpu_s": {pid: round(cpu, 2) for pid, cpu in database_cpu.items()},
        "database_cpu_ms_per_request": per_request_ms(dict(database_cpu), sent),
    }


def run_servers(names: list[str], run_id: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """Start every server, measure throughput in `args.rounds` rounds (each server once per round, the
    order rotating), then each server's latency; stop them all."""
    closed_count = int((args.warmup + args.duration) * args.max_rps)
    phases: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    latency: dict[str, dict[str, Any]] = {}
    logs = {name: RESULTS_DIR / f"gunicorn-{name}.log" for name in names}
    with contextlib.ExitStack() as running:
        ports, pids = {}, {}
        for name in names:
            ports[name] = harness.free_port()
            print(f"[{name}] {SERVERS[name]} on port {ports[name]}; log {logs[name].relative_to(ROOT)}", flush=True)
            pids[name] = running.enter_context(gunicorn(SERVERS[name], ports[name], args, env, logs[name])).pid
        for round_no in range(args.rounds):
            shift = round_no % len(names)
            for name in names[shift:] + names[:shift]:
                requests = build_requests(f"{request_label(run_id, name)}tp{round_no}-", closed_count,
                                          args.farmers, ports[name])
                phases[name].append(asyncio.run(measure_throughput(ports[name], pids[name], requests, args,
                                                                   database=name != "bare")))
                del requests
            print(f"round {round_no + 1}/{args.rounds}: " + ", ".join(
                f"{name} {phases[name][-1]['requests_per_s']:.0f}" for name in names) + " requests/s", flush=True)
        for name in names:
            time.sleep(0.5)  # let the servers drain before the latency phase
            requests = build_requests(f"{request_label(run_id, name)}lat-", int(args.rate * args.rate_duration),
                                      args.farmers, ports[name])
            latency[name] = asyncio.run(open_loop(ports[name], requests, args.rate))
    results = {}
    for name in names:
        result: dict[str, Any] = {"throughput": combine_rounds(phases[name]), "latency": latency[name],
                                  "log": str(logs[name].relative_to(ROOT))}
        failed = result["throughput"]["errors"] or result["latency"]["errors"]
        result["log_tail"] = harness.log_tail(logs[name], 40) if failed else ""
        results[name] = result
    return results


def paired_ratio(servers: dict[str, Any], a: str, b: str) -> float | None:
    """The median over the rounds of a's requests/s over b's in the same round."""
    if a not in servers or b not in servers:
        return None
    pairs = zip(servers[a]["throughput"]["rounds_requests_per_s"], servers[b]["throughput"]["rounds_requests_per_s"],
                strict=True)
    ratios = [x / y for x, y in pairs if y]
    return round(statistics.median(ratios), 3) if ratios else None


def report(results: dict[str, Any]) -> None:
    p, m = results["parameters"], results["machine"]
    print(f"\nmachine: {m['cpu_count']} CPUs, Python {m['python']}, {m['platform']}, "
          f"1-min load average before the run {m['loadavg_1_5_15_before'][0]:.2f}")
    print(f"webhook ingress: {' '.join(p['gunicorn'])}\n"
          f"throughput: {p['rounds']} rounds, each server {p['duration']} s after {p['warmup']} s warm-up in each, "
          f"{p['concurrency']} connections, closed loop; "
          f"latency: open loop at {p['rate']} req/s for {p['rate_duration']} s\n")
    print(f"{'server':<8}{'requests/s':>12}{'errors':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"{'worker CPU ms/req':>19}{'db CPU ms/req':>15}")
    for name, server in results["servers"].items():
        lat = server["latency"]["latency_ms"]
        errors = server["throughput"]["errors"] + server["latency"]["errors"]
        print(f"{name:<8}{server['throughput']['requests_per_s']:>12.1f}{errors:>8}"
              f"{fmt(lat['p50']):>9}{fmt(lat['p90']):>9}{fmt(lat['p99']):>9}{fmt(lat['max']):>9}"
              f"{harness.fmt(server['throughput']['worker_cpu_ms_per_request'], 3):>19}"
              f"{harness.fmt(server['throughput']['database_cpu_ms_per_request'], 3):>15}")
    ratios = ", ".join(f"{name} {harness.fmt(value, 3)}" for name, value in results["ratio"].items())
    print(f"\nthroughput ratios (median of the rounds' ratios): {ratios}")
    for name, server in results["servers"].items():
        per_round = ", ".join(f"{x:.0f}" for x in server["throughput"]["rounds_requests_per_s"])
        print(f"  {name} requests/s per round: {per_round}")
    print(f"\n{'target':<36}{'measured':>10}  result")
    for target in results["targets"]:
        print(f"{target['name']:<36}{fmt(target['measured']):>10}  {'PASS' if target['pass'] else 'MISS'}")
    lags = ", ".join(f"{name} p50 {fmt(lag['p50'])} / p99 {fmt(lag['p99'])}"
                     for name, lag in ((n, s["latency"]["send_lag_ms"]) for n, s in results["servers"].items()))
    print(f"\nopen-loop client send lag, ms (already inside the latencies above): {lags}")
    cpu = ", ".join(f"{name} workers {sum(s['throughput']['worker_cpu_s'].values()):.1f} s / client "
                    f"{s['throughput']['client_cpu_s']:.1f} s" for name, s in results["servers"].items())
    print(f"CPU used in the throughput phases ({p['rounds']} x {p['warmup'] + p['duration']:g} s wall): {cpu}")
    for name, check in results["database_check"].items():
        print(f"\n[{name}] this run's messages in the database: {check['messages']}; 200 responses: "
              f"{check['responses_200']} -> {'OK, nothing lost' if check['equal'] else 'MISMATCH'}  (all message "
              f"rows {check['all_messages']}, farmers {check['farmers']}, inbound queued {check['queued_inbound']})")
        if not check["equal"] or check["all_messages"] != check["messages"]:
            print("  something else used the database or Redis db during the run (the test suite with "
                  "TEST_DATABASE_URL, another benchmark?) or rows were lost: rerun with --database-url / "
                  "--redis-url of your own")
    for name, server in results["servers"].items():
        phases = [server["throughput"], server["latency"]]
        if any(phase["errors"] for phase in phases):
            samples = dict.fromkeys(line for phase in phases for line in phase["error_samples"])
            print(f"\n[{name}] statuses {[phase['statuses'] for phase in phases]}, "
                  f"failures {[phase['failures'] for phase in phases]}; first distinct errors:")
            print("\n".join(f"  {line}" for line in samples))
            print(f"[{name}] gunicorn log tail ({server['log']}):\n{server['log_tail']}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, help="throughput rounds, every server once in each (default 5, 3 with "
                                                    "--quick)")
    parser.add_argument("--duration", type=float, help="throughput seconds per round (default 4, 2 with --quick)")
    parser.add_argument("--warmup", type=float, help="uncounted seconds before them (default 1, 0.5 with --quick)")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop connections (default %(default)s)")
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop requests/s (default %(default)s)")
    parser.add_argument("--rate-duration", type=float, help="open-loop seconds (default 10, 3 with --quick)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers, every server (default %(default)s)")
    parser.add_argument("--threads", type=int, default=8,
                        help="gunicorn threads per worker, as the Procfile runs the web (default %(default)s)")
    parser.add_argument("--worker-class", choices=("gthread", "sync"), default="gthread",
                        help="gunicorn worker class, every server (default %(default)s)")
    parser.add_argument("--only", nargs="+", choices=tuple(SERVERS),
                        help="measure only these servers (a ratio needs both of its servers)")
    parser.add_argument("--farmers", type=int, default=1000, help="distinct senders cycled over (default %(default)s)")
    parser.add_argument("--max-rps", type=int, default=8000,
                        help="ceiling used to size the precomputed closed-loop requests (default %(default)s)")
    parser.add_argument("--database-url", default=harness.DEFAULT_DATABASE_URL,
                        help="PostgreSQL the app writes to; its tables are TRUNCATED (default %(default)s)")
    parser.add_argument("--redis-url", default=harness.DEFAULT_REDIS_URL,
                        help="Redis db the app uses; FLUSHED (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="short phases for CI")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 3 if args.quick else 5
    if args.duration is None:
        args.duration = 2.0 if args.quick else 4.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 1.0
    if args.rate_duration is None:
        args.rate_duration = 3.0 if args.quick else 10.0
    if not 1 <= args.farmers <= 100_000:
        parser.error("--farmers must be between 1 and 100000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, harness.stop_on_sigterm)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    run_id = harness.run_id()
    env = server_env(args)
    load_before = os.getloadavg()  # other work on the machine skews every figure: record it
    names = [name for name in SERVERS if not args.only or name in args.only]
    checks: dict[str, dict[str, Any]] = {}
    try:
        harness.migrate(env)
        harness.reset_stores(args.database_url, args.redis_url)
        floor_table(args.database_url, create="floor" in names)
        servers = run_servers(names, run_id, args, env)
        for name in names:
            if name != "bare":
                table, queue = (FLOOR_TABLE, FLOOR_QUEUE) if name == "floor" else ("messages", HANDOFF_KEY)
                checks[name] = count_stored(args.database_url, args.redis_url, request_label(run_id, name),
                                            table=table, queue=queue)
                answered = sum(servers[name][phase]["statuses"].get("200", 0) for phase in ("throughput", "latency"))
                checks[name].update(responses_200=answered, equal=checks[name]["messages"] == answered)
    except BenchError as exc:
        print(f"benchmark could not run: {exc}", file=sys.stderr)
        return 2
    finally:
        floor_table(args.database_url, create=False)

    ratio = {"app/floor": paired_ratio(servers, "app", "floor"), "app/bare": paired_ratio(servers, "app", "bare"),
             "floor/bare": paired_ratio(servers, "floor", "bare")}
    app_latency = servers["app"]["latency"]["latency_ms"] if "app" in servers else {"p50": None, "p99": None}
    targets = [
        {"name": f"throughput app/floor >= {TARGET_RATIO}", "measured": ratio["app/floor"],
         "pass": ratio["app/floor"] is not None and ratio["app/floor"] >= TARGET_RATIO},
        {"name": f"app p50 at {args.rate:g} req/s < {TARGET_P50_MS:g} ms", "measured": app_latency["p50"],
         "pass": app_latency["p50"] is not None and app_latency["p50"] < TARGET_P50_MS},
        {"name": f"app p99 at {args.rate:g} req/s < {TARGET_P99_MS:g} ms", "measured": app_latency["p99"],
         "pass": app_latency["p99"] is not None and app_latency["p99"] < TARGET_P99_MS},
    ]
    errors = sum(s[phase]["errors"] for s in servers.values() for phase in ("throughput", "latency"))
    results = {
        "benchmark": "webhook_ingress",
        "run_id": run_id,
        "machine": {**harness.machine_info(), "loadavg_1_5_15_before": load_before},
        "parameters": {
            "rounds": args.rounds, "duration": args.duration, "warmup": args.warmup, "concurrency": args.concurrency,
            "rate": args.rate, "rate_duration": args.rate_duration, "workers": args.workers, "threads": args.threads,
            "worker_class": args.worker_class, "farmers": args.farmers, "quick": args.quick,
            "database_url": args.database_url, "redis_url": args.redis_url,
            "gunicorn": gunicorn_command("<module>", f"{HOST}:<port>", args),
        },
        "servers": servers,
        "ratio": ratio,
        "targets": targets,
        "errors": errors,
        "database_check": checks,
        "ok": errors == 0 and all(check["equal"] for check in checks.values()),
    }
    results["machine"]["loadavg_1_5_15_after"] = os.getloadavg()  # before the report, as always
    report(results)
    harness.write_results("webhook_ingress", results)
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
