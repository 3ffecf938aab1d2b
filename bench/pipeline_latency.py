"""Photo in -> result out: how long a farmer waits, on the real processes with the local analyser.

Targets: "photo in -> result message out, local analyser, real Redis/PostgreSQL: p50 < 350 ms, p95 < 600 ms".

The service runs as in production (gunicorn, separate `flask worker` processes that do not fork and take the
webhook's hand-off, PostgreSQL, Redis) with
DEV_TOOLS on, so the Graph API stand-in and the local analyser (the N8N stand-in) answer inside the web
process. This script plays Meta: N farmers (50; 10 with --quick) first say hello and accept the KVKK
notice (not timed); then, `--concurrency` farmers at a time (default 1: the wait of a farmer alone on the
machine), each farmer

1. sends a photo with a caption naming the crop (a signed image webhook; the photo is put in the
   stand-in's media store first, as WhatsApp holds it before the webhook),
2. taps `Geç` as soon as the location question reaches the stand-in,
3. taps `Gönder` as soon as the confirmation does,

and the clock stops when the stand-in records the result message (the one offering `Detaylar`): its
own arrival timestamp, not the time this script noticed it. The farmer's replies take no thinking
time, so the figure is the service's share of the wait: three inbound messages through the webhook, the
hand-off, the conversation and the reply, plus the analysis (download, checks, optimisation, the N8N call,
the result reply). The `Gönder` -> result part (the analysis pipeline alone) is reported too.

Nothing lost: every farmer gets exactly one result message and the database holds one completed
analysis per farmer; otherwise the exit code is 1 (2: it could not run). Nothing about time is asserted.

    .venv/bin/python bench/pipeline_latency.py [--quick] [--database-url URL] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from redis import Redis
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness
from devtools import store, webhook_bodies
from devtools.chat import STATIC_DIR, choices
from settings import load_settings

NAME = "pipeline_latency"
TARGET_P50_MS = 350.0  # bench/README.md
TARGET_P95_MS = 600.0
SAMPLE = STATIC_DIR / "samples" / "lekeli_yaprak.jpg"
CAPTION = "domates yapraklarında lekeler var"
STEP_TIMEOUT_S = 60.0


class Lost(Exception):
    """A bot answer the farmer waited for never reached the stand-in."""


def offers(entry: dict[str, Any], title: str) -> bool:
    """Does this bot message offer a button or list row with this title (list rows may be numbered)?"""
    return any(re.sub(r"^\d+\.\s*", "", c["title"]) == title or c["title"] == title for c in choices(entry["body"]))


class Farmer:
    """One farmer writing to our webhook as Meta would, reading the bot's answers from the stand-in's store."""

    def __init__(self, base: str, redis: Redis, phone: str, phone_number_id: str) -> None:
        self.base, self.redis, self.phone, self.phone_number_id = base, redis, phone, phone_number_id
        self.http = requests.Session()
        self.seen = 0  # the last transcript sequence number already looked at

    def _send(self, message: dict[str, Any]) -> None:
        body = webhook_bodies.messages_body([message], sender=self.phone, name="Bench Çiftçi",
                                            phone_number_id=self.phone_number_id)
        status = harness.post_webhook(self.http, self.base, body)
        if status != 200:
            raise Lost(f"the webhook answered {status}")

    def says(self, body: str) -> None:
        self._send(webhook_bodies.text(self.phone, body))

    def photo(self, content: bytes, caption: str) -> None:
        media = store.put_media(self.redis, content, "image/jpeg")
        self._send(webhook_bodies.image(self.phone, media.id, sha256=media.sha256, caption=caption))

    def taps(self, title: str) -> None:
        for entry in reversed(store.transcript(self.redis, self.phone)):
            if entry["dir"] == "out":
                for choice in choices(entry["body"]):
                    if title in (choice["title"], re.sub(r"^\d+\.\s*", "", choice["title"])):
                        self._send(webhook_bodies.interactive_reply(self.phone, choice["kind"], choice["id"],
                                                                    choice["title"], context_id=entry["wamid"]))
                        return
        raise Lost(f"no bot message offers {title!r}")

    def waits_for(self, title: str) -> dict[str, Any]:
        """The first new bot message offering `title`, as the stand-in recorded it (with its `at`)."""
        def check() -> dict[str, Any] | None:
            new = [e for e in store.transcript(self.redis, self.phone) if e["seq"] > self.seen and e["dir"] == "out"]
            found = next((e for e in new if offers(e, title)), None)
            if found is not None:
                self.seen = max(e["seq"] for e in new)
            return found

        found = harness.wait_until(check, STEP_TIMEOUT_S, 0.01)
        if found is None:
            raise Lost(f"no bot message offering {title!r} within {STEP_TIMEOUT_S:.0f} s")
        return found


def onboard(farmer: Farmer) -> None:
    farmer.says("Merhaba")
    farmer.waits_for("Kabul ediyorum")
    farmer.taps("Kabul ediyorum")
    farmer.waits_for("Analiz gönder")


def submit(farmer: Farmer, photo: bytes) -> dict[str, float]:
    """One timed submission: seconds from the photo POST to the result, and its parts."""
    started = time.time()
    farmer.photo(photo, CAPTION)
    asked = farmer.waits_for("Geç")
    farmer.taps("Geç")
    confirm = farmer.waits_for("Gönder")
    tapped = time.time()
    farmer.taps("Gönder")
    result = farmer.waits_for("Detaylar")
    return {"total": result["at"] - started, "to_location_question": asked["at"] - started,
            "to_confirmation": confirm["at"] - started, "send_to_result": result["at"] - tapped}


def count_results(redis: Redis, farmers: list[Farmer], database_url: str) -> dict[str, Any]:
    """Result messages per farmer in the stand-in, and analyses by status in the database."""
    per_farmer = [sum(1 for e in store.transcript(redis, f.phone) if e["dir"] == "out" and offers(e, "Detaylar"))
                  for f in farmers]
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT status, count(*) FROM analyses GROUP BY status")).all()
    finally:
        engine.dispose()
    statuses = {str(status): int(n) for status, n in rows}
    return {"result_messages_per_farmer": {"exactly_one": per_farmer.count(1), "none": per_farmer.count(0),
                                           "more": sum(1 for n in per_farmer if n > 1)},
            "analyses_by_status": statuses,
            "ok": per_farmer.count(1) == len(farmers) and statuses == {"completed": len(farmers)}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--farmers", type=int, help="submissions, one per farmer (default 50, 10 with --quick)")
    parser.add_argument("--concurrency", type=int, default=1, help="farmers submitting at once (default %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="`flask worker` processes (default %(default)s)")
    harness.add_store_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="10 farmers, for CI")
    args = parser.parse_args(argv)
    if args.farmers is None:
        args.farmers = 10 if args.quick else 50
    if not 1 <= args.farmers <= 1000 or not 1 <= args.concurrency <= 50 or not 1 <= args.workers <= 16:
        parser.error("--farmers 1..1000, --concurrency 1..50, --workers 1..16")
    return args


def report(results: dict[str, Any]) -> None:
    p, lat = results["parameters"], results["latency_ms"]
    print(f"\nphoto in -> result out: {p['farmers']} farmers, {p['concurrency']} at a time, "
          f"{p['workers']} flask workers, gunicorn 2x8, local analyser, PostgreSQL + Redis")
    print(f"{'ms':<34}{'p50':>9}{'p95':>9}{'max':>9}")
    for key, label in (("total", "photo POST -> result recorded"), ("to_location_question", "  -> location question"),
                       ("to_confirmation", "  -> confirmation"), ("send_to_result", "Gönder tap -> result")):
        print(f"{label:<34}{harness.fmt(lat[key]['p50']):>9}{harness.fmt(lat[key]['p95']):>9}"
              f"{harness.fmt(lat[key]['max']):>9}")
    print()
    for target in results["targets"]:
        print(f"{target['name']:<34}{harness.fmt(target['measured']):>9}  {'PASS' if target['pass'] else 'MISS'}")
    check = results["check"]
    print(f"results: {check['result_messages_per_farmer']}, analyses {check['analyses_by_status']} -> "
          f"{'OK, nothing lost' if check['ok'] else 'LOST OR DOUBLED'}; errors {len(results['errors'])}")
    for line in results["errors"][:5]:
        print(f"  {line}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, harness.stop_on_sigterm)
    machine = harness.machine_info()
    photo = SAMPLE.read_bytes()
    errors: list[str] = []
    samples: list[dict[str, float]] = []
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="bench-media-") as media_dir:
        env = harness.service_env(args.database_url, args.redis_url, harness.free_port(), Path(media_dir))
        try:
            harness.prepare(env, args.database_url, args.redis_url)
            with harness.service(env, workers=args.workers, tag=NAME) as svc, \
                    Redis.from_url(args.redis_url) as redis:
                number_id = load_settings().WHATSAPP_PHONE_NUMBER_ID
                farmers = [Farmer(svc.base, redis, f"9055500{n:05d}", number_id) for n in range(args.farmers)]
                print(f"{args.farmers} farmers accept the KVKK notice ...", flush=True)
                with ThreadPoolExecutor(max_workers=8) as pool:
                    list(pool.map(onboard, farmers))
                print(f"submissions, {args.concurrency} at a time ...", flush=True)

                def one(farmer: Farmer) -> None:
                    try:
                        sample = submit(farmer, photo)
                    except (Lost, requests.RequestException) as exc:
                        with lock:
                            errors.append(f"{farmer.phone[-4:]}: {type(exc).__name__}: {exc}")
                        return
                    with lock:
                        samples.append(sample)

                started = time.monotonic()
                with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
                    list(pool.map(one, farmers))
                wall = time.monotonic() - started
                time.sleep(2.0)  # a doubled result would arrive now
                svc.check_alive()
                check = count_results(redis, farmers, args.database_url)
        except (harness.BenchError, Lost, requests.RequestException) as exc:
            print(f"benchmark could not run: {exc}", file=sys.stderr)
            return 2

    latency = {key: harness.percentiles([s[key] for s in samples])
               for key in ("total", "to_location_question", "to_confirmation", "send_to_result")}
    p50, p95 = latency["total"]["p50"], latency["total"]["p95"]
    results = {
        "benchmark": NAME, "run_id": harness.run_id(), "machine": machine,
        "parameters": {"farmers": args.farmers, "concurrency": args.concurrency, "workers": args.workers,
                       "quick": args.quick, "database_url": args.database_url, "redis_url": args.redis_url,
                       "photo": str(SAMPLE.relative_to(harness.ROOT)), "photo_bytes": len(photo)},
        "latency_ms": latency, "submissions_measured": len(samples), "wall_s": round(wall, 1),
        "targets": [{"name": f"p50 photo -> result < {TARGET_P50_MS:g} ms", "target": f"< {TARGET_P50_MS:g} ms",
                     "measured": p50, "pass": p50 is not None and p50 < TARGET_P50_MS},
                    {"name": f"p95 photo -> result < {TARGET_P95_MS:g} ms", "target": f"< {TARGET_P95_MS:g} ms",
                     "measured": p95, "pass": p95 is not None and p95 < TARGET_P95_MS}],
        "check": check, "errors": errors, "ok": check["ok"] and not errors,
    }
    report(results)
    harness.write_results(NAME, results)
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
