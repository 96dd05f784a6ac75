"""The report stage: every run's metrics -> benchmark tables (markdown + CSV)
and plots, for the runs params.yaml asks for."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import paths
from pipeline.io import atomic_path, read_json, write_json, write_text


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path}: expected {what}; run the pipeline (snakemake / dvc repro) first")
    return path


def write_table(df: pd.DataFrame, title: str, notes: list[str], md_path: Path, csv_path: Path,
                md_columns: list[str] | None = None) -> None:
    """Write `df` as CSV (every column) and as a markdown table (the readable
    `md_columns`) with a title and notes."""
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    shown = df[md_columns] if md_columns is not None and len(df) else df
    body = shown.to_markdown(index=False, floatfmt=".2f") if len(df) else "_No runs configured in params.yaml._"
    lines = [f"# {title}", "", body, ""]
    lines += [f"- {n}" for n in notes]
    write_text(md_path, "\n".join(lines) + "\n")


def load_run(live_dir: Path) -> dict[str, Any]:
    """One training run's DVCLive directory: its config, summary and history."""
    _require(live_dir, "a training run's metrics directory")
    return {name: read_json(_require(live_dir / f"{name}.json", f"{name}.json of a finished run"))
            for name in ("config", "metrics", "history")}


def table_metrics(df: pd.DataFrame, keys: list[str]) -> dict[str, dict[str, float]]:
    """Numeric columns of a table, one entry per row keyed by its key columns,
    for `dvc metrics diff` (NaN, e.g. a target never reached, is left out)."""
    out: dict[str, dict[str, float]] = {}
    for _, row in df.iterrows():
        name = "/".join(str(row[k]) for k in keys if k in df.columns)
        out[name] = {c: round(float(v), 4) for c, v in row.items()
                     if c not in keys and isinstance(v, (int, float)) and not isinstance(v, bool) and pd.notna(v)}
    return out


def delays_section(params: dict[str, Any], tables: Path, plots: Path) -> pd.DataFrame:
    from pipeline.delays import plots as delay_plots
    from pipeline.delays.table import build_table, display_columns

    runs = list(paths.delays_runs(params))
    eval_files = [_require(paths.delays_eval(*r), "a delays evaluation JSON") for r in runs]
    live_dirs = [_require(paths.delays_live(*r), "a delays training run") for r in runs]
    table = build_table([read_json(f) for f in eval_files])
    write_table(
        table,
        "Paper B: learning delays with DCLS (test accuracy %, mean ± std over seeds)",
        [
            "'test (selected on valid)': test accuracy of the epoch with the best validation accuracy (rounded integer delays).",
            "'best test epoch': the reference code's number (best test accuracy over epochs), labelled as such.",
            "'paper': the accuracy the paper reports on the real dataset; the embedded synthetic set has none.",
        ],
        tables / "delays.md",
        tables / "delays.csv",
        md_columns=display_columns(table) if len(table) else None,
    )
    delay_plots.plot_training_curves(live_dirs, plots / "delays_training.png")
    delay_plots.plot_delay_distributions(eval_files, plots / "delays_distribution.png")
    return table


def pretrain_section(params: dict[str, Any], tables: Path, plots: Path) -> pd.DataFrame:
    from pipeline.pretrain.plots import plot_time_accuracy
    from pipeline.pretrain.table import build_table

    runs = [load_run(d) for d in paths.pretrain_live_dirs(params)]
    table = build_table(runs)
    write_table(
        table,
        "Paper A: ANN pretraining as a bridge to SNNs (validation accuracy %, wall time s)",
        [
            "Pipeline time counts the ANN pretraining plus the SNN fine-tuning.",
            "'time ratio': time the pipeline needed to reach the scratch SNN's best accuracy / time the scratch SNN needed for it.",
            "Paper claim: 1/10 of the time on ImageNet-1K, 2/5 on ES-ImageNet (journal version: 1/8 and 1/2).",
        ],
        tables / "pretrain.md",
        tables / "pretrain.csv",
    )
    plot_time_accuracy(runs, plots / "pretrain_time_accuracy.png")
    return table


def report(params: dict[str, Any], *, tables: Path, plots: Path, metrics: Path) -> None:
    """Build results/tables/{delays,pretrain}.{md,csv}, the plots and a metrics
    summary (for `dvc metrics diff`) from the runs params.yaml configures."""
    from pipeline.report.compare import KEYS

    delays = delays_section(params, tables, plots)
    pretrain = pretrain_section(params, tables, plots)
    write_json(metrics, {"delays": table_metrics(delays, KEYS["delays"]),
                         "pretrain": table_metrics(pretrain, KEYS["pretrain"])})
