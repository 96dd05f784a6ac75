"""ES-ImageNet: the conversion from images and the loader of its on-disk format.

Conversion (ES-ImageNet's own, "threshold 0.18" version): nearest resize so the
longer side is `long_side`, max over RGB, move the image along a fixed path of
9 one-pixel offsets and turn the differences of consecutive positions into
events (> +threshold positive, < -threshold negative): 8 steps. Sizes are
parameters so the small embedded digits can use a small canvas; the defaults
are the real dataset's (254 / 256 / margin 16 -> 224 x 224).

On disk: one np.savez_compressed per sample with keys pos / neg, uint8 [N, 3]
columns (row, col, t in 1..8); train/class<K>/class<K>_<n>.npz and
val/ILSVRC2012_val_XXXXXXXX.npz; trainlabel.txt / vallabel.txt lines
`<path relative to the split dir> <label> <a> <b>` with a, b the resized height
and width (the public reference loader joins the path to train/ or val/).
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from pipeline.data.batching import Skipped
from pipeline.data.device_transforms import InputSpec, pack_bits

# the fixed one-pixel path (x = column offset, y = row offset)
SHIFT_X = (1, 0, 2, 1, 0, 2, 1, 1, 2)
SHIFT_Y = (0, 2, 1, 0, 1, 2, 0, 1, 1)
N_STEPS = len(SHIFT_X) - 1
LABEL_FILES = {"train": "trainlabel.txt", "val": "vallabel.txt"}


@dataclass(frozen=True)
class Geometry:
    """Resize and canvas sizes; defaults are the real ES-ImageNet's."""

    long_side: int = 254
    canvas: int = 256
    margin: int = 16

    def __post_init__(self) -> None:
        if self.canvas < self.long_side + 2:
            raise ValueError(f"canvas {self.canvas} must hold the shifted image (long_side + 2 = {self.long_side + 2})")
        if self.canvas > 256:
            raise ValueError("canvas > 256 does not fit the uint8 coordinates of the format")
        if not 0 <= self.margin < self.canvas // 2:
            raise ValueError(f"margin {self.margin} leaves no crop on a {self.canvas} canvas")

    @property
    def crop(self) -> int:
        return self.canvas - 2 * self.margin

    def offset(self, a: int, b: int) -> tuple[int, int]:
        """Where the reference loader puts a sample of resized size a x b on the canvas."""
        return (self.long_side - a) // 2, (self.long_side - b) // 2


def resize_long_side(img: Image.Image, long_side: int) -> np.ndarray:
    """Nearest resize so the longer side is `long_side`; max over RGB; float in [0, 1]."""
    w, h = img.size
    scale = long_side / max(w, h)
    new_w, new_h = (long_side, max(1, round(h * scale))) if w >= h else (max(1, round(w * scale)), long_side)
    arr = np.asarray(img.convert("RGB").resize((new_w, new_h), Image.NEAREST), dtype=np.float32) / 255.0
    return arr.max(axis=2)


