"""`python -m benchmarks [--quick] [--only NAME ...]`: run the benchmarks, write
results/bench/<name>.json each and results/bench/summary.json, print the ratios.

Each benchmark is a module with `main(quick: bool = False) -> dict`; its
headline numbers are the dict's "ratios" (speed-ups measured in the same run,
> 1 = faster) and "absolutes" (seconds, where a ratio makes no sense), or,
when it has neither, every numeric entry whose key mentions "ratio" or
"speedup". A benchmark module that is not there yet is reported and skipped.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
import traceback
from datetime import datetime, timezone
from typing import Any

import torch

from benchmarks.common import RESULTS, save
from pipeline.io import read_json

# --only name -> module
BENCHMARKS: dict[str, str] = {
    "delay_step": "benchmarks.bench_delay_step",
    "integer_inference": "benchmarks.bench_integer_inference",
    "lif": "benchmarks.bench_lif",
    "binning": "benchmarks.bench_binning",
    "pipeline_overhead": "benchmarks.bench_pipeline_overhead",
    "epochs": "benchmarks.bench_epochs",
    "scale": "benchmarks.bench_scale",
    "loaders": "benchmarks.bench_loaders",
}


def headline(result: dict[str, Any]) -> dict[str, float]:
    """The numbers the table prints for one benchmark result."""
    if "ratios" in result or "absolutes" in result:
        return {**result.get("ratios", {}), **result.get("absolutes", {})}
    found: dict[str, float] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            leaf = path.rsplit(".", 1)[-1].lower()
            if "ratio" in leaf or "speedup" in leaf:
                found[path] = node

    walk(result, "")
    return found


def run_one(name: str, quick: bool) -> dict[str, Any]:
    """Import and run one benchmark; its summary entry (status ok / missing / failed)."""
    entry: dict[str, Any] = {"module": BENCHMARKS[name], "finished": None}
    try:
        module = importlib.import_module(BENCHMARKS[name])
    except ModuleNotFoundError as err:
        if err.name != BENCHMARKS[name]:
            raise  # the module is there but one of its imports is not: a real error
        path = BENCHMARKS[name].replace(".", "/") + ".py"
        print(f"[{name}] skipped: {path} does not exist yet", flush=True)
        return {**entry, "status": "missing"}
    print(f"[{name}] running{' (quick)' if quick else ''} ...", flush=True)
    t0 = time.perf_counter()
    try:
        result = module.main(quick=quick)
    except Exception:  # report it and go on with the other benchmarks
        traceback.print_exc()
        return {
            **entry,
            "status": "failed",
            "wall_s": round(time.perf_counter() - t0, 1),
            "error": traceback.format_exc(limit=3),
        }
    wall = round(time.perf_counter() - t0, 1)
    path = save(name, result)
    print(f"[{name}] done in {wall} s -> {path.relative_to(RESULTS.parent.parent)}", flush=True)
    return {
        **entry,
        "status": "ok",
        "wall_s": wall,
        "quick": quick,
        "headline": headline(result),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def print_table(entries: dict[str, dict[str, Any]]) -> None:
    rows = [("benchmark", "measure", "value")]
    for name, entry in entries.items():
        if entry["status"] != "ok":
            rows.append((name, entry["status"], ""))
        for measure, value in entry.get("headline", {}).items():
            rows.append((name, measure, f"{value:g}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller inputs and fewer repeats (a smoke test)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    ran = {name: run_one(name, args.quick) for name in names}
    total = round(time.perf_counter() - t0, 1)
    # --only updates its entries and keeps the others' (each entry says when it finished).
    summary_path = RESULTS / "summary.json"
    previous = read_json(summary_path).get("benchmarks", {}) if summary_path.is_file() else {}
    summary = {
        "last_command": " ".join(["python -m benchmarks", *sys.argv[1:]]) if argv is None else " ".join(argv),
        "last_total_s": total,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "loadavg_1m_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
        },
        "benchmarks": {
            name: ran.get(name, previous.get(name)) for name in BENCHMARKS if name in ran or name in previous
        },
    }
    save("summary", summary)
    print()
    print_table(ran)
    print(f"\n{len(ran)} benchmark(s) in {total} s; results in {RESULTS.relative_to(RESULTS.parent.parent)}/")
    return 1 if any(e["status"] == "failed" for e in ran.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
