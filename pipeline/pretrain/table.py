"""The pretrain table: scratch SNN vs pretrained pipelines, accuracy and training time.

Time to reach the scratch SNN's best accuracy counts pretraining: a pipeline's
clock starts with the ANN pretraining it used and continues through its SNN
fine-tuning. `time_ratio` = that time / the scratch SNN's time to its own best;
NaN (and `reached` False) when the pipeline never reaches it.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

# Paper claims: fraction of the scratch SNN's training time the pipeline needs.
PAPER_RATIO = {"pipeS": {"dataset": "ImageNet-1K", "arxiv": 1 / 10, "journal": 1 / 8},
               "pipeD": {"dataset": "ES-ImageNet", "arxiv": 2 / 5, "journal": 1 / 2}}

# ES-ImageNet top-1 (%) from the reference README (specs/pretrain.md).
PAPER_ES_IMAGENET = [
    {"model": "ResNet-18", "neuron": "LIF", "init": "scratch", "top1": 39.89},
    {"model": "ResNet-18", "neuron": "LIAF", "init": "scratch", "top1": 42.54},
    {"model": "ResNet-34", "neuron": "LIF", "init": "scratch", "top1": 43.42},
    {"model": "ResNet-34", "neuron": "LIAF", "init": "scratch", "top1": 47.47},
    {"model": "ResNet-18", "neuron": "LIF", "init": "ImageNet pretrain", "top1": 43.74},
    {"model": "ResNet-18", "neuron": "LIAF", "init": "ImageNet pretrain", "top1": 52.25},
    {"model": "ResNet-34", "neuron": "LIAF", "init": "ImageNet pretrain", "top1": 51.83},
]


def paper_results() -> pd.DataFrame:
    return pd.DataFrame(PAPER_ES_IMAGENET)


def time_to_reach(history: list[dict[str, Any]], target: float, offset: float = 0.0) -> float:
    """Cumulative seconds (plus `offset`) at the first epoch with val_acc >= target; NaN if never."""
    for row in history:
        if row["val_acc"] >= target - 1e-9:
            return offset + row["elapsed_s"]
    return math.nan


def _runs_by(runs: list[dict], role: str) -> list[dict]:
    return [r for r in runs if r["config"].get("role") == role]


def build_table(runs: list[dict]) -> pd.DataFrame:
    """One row per fine-tuning run (target dataset x pipeline), beside its scratch baseline and the paper."""
    scratch = {r["config"]["dataset"]: r for r in _runs_by(runs, "scratch")}
    anns = {r["config"]["dataset"]: r for r in _runs_by(runs, "ann_pretrain")}
    rows = []
    for ft in sorted(_runs_by(runs, "finetune"), key=lambda r: (r["config"]["dataset"], r["config"]["pipeline"])):
        cfg, pipe = ft["config"], ft["config"]["pipeline"]
        target, source = cfg["dataset"], cfg.get("source_dataset")
        ann = anns.get(source)
        ann_time = ann["metrics"]["elapsed_s"] if ann else cfg.get("pretrain_elapsed_s", math.nan)
        ann_epochs = ann["metrics"]["epochs"] if ann else cfg.get("pretrain_epochs", math.nan)
        sc = scratch.get(target)
        sc_best = sc["metrics"]["best_val_acc"] if sc else math.nan
        sc_t = time_to_reach(sc["history"], sc_best) if sc else math.nan
        pipe_t = time_to_reach(ft["history"], sc_best, offset=ann_time) if sc else math.nan
        reached = not math.isnan(pipe_t)
        paper = PAPER_RATIO.get(pipe, {})
        paper_acc = {"pipeD": (39.89, 43.74)}.get(pipe, (math.nan, math.nan))
        rows.append({
            "dataset": target, "pipeline": pipe, "source": source,
            "scratch_best_acc": sc_best,
            "scratch_epochs": sc["metrics"]["epochs"] if sc else math.nan,
            "scratch_time_s": sc["metrics"]["elapsed_s"] if sc else math.nan,
            "scratch_time_to_best_s": sc_t,
            "pretrained_best_acc": ft["metrics"]["best_val_acc"],
            "ann_epochs": ann_epochs, "ann_time_s": ann_time,
            "finetune_epochs": ft["metrics"]["epochs"], "finetune_time_s": ft["metrics"]["elapsed_s"],
            "pipeline_time_s": ann_time + ft["metrics"]["elapsed_s"],
            "pipeline_time_to_scratch_best_s": pipe_t,
            "reached_scratch_best": reached,
            "time_ratio": pipe_t / sc_t if reached and sc_t > 0 else math.nan,
            "paper_dataset": paper.get("dataset"),
            "paper_ratio_arxiv": paper.get("arxiv", math.nan),
            "paper_ratio_journal": paper.get("journal", math.nan),
            "paper_scratch_acc_r18_lif": paper_acc[0],
            "paper_pretrained_acc_r18_lif": paper_acc[1],
        })
    return pd.DataFrame(rows)
