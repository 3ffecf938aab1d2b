"""Instruction counts for the two targets that are ratios: the webhook ingress against the same-work floor,
and our image optimisation against libvips, counted by valgrind's callgrind.

`webhook_ingress.py` and `image_pipeline.py` measure time, and on a shared virtual machine their ratios move
from run to run by more than the margin they are judged by. An instruction count does not: callgrind runs
the program on a simulated CPU and counts every instruction it executes (all threads), so the same code given
the same input gives the same count whatever else the machine is doing. What it does not see: time spent
waiting (the GIL, the network), how fast each instruction runs (cache misses, SIMD width), the kernel's work
for our system calls, and the PostgreSQL and Redis servers' own work (`webhook_ingress.py` reports the
database's CPU per request).

Every count is a difference of two runs that differ only in how much work they are given, so that loading
Python, the app or the codecs drops out:

- ingress: each server (`app`, `floor`) is started with the Procfile's gunicorn command, one worker, under
  `valgrind --tool=callgrind`, twice: given FEW and given MANY signed text-message webhooks (the same
  requests as `webhook_ingress.py`), one after another over one keep-alive connection. The worker's count
  with MANY minus its count with FEW, divided by MANY - FEW, is its instructions per request.
- image: this script runs itself under callgrind (`--image-subject ours|libvips --photos K`) on the 12 MP
  photo of `image_pipeline.py` (made once, outside callgrind): it optimises the photo once more than K
  times (the first call loads what a first call loads), with K = 1 and K = 1 + PHOTOS, so the difference
  divided by PHOTOS is the instructions per photo.

The two runs of a pair go at once (callgrind is single-threaded; the machine has two cores).

    .venv/bin/python bench/instructions.py [--quick] [--database-url URL] [--redis-url URL] [--only ingress|image]

It prints the figures and writes bench/results/instructions.json. Exit 0; 1 when a request was not answered
200; 2 when it could not run (valgrind is not installed, a server did not start).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness, image_pipeline, webhook_ingress
from bench.harness import HOST, BenchError

SERVERS = ("floor", "app")
IMAGE_SUBJECTS = ("ours", "libvips")
READY_SECONDS = 600.0  # loading the app on callgrind's simulated CPU takes a minute or two
_WORKER_PID = re.compile(rf"{webhook_ingress.READY_MARKER} pid=(\d+)")
_SUMMARY = re.compile(r"^summary: (\d+)$", re.MULTILINE)


def callgrind(out_file: Path) -> list[str]:
    """The command prefix that runs a program under callgrind, writing its counts to `out_file` (`%p`: the pid)."""
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}"]


def counted(out_file: Path) -> int | None:
    """The instructions a callgrind run counted in all (its `summary:` line), or None without one."""
    found = _SUMMARY.search(out_file.read_text()) if out_file.exists() else None
    return int(found.group(1)) if found else None


def pair(run: Any, sizes: tuple[int, int]) -> list[Any]:
    """`run(size)` for both sizes at once (two cores, one callgrind each)."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return list(pool.map(run, sizes))


# --------------------------------------------------------------------------- ingress


async def send_one_by_one(port: int, requests: list[bytes]) -> dict[str, int]:
    """Send each request after the previous answer, over one keep-alive connection: the answers' statuses."""
    statuses: Counter[str] = Counter()
    connection = await webhook_ingress.Connection.open(port)
    try:
        for request in requests:
            status, _, _ = await connection.exchange(request)
            statuses[str(status)] += 1
    finally:
        connection.close()
    return dict(statuses)


def server_run(server: str, count: int, run_id: str, args: argparse.Namespace, env: dict[str, str],
               out_dir: Path) -> dict[str, Any]:
    """Start `server` under callgrind, send it `count` requests, stop it: its worker's instruction count."""
    port = harness.free_port()
    log_path = out_dir / f"gunicorn-{server}-{count}.log"
    requests = webhook_ingress.build_requests(f"{webhook_ingress.request_label(run_id, server)}cg{count}-", count,
                                              args.farmers, port)
    with webhook_ingress.gunicorn(webhook_ingress.SERVERS[server], port, args, env, log_path,
                                  wrapper=callgrind(out_dir / "callgrind.%p"), ready_timeout=READY_SECONDS):
        statuses = asyncio.run(send_one_by_one(port, requests))
    worker = _WORKER_PID.search(log_path.read_text(errors="replace"))
    instructions = counted(out_dir / f"callgrind.{worker.group(1)}") if worker else None
    if instructions is None:
        raise BenchError(f"no callgrind count for the {server} worker:\n{harness.log_tail(log_path, 20)}")
    return {"requests": count, "statuses": statuses, "instructions": instructions}


