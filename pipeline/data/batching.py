"""Batching that tolerates damaged samples, and in-memory caching of small datasets.

A dataset item that cannot be read is returned as `Skipped(path, reason)` instead
of raising, so one corrupt file never stops a long run; the collate function drops
it and hands the skipped paths to the training loop, which reports them in the
stage's metrics. This works with DataLoader workers too (the names travel with
the batch, not through shared state).

Batches stay as compact as the dataset made them (uint8 images, packed event
bits); pipeline/data/device_transforms.py turns them into floats on the device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset, TensorDataset

from pipeline.data.device_transforms import InputSpec, input_spec_of


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def collate_skipping(batch: Sequence[Any]) -> tuple[torch.Tensor | list | None, torch.Tensor | None, list[str]]:
    """(x, y, skipped_paths); x and y are None when every sample of the batch was skipped.

    x is the stacked samples, or their list when some are not tensors (JPEGs left
    encoded for decoding on the GPU)."""
    good = [b for b in batch if not isinstance(b, Skipped)]
    skipped = [f"{b.path}: {b.reason}" for b in batch if isinstance(b, Skipped)]
    if not good:
        return None, None, skipped
    xs, ys = zip(*good)
    x = torch.stack(xs) if all(isinstance(s, torch.Tensor) for s in xs) else list(xs)
    return x, torch.as_tensor(ys, dtype=torch.long), skipped


class CachedDataset(TensorDataset):
    """A TensorDataset that keeps its source's input_spec (how the loop turns samples into floats)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, input_spec: InputSpec) -> None:
        super().__init__(x, y)
        self.input_spec = input_spec


def materialize(ds: Dataset) -> tuple[CachedDataset, list[str]]:
    """Read every sample once into memory (small datasets only); returns (dataset, skipped).

    Worth it for the embedded data: decoding PNG/npz files dominates the epoch time
    of the tiny default models otherwise. The samples keep the compact dtype the
    dataset gives them (uint8 images, packed event bits).
    """
    xs, ys, skipped = [], [], []
    for i in range(len(ds)):  # type: ignore[arg-type]
        item = ds[i]
        if isinstance(item, Skipped):
            skipped.append(f"{item.path}: {item.reason}")
            continue
        x, y = item
        xs.append(x)
        ys.append(int(y))
    if not xs:
        raise ValueError(f"no readable samples in dataset ({len(skipped)} skipped)")
    return CachedDataset(torch.stack(xs), torch.as_tensor(ys, dtype=torch.long), input_spec_of(ds)), skipped


