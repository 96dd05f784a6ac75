"""pretrain_index: check a paper-A dataset's on-disk layout before any training
and record where it is, its classes and split sizes.

It is the DAG node both drivers hang a dataset on (dvc.yaml cannot look a
dataset's root up by name inside a foreach), and it fails early with a message
naming the missing file instead of deep inside a training stage.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from pipeline.checks import check_split
from pipeline.params.configs import PretrainDataset
from pipeline.checks import check_unreadable
from pipeline.data.batching import Skipped
from pipeline.io import write_json
from pipeline.pretrain.datasets import SPLITS, open_split
from pipeline.drivers.stage_table import IndexConfig

PROBE_CHUNK = 256  # samples a worker decodes per task
INLINE_BELOW = 4096  # smaller splits are probed in this process (a pool's start-up would dominate)
_opened: dict[tuple[str, str], Any] = {}  # a worker's open splits


def _probe(args: tuple[PretrainDataset, str, str, int, int]) -> list[str]:
    """Decode samples start..stop of a split; the unreadable ones as 'path: reason'."""
    ds, root, split, start, stop = args
    if (root, split) not in _opened:
        _opened[(root, split)] = open_split(ds, Path(root), split)
    data = _opened[(root, split)]
    return [f"{item.path}: {item.reason}" for i in range(start, stop) if isinstance(item := data[i], Skipped)]


def unreadable_samples(ds: PretrainDataset, root: Path, split: str, n: int) -> list[str]:
    """Every sample of the split decoded once, in parallel worker processes for big splits."""
    tasks = [(ds, str(root), split, start, min(start + PROBE_CHUNK, n)) for start in range(0, n, PROBE_CHUNK)]
    if n < INLINE_BELOW:
        return [bad for task in tasks for bad in _probe(task)]
    with ProcessPoolExecutor(len(os.sched_getaffinity(0))) as pool:
        return [bad for found in pool.map(_probe, tasks) for bad in found]


def index(cfg: IndexConfig, *, dataset: str, out: Path) -> None:
    """Write data/prepared/pretrain/<dataset>.json: root, format, classes, split sizes, unreadable samples
    (every sample is decoded once)."""
    ds = cfg.dataset
    root = Path(ds.root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset root of pretrain.datasets.{dataset} does not exist")
    splits: dict[str, int] = {}
    classes: dict[str, list[str] | None] = {}
    unreadable: dict[str, list[str]] = {}
    for split in SPLITS:
        data = open_split(ds, root, split)
        # not empty, labels within num_classes; class folders (ImageFolder, UCF101) number num_classes
        check_split(data, f"{root}: split '{split}' of {dataset}", ds.num_classes)
        splits[split] = len(data)
        classes[split] = [str(c) for c in data.classes] if hasattr(data, "classes") else None
        _opened[(str(root), split)] = (
            data  # the probes use it (forked workers inherit it) instead of reopening
        )
        unreadable[split] = unreadable_samples(ds, root, split, len(data))
    if classes["train"] != classes["val"]:
        # ImageFolder numbers class folders per split: different folders would silently swap labels
        raise ValueError(
            f"{root}: train/ and val/ have different class folders "
            f"(only in train: {sorted(set(classes['train']) - set(classes['val']))}, "
            f"only in val: {sorted(set(classes['val']) - set(classes['train']))})"
        )
    check_unreadable(
        unreadable["train"] + unreadable["val"],
        sum(splits.values()),
        cfg.max_skipped_fraction,
        f"dataset '{dataset}' ({root})",
    )
    write_json(
        out,
        {
            "dataset": dataset,
            "format": ds.format,
            "root": str(root),
            "classes": classes["train"],
            "splits": splits,
            "unreadable": unreadable,
        },
    )
    print(
        f"{dataset}: {ds.format} at {root}, {splits['train']} train / {splits['val']} val samples, "
        f"{len(classes['train'] or []) or ds.num_classes} classes -> {out}"
    )