def ingress(args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    run_id = harness.run_id()
    env = webhook_ingress.server_env(args)
    harness.migrate(env)
    harness.reset_stores(args.database_url, args.redis_url)
    webhook_ingress.floor_table(args.database_url, create=True)
    servers: dict[str, Any] = {}
    try:
        for server in SERVERS:
            few, many = pair(partial(server_run, server, run_id=run_id, args=args, env=env, out_dir=out_dir),
                             (args.few, args.many))
            per_request = round((many["instructions"] - few["instructions"]) / (args.many - args.few))
            print(f"[ingress {server}] {few['instructions']:,} instructions with {args.few} requests, "
                  f"{many['instructions']:,} with {args.many}: {per_request:,} per request", flush=True)
            servers[server] = {"runs": [few, many], "instructions_per_request": per_request}
    finally:
        webhook_ingress.floor_table(args.database_url, create=False)
    app, floor = servers["app"]["instructions_per_request"], servers["floor"]["instructions_per_request"]
    ok = all(run["statuses"] == {"200": run["requests"]} for server in servers.values() for run in server["runs"])
    return {"servers": servers, "floor/app": round(floor / app, 3), "ok": ok}


# --------------------------------------------------------------------------- image


def image_subject(subject: str, data: bytes, photos: int) -> None:
    """Run under callgrind by `image_run`: optimise `data` once, then `photos` times."""
    from services import images

    optimise: Callable[[bytes], object] = images.optimise
    if subject == "libvips":
        pyvips, why_not = image_pipeline.load_pyvips()
        if pyvips is None:
            raise SystemExit(why_not)
        optimise = partial(image_pipeline.vips_optimise, pyvips)
    for _ in range(1 + photos):
        optimise(data)


def image_run(subject: str, photos: int, *, out_dir: Path) -> int:
    out_file = out_dir / f"image-{subject}-{photos}.out"
    command = [*callgrind(out_file), sys.executable, __file__, "--image-subject", subject, "--photos", str(photos),
               "--photo-file", str(out_dir / "photo.jpg")]
    done = subprocess.run(command, cwd=harness.ROOT, capture_output=True, text=True)
    instructions = counted(out_file)
    if done.returncode != 0 or instructions is None:
        raise BenchError(f"the {subject} image run failed: {done.stdout[-300:]} {done.stderr[-600:]}")
    return instructions


def image(args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    (out_dir / "photo.jpg").write_bytes(image_pipeline.make_photo())
    subjects: dict[str, Any] = {}
    for subject in IMAGE_SUBJECTS:
        if subject == "libvips" and (why_not := image_pipeline.load_pyvips()[1]):
            print(f"[image libvips] not counted: {why_not}", flush=True)
            continue
        one, more = pair(partial(image_run, subject, out_dir=out_dir), (1, 1 + args.photos))
        per_photo = round((more - one) / args.photos)
        print(f"[image {subject}] {one:,} instructions with 1 photo, {more:,} with {1 + args.photos}: "
              f"{per_photo:,} per photo", flush=True)
        subjects[subject] = {"runs": [one, more], "instructions_per_photo": per_photo}
    ratio = (round(subjects["ours"]["instructions_per_photo"] / subjects["libvips"]["instructions_per_photo"], 3)
             if "libvips" in subjects else None)
    return {"subjects": subjects, "ours/libvips": ratio}


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("ingress", "image"), help="count one of the two")
    parser.add_argument("--few", type=int, help="ingress: requests in the first run (default 50)")
    parser.add_argument("--many", type=int, help="ingress: requests in the second (default 300, 150 with --quick)")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads, as the Procfile (default 8)")
    parser.add_argument("--farmers", type=int, default=1000, help="distinct senders cycled over (default 1000)")
    parser.add_argument("--photos", type=int, default=1, help="image: photos the second run adds (default 1)")
    parser.add_argument("--database-url", default=harness.DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=harness.DEFAULT_REDIS_URL)
    parser.add_argument("--quick", action="store_true", help="fewer requests and photos, for CI")
    parser.add_argument("--image-subject", choices=IMAGE_SUBJECTS, help=argparse.SUPPRESS)  # the counted child:
    parser.add_argument("--photo-file", type=Path, help=argparse.SUPPRESS)  # what it optimises
    args = parser.parse_args(argv)
    args.few = args.few or 50
    args.many = args.many or (150 if args.quick else 300)
    args.workers, args.worker_class = 1, "gthread"  # one worker: its count is the whole server's
    if args.many <= args.few:
        parser.error("--many must be larger than --few")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.image_subject:
        image_subject(args.image_subject, args.photo_file.read_bytes(), args.photos)
        return 0
    signal.signal(signal.SIGTERM, harness.stop_on_sigterm)
    if shutil.which("valgrind") is None:
        print("benchmark could not run: valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    harness.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"benchmark": "instructions", "machine": harness.machine_info(),
                               "parameters": {"few": args.few, "many": args.many, "photos": args.photos,
                                              "threads": args.threads, "quick": args.quick,
                                              "gunicorn": webhook_ingress.gunicorn_command(
                                                  "<module>", f"{HOST}:<port>", args)}}
    try:
        with tempfile.TemporaryDirectory(prefix="callgrind-") as out_dir:
            if args.only in (None, "ingress"):
                results["ingress"] = ingress(args, Path(out_dir))
            if args.only in (None, "image"):
                results["image"] = image(args, Path(out_dir))
    except BenchError as exc:
        print(f"benchmark could not run: {exc}", file=sys.stderr)
        return 2
    counts = results.get("ingress", {})
    if counts:
        app, floor = (counts["servers"][name]["instructions_per_request"] for name in ("app", "floor"))
        print(f"\ningress, instructions per request (gunicorn worker): app {app:,}, floor {floor:,}; "
              f"floor/app {counts['floor/app']} (the throughput ratio app/floor targets >= 0.8)")
    if "image" in results and results["image"]["ours/libvips"] is not None:
        ours, vips = (results["image"]["subjects"][name]["instructions_per_photo"] for name in IMAGE_SUBJECTS)
        print(f"image, instructions per photo: ours {ours:,}, libvips {vips:,}; ours/libvips "
              f"{results['image']['ours/libvips']} (the time ratio targets <= 0.7)")
    results.update(targets=[], ok=counts.get("ok", True))
    if not results["ok"]:
        print("some requests were not answered 200: " + repr(
            {name: [run["statuses"] for run in server["runs"]] for name, server in counts["servers"].items()}))
    harness.write_results("instructions", results)
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
