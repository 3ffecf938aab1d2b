"""`make bench`: the five benchmarks one after the other, then one summary table against the targets in bench/README.md.

Each benchmark runs as its own process (with `--quick` for `make bench-quick`) and writes its
bench/results/<name>.json; this script reads them back and writes bench/results/summary.json. The
exit code is 1 when any benchmark lost or failed something (or could not run); a missed speed target
is reported, not an error (benchmarks report numbers; they do not judge).

    .venv/bin/python bench/run_all.py [--quick] [--database-url URL] [--redis-url URL] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

BENCHMARKS = ("webhook_ingress", "image_pipeline", "pipeline_latency", "inbound_cpu", "burst", "outbound_burst",
              "capacity")
USES_SERVICES = {"webhook_ingress", "pipeline_latency", "inbound_cpu", "burst", "outbound_burst", "capacity"}


def info_rows(name: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Figures worth a line of their own besides the targets (no target: `pass` is None)."""
    if name == "webhook_ingress":
        servers = result["servers"]
        return [{"name": "requests/s, app (bare Flask)", "pass": None,
                 "measured": f"{servers['app']['throughput']['requests_per_s']:.0f} "
                             f"({servers['bare']['throughput']['requests_per_s']:.0f})"}]
    if name == "pipeline_latency":
        lat = result["latency_ms"]
        return [{"name": "photo -> result p95 / max ms", "pass": None,
                 "measured": f"{lat['total']['p95']} / {lat['total']['max']}"},
                {"name": "Gönder tap -> result p50 ms", "pass": None, "measured": lat["send_to_result"]["p50"]}]
    if name == "outbound_burst":
        return [{"name": f"burst at {run['mps']}/s: rate /s, total s", "pass": None,
                 "measured": f"{run['figures']['effective_rate_per_s']}, {run['figures']['total_s']}"}
                for run in result["runs"]]
    if name == "capacity":
        rows = [{"name": f"analyses/min, {m['mode']} mode ({result['parameters']['delay']:g} s N8N)", "pass": None,
                 "measured": m["per_minute_whole_run"]} for m in result["modes"]]
        return [*rows, {"name": "callback / sync", "pass": None, "measured": result["ratio"]}]
    return []


def run(name: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, str(harness.ROOT / "bench" / f"{name}.py")]
    if args.quick:
        command.append("--quick")
    if name in USES_SERVICES:
        command += ["--database-url", args.database_url, "--redis-url", args.redis_url]
    print(f"\n{'=' * 100}\n== {name}: {' '.join(command[1:])}\n{'=' * 100}", flush=True)
    out = harness.RESULTS_DIR / f"{name}.json"
    out.unlink(missing_ok=True)
    started = time.monotonic()
    code = subprocess.run(command, cwd=harness.ROOT, env=os.environ.copy()).returncode
    entry: dict[str, Any] = {"name": name, "exit_code": code, "seconds": round(time.monotonic() - started, 1)}
    if out.exists():
        result = json.loads(out.read_text())
        entry["rows"] = [*result.get("targets", []), *info_rows(name, result)]
        entry["loadavg_before"] = result.get("machine", {}).get("loadavg_1_5_15_before")
    else:
        entry["rows"] = []
    return entry


def show(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


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
    entries = [run(name, args) for name in (args.only or BENCHMARKS)]

    print(f"\n{'=' * 100}\nsummary ({'quick' if args.quick else 'full'} sizes; {machine['cpus_usable']} CPUs, "
          f"Python {machine['python']}, load average before {machine['loadavg_1_5_15_before'][0]:.2f})")
    print(f"{'benchmark':<18}{'figure (target where there is one)':<52}{'measured':>20}  result")
    for entry in entries:
        status = "ok" if entry["exit_code"] == 0 else f"EXIT {entry['exit_code']}: something lost, failed or not run"
        print(f"{entry['name']:<18}{'(' + str(entry['seconds']) + ' s) ' + status}")
        for row in entry["rows"]:
            verdict = "" if row["pass"] is None else "PASS" if row["pass"] else "MISS"
            print(f"{'':<18}{row['name'][:51]:<52}{show(row['measured']):>20}  {verdict}")
    summary = {"quick": args.quick, "machine": machine, "benchmarks": entries,
               "ok": all(e["exit_code"] == 0 for e in entries)}
    harness.write_results("summary", summary)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
