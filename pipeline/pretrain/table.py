"""The pretrain table: every SNN run of paper A, scratch baselines and pretrained pipelines, with the
paper's numbers.

One row per run: dataset, run name, model, neuron, initialisation, best
validation top-1, epochs, training time, the scratch baseline it is compared
with. A pipeline's clock starts with the ANN pretraining it used and continues
through its SNN fine-tuning; its row also gives the time it needed to reach its
baseline's best accuracy and the ratio of that time to the time the baseline
needed (the paper's claim: 1/10 on ImageNet-1K, 2/5 on ES-ImageNet). Paper
numbers appear where a row is one of the paper's settings (real dataset, model,
neuron, initialisation).

An ANN run with a `weights` file was "pretrained elsewhere": its clock holds
only what ran here (0 s for an import, `ann: {epochs: 0}`; the ANN epochs that
fine-tuned the file otherwise), so its time ratio is not the paper's, which
counts the whole ANN pretraining: no paper ratio is shown beside it.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

ARCH_NAMES = {"resnet18": "ResNet-18", "resnet34": "ResNet-34", "tiny": "tiny ResNet"}
# Real datasets by (format, classes): the embedded stand-ins have other class counts and get no paper numbers.
PAPER_DATASETS = {
    ("imagefolder", 1000): "ImageNet-1K",
    ("es_imagenet", 1000): "ES-ImageNet",
    ("es_ucf101", 101): "ES-UCF101",
}
# ES-ImageNet top-1 (%) from the reference README: (model, neuron, init) -> top-1.
PAPER_TOP1 = {
    ("ES-ImageNet", "ResNet-18", "LIF", "scratch"): 39.89,
    ("ES-ImageNet", "ResNet-18", "LIAF", "scratch"): 42.54,
    ("ES-ImageNet", "ResNet-34", "LIF", "scratch"): 43.42,
    ("ES-ImageNet", "ResNet-34", "LIAF", "scratch"): 47.47,
    ("ES-ImageNet", "ResNet-18", "LIF", "pretrained"): 43.74,
    ("ES-ImageNet", "ResNet-18", "LIAF", "pretrained"): 52.25,
    ("ES-ImageNet", "ResNet-34", "LIAF", "pretrained"): 51.83,
}
# The paper's time ratio (pipeline time to the scratch SNN's accuracy / scratch time): arXiv and journal
# versions.
PAPER_RATIO = {"ImageNet-1K": "1/10 (journal 1/8)", "ES-ImageNet": "2/5 (journal 1/2)"}
DASH = "—"
ELSEWHERE = "pretrained elsewhere"


def first_reached(history: list[dict[str, Any]], target: float) -> dict[str, Any] | None:
    """The first epoch's row with val_acc >= target; None if never."""
    return next((row for row in history if row["val_acc"] >= target - 1e-9), None)


def time_to_reach(history: list[dict[str, Any]], target: float, offset: float = 0.0) -> float:
    """Cumulative seconds (plus `offset`) at the first epoch with val_acc >= target; NaN if never."""
    row = first_reached(history, target)
    return math.nan if row is None else offset + row["elapsed_s"]


