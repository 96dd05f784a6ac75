"""Prepared splits: ragged frames read from a memory-mapped store, batched by slices.

A split is ragged: `frames` (sum of lengths, C) with sample i in rows
offsets[i]:offsets[i+1], plus `lengths`, `labels` and metadata. `load_split`
memory-maps the frames of a store written by delays_prepare
(pipeline/data/store.py), so nothing is read until a batch needs it. A batch
copies each sample's rows in one slice into a (T, B, C) float32 tensor padded
with zeros at the end to the batch's longest sample (as the reference does).
`iterate_batches(..., prefetch=N)` assembles batches ahead in a background thread.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from pipeline.data.sampling import Dist, ShardedBatchSampler
from pipeline.data.store import StoreWriter, read_store


@dataclass
class Split:
    frames: np.ndarray  # (sum(lengths), C), int16 spike counts or float32 features; read-only memory map when loaded
    lengths: np.ndarray  # (N,) int64
    labels: np.ndarray  # (N,) int64
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=self.offsets[1:])

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_channels(self) -> int:
        return int(self.frames.shape[1])

    def subset(self, idx: Sequence[int] | np.ndarray) -> "Split":
        """A new in-memory Split holding samples idx (in that order)."""
        idx = np.asarray(idx, dtype=np.int64)
        lengths = self.lengths[idx]
        frames = np.concatenate([self.frames[self.offsets[i] : self.offsets[i + 1]] for i in idx.tolist()]
                                or [np.zeros((0, self.n_channels), self.frames.dtype)])
        return Split(frames, lengths, self.labels[idx], dict(self.meta))

    def gather(self, idx: Sequence[int] | np.ndarray, pin_memory: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(x (T, B, C) float32 zero-padded to the longest of the batch, labels (B,)) on the CPU,
        in page-locked memory when `pin_memory` (for asynchronous copies to a GPU)."""
        idx = np.asarray(idx, dtype=np.int64)
        lengths, starts = self.lengths[idx], self.offsets[idx]
        x = torch.zeros((int(lengths.max(initial=0)), len(idx), self.n_channels), pin_memory=pin_memory)
        out = x.numpy()
        # One slice per sample: copies (and converts) only the sample's rows, reading the memory map sequentially.
        for b, (start, length) in enumerate(zip(starts.tolist(), lengths.tolist())):
            out[:length, b] = self.frames[start : start + length]
        y = torch.from_numpy(self.labels[idx])
        return x, y.pin_memory() if pin_memory else y

    def batch(self, idx: Sequence[int] | np.ndarray, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """`gather` moved to `device` (pinned and asynchronous for a GPU)."""
        device = torch.device(device)
        cuda = device.type == "cuda"
        x, y = self.gather(idx, pin_memory=cuda)
        return x.to(device, non_blocking=cuda), y.to(device, non_blocking=cuda)


def make_split(frames: np.ndarray, lengths: np.ndarray, labels: np.ndarray, meta: dict[str, Any] | None = None) -> Split:
    return Split(np.ascontiguousarray(frames), np.asarray(lengths, dtype=np.int64),
                 np.asarray(labels, dtype=np.int64), dict(meta or {}))


def save_split(path: str | Path, split: Split) -> None:
    """Write an in-memory split as a store folder `path` (delays_prepare streams into StoreWriter instead)."""
    with StoreWriter(path, split.n_channels, split.frames.dtype) as writer:
        writer.append(split.frames, split.lengths, split.labels)
        writer.close(split.meta)


def load_split(path: str | Path) -> Split:
    """The split stored in folder `path` (<prepared>/<split>), frames memory-mapped read-only."""
    frames, _, lengths, labels, meta = read_store(path)
    return Split(frames, lengths, labels, meta)


def check_splits(splits: dict[str, Split], dataset: str, data: str | Path) -> None:
    """Prepared splits fit to train and evaluate `dataset`: prepared for it, none empty, every label a
    class of the set, the same channels everywhere. One-line errors naming the split's store."""
    channels = {s.n_channels for s in splits.values()}
    for name, split in splits.items():
        where = Path(data) / name
        made_for = split.meta.get("dataset")
        if made_for != dataset:
            raise ValueError(f"{where}: prepared for dataset '{made_for}', expected '{dataset}' (delays_prepare --dataset {dataset})")
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
    skip: int = 0,
    prefetch: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x (T, B, C), y (B,)); seeded shuffling through `generator`; last batch may be smaller.
    In a distributed run (`d`) each rank gets its share of every global batch (ShardedBatchSampler);
    the first `skip` batches are left out (a resumed epoch). `prefetch` > 0: up to that many batches are
    assembled ahead in a background thread (the copies out of the memory map release the GIL), in page-locked
    memory with non-blocking copies for a CUDA device: the same batches, ready when the device asks."""
    # The permutation is drawn here, in the caller's thread, when iteration starts,
    # so `generator` is used at the same point however the batches are assembled.
    batches = ShardedBatchSampler(len(split), batch_size, shuffle, generator, d, skip)
    if prefetch > 0:
        yield from _prefetched(split, list(batches), torch.device(device), prefetch)
        return
    for idx in batches:
        yield split.batch(idx, device)


class _Failed:
    """An error of the prefetching thread, handed to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def _prefetched(split: Split, batches: list[list[int]], device: torch.device,
                depth: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    pin = device.type == "cuda"
    ready: queue.Queue = queue.Queue(maxsize=max(depth, 1))
    stop = threading.Event()

    def offer(item: object) -> bool:
        """Put `item` unless the consumer has gone; False then."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            if pin and device.index is not None:
                torch.cuda.set_device(device)  # else pinning would create a context on GPU 0 in this thread
            for idx in batches:
                if not offer(split.gather(idx, pin_memory=pin)):
                    return
            offer(_END)
        except BaseException as err:  # handed to the consumer, raised there
            offer(_Failed(err))

    worker = threading.Thread(target=produce, name="batch-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            x, y = item
            yield x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)
    finally:  # also when the consumer stops early: the thread ends at its next put
        stop.set()
        worker.join()
