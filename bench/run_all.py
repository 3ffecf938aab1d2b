"""`make bench`: the benchmarks one after the other, then ONE table with every performance target.

Each benchmark runs as its own process (with `--quick` for `make bench-quick`) and writes its
bench/results/<name>.json, whose "targets" list holds rows {"name", "target", "measured", "pass"}
and, where the figure has one, "baseline" (what it is compared with in the same run). This script
reads them back, sorts the rows under the performance targets (bench/README.md, "Targets") and writes
bench/results/summary.json. A script that is missing, failed, or writes fewer rows or keys than
expected shows "-" where its figures would be, never a crash. The exit code is 1 when any benchmark
lost or failed something (or could not run); a missed speed target is reported, not an error
(benchmarks report numbers; they do not judge).

    .venv/bin/python bench/run_all.py [--quick] [--database-url URL] [--redis-url URL] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

BENCHMARKS = ("webhook_ingress", "instructions", "image_pipeline", "pipeline_latency", "inbound_cpu", "burst",
              "outbound_burst", "capacity")
# Not in the short forms: counting under valgrind takes several minutes whatever the sizes (CI keeps its time).
FULL_ONLY = {"instructions"}
USES_SERVICES = {"webhook_ingress", "instructions", "pipeline_latency", "inbound_cpu", "burst",
                 "outbound_burst", "capacity"}


@dataclass(frozen=True)
class Target:
    """One performance target: what, the bar, its baseline, and which benchmark rows measure it.

    A row of one of `benchmarks` belongs here when its name contains one of `keywords` (any row when
    there are none); a row is placed under the first target that takes it, in the order below."""

    what: str
    bar: str
    baseline: str
    benchmarks: tuple[str, ...]
    keywords: tuple[str, ...] = ()

    def takes(self, benchmark: str, row_name: str) -> bool:
        name = row_name.lower()
        return benchmark in self.benchmarks and (not self.keywords or any(k in name for k in self.keywords))


TARGETS = (
    Target("webhook ingress throughput (verify, persist, enqueue, 200)", ">= 0.8 x floor",
           "the same-work floor app; also bare Flask", ("webhook_ingress", "instructions"),
           ("throughput", "floor", "bare", "requests/s")),
    Target("webhook latency at 100 requests/s", "p50 < 5 ms, p99 < 20 ms", "Meta asks median <= 250 ms",
           ("webhook_ingress",), ("p50", "p99", "latency")),
    Target("image optimisation, 12 MP JPEG -> <= 800x600, <= 100 KB", "<= 0.7 x, same or better PSNR",
           "libvips thumbnail_buffer, same file", ("image_pipeline", "instructions"), ("libvips", "psnr", "800x600")),
    Target("payload sent to N8N per image", "< 1 KB (< 2 KB for 5 photos)", "base64 of the same image",
           ("image_pipeline",), ("n8n", "payload")),
    Target("worker CPU per handled inbound message (webhook + job + reply)", "<= 15 ms", "~160 ms before",
           ("inbound_cpu", "pipeline_latency"), ("cpu",)),
    Target("photo in -> result message out (local analyser)", "p50 < 350 ms, p95 < 600 ms", "-",
           ("pipeline_latency",), ("photo", "result", "gönder", "p50", "p95")),
    Target("outbound burst of 1,000 replies at WHATSAPP_MAX_MPS=80", ">= 70/s, <= 80 in any 1 s, none lost",
           "the configured 80/s", ("outbound_burst",)),
    Target("burst of 300 new farmers within 10 s", "p95 < 5 s, last < 15 s, all answered once",
           "-", ("burst",)),
)


def dig(data: Any, *keys: str | int) -> Any:
    """data[k1][k2]..., or None when any step is missing or of the wrong kind."""
    for key in keys:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def num(value: Any, spec: str = ".0f") -> str:
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def info_rows(name: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Figures worth a line of their own besides the targets (no target: `pass` is None)."""
    if name == "webhook_ingress":
        servers = dig(result, "servers")
        present = [server for server in ("app", "floor", "bare") if isinstance(servers, dict) and server in servers]
        rates = " / ".join(num(dig(servers, server, "throughput", "requests_per_s")) for server in present)
        return [{"name": f"requests/s, {' / '.join(present) or 'app'}", "pass": None, "measured": rates or None},
                {"name": "throughput app/bare Flask", "pass": None, "measured": dig(result, "ratio", "app/bare"),
                 "baseline": "bare Flask"}]
    if name == "instructions":
        servers, subjects = dig(result, "ingress", "servers"), dig(result, "image", "subjects")
        requests = " / ".join(num(dig(servers, server, "instructions_per_request")) for server in ("app", "floor"))
        photos = " / ".join(num(dig(subjects, subject, "instructions_per_photo")) for subject in ("ours", "libvips"))
        return [{"name": "instructions per request, app / floor", "pass": None, "measured": requests},
                {"name": "instructions floor/app (callgrind)", "pass": None,
                 "measured": dig(result, "ingress", "floor/app"), "baseline": "the floor, counted alike"},
                {"name": "instructions per photo, ours / libvips", "pass": None, "measured": photos},
                {"name": "instructions ours/libvips (callgrind)", "pass": None,
                 "measured": dig(result, "image", "ours/libvips"), "baseline": "libvips, counted alike"}]
    if name == "pipeline_latency":
        total = dig(result, "latency_ms", "total")
        return [{"name": "photo -> result p95 / max ms", "pass": None,
                 "measured": f"{num(dig(total, 'p95'))} / {num(dig(total, 'max'))}" if total else None},
                {"name": "Gönder tap -> result p50 ms", "pass": None,
                 "measured": dig(result, "latency_ms", "send_to_result", "p50")}]
    if name == "outbound_burst":
        runs = dig(result, "runs")
        return [{"name": f"{run.get('name') or str(run.get('mps', '?')) + '/s'}: rate /s, total s", "pass": None,
                 "measured": f"{num(dig(run, 'figures', 'effective_rate_per_s'), '.1f')}, "
                             f"{num(dig(run, 'figures', 'total_s'), '.1f')}"}
                for run in (runs if isinstance(runs, list) else []) if isinstance(run, dict)]
    if name == "capacity":
        modes = dig(result, "modes")
        delay = dig(result, "parameters", "delay")
        rows = [{"name": f"analyses/min, {m.get('mode', '?')} mode ({num(delay, 'g')} s N8N)", "pass": None,
                 "measured": m.get("per_minute_whole_run")}
                for m in (modes if isinstance(modes, list) else []) if isinstance(m, dict)]
        return [*rows, {"name": "callback / sync", "pass": None, "measured": dig(result, "ratio")}]
    return []


