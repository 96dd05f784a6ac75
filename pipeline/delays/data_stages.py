"""Data stages of paper B: delays-synth and delays-prepare (no model code).

Kept apart from the training stages so that their declared code dependencies
(dvc.yaml deps, Snakemake inputs) do not include the model and the training
loop: changing those never re-prepares data. `pipeline.delays.stages`
re-exports both functions, which is what pipeline/cli.py registers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io import atomic_dir, write_json
from pipeline.params import ParamsError

SPLITS = ("train", "valid", "test")


def delays_params(params: dict[str, Any]) -> dict[str, Any]:
    """params['delays'], or a one-line error if the block is missing."""
    if "delays" not in params:
        raise ParamsError("params has no 'delays' block (paper B settings)")
    return params["delays"]


def set_config(params: dict[str, Any], dataset: str) -> dict[str, Any]:
    """delays.sets[dataset], or a one-line error listing the defined sets."""
    sets = delays_params(params).get("sets", {})
    if dataset not in sets:
        raise ParamsError(f"unknown dataset '{dataset}' (allowed: {', '.join(sets)}; defined under delays.sets)")
    return sets[dataset]


def _split_source(fmt: str, split: str, cfg: dict[str, Any]) -> str:
    """Where a split's samples come from, for error messages."""
    if fmt == "gsc":
        from pipeline.data.gsc import LIST_FILES

        return LIST_FILES.get(split, "the word folders (wav files in neither list)")
    from pipeline.data.shd import SPLIT_FILES

    files = SPLIT_FILES[fmt]
    if split in files:
        return files[split]
    return f"valid_fraction {cfg['valid_fraction']} of {files['train']}"


def synth(params: dict, *, out: Path) -> None:
    """Write the embedded timing-coded dataset (out/shd_train.h5, out/shd_test.h5) in SHD's layout."""
    from pipeline.data.synth_shd import write_synth

    cfg = dict(delays_params(params).get("synth", {}))
    with atomic_dir(out) as tmp:
        used = write_synth(tmp, cfg)
        write_json(tmp / "synth_config.json", used)


def prepare(params: dict, *, dataset: str, out: Path) -> None:
    """Bin/featurise a dataset into out/{train,valid,test}.pt (ragged frames, lengths, labels, meta)."""
    from pipeline.data import prepared

    cfg = set_config(params, dataset)
    fmt, root = cfg["format"], Path(cfg["root"])
    meta: dict[str, Any] = {"dataset": dataset, "format": fmt, "root": str(root), "time_step_ms": cfg["time_step_ms"]}
    raw: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    if fmt in ("shd", "ssc"):
        from pipeline.data import shd

        files = shd.SPLIT_FILES[fmt]
        for split in files:
            raw[split] = shd.load_frames(shd.split_path(root, fmt, split), cfg["time_step_ms"],
                                         n_units=cfg["n_channels"], pool=cfg["pool"])
        meta.update(pool=cfg["pool"], n_units=cfg["n_channels"])
    elif fmt == "gsc":
        from pipeline.data import gsc

        if cfg["time_step_ms"] != 10 or cfg["n_channels"] != gsc.N_MELS or cfg["pool"] != 1:
            raise ParamsError(f"delays.sets.{dataset}: gsc features are fixed at 10 ms steps and "
                              f"{gsc.N_MELS} mel bands: set time_step_ms 10, n_channels {gsc.N_MELS}, pool 1")
        for split in SPLITS:
            frames, lengths, labels, classes = gsc.load_split(root, split)
            raw[split] = (frames, lengths, labels)
        meta["classes"] = classes
    else:
        raise ParamsError(f"unknown format '{fmt}' (allowed: shd, ssc, gsc)")
    if "valid" not in raw:  # SHD: hold out a seeded, stratified part of train for model selection
        if not cfg["valid_fraction"] > 0:
            raise ParamsError(f"delays.sets.{dataset}.valid_fraction must be > 0: format {fmt} has no validation split")
        frames, lengths, labels = raw["train"]
        whole = prepared.make_split(frames, lengths, labels)
        tr_idx, va_idx = prepared.holdout(labels, cfg["valid_fraction"], cfg.get("valid_seed", 0))
        parts = {"train": whole.subset(tr_idx), "valid": whole.subset(va_idx)}
        meta["valid_from_train"] = {"fraction": cfg["valid_fraction"], "seed": cfg.get("valid_seed", 0)}
    else:
        parts = {s: prepared.make_split(*raw[s]) for s in ("train", "valid")}
    parts["test"] = prepared.make_split(*raw["test"])
    for split, part in parts.items():  # training selects on valid and reports test: each needs samples
        if not len(part):
            raise ValueError(f"{root}: the {split} split of dataset '{dataset}' is empty "
                             f"({_split_source(fmt, split, cfg)} holds no samples)")
    # gsc: one class per word folder; shd/ssc: labels are 0..n-1
    meta["n_classes"] = len(meta["classes"]) if "classes" in meta else int(max(int(p.labels.max()) for p in parts.values() if len(p)) + 1)
    with atomic_dir(out) as tmp:
        for split, part in parts.items():
            part.meta = {**meta, "split": split, "n_samples": len(part)}
            prepared.save_split(tmp / f"{split}.pt", part)
