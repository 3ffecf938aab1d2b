"""Capacity: analyses per minute one machine completes when N8N takes 10 s per image, sync vs callback mode.

No target is set for this; docs/ANALYSIS.md offers both `N8N_MODE`s, and this shows what each costs.

The service runs as in production (gunicorn with the Graph API stand-in, `--workers` `flask worker`
processes, PostgreSQL, Redis). N8N is a slow stand-in served by this script: it checks the request's
signature, fetches the photo from the signed `image_url` as N8N does, and answers after `--delay`
seconds (10; 2 with --quick):

- sync mode: the result is the response body, `--delay` s after the request (the worker waits);
- callback mode: `202` at once, and `--delay` s later the result is POSTed, signed with
  `services.signing` (purpose `result`), to the `callback_url` of the request (`/webhooks/n8n/<id>`).

The backlog is created directly, not through the chat: N consented farmers, each with one `queued`
analysis of the same 12 MP-free sample photo (put in the Graph API stand-in's media store, so the
pipeline downloads it), committed in one transaction and queued with `enqueue_analysis` at once, as
the `Gönder` tap does one at a time. Every analysis then runs the whole pipeline: download, checks,
optimisation, storage, the N8N call, (callback mode: the callback and the `finish_analysis` job), the
result reply through the outbox to the stand-in.

Figures per mode: analyses completed per minute over the whole run (backlog queued -> last completed);
the ratio callback / sync. Nothing lost: every
analysis `completed` with exactly one result message accepted by the stand-in; otherwise exit 1
(2: it could not run).

    .venv/bin/python bench/capacity.py [--quick] [--delay S] [--workers W]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from datetime import UTC
from pathlib import Path
from typing import Any

import requests
from redis import Redis
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness
from devtools import store
from devtools.chat import STATIC_DIR
from services import n8n, signing
from services.signing import Purpose
from tests.stand_ins import HTTPStandIn, Reply, Request, json_reply

NAME = "capacity"
SAMPLE = STATIC_DIR / "samples" / "lekeli_yaprak.jpg"
RESULT_TEMPLATE = (harness.ROOT / "tests" / "fixtures" / "n8n" / "result_full_tr.json").read_text()
DRAIN_TIMEOUT_S = 600.0


class SlowN8N(HTTPStandIn):
    """N8N taking `delay` seconds per image; counts what it was asked and what went wrong."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.stats: dict[str, int] = dict.fromkeys(("requests", "bad_signature", "image_failed", "callback_failed"), 0)
        self._http = threading.local()

    def count(self, key: str) -> None:
        with self.lock:
            self.stats[key] += 1

    def session(self) -> requests.Session:
        """One HTTP session per server thread (a session is not shared between threads)."""
        if not hasattr(self._http, "session"):
            self._http.session = requests.Session()
        return self._http.session

    def handle(self, request: Request) -> Reply:
        self.count("requests")
        body = request.json()
        if signing.verify(request.body, request.headers.get(signing.HEADER), purpose=Purpose.REQUEST,
                          analysis_id=body["analysis_id"], secrets=(harness.N8N_SECRET,), now=time.time()):
            self.count("bad_signature")
            return json_reply({"error": "invalid signature"}, 403)
        try:  # N8N fetches the photo from the signed link
            image = self.session().get(body["image_url"], timeout=30)
            image.raise_for_status()
        except requests.RequestException:
            self.count("image_failed")
            return json_reply({"error": "image not fetched"}, 502)
        result = json.loads(RESULT_TEMPLATE.replace("{{analysis_id}}", str(body["analysis_id"])))
        callback = body.get("callback_url")
        if not callback:
            time.sleep(self.delay)
            return json_reply(result)
        threading.Timer(self.delay, self.call_back, (callback, body["analysis_id"], result)).start()
        return json_reply({"accepted": True}, 202)

    def call_back(self, url: str, analysis_id: int, result: dict[str, Any]) -> None:
        body = n8n.serialise(result)
        headers = {"Content-Type": "application/json; charset=utf-8",
                   signing.HEADER: signing.sign(body, purpose=Purpose.RESULT, analysis_id=analysis_id,
                                                secrets=(harness.N8N_SECRET,), now=time.time())}
        try:
            ok = self.session().post(url, data=body, headers=headers, timeout=30).status_code == 200
        except requests.RequestException:
            ok = False
        if not ok:
            self.count("callback_failed")


