"""Training stages of paper B: delays_train and delays_evaluate.

Each is `fn(cfg, *, ...)`; `cfg` holds the parameter keys the stage table
declares for it (pipeline/drivers/stage_table.py). The data stages live in
pipeline/delays/data_stages.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.checks import check_classes, load_checkpoint
from pipeline.delays.data_stages import SPLITS
from pipeline.io import read_json, write_json
from pipeline.params.load import ParamsError
from pipeline.drivers.stage_table import DelaysEvaluateConfig, DelaysTrainConfig


def _check_variant(variant: str) -> None:
    from pipeline.models.delay_snn import VARIANTS

    if variant not in VARIANTS:
        raise ParamsError(f"unknown variant '{variant}' (allowed: {', '.join(VARIANTS)})")


def _load_splits(data: Path, dataset: str) -> dict[str, Any]:
    from pipeline.data.prepared import check_splits, load_split

    splits = {s: load_split(Path(data) / s) for s in SPLITS}
    check_splits(splits, dataset, data)
    return splits


def train(
    cfg: DelaysTrainConfig, *, dataset: str, variant: str, seed: int, data: Path, ckpt: Path, live: Path
) -> None:
    """Train one (dataset, variant, seed): ckpt/{init,best,last}.pt and the DVCLive dir `live`."""
    from pipeline.delays.train import fit_delays

    _check_variant(variant)
    splits = _load_splits(data, dataset)
    fit_delays(
        splits,
        cfg,
        variant=variant,
        seed=seed,
        ckpt_dir=Path(ckpt),
        live_dir=Path(live),
        name=f"delays_train {dataset}/{variant}/s{seed}",
        run_info={"dataset": dataset},
        inputs=(Path(data),),
    )


CONT_BINS_PER_STEP = 4  # continuous delays get finer bins than integer ones, else both histograms coincide


def _edges(kernel: int, rounded: bool) -> np.ndarray:
    """Histogram edges over delays 0..K-1 steps: one bin per integer, or 1/4-step bins for continuous
    values."""
    step = 1.0 if rounded else 1.0 / CONT_BINS_PER_STEP
    return np.arange(-0.5, kernel - 0.5 + step / 2, step)


def _histograms(model: Any, kernel: int, rounded: bool) -> list[list[int]]:
    edges = _edges(kernel, rounded)
    return [
        np.histogram(d.delays(rounded), bins=edges)[0].tolist() for d in model.delay_layers() if d.has_delays
    ]


def evaluate(
    cfg: DelaysEvaluateConfig,
    *,
    dataset: str,
    variant: str,
    seed: int,
    data: Path,
    ckpt: Path,
    live: Path,
    out: Path,
) -> None:
    """Evaluate ckpt/best.pt (selected on valid) with rounded delays; write the result JSON `out`."""
    from pipeline.delays.train import evaluate_rounded
    from pipeline.models.delay_snn import DelaySNN, count_trainable
    from pipeline.run.runtime import pick_device

    _check_variant(variant)
    device = pick_device(cfg.runtime.device)
    torch.set_flush_denormal(True)  # as in training: denormals slow CPU convolutions
    splits = _load_splits(data, dataset)
    best, init = (load_checkpoint(Path(ckpt) / f"{name}.pt", "delays_train") for name in ("best", "init"))
    if best["config"]["variant"] != variant:
        raise ValueError(f"{ckpt}/best.pt holds variant {best['config']['variant']}, expected {variant}")
    check_classes(
        best["config"]["n_out"],
        splits["test"].meta["n_classes"],
        f"{ckpt}/best.pt",
        f"the classes of dataset '{dataset}' in {data}",
    )
    if best["config"]["n_in"] != splits["test"].n_channels:
        raise ValueError(
            f"{ckpt}/best.pt takes {best['config']['n_in']} input channels, "
            f"{data} has {splits['test'].n_channels}"
        )
    models = {}
    for name, state in (("init", init), ("end", best)):
        m = DelaySNN.from_config(state["config"])
        m.load_state_dict(state["state_dict"])
        models[name] = m.to(device)
    bs = cfg.eval_batch_size
    t0 = time.perf_counter()
    test_acc, test_loss = evaluate_rounded(models["end"], splits["test"], bs, device)
    valid_acc, _ = evaluate_rounded(models["end"], splits["valid"], bs, device)
    history = read_json(Path(live) / "history.json")
    best_row = max(history, key=lambda r: (r["test_acc"], -r["epoch"]))
    kernel = int(best["config"]["kernel"])
    result = {
        "dataset": dataset,
        "variant": variant,
        "seed": seed,
        "test_acc": round(test_acc, 4),
        "test_loss": round(test_loss, 6),
        "valid_acc": round(valid_acc, 4),
        "selected_epoch": int(best["epoch"]),
        "best_test_acc": round(float(best_row["test_acc"]), 4),
        "best_test_epoch": int(best_row["epoch"]),
        "epochs": len(history),
        "n_params": count_trainable(models["end"]),
        "train_elapsed_s": float(history[-1]["elapsed_s"]) if history else 0.0,
        "eval_s": round(time.perf_counter() - t0, 3),
        "kernel": kernel,
        "time_step_ms": splits["test"].meta["time_step_ms"],
        "delays": {
            "unit": "steps",
            "layers": [f"hidden {i + 1}" for i in range(len(best["config"]["hidden"]))] + ["output"]
            if variant != "no_delay"
            else [],
            "continuous_edges": _edges(kernel, rounded=False).tolist(),
            "rounded_edges": _edges(kernel, rounded=True).tolist(),
            # init, end: continuous positions (fixed_delay: already integers); rounded: what evaluation uses
            "init": _histograms(models["init"], kernel, rounded=False),
            "end": _histograms(models["end"], kernel, rounded=False),
            "rounded": _histograms(models["end"], kernel, rounded=True),
        },
    }
    write_json(out, result)
    print(
        f"{dataset}/{variant}/s{seed}: test {test_acc:.2f} %, valid {valid_acc:.2f} % with rounded "
        f"delays (epoch {result['selected_epoch']} of {result['epochs']}) -> {out}"
    )
