"""Paper A's datasets by format: open a split, find a root, build the loaders.

Formats: `imagefolder` (ImageNet layout), `es_imagenet` (label files + npz event
lists), `ucf101_frames` (RGB frame folders, one per video) and `es_ucf101`
(one npz of events per video). Event formats have 2 input channels
(polarities), the others 3 (RGB); the two UCF101 formats are clips and go to
the video twin (pipeline/pretrain/models.py).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from pipeline.checks import check_split
from pipeline.params.configs import PretrainDataset
from pipeline.data.batching import collate_skipping, materialize
from pipeline.data.sampling import Dist, ShardedBatchSampler
from pipeline.io import read_json

EVENT_FORMATS = ("es_imagenet", "es_ucf101")
VIDEO_FORMATS = ("ucf101_frames", "es_ucf101")
STATIC_FORMATS = ("imagefolder", "ucf101_frames")  # what an ANN can be pretrained on
SPLITS = ("train", "val")


def in_channels(ds: PretrainDataset) -> int:
    """RGB images and frames have 3 input channels, event data 2 polarities."""
    return 2 if ds.format in EVENT_FORMATS else 3


def open_split(ds: PretrainDataset, root: Path, split: str, gpu_decode: bool = False) -> Dataset:
    """The split of a dataset read from `root` in the dataset's format. `gpu_decode`: ImageFolder
    JPEGs are left encoded for the GPU to decode when CUDA is present (training; the index must
    decode every file itself to find damaged ones)."""
    if ds.format == "imagefolder":
        from pipeline.data.images import imagefolder_split

        return imagefolder_split(root, split, ds.image_size, ds.augment, ds.normalize, gpu_decode=gpu_decode)
    if ds.format == "es_imagenet":
        from pipeline.data.es_imagenet import ESImageNet, Geometry

        return ESImageNet(root, split, Geometry(ds.long_side, ds.canvas, ds.margin))
    if ds.format == "es_ucf101":
        from pipeline.data.es_ucf101 import ESUCF101, discover_classes

        return ESUCF101(root, split, discover_classes(root))
    if ds.format == "ucf101_frames":
        from pipeline.data.ucf101_frames import UCF101Frames, discover_frame_classes

        return UCF101Frames(
            root, split, ds.n_frames, ds.height, ds.width, discover_frame_classes(root), ds.sampling or "even"
        )
    raise ValueError(f"unknown dataset format '{ds.format}'")


def resolve_root(data: Path) -> Path:
    """`data` is the dataset root directory, or its index (data/prepared/pretrain/<name>.json) naming it."""
    data = Path(data)
    if data.is_file() and data.suffix == ".json":
        index = read_json(data)
        if not isinstance(index, dict) or "root" not in index:
            raise ValueError(f"{data}: dataset index without a 'root' key")
        return Path(index["root"])
    return data


def build_loaders(
    ds: PretrainDataset,
    name: str,
    data: Path,
    batch_size: int,
    gen: torch.Generator,
    num_workers: int,
    d: Dist = Dist(),
) -> tuple[DataLoader, DataLoader, list[str], int]:
    """Train/val loaders of dataset `name` read from `data`; also the files skipped while caching and the
    number of samples of both splits.

    Batches come from a seeded permutation (`gen`), each global batch split across
    the processes of a distributed run (pipeline/run/distributed.py)."""
    root = resolve_root(data)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data root of dataset '{name}' not found")
    loaders, skipped, total = [], [], 0
    for split in SPLITS:
        dataset = open_split(
            ds, root, split, gpu_decode=not ds.in_memory
        )  # a cached dataset needs decoded items
        check_split(dataset, f"{root}: split '{split}' of dataset '{name}'", ds.num_classes)
        total += len(dataset)
        if ds.in_memory:  # samples cached as the loaders store them (uint8, packed bits): the loop converts
            dataset, bad = materialize(dataset)
            skipped += bad
        sampler = ShardedBatchSampler(len(dataset), batch_size, split == "train", gen, d)
        if ds.in_memory:
            loaders.append(DataLoader(dataset, batch_sampler=sampler))
        else:
            loaders.append(
                DataLoader(
                    dataset,
                    batch_sampler=sampler,
                    num_workers=num_workers,
                    collate_fn=collate_skipping,
                    pin_memory=torch.cuda.is_available(),
                )
            )
    return loaders[0], loaders[1], skipped, total