def image_to_events(grey: np.ndarray, threshold: float, geom: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Events of one resized grey image (a x b, values in [0, 1]); returns (pos, neg) uint8 [N, 3]."""
    a, b = grey.shape
    frames = np.zeros((N_STEPS + 1, a + 2, b + 2), dtype=np.float32)
    for k, (dx, dy) in enumerate(zip(SHIFT_X, SHIFT_Y)):
        frames[k, dy:dy + a, dx:dx + b] = grey
    diff = frames[1:] - frames[:-1]  # step t = 1..8
    # keep only events inside the crop the loader takes (margin < coord < canvas - margin)
    off_r, off_c = geom.offset(a, b)
    rows = np.arange(a + 2) + off_r
    cols = np.arange(b + 2) + off_c
    keep = ((rows > geom.margin) & (rows < geom.canvas - geom.margin))[:, None] & \
           ((cols > geom.margin) & (cols < geom.canvas - geom.margin))[None, :]
    out = []
    for mask in (diff > threshold, diff < -threshold):
        t, r, c = np.nonzero(mask & keep[None])
        out.append(np.stack([r, c, t + 1], axis=1).astype(np.uint8))
    return out[0], out[1]


def convert_imagefolder(images: Path, out: Path, geom: Geometry, threshold: float, min_events: int) -> dict[str, Any]:
    """Convert an ImageFolder tree (train/<class>/*, val/<class>/*) into the ES-ImageNet layout.

    Class K is the K-th class folder in sorted order (ImageFolder's convention).
    Train files keep the source index within their class (class<K>_<n>, n from 1),
    val files a running index over the sorted val images; samples with fewer than
    `min_events` events are dropped, as in the real dataset.
    """
    from torchvision.datasets import ImageFolder

    report: dict[str, Any] = {"threshold": threshold, "min_events": min_events, "long_side": geom.long_side,
                              "canvas": geom.canvas, "margin": geom.margin}
    for split in ("train", "val"):
        src = Path(images) / split
        if not src.is_dir():
            raise FileNotFoundError(f"{src}: expected an ImageFolder split directory ({split}/<class>/<image>)")
        folder = ImageFolder(str(src))
        lines, dropped, counter = [], 0, {}
        events_total = 0
        for i, (path, label) in enumerate(sorted(folder.samples)):
            counter[label] = counter.get(label, 0) + 1
            with Image.open(path) as img:
                grey = resize_long_side(img, geom.long_side)
            pos, neg = image_to_events(grey, threshold, geom)
            if len(pos) + len(neg) < min_events:
                dropped += 1
                continue
            rel = f"class{label}/class{label}_{counter[label]}.npz" if split == "train" else f"ILSVRC2012_val_{i + 1:08d}.npz"
            target = Path(out) / split / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(target, pos=pos, neg=neg)
            a, b = grey.shape
            lines.append(f"{rel} {label} {a} {b}\n")
            events_total += len(pos) + len(neg)
        if not lines:
            raise ValueError(f"{src}: none of its {len(folder.samples)} images gives min_events={min_events} events; "
                             f"the {split} split would be empty")
        (Path(out) / LABEL_FILES[split]).write_text("".join(lines))
        report[split] = {"written": len(lines), "dropped_under_min_events": dropped,
                         "mean_events": round(events_total / max(1, len(lines)), 1),
                         "classes": folder.classes}
    return report


def events_to_frames(pos: np.ndarray, neg: np.ndarray, a: int, b: int, geom: Geometry) -> torch.Tensor:
    """The reference loader's frame as uint8: (2, 8, crop, crop) with 1 at [polarity, t-1, row, col].

    One scatter per polarity straight into the crop (events on the canvas but
    outside the crop are dropped, as the reference's crop drops them); an event
    outside the canvas or with t outside 1..8 is a ValueError.
    """
    crop, m = geom.crop, geom.margin
    frame = np.zeros((2, N_STEPS, crop, crop), np.uint8)
    off_r, off_c = geom.offset(a, b)
    for pol, ev in enumerate((pos, neg)):
        ev = ev.astype(np.intp)
        t, r, c = ev[:, 2] - 1, ev[:, 0] + off_r, ev[:, 1] + off_c
        if len(ev) and (t.min() < 0 or t.max() >= N_STEPS or min(r.min(), c.min()) < 0
                        or max(r.max(), c.max()) >= geom.canvas):
            raise ValueError(f"events outside the {geom.canvas} x {geom.canvas} canvas or steps 1..{N_STEPS} "
                             f"(resized size {a} x {b})")
        inside = (r >= m) & (r < m + crop) & (c >= m) & (c < m + crop)
        frame[pol, t[inside], r[inside] - m, c[inside] - m] = 1
    return torch.from_numpy(frame)


class ESImageNet(Dataset):
    """Reads ES-ImageNet's format; items are (frames, label), the frames (2, 8, crop, crop) of 0/1
    with their bits packed along the last axis: uint8 (2, 8, crop, ceil(crop / 8)), 1/32 of
    float32's bytes until prepare_batch unpacks them on the device (`input_spec`).

    A missing root or label file is an error naming it; a missing or damaged npz
    yields `Skipped` (counted and reported by the training stage) so it cannot
    stop a long run.
    """

    def __init__(self, root: Path, split: str, geom: Geometry = Geometry()) -> None:
        self.root = Path(root)
        self.split = split
        self.geom = geom
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: ES-ImageNet root directory not found")
        label_file = self.root / LABEL_FILES[split]
        if not label_file.is_file():
            raise FileNotFoundError(f"{label_file}: ES-ImageNet label file not found (lines '<npz path> <label> <a> <b>')")
        self.items: list[tuple[str, int, int, int]] = []
        for n, line in enumerate(label_file.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 4 or not all(x.isdigit() for x in parts[1:]):
                raise ValueError(f"{label_file}:{n}: expected '<npz path> <label> <a> <b>' (integers), got {line!r}")
            # the reference swaps any extension for .npz
            self.items.append((os.path.splitext(parts[0])[0] + ".npz", int(parts[1]), int(parts[2]), int(parts[3])))
        self.targets = [label for _, label, _, _ in self.items]  # as torchvision's ImageFolder: labels without reading samples
        self.input_spec = InputSpec("packed_bits", width=geom.crop)

    def __len__(self) -> int:
        return len(self.items)

    def path_of(self, rel: str) -> Path:
        p = self.root / self.split / rel
        return p if p.exists() or not (self.root / rel).exists() else self.root / rel

    def __getitem__(self, index: int):
        rel, label, a, b = self.items[index]
        path = self.path_of(rel)
        try:
            with np.load(path) as z:
                pos, neg = z["pos"], z["neg"]
            if pos.ndim != 2 or pos.shape[1] != 3 or neg.ndim != 2 or neg.shape[1] != 3:
                raise ValueError(f"pos/neg must be [N, 3], got {pos.shape} / {neg.shape}")
            return pack_bits(events_to_frames(pos, neg, a, b, self.geom)), label
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            return Skipped(str(path), f"{type(err).__name__}: {err}")
