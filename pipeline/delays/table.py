"""The paper-B table: one row per dataset and method, as in the paper's Table 1.

Per row: trainable parameters, the epochs trained (so a `max_epochs: 1` check
does not read like a final table), and over seeds (mean ± std):
- test accuracy of the epoch with the best validation accuracy, rounded
  integer delays (the clean protocol);
- the best test accuracy over epochs, which is what the reference reports on
  SHD (it has no validation split);
and the accuracy the paper reports for that row (learned delays only).

`build_table` gives the machine-readable table (numeric columns, for the CSV,
`compare` and results/metrics.json); `display_table` the readable one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd

from pipeline.models.delay_snn import VARIANTS

METHODS = {"no_delay": "no delays", "fixed_delay": "fixed random delays", "learned_delay": "learned delays"}
DATASETS = {"shd": "SHD", "ssc": "SSC", "gsc": "GSC-35", "synth": "synthetic"}
# The paper's test accuracy (%) with learned delays: mean, std over seeds (NaN: it gives an approximate
# number).
REPORTED: dict[str, tuple[float, float]] = {
    "shd": (95.07, 0.24),
    "ssc": (80.69, 0.21),
    "gsc": (95.3, math.nan),
}
DASH = "—"
COLUMNS = [
    "dataset",
    "method",
    "n_params",
    "seeds",
    "epochs",
    "epochs_max",
    "test_acc_mean",
    "test_acc_std",
    "best_test_acc_mean",
    "best_test_acc_std",
    "paper_acc_mean",
    "paper_acc_std",
]


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1; NaN for a single seed)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else math.nan


def dataset_order(name: str) -> tuple[int, str]:
    """The paper's datasets first, in its order, then the others by name."""
    order = list(REPORTED)
    return (order.index(name) if name in order else len(order), name)


def build_table(evals: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (dataset, method) with runs, from evaluate-stage JSONs (keys dataset, variant, seed,
    test_acc, best_test_acc, n_params, epochs). `epochs` / `epochs_max`: the fewest / most any seed
    trained."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in evals:
        if e["variant"] not in VARIANTS:
            raise ValueError(
                f"evaluation of unknown variant '{e['variant']}' (allowed: {', '.join(VARIANTS)})"
            )
        runs[e["dataset"], e["variant"]].append(e)
    rows = []
    for dataset in sorted({d for d, _ in runs}, key=dataset_order):
        for method in (v for v in VARIANTS if (dataset, v) in runs):
            group = runs[dataset, method]
            row: dict[str, Any] = {
                "dataset": dataset,
                "method": method,
                "n_params": int(group[0]["n_params"]),
                "seeds": len(group),
            }
            epochs = [int(r["epochs"]) for r in group if "epochs" in r]
            row["epochs"], row["epochs_max"] = (min(epochs), max(epochs)) if epochs else (math.nan, math.nan)
            for key in ("test_acc", "best_test_acc"):
                row[f"{key}_mean"], row[f"{key}_std"] = _mean_std([float(r[key]) for r in group])
            no_paper = (math.nan, math.nan)
            row["paper_acc_mean"], row["paper_acc_std"] = (
                REPORTED.get(dataset, no_paper) if method == "learned_delay" else no_paper
            )
            rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def fmt_mean_std(mean: float, std: float) -> str:
    """'mean ± std' to two decimals; the mean alone without a std; '—' without a mean."""
    if pd.isna(mean):
        return DASH
    return f"{mean:.2f}" if pd.isna(std) else f"{mean:.2f} ± {std:.2f}"


def _paper(mean: float, std: float) -> str:
    if pd.isna(mean):
        return DASH
    return f"~{mean:g}" if pd.isna(std) else fmt_mean_std(mean, std)  # no std given: an approximate number


def _epochs(fewest: float, most: float) -> str:
    """Epochs trained: '12', or '8–12' when seeds differ (one was cut short), '—' when not recorded."""
    if pd.isna(fewest):
        return DASH
    return f"{int(fewest)}" if fewest == most else f"{int(fewest)}–{int(most)}"


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The readable view: the paper's dataset and method names, 'mean ± std', '—' where nothing applies."""
    return pd.DataFrame(
        {
            "dataset": [DATASETS.get(d, d) for d in table["dataset"]],
            "method": [METHODS[m] for m in table["method"]],
            "#params": [f"{n:,}" for n in table["n_params"]],
            "test %": [fmt_mean_std(m, s) for m, s in zip(table["test_acc_mean"], table["test_acc_std"])],
            "best-epoch test %": [
                fmt_mean_std(m, s) for m, s in zip(table["best_test_acc_mean"], table["best_test_acc_std"])
            ],
            "seeds": [str(n) for n in table["seeds"]],
            "epochs": [_epochs(lo, hi) for lo, hi in zip(table["epochs"], table["epochs_max"])],
            "paper %": [_paper(m, s) for m, s in zip(table["paper_acc_mean"], table["paper_acc_std"])],
        }
    )
