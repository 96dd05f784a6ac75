"""Timing helpers shared by the benchmarks.

This machine is shared and noisy: absolute times drift between runs, ratios
measured in the same run hold. So candidates are timed interleaved (A, B, A,
B, ...) and compared by their medians, and every benchmark reports ratios.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from pipeline.io import write_json

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results" / "bench"


def default_params() -> dict[str, Any]:
    """The project's params.yaml, validated: benchmarks run the default settings."""
    from pipeline.params.load import load_params

    return load_params(REPO / "params.yaml")


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def compare(candidates: dict[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median wall seconds of each candidate, timed round-robin so drift hits all alike."""
    return {name: statistics.median(s) for name, s in timings(candidates, repeats, warmup).items()}


def timings(
    candidates: dict[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1
) -> dict[str, list[float]]:
    """Every wall-time sample of each candidate, timed round-robin (compare() takes their medians)."""
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    sync()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            fn()
            sync()
            samples[name].append(time.perf_counter() - t0)
    return samples


def ratio(baseline_s: float, candidate_s: float) -> float:
    """Speed-up of the candidate over the baseline (> 1 means faster)."""
    return round(baseline_s / candidate_s, 3) if candidate_s > 0 else float("inf")


def save(name: str, result: dict[str, Any]) -> Path:
    """Write results/bench/<name>.json atomically and return its path."""
    path = RESULTS / f"{name}.json"
    write_json(path, result)
    return path
