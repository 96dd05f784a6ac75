"""The report stage: every run's metrics -> benchmark tables (CSV, markdown, HTML),
plots and results/metrics.json, for exactly the runs the parameters ask for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.params.configs import to_dict
from pipeline.io import read_json, write_json
from pipeline.report.diff import row_label
from pipeline.report.render import write_table
from pipeline.drivers.stage_table import ReportConfig, stage
from pipeline.drivers.stage_spec import jobs, output_paths


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path}: expected {what}; run the pipeline (snakemake / dvc repro) first")
    return path


def load_run(live_dir: Path) -> dict[str, Any]:
    """One training run's DVCLive directory: its config, summary and history."""
    _require(live_dir, "a training run's metrics directory")
    return {
        name: read_json(_require(live_dir / f"{name}.json", f"{name}.json of a finished run"))
        for name in ("config", "metrics", "history")
    }


def table_metrics(df: pd.DataFrame, keys: list[str]) -> dict[str, dict[str, float]]:
    """Numeric columns of a table, one entry per row keyed by its key columns, for `dvc metrics diff`
    (NaN, e.g. a target never reached or the std of one seed, is left out)."""
    numeric = [
        c
        for c in df.columns
        if c not in keys and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
    ]
    return {
        row_label(row, keys): {c: round(float(row[c]), 4) for c in numeric if pd.notna(row[c])}
        for _, row in df.iterrows()
    }


def _run_params(cfg: ReportConfig) -> dict[str, Any]:
    """The run lists as a parameter mapping, enough to enumerate the jobs of every training stage."""
    return {
        "delays": {
            "datasets": cfg.delays_datasets,
            "variants": cfg.delays_variants,
            "seeds": cfg.delays_seeds,
        },
        "pretrain": {
            k: {n: to_dict(v) for n, v in getattr(cfg, k).items()} for k in ("anns", "pipelines", "baselines")
        },
    }


def delays_section(runs: dict[str, Any], tables: Path, plots: Path) -> pd.DataFrame:
    from pipeline.delays import plots as delay_plots
    from pipeline.delays.table import build_table, display_table

    eval_files = [
        _require(Path(p), "a delays evaluation JSON")
        for p in output_paths(stage("delays_evaluate"), "out", runs)
    ]
    live_dirs = [
        _require(Path(p), "a delays training run") for p in output_paths(stage("delays_train"), "live", runs)
    ]
    table = build_table([read_json(f) for f in eval_files])
    write_table(
        table,
        display_table(table),
        "Paper B: learning delays with DCLS (test accuracy %, mean ± std over seeds)",
        [
            "#params: trainable parameters (weights, delay positions with learned delays, BatchNorm).",
            "epochs: epochs each run trained (a range when seeds differ); fewer than the preset's recipe "
            "means a quick check (`max_epochs`), not final results.",
            "test %: test accuracy of the epoch with the best validation accuracy, "
            "with rounded integer delays.",
            "best-epoch test %: the best test accuracy over epochs, the number the reference code reports "
            "(SHD has no validation split).",
            "paper %: the paper's result on the real dataset with learned delays (GSC-35: approximate); "
            "synthetic is the embedded stand-in dataset, with no paper number.",
        ],
        tables / "delays",
    )
    delay_plots.plot_training_curves(live_dirs, plots / "delays_training.png")
    delay_plots.plot_delay_distributions(eval_files, plots / "delays_distribution.png")
    return table


def pretrain_section(runs: dict[str, Any], tables: Path, plots: Path) -> pd.DataFrame:
    from pipeline.pretrain.plots import plot_time_accuracy
    from pipeline.pretrain.table import ELSEWHERE, build_table, display_table

    dirs = [
        Path(p)
        for name in ("pretrain_ann", "finetune_snn", "train_snn_scratch")
        for p in output_paths(stage(name), "live", runs)
    ]
    loaded = [load_run(d) for d in dirs]
    table = build_table(loaded)
    elsewhere = (
        [
            f"{ELSEWHERE}: the ANN came from a `weights` file; its time counts only the epochs run here "
            "(ANN fine-tuning, if any, and SNN fine-tuning), not the pretraining done elsewhere, so no "
            "paper ratio is shown beside it."
        ]
        if table["init"].eq(ELSEWHERE).any()
        else []
    )
    write_table(
        table,
        display_table(table),
        "Paper A: ANN pretraining as a bridge to SNNs (validation top-1 %, wall time)",
        [
            "run: the run's name in params (pretrain.baselines, pretrain.pipelines); baseline: the scratch "
            "run a pipeline is compared with.",
            "A pretrained row's time counts the ANN pretraining plus the SNN fine-tuning.",
            *elsewhere,
            "time to scratch best: time the row needed to reach the best accuracy of its baseline.",
            "time ratio: that time / the time the scratch baseline needed for it "
            "(paper: 1/10 on ImageNet-1K, 2/5 on ES-ImageNet; journal version 1/8 and 1/2).",
            "paper top-1: the reference's ES-ImageNet numbers, "
            "shown where a row is one of the paper's settings.",
        ],
        tables / "pretrain",
    )
    plot_time_accuracy(loaded, plots / "pretrain_time_accuracy.png")
    return table


def _training_runs(runs: dict[str, Any]) -> dict[str, dict[str, Path]]:
    """Training stage -> {run name ("synth-learned_delay-s0", "pipeD"): its DVCLive folder}."""
    found: dict[str, dict[str, Path]] = {}
    for name in ("delays_train", "pretrain_ann", "finetune_snn", "train_snn_scratch"):
        st = stage(name)
        found[name] = {
            "-".join(f"s{v}" if w == "seed" else str(v) for w, v in job.items()): Path(path)
            for job, path in zip(jobs(st, runs), output_paths(st, "live", runs))
        }
    return found


def report(cfg: ReportConfig, *, metrics: Path, curves: Path, tables: Path, plots: Path) -> None:
    """Build results/tables/{delays,pretrain}.{csv,md,html}, the plots, the per-epoch curves (for
    `dvc plots diff`) and a metrics summary (for `dvc metrics diff`) from the runs the parameters
    configure."""
    from pipeline.report.compare import KEYS
    from pipeline.report.curves import write_curves

    runs = _run_params(cfg)
    delays = delays_section(runs, Path(tables), Path(plots))
    pretrain = pretrain_section(runs, Path(tables), Path(plots))
    write_curves(_training_runs(runs), Path(curves))
    write_json(
        metrics,
        {
            "delays": table_metrics(delays, KEYS["delays"]),
            "pretrain": table_metrics(pretrain, KEYS["pretrain"]),
        },
    )
    print(
        f"tables: {len(delays)} delays rows, {len(pretrain)} pretrain rows -> {tables}/{{delays,pretrain}}"
        f".{{md,html,csv}}; plots -> {plots}; curves -> {curves}; summary -> {metrics}"
    )