def rows_of(name: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    """The script's target rows and the extra figures, each a dict with at least a name."""
    targets = result.get("targets")
    rows = [row for row in (targets if isinstance(targets, list) else []) if isinstance(row, dict)]
    try:
        extra = info_rows(name, result)
    except Exception as exc:  # a changed result shape costs its extra lines, never the summary
        extra = [{"name": "extra figures unreadable", "measured": f"{type(exc).__name__}: {exc}", "pass": None}]
    return [{**row, "name": str(row.get("name") or "?")} for row in [*rows, *extra]]


def run(name: str, args: argparse.Namespace) -> dict[str, Any]:
    script = harness.ROOT / "bench" / f"{name}.py"
    command = [sys.executable, str(script)]
    if args.quick:
        command.append("--quick")
    if name in USES_SERVICES:
        command += ["--database-url", args.database_url, "--redis-url", args.redis_url]
    print(f"\n{'=' * 100}\n== {name}: {' '.join(command[1:])}\n{'=' * 100}", flush=True)
    entry: dict[str, Any] = {"name": name, "exit_code": None, "seconds": 0.0, "rows": [], "note": None}
    if not script.exists():
        entry.update(exit_code=2, note=f"bench/{name}.py does not exist")
        return entry
    out = harness.RESULTS_DIR / f"{name}.json"
    out.unlink(missing_ok=True)
    started = time.monotonic()
    entry["exit_code"] = subprocess.run(command, cwd=harness.ROOT, env=os.environ.copy()).returncode
    entry["seconds"] = round(time.monotonic() - started, 1)
    try:
        result = json.loads(out.read_text())
    except (OSError, ValueError) as exc:
        entry["note"] = f"no readable {out.name}: {type(exc).__name__}"
        return entry
    if not isinstance(result, dict):
        entry["note"] = f"{out.name} is not an object"
        return entry
    entry["rows"] = rows_of(name, result)
    entry["loadavg_before"] = dig(result, "machine", "loadavg_1_5_15_before")
    entry["loadavg_after"] = dig(result, "machine", "loadavg_1_5_15_after")
    return entry


def show(value: Any) -> str:
    """A measured value in a table cell."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def verdict(row: dict[str, Any]) -> str:
    passed = row.get("pass")
    return "" if passed is None else "PASS" if passed else "MISS"


def loads(values: Any) -> str:
    return " ".join(num(v, ".2f") for v in values) if isinstance(values, (list, tuple)) else "-"


def group(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows under the targets that take them, in TARGETS order; and the rows no target takes."""
    sections: list[dict[str, Any]] = [{"what": t.what, "bar": t.bar, "baseline": t.baseline,
                                       "benchmarks": list(t.benchmarks), "rows": []} for t in TARGETS]
    others: list[dict[str, Any]] = []
    for entry in entries:
        for row in entry["rows"]:
            placed = next((section for target, section in zip(TARGETS, sections, strict=True)
                           if target.takes(entry["name"], row["name"])), None)
            (placed["rows"] if placed else others).append({**row, "benchmark": entry["name"]})
    return sections, others


def print_table(entries: list[dict[str, Any]], sections: list[dict[str, Any]], others: list[dict[str, Any]],
                ran: set[str]) -> None:
    widths = (46, 16, 24, 28)
    print(f"{'figure':<{widths[0]}}{'target':<{widths[1]}}{'measured':>{widths[2]}}  {'baseline':<{widths[3]}}result")

    def line(row: dict[str, Any]) -> None:
        target, baseline = row.get("target"), row.get("baseline")
        print(f"  {row['name'][:widths[0] - 3]:<{widths[0] - 2}}"
              f"{'' if target is None else show(target)[:widths[1] - 1]:<{widths[1]}}"
              f"{show(row.get('measured'))[:widths[2]]:>{widths[2]}}  "
              f"{'' if baseline is None else show(baseline)[:widths[3] - 1]:<{widths[3]}}{verdict(row)}")

    for section in sections:
        baseline = f" (baseline: {section['baseline']})" if section["baseline"] != "-" else ""
        print(f"{section['what']}: {section['bar']}{baseline}")
        for row in section["rows"]:
            line(row)
        if not section["rows"]:
            missing = [b for b in section["benchmarks"] if b not in ran]
            why = ("not run: " + ", ".join(missing)
                   if len(missing) == len(section["benchmarks"]) else "no row for it in the results")
            line({"name": why, "measured": None})
    if others:
        print("other figures (no performance target)")
        for row in others:
            line({**row, "name": f"{row['benchmark']}: {row['name']}"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short forms (as CI runs them)")
    parser.add_argument("--database-url", default=harness.DEFAULT_DATABASE_URL,
                        help="PostgreSQL the benchmarks TRUNCATE and use (default %(default)s)")
    parser.add_argument("--redis-url", default=harness.DEFAULT_REDIS_URL,
                        help="Redis db the benchmarks FLUSH and use (default %(default)s)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    args = parser.parse_args(argv)
    machine = harness.machine_info()
    names = args.only or [name for name in BENCHMARKS if not (args.quick and name in FULL_ONLY)]
    entries = [run(name, args) for name in names]
    machine["loadavg_1_5_15_after"] = os.getloadavg()
    sections, others = group(entries)

    print(f"\n{'=' * 100}\nsummary ({'quick' if args.quick else 'full'} sizes; {machine['cpus_usable']} CPUs, "
          f"Python {machine['python']}, commit {machine['git_commit'] or '?'}; load average 1/5/15 min: "
          f"before {loads(machine['loadavg_1_5_15_before'])}, after {loads(machine['loadavg_1_5_15_after'])})")
    for entry in entries:
        status = "ok" if entry["exit_code"] == 0 else f"EXIT {entry['exit_code']}: something lost, failed or not run"
        note = f"; {entry['note']}" if entry["note"] else ""
        print(f"  {entry['name']:<18}{entry['seconds']:>7} s  {status}{note}  "
              f"(load before {loads(entry.get('loadavg_before'))}, after {loads(entry.get('loadavg_after'))})")
    print()
    print_table(entries, sections, others, {entry["name"] for entry in entries})
    summary = {"quick": args.quick, "machine": machine, "benchmarks": entries, "targets": sections,
               "other_figures": others, "ok": all(e["exit_code"] == 0 for e in entries)}
    harness.write_results("summary", summary)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
