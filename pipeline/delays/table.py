"""The delay table: our accuracies per dataset and variant beside the paper's.

Two numbers per variant, clearly labelled:
- `test (selected on valid)`: test accuracy of the epoch with the best
  validation accuracy (the clean protocol);
- `best test epoch`: the best test accuracy over epochs, which is what the
  reference reports on SHD (it has no validation split).
Beside them, `paper`: the paper's reported accuracy with learned delays.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd

from pipeline.models.delay_snn import VARIANTS

# Paper's reported test accuracy (%) for learned delays; datasets not listed get "—".
REPORTED: dict[str, str] = {"shd": "95.07 ± 0.24", "ssc": "80.69 ± 0.21", "gsc": "~95.3"}
DASH = "—"
# Column labels, matching the notes of the report stage.
METRICS = {"test_acc": "test (selected on valid)", "best_test_acc": "best test epoch"}
PAPER_COLUMN = "paper"  # the paper's reported accuracy for learned delays


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def fmt_mean_std(values: list[float]) -> str:
    """'mean ± std (n=k)' with population-sample std (ddof=1); '—' for no values."""
    if not values:
        return DASH
    mean, std = _mean_std(values)
    return f"{mean:.2f} ± {std:.2f} (n={len(values)})"


def build_table(evals: list[dict[str, Any]], reported: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per dataset from evaluate-stage JSONs (keys dataset, variant, seed, test_acc,
    best_test_acc, n_params). String columns 'mean ± std' for reading, numeric
    `<variant> <metric> mean/std` columns for CSV, parameter counts, and the paper's number."""
    reported = REPORTED if reported is None else reported
    by: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for e in evals:
        if e["variant"] not in VARIANTS:
            raise ValueError(f"evaluation of unknown variant '{e['variant']}' (allowed: {', '.join(VARIANTS)})")
        by[e["dataset"]][e["variant"]].append(e)
    rows = []
    for dataset in sorted(by):
        row: dict[str, Any] = {"dataset": dataset}
        for variant in VARIANTS:
            runs = sorted(by[dataset].get(variant, []), key=lambda r: r["seed"])
            for key, label in METRICS.items():
                vals = [float(r[key]) for r in runs]
                row[f"{variant} {label}"] = fmt_mean_std(vals)
                mean, std = _mean_std(vals) if vals else (np.nan, np.nan)
                row[f"{variant} {key} mean"] = mean
                row[f"{variant} {key} std"] = std
            row[f"{variant} seeds"] = len(runs)
            row[f"{variant} params"] = int(runs[0]["n_params"]) if runs else np.nan
        row[PAPER_COLUMN] = reported.get(dataset, DASH)
        rows.append(row)
    return pd.DataFrame(rows)


def display_columns(table: pd.DataFrame) -> list[str]:
    """The human-readable subset (no numeric mean/std columns) for a markdown table."""
    return [c for c in table.columns if not c.endswith((" mean", " std"))]
