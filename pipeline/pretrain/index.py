"""pretrain-index: check a paper-A dataset's on-disk layout before any training
and record where it is, its classes and split sizes.

It is the DAG node both drivers hang a dataset on (dvc.yaml cannot look a
dataset's root up by name inside a foreach), and it fails early with a message
naming the missing file instead of deep inside a training stage.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.io import write_json
from pipeline.pretrain.stages import _dataset_cfg, _split


def index(params: dict[str, Any], *, dataset: str, out: Path) -> None:
    """Write data/prepared/pretrain/<dataset>.json: root, format, classes, split sizes."""
    cfg = _dataset_cfg(params, dataset)
    root = Path(cfg["root"])
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset root of pretrain.datasets.{dataset} does not exist")
    splits: dict[str, int] = {}
    classes: list[str] | None = None
    for split in ("train", "val"):
        ds = _split(cfg, root, split)
        if len(ds) == 0:
            raise ValueError(f"{root}: split '{split}' of {dataset} is empty")
        splits[split] = len(ds)
        classes = classes or [str(c) for c in getattr(ds, "classes", [])] or None
    n_classes = len(classes) if classes else None
    if n_classes is not None and n_classes != cfg["num_classes"]:
        raise ValueError(f"{root}: found {n_classes} classes but pretrain.datasets.{dataset}.num_classes is {cfg['num_classes']}")
    write_json(out, {"dataset": dataset, "format": cfg["format"], "root": str(root),
                     "classes": classes, "splits": splits})
