"""Prepared splits: one torch file per split, batched without per-event work.

A split is stored ragged: `frames` (sum of lengths, C) with sample i in rows
offsets[i]:offsets[i+1], plus `lengths`, `labels` and metadata. Batches are
gathered with one vectorised index and padded with zeros at the end to the
batch's longest sample (as the reference does).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from pipeline.distributed import Dist, ShardedBatchSampler
from pipeline.io import load_torch, save_torch

FORMAT_VERSION = 1


@dataclass
class Split:
    frames: torch.Tensor  # (sum(lengths), C), int16 spike counts or float32 features
    lengths: torch.Tensor  # (N,) int64
    labels: torch.Tensor  # (N,) int64
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.offsets = torch.zeros(len(self.lengths) + 1, dtype=torch.int64)
        self.offsets[1:] = torch.cumsum(self.lengths, 0)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_channels(self) -> int:
        return int(self.frames.shape[1])

    def subset(self, idx: np.ndarray | torch.Tensor) -> "Split":
        """A new Split holding samples idx (in that order)."""
        idx = torch.as_tensor(idx, dtype=torch.int64)
        lengths = self.lengths[idx]
        rows = _rows(self.offsets[idx], lengths)
        return Split(self.frames[rows], lengths, self.labels[idx], dict(self.meta))

    def batch(self, idx: torch.Tensor, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(x (T, B, C) float32 zero-padded to the longest of the batch, labels (B,))."""
        idx = torch.as_tensor(idx, dtype=torch.int64)
        lengths = self.lengths[idx]
        t_max = int(lengths.max())
        t = torch.arange(t_max)
        valid = t[None, :] < lengths[:, None]  # (B, T)
        rows = (self.offsets[idx][:, None] + t[None, :]).clamp(max=max(len(self.frames) - 1, 0))
        x = self.frames[rows].float() * valid[..., None]
        return x.transpose(0, 1).contiguous().to(device), self.labels[idx].to(device)


def _rows(starts: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Concatenated ranges starts[i] .. starts[i] + lengths[i], vectorised."""
    total = int(lengths.sum())
    seg = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    first = torch.cumsum(lengths, 0) - lengths
    return starts[seg] + (torch.arange(total) - first[seg])


def make_split(frames: np.ndarray, lengths: np.ndarray, labels: np.ndarray, meta: dict[str, Any] | None = None) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(frames)), torch.as_tensor(lengths, dtype=torch.int64),
                 torch.as_tensor(labels, dtype=torch.int64), dict(meta or {}))


def save_split(path: str | Path, split: Split) -> None:
    save_torch(path, {"version": FORMAT_VERSION, "frames": split.frames, "lengths": split.lengths,
                      "labels": split.labels, "meta": split.meta})


def load_split(path: str | Path) -> Split:
    obj = load_torch(path)
    if not isinstance(obj, dict) or obj.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a prepared split (format version {FORMAT_VERSION}); rerun delays-prepare")
    return Split(obj["frames"], obj["lengths"], obj["labels"], obj["meta"])


def check_splits(splits: dict[str, Split], dataset: str, data: str | Path) -> None:
    """Prepared splits fit to train and evaluate `dataset`: prepared for it, none empty, every label a
    class of the set, the same channels everywhere. One-line errors naming the split file."""
    channels = {s.n_channels for s in splits.values()}
    for name, split in splits.items():
        where = Path(data) / f"{name}.pt"
        made_for = split.meta.get("dataset")
        if made_for != dataset:
            raise ValueError(f"{where}: prepared for dataset '{made_for}', expected '{dataset}' (delays-prepare --dataset {dataset})")
        if len(split) == 0:
            raise ValueError(f"{where}: the {name} split is empty (expected at least one sample)")
        n_classes = int(split.meta.get("n_classes", 0))
        lo, hi = int(split.labels.min()), int(split.labels.max())
        if lo < 0 or hi >= n_classes:
            raise ValueError(f"{where}: label {lo if lo < 0 else hi} outside the dataset's classes 0..{n_classes - 1}")
        if len(channels) > 1:
            raise ValueError(f"{where}: {split.n_channels} input channels, but the splits differ ({sorted(channels)})")


def holdout(labels: np.ndarray | torch.Tensor, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified hold-out: (train indices, valid indices), each sorted.

    Stratified so that a small validation set still holds every class.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    valid: list[np.ndarray] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_valid = int(round(fraction * len(members)))
        valid.append(rng.permutation(members)[:n_valid])
    valid_idx = np.sort(np.concatenate(valid)) if valid else np.zeros(0, np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), valid_idx)
    return train_idx, valid_idx


def iterate_batches(
    split: Split,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    d: Dist = Dist(),
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x (T, B, C), y (B,)); seeded shuffling through `generator`; last batch may be smaller.
    In a distributed run (`d`) each rank gets its share of every global batch (ShardedBatchSampler)."""
    for idx in ShardedBatchSampler(len(split), batch_size, shuffle, generator, d):
        yield split.batch(torch.as_tensor(idx, dtype=torch.int64), device)
