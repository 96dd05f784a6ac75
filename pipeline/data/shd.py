"""Spiking Heidelberg Digits / Spiking Speech Commands: official HDF5 -> frames.

Layout read (specs/datasets.md): `spikes/times` (seconds, one vlen float array
per sample), `spikes/units` (channel ids 0..699, vlen int, same length as its
times), `labels`. Events are binned into `time_step_ms` frames of per-channel
spike counts and channels are summed in groups of `pool` (700 -> 140).

Binning is vectorised: one np.bincount per chunk of samples over flat indices
(sample offset + bin * channels + pooled channel), so no Python work per event.
The result is ragged: all samples' frames stacked along time, plus lengths.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

N_UNITS = 700  # SHD/SSC cochlea model output channels
SPLIT_FILES = {
    "shd": {"train": "shd_train.h5", "test": "shd_test.h5"},
    "ssc": {"train": "ssc_train.h5", "valid": "ssc_valid.h5", "test": "ssc_test.h5"},
}
CHUNK = 2048  # samples binned per np.bincount call (bounds memory on SSC's 75k samples)


class DataFormatError(ValueError):
    """An input file that is missing or not in the expected format; the message names it."""


def split_path(root: str | Path, fmt: str, split: str) -> Path:
    """Path of the official file of `split` for `fmt` (shd|ssc), checked to exist."""
    root = Path(root)
    if fmt not in SPLIT_FILES:
        raise ValueError(f"unknown spike dataset format '{fmt}' (allowed: {', '.join(SPLIT_FILES)})")
    if split not in SPLIT_FILES[fmt]:
        raise ValueError(f"{fmt} has no '{split}' split (allowed: {', '.join(SPLIT_FILES[fmt])})")
    if not root.is_dir():
        raise DataFormatError(f"{root}: dataset root not found (expected a folder holding {', '.join(SPLIT_FILES[fmt].values())})")
    path = root / SPLIT_FILES[fmt][split]
    if not path.is_file():
        hint = " (found a .gz copy: decompress it with gunzip)" if path.with_name(path.name + ".gz").is_file() else ""
        raise DataFormatError(f"{path}: file not found{hint}; expected the official {fmt.upper()} HDF5 file")
    return path


def read_events(path: str | Path) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Read (times per sample, units per sample, labels) from one SHD/SSC file, checking the layout."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found; expected an SHD/SSC HDF5 file")
    try:
        with h5py.File(path, "r") as f:
            for key in ("spikes/times", "spikes/units", "labels"):
                if key not in f:
                    raise DataFormatError(f"{path}: missing dataset '{key}' (expected SHD layout spikes/times, spikes/units, labels)")
            times = list(f["spikes/times"][:])
            units = list(f["spikes/units"][:])
            labels = np.asarray(f["labels"][:], dtype=np.int64)
    except DataFormatError:
        raise
    except Exception as err:  # h5py raises OSError/KeyError/... for truncated or foreign files
        raise DataFormatError(f"{path}: not a readable HDF5 file ({err}); is it truncated or still gzipped?") from err
    if not (len(times) == len(units) == len(labels)):
        raise DataFormatError(
            f"{path}: spikes/times has {len(times)} samples, spikes/units {len(units)}, labels {len(labels)}; they must match"
        )
    return times, units, labels


def bin_events(
    times: list[np.ndarray],
    units: list[np.ndarray],
    time_step_ms: float,
    n_units: int = N_UNITS,
    pool: int = 1,
    source: str = "<events>",
) -> tuple[np.ndarray, np.ndarray]:
    """Bin ragged event lists into stacked frames.

    Returns (frames, lengths): frames (sum(lengths), ceil(n_units / pool)) int16
    spike counts, sample i occupying rows sum(lengths[:i]) ... + lengths[i];
    lengths[i] = floor(last spike time / dt) + 1 (1 for a sample without spikes).
    """
    if pool < 1 or time_step_ms <= 0:
        raise ValueError("pool must be >= 1 and time_step_ms > 0")
    n_out = -(-n_units // pool)
    dt = time_step_ms / 1000.0
    frames_parts: list[np.ndarray] = []
    lengths_parts: list[np.ndarray] = []
    for start in range(0, len(times), CHUNK):
        t_list, u_list = times[start : start + CHUNK], units[start : start + CHUNK]
        n_ev = np.fromiter((len(t) for t in t_list), dtype=np.int64, count=len(t_list))
        n_un = np.fromiter((len(u) for u in u_list), dtype=np.int64, count=len(u_list))
        bad = np.flatnonzero(n_ev != n_un)
        if bad.size:
            i = int(bad[0])
            raise DataFormatError(
                f"{source}: sample {start + i} has {n_ev[i]} spike times but {n_un[i]} units; they must have the same length"
            )
        t = np.concatenate([np.asarray(x, dtype=np.float64) for x in t_list]) if n_ev.sum() else np.zeros(0)
        u = np.concatenate([np.asarray(x, dtype=np.int64) for x in u_list]) if n_ev.sum() else np.zeros(0, np.int64)
        sample = np.repeat(np.arange(len(t_list)), n_ev)
        if u.size and (u.min() < 0 or u.max() >= n_units):
            j = int(np.flatnonzero((u < 0) | (u >= n_units))[0])
            raise DataFormatError(
                f"{source}: sample {start + int(sample[j])} has channel id {int(u[j])} out of range 0..{n_units - 1}"
            )
        if t.size and (not np.isfinite(t).all() or t.min() < 0):
            j = int(np.flatnonzero(~np.isfinite(t) | (t < 0))[0])
            raise DataFormatError(f"{source}: sample {start + int(sample[j])} has spike time {t[j]} (expected seconds >= 0)")
        # Floor of t/dt; the small epsilon keeps e.g. 0.03 s / 0.01 s in bin 3 despite float error.
        b = np.floor(t / dt + 1e-9).astype(np.int64)
        last = np.full(len(t_list), -1, dtype=np.int64)
        np.maximum.at(last, sample, b)  # vectorised per-sample max bin
        lengths = last + 1
        lengths[lengths == 0] = 1
        row0 = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        flat = (row0[sample] + b) * n_out + u // pool
        counts = np.bincount(flat, minlength=int(lengths.sum()) * n_out)
        if counts.size and counts.max() > np.iinfo(np.int16).max:
            raise DataFormatError(f"{source}: more than 32767 spikes in one bin and channel; use a smaller time step")
        frames_parts.append(counts.astype(np.int16).reshape(-1, n_out))
        lengths_parts.append(lengths)
    if not frames_parts:
        return np.zeros((0, n_out), np.int16), np.zeros(0, np.int64)
    return np.concatenate(frames_parts), np.concatenate(lengths_parts)


def load_frames(
    path: str | Path, time_step_ms: float, n_units: int = N_UNITS, pool: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read one SHD/SSC file and bin it: (frames stacked over samples, lengths, labels)."""
    times, units, labels = read_events(path)
    frames, lengths = bin_events(times, units, time_step_ms, n_units=n_units, pool=pool, source=str(path))
    return frames, lengths, labels