def runs_by_role(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{role: {run name: run}} for the three roles of paper A's runs."""
    by_role: dict[str, dict[str, dict[str, Any]]] = {
        "pretrain_ann": {},
        "finetune_snn": {},
        "train_snn_scratch": {},
    }
    for run in runs:
        by_role[run["config"]["role"]][run["config"]["run"]] = run
    return by_role


def _neuron(snn: dict[str, Any]) -> str:
    name = str(snn.get("neuron", "lif")).upper()
    return name + (" (learned decay)" if snn.get("learnable_decay") else "")


def _describe(run: dict[str, Any]) -> dict[str, Any]:
    cfg = run["config"]
    model, data = cfg["model"], cfg["dataset_config"]
    return {
        "dataset": cfg["dataset"],
        "model": ARCH_NAMES.get(model["arch"], model["arch"])
        + (" + recurrent decoder" if model.get("decoder_hidden") else ""),
        "neuron": _neuron(model),
        "paper_dataset": PAPER_DATASETS.get((data["format"], data["num_classes"])),
    }


def build_table(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows of the table from the runs' DVCLive directories (config, metrics, history per run)."""
    by_role = runs_by_role(runs)
    rows: list[dict[str, Any]] = []
    for name, sc in sorted(by_role["train_snn_scratch"].items()):
        best = sc["metrics"]["best_val_acc"]
        rows.append(
            {
                **_describe(sc),
                "run": name,
                "init": "scratch",
                "top1": best,
                "skipped": sc["metrics"].get("skipped_files", 0),
                "epochs": str(sc["metrics"]["epochs"]),
                "time_s": sc["metrics"]["elapsed_s"],
                "time_to_target_s": time_to_reach(sc["history"], best),
                "time_ratio": math.nan,
            }
        )
    for name, ft in sorted(by_role["finetune_snn"].items()):
        cfg = ft["config"]
        ann = by_role["pretrain_ann"].get(cfg.get("ann_run"))
        ann_time = ann["metrics"]["elapsed_s"] if ann else cfg.get("pretrain_elapsed_s", math.nan)
        ann_epochs = ann["metrics"]["epochs"] if ann else cfg.get("pretrain_epochs", "?")
        weights = ann["config"].get("weights") if ann else None  # the ANN run's `weights` file, if any
        base = by_role["train_snn_scratch"].get(cfg.get("baseline") or "")
        target = base["metrics"]["best_val_acc"] if base else math.nan
        reach = time_to_reach(ft["history"], target, offset=ann_time) if base else math.nan
        base_reach = time_to_reach(base["history"], target) if base else math.nan
        init = ELSEWHERE if weights else f"pretrained ({cfg.get('source_dataset')} ANN)"
        rows.append(
            {
                **_describe(ft),
                "run": name,
                "init": init,
                "top1": ft["metrics"]["best_val_acc"],
                "skipped": ft["metrics"].get("skipped_files", 0),
                "epochs": f"{ann_epochs} ANN + {ft['metrics']['epochs']} SNN",
                "time_s": ann_time + ft["metrics"]["elapsed_s"],
                "time_to_target_s": reach,
                "time_ratio": reach / base_reach if base_reach and not math.isnan(reach) else math.nan,
                "baseline": cfg.get("baseline"),
            }
        )
    for row in rows:
        init = "scratch" if row["init"] == "scratch" else "pretrained"
        key = (
            row["paper_dataset"],
            row["model"],
            row["neuron"].split(" ")[0],
            init,
        )  # LIF, LIAF (decay learned or not)
        row["paper_top1"] = PAPER_TOP1.get(key, math.nan)
        # the paper's ratio counts its own ANN pretraining: not comparable with an ANN pretrained elsewhere
        comparable = init == "pretrained" and row["init"] != ELSEWHERE
        row["paper_ratio"] = PAPER_RATIO.get(row["paper_dataset"] or "", DASH) if comparable else DASH
    columns = [
        "dataset",
        "run",
        "model",
        "neuron",
        "init",
        "top1",
        "epochs",
        "time_s",
        "time_to_target_s",
        "time_ratio",
        "paper_dataset",
        "paper_top1",
        "paper_ratio",
        "baseline",
        "skipped",
    ]
    return pd.DataFrame(rows, columns=columns)


# Column labels of the markdown table (the CSV keeps the machine-readable names).
LABELS = {
    "dataset": "dataset",
    "run": "run",
    "model": "model",
    "neuron": "neuron",
    "init": "initialisation",
    "top1": "top-1 %",
    "epochs": "epochs",
    "time_s": "training time (s)",
    "baseline": "baseline",
    "time_to_target_s": "time to scratch best (s)",
    "time_ratio": "time ratio",
    "paper_top1": "paper top-1 %",
    "paper_ratio": "paper ratio",
}


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The readable view: labelled columns, '—' for what does not apply, rounded numbers."""
    out = table[list(LABELS)].rename(columns=LABELS).copy()
    out["baseline"] = [b if isinstance(b, str) and b else DASH for b in out["baseline"]]
    for col in ("top-1 %", "paper top-1 %"):
        out[col] = [DASH if pd.isna(v) else f"{v:.2f}" for v in out[col]]
    for col in ("training time (s)", "time to scratch best (s)"):
        out[col] = [DASH if pd.isna(v) else f"{v:,.1f}" for v in out[col]]
    reached = table["init"].eq("scratch") | table["time_to_target_s"].notna()
    out["time ratio"] = [
        DASH if init == "scratch" else ("not reached" if not ok else f"{v:.2f}")
        for init, ok, v in zip(table["init"], reached, table["time_ratio"])
    ]
    if table["skipped"].fillna(0).astype(int).any():  # unreadable samples were skipped: say how many, per run
        out["unreadable samples"] = table["skipped"].fillna(0).astype(int)
    return out
