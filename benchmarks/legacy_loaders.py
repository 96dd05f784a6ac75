"""Frozen copies of paper A's former loaders: the baseline of bench_loaders and the reference of the
equality tests (tests/test_loaders_fast.py).

Images: torchvision's ImageFolder with PIL transforms ending in ToTensor (+ Normalize), so
workers sent float32 (3, H, W). ES-ImageNet: event lists scattered into a float32 canvas,
then cropped, so workers sent float32 (2, 8, crop, crop).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets, transforms

from pipeline.data.batching import Skipped
from pipeline.data.device_transforms import IMAGENET_MEAN, IMAGENET_STD
from pipeline.data.es_imagenet import N_STEPS, ESImageNet, Geometry


def legacy_image_transform(
    image_size: int, train: bool, augment: bool, normalize: bool
) -> transforms.Compose:
    steps: list = []
    if augment and train:
        steps += [transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip()]
    elif augment:
        steps += [transforms.Resize(int(round(image_size * 256 / 224))), transforms.CenterCrop(image_size)]
    else:
        steps += [transforms.Resize((image_size, image_size))]
    steps.append(transforms.ToTensor())
    if normalize:
        steps.append(transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return transforms.Compose(steps)


def legacy_imagefolder_split(
    root: Path, split: str, image_size: int, augment: bool, normalize: bool
) -> datasets.ImageFolder:
    return datasets.ImageFolder(
        str(Path(root) / split),
        transform=legacy_image_transform(image_size, split == "train", augment, normalize),
    )


def legacy_events_to_frames(pos: np.ndarray, neg: np.ndarray, a: int, b: int, geom: Geometry) -> torch.Tensor:
    frame = torch.zeros(2, N_STEPS, geom.canvas, geom.canvas)
    off_r, off_c = geom.offset(a, b)
    for pol, ev in enumerate((pos, neg)):
        if len(ev):
            ev = torch.as_tensor(ev.astype(np.int64))
            frame[pol, ev[:, 2] - 1, ev[:, 0] + off_r, ev[:, 1] + off_c] = 1.0
    m = geom.margin
    return frame[:, :, m : geom.canvas - m, m : geom.canvas - m]


class LegacyESImageNet(ESImageNet):
    """The same index; items as the former loader made them (float32 frames)."""

    def __getitem__(self, index: int):
        rel, label, a, b = self.items[index]
        path = self.path_of(rel)
        try:
            with np.load(path) as z:
                pos, neg = z["pos"], z["neg"]
            if pos.ndim != 2 or pos.shape[1] != 3 or neg.ndim != 2 or neg.shape[1] != 3:
                raise ValueError(f"pos/neg must be [N, 3], got {pos.shape} / {neg.shape}")
            return legacy_events_to_frames(pos, neg, a, b, self.geom), label
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, IndexError) as err:
            return Skipped(str(path), f"{type(err).__name__}: {err}")
