"""Batching that tolerates damaged samples, and in-memory caching of small datasets.

A dataset item that cannot be read is returned as `Skipped(path, reason)` instead
of raising, so one corrupt file never stops a long run; the collate function drops
it and hands the skipped paths to the training loop, which reports them in the
stage's metrics. This works with DataLoader workers too (the names travel with
the batch, not through shared state).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset, TensorDataset


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def collate_skipping(batch: Sequence[Any]) -> tuple[torch.Tensor | None, torch.Tensor | None, list[str]]:
    """(x, y, skipped_paths); x and y are None when every sample of the batch was skipped."""
    good = [b for b in batch if not isinstance(b, Skipped)]
    skipped = [f"{b.path}: {b.reason}" for b in batch if isinstance(b, Skipped)]
    if not good:
        return None, None, skipped
    xs, ys = zip(*good)
    return torch.stack(xs), torch.as_tensor(ys, dtype=torch.long), skipped


def materialize(ds: Dataset, dtype: torch.dtype | None = None) -> tuple[TensorDataset, list[str]]:
    """Read every sample once into memory (small datasets only); returns (dataset, skipped).

    Worth it for the embedded data: decoding PNG/npz files dominates the epoch time
    of the tiny default models otherwise. `dtype` (e.g. uint8 for binary event
    frames) keeps the cache small; the training loop converts to float.
    """
    xs, ys, skipped = [], [], []
    for i in range(len(ds)):  # type: ignore[arg-type]
        item = ds[i]
        if isinstance(item, Skipped):
            skipped.append(f"{item.path}: {item.reason}")
            continue
        x, y = item
        xs.append(x.to(dtype) if dtype is not None else x)
        ys.append(int(y))
    if not xs:
        raise ValueError(f"no readable samples in dataset ({len(skipped)} skipped)")
    return TensorDataset(torch.stack(xs), torch.as_tensor(ys, dtype=torch.long)), skipped
