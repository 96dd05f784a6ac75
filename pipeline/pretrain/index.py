"""pretrain_index: check a paper-A dataset's on-disk layout before any training
and record where it is, its classes and split sizes.

It is the DAG node both drivers hang a dataset on (dvc.yaml cannot look a
dataset's root up by name inside a foreach), and it fails early with a message
naming the missing file instead of deep inside a training stage.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.checks import check_split
from pipeline.io import write_json
from pipeline.pretrain.datasets import SPLITS, open_split
from pipeline.stage_table import IndexConfig


def index(cfg: IndexConfig, *, dataset: str, out: Path) -> None:
    """Write data/prepared/pretrain/<dataset>.json: root, format, classes, split sizes."""
    ds = cfg.dataset
    root = Path(ds.root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset root of pretrain.datasets.{dataset} does not exist")
    splits: dict[str, int] = {}
    classes: dict[str, list[str] | None] = {}
    for split in SPLITS:
        data = open_split(ds, root, split)
        # not empty, labels within num_classes; class folders (ImageFolder, UCF101) number num_classes
        check_split(data, f"{root}: split '{split}' of {dataset}", ds.num_classes)
        splits[split] = len(data)
        classes[split] = [str(c) for c in data.classes] if hasattr(data, "classes") else None
    if classes["train"] != classes["val"]:
        # ImageFolder numbers class folders per split: different folders would silently swap labels
        raise ValueError(f"{root}: train/ and val/ have different class folders "
                         f"(only in train: {sorted(set(classes['train']) - set(classes['val']))}, "
                         f"only in val: {sorted(set(classes['val']) - set(classes['train']))})")
    write_json(out, {"dataset": dataset, "format": ds.format, "root": str(root),
                     "classes": classes["train"], "splits": splits})