def queue_backlog(count: int, redis: Redis) -> list[int]:
    """`count` consented farmers with one queued analysis each (photo in the stand-in), all enqueued at once."""
    from app import create_app
    from models import Analysis, Farmer
    from models.base import utcnow
    from services.analysis import enqueue_analysis

    photo = SAMPLE.read_bytes()
    app = create_app()
    with app.app_context():
        db = app.extensions["db"]
        now = utcnow()
        with db.session() as session, session.begin():
            analyses = []
            for n in range(count):
                farmer = Farmer(phone=f"+9055700{n:05d}", profile_name="Bench Çiftçi", consent_at=now,
                                consent_version="bench", last_inbound_at=now)
                session.add(farmer)
                session.flush()
                media = store.put_media(redis, photo, "image/jpeg")
                analysis = Analysis(farmer_id=farmer.id, media_id=media.id, crop="Domates", status="queued",
                                    queued_at=now, received_at=now)
                session.add(analysis)
                analyses.append(analysis)
            session.flush()
            ids = [a.id for a in analyses]
        for analysis_id in ids:
            enqueue_analysis(app.extensions["redis"], analysis_id)
    db.engine.dispose()
    return ids


def progress(database_url: str) -> dict[str, Any]:
    """Analyses by status, completion times (UTC epoch seconds), and result messages accepted per analysis."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            statuses: dict[Any, Any] = dict(conn.execute(
                text("SELECT status, count(*) FROM analyses GROUP BY status")).all())
            done = [row[0] for row in conn.execute(text(
                "SELECT completed_at FROM analyses WHERE completed_at IS NOT NULL ORDER BY completed_at")).all()]
            replies = [int(row[0]) for row in conn.execute(text(
                "SELECT count(*) FROM messages WHERE direction = 'out' AND analysis_id IS NOT NULL "
                "AND wamid IS NOT NULL GROUP BY analysis_id")).all()]
    finally:
        engine.dispose()
    return {"statuses": {str(k): int(v) for k, v in statuses.items()},
            "completed_at": [t.replace(tzinfo=UTC).timestamp() if t.tzinfo is None else t.timestamp() for t in done],
            "replies": replies}


def run_mode(args: argparse.Namespace, mode: str, backlog: int, stand_in: SlowN8N) -> dict[str, Any]:
    for key in stand_in.stats:
        stand_in.stats[key] = 0
    with tempfile.TemporaryDirectory(prefix="bench-media-") as media_dir:
        env = harness.service_env(args.database_url, args.redis_url, harness.free_port(), Path(media_dir),
                                  N8N_MODE=mode, N8N_WEBHOOK_URL=f"{stand_in.origin}/analyze")
        harness.prepare(env, args.database_url, args.redis_url)
        with harness.service(env, workers=args.workers, tag=f"{NAME}-{mode}") as svc, \
                Redis.from_url(args.redis_url) as redis:
            print(f"[{mode}] {backlog} analyses queued at once, N8N answers after {args.delay:g} s ...", flush=True)
            started = time.time()
            queue_backlog(backlog, redis)
            # Done when every analysis ended and has its reply, or nothing moved for a while (something is stuck).
            deadline, last, last_change = time.monotonic() + DRAIN_TIMEOUT_S, None, time.monotonic()
            while time.monotonic() < deadline and time.monotonic() - last_change < args.delay + 60:
                state = progress(args.database_url)
                finished = sum(n for s, n in state["statuses"].items() if s in ("completed", "failed"))
                if finished >= backlog and len(state["replies"]) >= backlog:
                    break
                if (finished, len(state["replies"])) != last:
                    last, last_change = (finished, len(state["replies"])), time.monotonic()
                svc.check_alive()
                time.sleep(0.5)
            time.sleep(1.0)  # a doubled result would show now
            state = progress(args.database_url)
    times = state["completed_at"]
    completed = state["statuses"].get("completed", 0)
    whole = max(times) - started if times else 0.0
    ok = (completed == backlog and state["replies"].count(1) == backlog and len(state["replies"]) == backlog
          and not any(stand_in.stats[k] for k in ("bad_signature", "image_failed", "callback_failed")))
    return {"mode": mode, "backlog": backlog, "completed": completed, "statuses": state["statuses"],
            "whole_run_s": round(whole, 1), "per_minute_whole_run": round(60 * completed / whole, 1) if whole else 0,
            "first_completion_s": round(min(times) - started, 1) if times else None,
            "n8n": dict(stand_in.stats), "result_messages_accepted": len(state["replies"]),
            "result_messages_twice": sum(1 for n in state["replies"] if n > 1), "ok": ok}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=float, help="seconds N8N takes per image (default 10, 2 with --quick)")
    parser.add_argument("--workers", type=int, default=4, help="`flask worker` processes (default %(default)s)")
    parser.add_argument("--sync-backlog", type=int,
                        help="analyses queued in sync mode (default 4 rounds of the workers, 2 with --quick)")
    parser.add_argument("--callback-backlog", type=int, help="analyses queued in callback mode (default 150, "
                                                             "40 with --quick)")
    harness.add_store_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="2 s per image and small backlogs, for CI")
    args = parser.parse_args(argv)
    if args.delay is None:
        args.delay = 2.0 if args.quick else 10.0
    if args.sync_backlog is None:
        args.sync_backlog = args.workers * (2 if args.quick else 4)
    if args.callback_backlog is None:
        args.callback_backlog = 40 if args.quick else 150
    if not 0 < args.delay <= 120 or not 1 <= args.workers <= 16 or not 1 <= args.sync_backlog <= 2000 \
            or not 1 <= args.callback_backlog <= 2000:
        parser.error("--delay 0..120, --workers 1..16, backlogs 1..2000")
    return args


def report(results: dict[str, Any]) -> None:
    p = results["parameters"]
    print(f"\ncapacity: N8N takes {p['delay']:g} s per image, {p['workers']} flask workers, gunicorn 2x8, "
          "PostgreSQL + Redis")
    print(f"{'mode':<10}{'backlog':>9}{'completed':>11}{'whole run s':>13}{'per min (whole)':>17}"
          "  nothing lost")
    for run in results["modes"]:
        print(f"{run['mode']:<10}{run['backlog']:>9}{run['completed']:>11}{run['whole_run_s']:>13.1f}"
              f"{run['per_minute_whole_run']:>17.1f}  "
              f"{'OK' if run['ok'] else 'LOST OR FAILED: ' + json.dumps(run['statuses'])}")
    print(f"\ncallback / sync, analyses per minute (whole run): {harness.fmt(results['ratio'], 2)}; "
          f"sync mode's ceiling is workers / delay = {60 * p['workers'] / p['delay']:.0f} per minute")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, harness.stop_on_sigterm)
    machine = harness.machine_info()
    try:
        with SlowN8N(args.delay) as stand_in:
            modes = [run_mode(args, "sync", args.sync_backlog, stand_in),
                     run_mode(args, "callback", args.callback_backlog, stand_in)]
    except harness.BenchError as exc:
        print(f"benchmark could not run: {exc}", file=sys.stderr)
        return 2
    sync, callback = modes
    ratio = (round(callback["per_minute_whole_run"] / sync["per_minute_whole_run"], 2)
             if sync["per_minute_whole_run"] else None)
    results = {
        "benchmark": NAME, "run_id": harness.run_id(), "machine": machine,
        "parameters": {"delay": args.delay, "workers": args.workers, "sync_backlog": args.sync_backlog,
                       "callback_backlog": args.callback_backlog, "quick": args.quick,
                       "database_url": args.database_url, "redis_url": args.redis_url,
                       "backlog_created": "directly: consented farmers with queued analyses, enqueue_analysis"},
        "modes": modes, "ratio": ratio, "targets": [], "ok": all(m["ok"] for m in modes),
    }
    report(results)
    harness.write_results(NAME, results)
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
