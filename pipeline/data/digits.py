"""The embedded static dataset: scikit-learn's digits (real 8x8 scans) as an ImageFolder.

Written as PNG files in the ImageNet layout (train/<class>/*.png, val/<class>/*.png)
so the very same ImageFolder loader and ES-ImageNet converter that handle real
ImageNet read it; no download needed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_digits_imagefolder(out: Path, val_fraction: float, seed: int) -> dict[str, int]:
    """Write a seeded, class-stratified train/val split of the digits; returns sample counts."""
    from sklearn.datasets import load_digits

    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    digits = load_digits()
    # pixel values are 0..16 in the original scans; map to the full 8-bit range
    images = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "val": 0}
    for label in np.unique(digits.target):
        idx = np.flatnonzero(digits.target == label)
        rng.shuffle(idx)
        n_val = max(1, int(round(val_fraction * len(idx))))
        for split, chosen in (("val", idx[:n_val]), ("train", idx[n_val:])):
            folder = Path(out) / split / str(int(label))
            folder.mkdir(parents=True, exist_ok=True)
            for i in sorted(chosen):
                Image.fromarray(images[i], mode="L").save(folder / f"digit_{i:04d}.png")
                counts[split] += 1
    return counts
