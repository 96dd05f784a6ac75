"""Frozen copy of delays_prepare before the streaming store (format version 1), the baseline of bench_scale.

Whole files at once: every event of an SHD/SSC file is read and binned into
one frames array, GSC features of a split are concatenated (torch.cat, then
astype), the SHD hold-out is a gather of the whole training split, and each
split is one torch file <out>/<split>.pt that training loads entirely into
memory. The per-chunk kernels (binning, log-mel, hold-out indices) are the
pipeline's own, so the comparison measures the structure, not the kernels.
The tests also use it as the reference the streaming prepare must equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.params.configs import DelaysData
from pipeline.data import gsc, shd
from pipeline.data.prepared import holdout
from pipeline.io import atomic_dir, load_torch, save_torch

SPLITS = ("train", "valid", "test")


@dataclass
class Split:
    frames: torch.Tensor  # (sum(lengths), C)
    lengths: torch.Tensor  # (N,) int64
    labels: torch.Tensor  # (N,) int64
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.offsets = torch.zeros(len(self.lengths) + 1, dtype=torch.int64)
        self.offsets[1:] = torch.cumsum(self.lengths, 0)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> "Split":
        idx = torch.as_tensor(idx, dtype=torch.int64)
        lengths = self.lengths[idx]
        rows = _rows(self.offsets[idx], lengths)
        return Split(self.frames[rows], lengths, self.labels[idx], dict(self.meta))

    def batch(
        self, idx: torch.Tensor, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One vectorised gather of (B, T) rows, masked, transposed."""
        idx = torch.as_tensor(idx, dtype=torch.int64)
        lengths = self.lengths[idx]
        t_max = int(lengths.max())
        t = torch.arange(t_max)
        valid = t[None, :] < lengths[:, None]
        rows = (self.offsets[idx][:, None] + t[None, :]).clamp(max=max(len(self.frames) - 1, 0))
        x = self.frames[rows].float() * valid[..., None]
        return x.transpose(0, 1).contiguous().to(device), self.labels[idx].to(device)


def _rows(starts: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    total = int(lengths.sum())
    seg = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    first = torch.cumsum(lengths, 0) - lengths
    return starts[seg] + (torch.arange(total) - first[seg])


def make_split(frames: np.ndarray, lengths: np.ndarray, labels: np.ndarray) -> Split:
    return Split(
        torch.from_numpy(np.ascontiguousarray(frames)),
        torch.as_tensor(lengths, dtype=torch.int64),
        torch.as_tensor(labels, dtype=torch.int64),
    )


def save_split(path: Path, split: Split) -> None:
    save_torch(
        path,
        {
            "version": 1,
            "frames": split.frames,
            "lengths": split.lengths,
            "labels": split.labels,
            "meta": split.meta,
        },
    )


def load_split(path: Path) -> Split:
    obj = load_torch(path)
    return Split(obj["frames"], obj["lengths"], obj["labels"], obj["meta"])


def load_frames(
    path: Path, time_step_ms: float, n_units: int, pool: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    times, units, labels = shd.read_events(path)
    frames, lengths = shd.bin_events(times, units, time_step_ms, n_units=n_units, pool=pool, source=str(path))
    return frames, lengths, labels


def load_gsc_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    files, classes = gsc.split_files(root)
    items = files[split]
    logmel = gsc.LogMel()
    feats: list[torch.Tensor] = []
    for start in range(0, len(items), gsc.FEATURE_CHUNK):
        chunk = items[start : start + gsc.FEATURE_CHUNK]
        wav = torch.from_numpy(np.stack([gsc.read_wav(Path(root) / rel) for rel, _ in chunk]))
        feats.append(logmel(wav))
    x = torch.cat(feats) if feats else torch.zeros(0, 101, gsc.N_MELS)
    lengths = np.full(len(items), x.shape[1], dtype=np.int64)
    labels = np.asarray([lab for _, lab in items], dtype=np.int64)
    return x.reshape(-1, gsc.N_MELS).numpy().astype(np.float32), lengths, labels, classes


def prepare(cfg: DelaysData, dataset: str, out: Path) -> dict[str, Split]:
    """The old delays_prepare: writes out/<split>.pt and returns the splits (as held in memory)."""
    fmt, root = cfg.format, Path(cfg.root)
    meta: dict[str, Any] = {
        "dataset": dataset,
        "format": fmt,
        "root": str(root),
        "time_step_ms": cfg.time_step_ms,
    }
    raw: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    if fmt in ("shd", "ssc"):
        for split in shd.SPLIT_FILES[fmt]:
            raw[split] = load_frames(
                shd.split_path(root, fmt, split), cfg.time_step_ms, cfg.n_channels, cfg.pool
            )
        meta.update(pool=cfg.pool, n_units=cfg.n_channels)
    else:
        for split in SPLITS:
            frames, lengths, labels, classes = load_gsc_split(root, split)
            raw[split] = (frames, lengths, labels)
        meta["classes"] = classes
    if "valid" not in raw:
        frames, lengths, labels = raw["train"]
        whole = make_split(frames, lengths, labels)
        tr_idx, va_idx = holdout(labels, cfg.valid_fraction, cfg.valid_seed)
        parts = {"train": whole.subset(tr_idx), "valid": whole.subset(va_idx)}
        meta["valid_from_train"] = {"fraction": cfg.valid_fraction, "seed": cfg.valid_seed}
    else:
        parts = {s: make_split(*raw[s]) for s in ("train", "valid")}
    parts["test"] = make_split(*raw["test"])
    meta["n_classes"] = (
        len(meta["classes"])
        if "classes" in meta
        else int(max(int(p.labels.max()) for p in parts.values()) + 1)
    )
    with atomic_dir(out) as tmp:
        for split, part in parts.items():
            part.meta = {**meta, "split": split, "n_samples": len(part)}
            save_split(tmp / f"{split}.pt", part)
    return parts
