"""Tiny paper-A datasets in the official layouts, for tests: ImageNet (ImageFolder of JPEGs),
ES-ImageNet (label files + npz event lists), UCF101 frame folders and ES-UCF101 npz clips.

Class counts are real where the loaders check them against num_classes (ImageNet 1000 class
folders, UCF101 101 actions); spatial sizes are small so that training a real architecture on
them takes seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = ("train", "val")


def write_imagenet(root: Path, n_classes: int = 1000, size: int = 12, seed: int = 0) -> Path:
    """train/<wnid>/*.JPEG and val/<wnid>/*.JPEG, one small image per class and split."""
    rng = np.random.default_rng(seed)
    for split in SPLITS:
        for c in range(n_classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (rng.random((size, size + 3, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"n{c:08d}_{split}.JPEG", format="JPEG")
    return root


def write_es_imagenet(
    root: Path, canvas: int, labels: tuple[int, ...] = (0, 999, 1, 998), seed: int = 0
) -> Path:
    """trainlabel.txt / vallabel.txt and their npz samples (keys pos, neg: uint8 [N, 3] row, col, t),
    every sample an image of resized size (canvas - 2) x (canvas - 4)."""
    rng = np.random.default_rng(seed)
    a, b = canvas - 2, canvas - 4
    for split, label_file in (("train", "trainlabel.txt"), ("val", "vallabel.txt")):
        lines = []
        for i, label in enumerate(labels):
            rel = (
                f"class{label}/class{label}_{i + 1}.npz"
                if split == "train"
                else f"ILSVRC2012_val_{i + 1:08d}.npz"
            )
            path = root / split / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            events = [
                np.stack([rng.integers(1, a, 60), rng.integers(1, b, 60), rng.integers(1, 9, 60)], 1)
                for _ in range(2)
            ]
            np.savez_compressed(path, pos=events[0].astype(np.uint8), neg=events[1].astype(np.uint8))
            lines.append(f"{rel} {label} {a} {b}\n")
        (root / label_file).write_text("".join(lines))
    return root


def _actions(n: int) -> list[str]:
    return [f"Action{i:03d}" for i in range(n)]


def write_ucf101_frames(
    root: Path, n_actions: int = 101, n_frames: int = 4, size: tuple[int, int] = (12, 16), seed: int = 0
) -> Path:
    """<split>/v_<Action>_gXX_c01/frame_NNNN.jpg: one short video per action and split (val groups first)."""
    rng = np.random.default_rng(seed)
    for group, split in ((1, "val"), (8, "train")):
        for action in _actions(n_actions):
            folder = root / split / f"v_{action}_g{group:02d}_c01"
            folder.mkdir(parents=True, exist_ok=True)
            for f in range(1, n_frames + 1):
                pixels = (rng.random((*size, 3)) * 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"frame_{f:04d}.jpg", format="JPEG")
    return root


def write_es_ucf101(
    root: Path, n_actions: int = 101, steps: int = 4, size: tuple[int, int] = (12, 16), seed: int = 0
) -> Path:
    """<split>/v_<Action>_gXX_c01.npz with key arr_0, uint8 (2, steps, H, W) events (the real files are
    (2, 30, 256, 342))."""
    rng = np.random.default_rng(seed)
    for group, split in ((1, "val"), (8, "train")):
        (root / split).mkdir(parents=True, exist_ok=True)
        for action in _actions(n_actions):
            events = (rng.random((2, steps, *size)) < 0.075).astype(np.uint8)
            np.savez_compressed(root / split / f"v_{action}_g{group:02d}_c01.npz", events)
    return root
