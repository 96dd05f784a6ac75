"""On-disk layout of one prepared split: a folder of .npy files that numpy memory-maps.

    frames.npy   (sum of lengths, C) int16 spike counts (shd/ssc) or float32 features (gsc);
                 sample i occupies rows offsets[i]:offsets[i + 1]
    offsets.npy  (N + 1,) int64
    lengths.npy  (N,) int64
    labels.npy   (N,) int64
    meta.json    format version, sizes, dtype and the dataset metadata

Frames are appended chunk by chunk (`StoreWriter`), so writing needs memory for
one chunk only, and read through a read-only memory map (`read_store`), so
processes on one node share one copy in the page cache. The bytes depend on the
values only (no time stamps, sorted JSON keys): DVC hashes the folder.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

FORMAT_VERSION = 2  # 1: one torch file per split (<out>/<split>.pt)
FRAMES, OFFSETS, LENGTHS, LABELS, META = "frames.npy", "offsets.npy", "lengths.npy", "labels.npy", "meta.json"
FRAME_DTYPES = (np.dtype(np.int16), np.dtype(np.float32))


class StoreError(ValueError):
    """A prepared store that is missing, of another format version or damaged; the message names it."""


class StoreWriter:
    """Write one split store into the new folder `path`: `append` chunks of samples, then `close(meta)`.

    Files are created with plain open(), so they get the user's umask.
    """

    def __init__(self, path: str | Path, n_channels: int, dtype: np.dtype | type) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        if self.dtype not in FRAME_DTYPES:
            raise ValueError(f"frames dtype {self.dtype} not supported (allowed: {', '.join(map(str, FRAME_DTYPES))})")
        self.n_channels = int(n_channels)
        self.rows = 0
        self._lengths: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self.path.mkdir(parents=True)
        self._frames = open(self.path / FRAMES, "wb")
        # numpy pads the header so that it keeps its length for any row count: rewritten in place by close().
        self._header_len = self._write_header()

    def _write_header(self) -> int:
        self._frames.seek(0)
        np.lib.format.write_array_header_1_0(self._frames, {
            "descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
            "shape": (self.rows, self.n_channels)})
        return self._frames.tell()

    def append(self, frames: np.ndarray, lengths: np.ndarray, labels: np.ndarray) -> None:
        """Add samples: their frames stacked along time (sum(lengths), C), one length and label each."""
        lengths = np.asarray(lengths, dtype=np.int64)
        if frames.shape != (int(lengths.sum()), self.n_channels) or len(labels) != len(lengths):
            raise ValueError(f"{self.path}: chunk of {len(lengths)} lengths (sum {int(lengths.sum())}) and "
                             f"{len(labels)} labels does not fit frames of shape {frames.shape} "
                             f"(expected {self.n_channels} channels)")
        self._frames.write(np.ascontiguousarray(frames, dtype=self.dtype).data)
        self.rows += len(frames)
        self._lengths.append(lengths)
        self._labels.append(np.asarray(labels, dtype=np.int64))

    def close(self, meta: dict[str, Any]) -> None:
        """Finish frames.npy (its final shape in the header) and write the index files and meta.json."""
        if self._header_len != self._write_header():
            raise RuntimeError(f"{self.path / FRAMES}: header length changed")  # numpy reserves room; never expected
        self._frames.close()
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        np.save(self.path / OFFSETS, offsets)
        np.save(self.path / LENGTHS, lengths)
        np.save(self.path / LABELS, np.concatenate(self._labels) if self._labels else np.zeros(0, np.int64))
        info = {"format_version": FORMAT_VERSION, "n_samples": len(lengths), "n_rows": self.rows,
                "n_channels": self.n_channels, "dtype": self.dtype.name, "meta": meta}
        with open(self.path / META, "w") as f:
            f.write(json.dumps(info, indent=2, sort_keys=True) + "\n")

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._frames.close()  # on success close() already ran; on failure the caller's atomic_dir discards the folder


def read_store(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """(frames memory-mapped read-only, offsets, lengths, labels, dataset meta) of the store at `path`.

    A split of the old format (<out>/<split>.pt) and any other version or damage are one-line StoreErrors.
    """
    path = Path(path)
    old = path if path.suffix == ".pt" else path.with_name(path.name + ".pt")
    if not (path / META).is_file() and old.is_file():
        raise StoreError(f"{old}: a prepared split of an older format (format version 1, one torch file per split); "
                         f"rerun delays_prepare to write the memory-mapped store (format version {FORMAT_VERSION})")
    if not (path / META).is_file():
        raise StoreError(f"{path}: no prepared split store here (expected {META}, {FRAMES}, ... written by delays_prepare)")
    try:
        info = json.loads((path / META).read_text())
    except (OSError, ValueError) as err:
        raise StoreError(f"{path / META}: not readable ({err}); rerun delays_prepare") from err
    version = info.get("format_version") if isinstance(info, dict) else None
    if version != FORMAT_VERSION:
        raise StoreError(f"{path}: prepared store of format version {version}, this code reads version "
                         f"{FORMAT_VERSION}; rerun delays_prepare")
    try:
        frames = np.load(path / FRAMES, mmap_mode="r")
        offsets, lengths, labels = (np.load(path / name) for name in (OFFSETS, LENGTHS, LABELS))
    except (OSError, ValueError) as err:
        raise StoreError(f"{path}: damaged prepared store ({err}); rerun delays_prepare") from err
    n = info.get("n_samples", -1)
    consistent = (all(isinstance(a, np.ndarray) for a in (frames, offsets, lengths, labels))  # not e.g. a zip archive
                  and frames.ndim == 2 and frames.shape == (info.get("n_rows"), info.get("n_channels"))
                  and frames.dtype.name == info.get("dtype") and isinstance(info.get("meta"), dict)
                  and len(lengths) == len(labels) == n and len(offsets) == n + 1 and offsets[0] == 0
                  and offsets[-1] == len(frames) and np.array_equal(np.diff(offsets), lengths))
    if not consistent:
        raise StoreError(f"{path}: damaged prepared store (frames, offsets, lengths and labels disagree with "
                         f"{META}); rerun delays_prepare")
    return frames, offsets, lengths, labels, info["meta"]
