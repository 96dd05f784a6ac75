"""Spiking Heidelberg Digits / Spiking Speech Commands: official HDF5 -> frames.

Layout read (docs/data.md): `spikes/times` (seconds, one vlen float array
per sample), `spikes/units` (channel ids 0..699, vlen int, same length as its
times), `labels`. Events are binned into `time_step_ms` frames of per-channel
spike counts and channels are summed in groups of `pool` (700 -> 140).

Binning is vectorised: counts accumulated at flat indices ((first row of the
sample + bin) * channels + pooled channel) over chunks of samples small enough
to stay in cache, so no Python work per event and little per sample
(benchmarks/bench_binning.py compares it with a per-sample loop).
The result is ragged: all samples' frames stacked along time, plus lengths.
`SpikeFile.binned_chunks` streams a file: it reads and bins READ_SAMPLES
samples at a time, so preparing SSC needs memory for one chunk, not the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, TypeVar

import h5py
import numpy as np
import torch

N_UNITS = 700  # SHD/SSC cochlea model output channels
SPLIT_FILES = {
    "shd": {"train": "shd_train.h5", "test": "shd_test.h5"},
    "ssc": {"train": "ssc_train.h5", "valid": "ssc_valid.h5", "test": "ssc_test.h5"},
}
CHUNK = 2048  # at most this many samples binned per pass
INT32_INDEX_LIMIT = np.iinfo(np.int32).max  # chunks with fewer output cells index them in int32
EVENTS_PER_CHUNK = 1 << 17  # events per pass: its arrays stay in cache (about 1.5x faster than 2048 samples a pass)
READ_SAMPLES = 1024  # samples read from a file at a time (SSC: about 50 MB of events)
# The recording a spike must fall in. The files state no length and binning runs to each sample's own last
# spike, so this bound only tells seconds of a real recording from wrong units (ms, us) or garbage, which
# would otherwise ask for frames up to that time (1e6 s: a 257 GiB allocation). SHD's digits last up to
# about 1.4 s, SSC's commands 1 s (Speech Commands clips); 5 s leaves room for any real sample and keeps a
# sample's frames small (500 rows at 10 ms). A time outside stops the stage: it means the file's times are not
# seconds of such a recording, a fault of the whole converted file rather than one damaged sample.
MAX_SPIKE_TIME_S = 5.0
T = TypeVar("T")


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


class SpikeFile:
    """One SHD/SSC file opened for streaming: layout checked on opening, labels read, events read by chunks
    of samples, so memory is bounded by a chunk and not by the file (SSC: 5.5 GB over three files)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataFormatError(f"{self.path}: file not found; expected an SHD/SSC HDF5 file")
        try:
            self._file = h5py.File(self.path, "r")
        except Exception as err:  # h5py raises OSError/KeyError/... for truncated or foreign files
            raise DataFormatError(f"{self.path}: not a readable HDF5 file ({err}); is it truncated or still gzipped?") from err
        try:
            self.labels = self._check_layout()
        except BaseException:
            self._file.close()
            raise

    def _check_layout(self) -> np.ndarray:
        path, f = self.path, self._file
        for key in ("spikes/times", "spikes/units", "labels"):
            if key not in f:
                raise DataFormatError(f"{path}: missing dataset '{key}' (expected SHD layout spikes/times, spikes/units, labels)")
        _check_dtypes(path, f)
        n_times, n_units = len(f["spikes/times"]), len(f["spikes/units"])
        labels = self._read(lambda: np.asarray(f["labels"][:], dtype=np.int64))
        if not (n_times == n_units == len(labels)):
            raise DataFormatError(
                f"{path}: spikes/times has {n_times} samples, spikes/units {n_units}, labels {len(labels)}; they must match"
            )
        if len(labels) and labels.min() < 0:
            raise DataFormatError(f"{path}: label {labels.min()} is negative; expected classes 0..n-1")
        return labels

    def _read(self, read: Callable[[], T]) -> T:
        try:
            return read()
        except Exception as err:  # a damaged data block surfaces only when read
            raise DataFormatError(f"{self.path}: not a readable HDF5 file ({err}); is it truncated?") from err

    def __len__(self) -> int:
        return len(self.labels)

    def events(self, start: int, stop: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(times per sample, units per sample) of samples start..stop-1."""
        return self._read(lambda: (list(self._file["spikes/times"][start:stop]), list(self._file["spikes/units"][start:stop])))

    def binned_chunks(
        self, time_step_ms: float, n_units: int = N_UNITS, pool: int = 1, samples_per_read: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(frames, lengths) of consecutive chunks of samples_per_read (default READ_SAMPLES) samples,
        binned as `bin_events` does the whole file."""
        samples_per_read = samples_per_read or READ_SAMPLES
        for start in range(0, len(self), samples_per_read):
            times, units = self.events(start, min(start + samples_per_read, len(self)))
            yield bin_events(times, units, time_step_ms, n_units=n_units, pool=pool, source=str(self.path),
                             first_sample=start)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "SpikeFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_events(path: str | Path) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Read (times per sample, units per sample, labels) of a whole SHD/SSC file, checking the layout."""
    with SpikeFile(path) as f:
        return *f.events(0, len(f)), f.labels


def class_count(files: dict[str, SpikeFile]) -> int:
    """The number of classes of a set of official files (train, [valid,] test), checked against every label.

    The files declare no class count (SHD has 20, SSC 35, the embedded set its own), so the training file
    declares it: its C distinct labels must be the classes 0..C-1, and every label of every file must be below
    C. A label past that (a gap in train's numbering, or a test class train never shows) would otherwise widen
    the classifier to the largest label + 1 outputs, some of them classes without a training sample."""
    n = len(np.unique(files["train"].labels))
    for f in files.values():  # train first (SPLIT_FILES' order): a gap in its numbering is reported there
        bad = np.flatnonzero(f.labels >= n)
        if bad.size:
            i = int(bad[0])
            raise DataFormatError(f"{f.path}: sample {i} has label {int(f.labels[i])}, outside the classes "
                                  f"0..{n - 1} ({files['train'].path.name} holds {n} distinct labels, "
                                  f"expected numbered from 0)")
    return n


def _check_dtypes(path: Path, f: h5py.File) -> None:
    """Per-sample variable-length float times and integer units, and one integer label per sample;
    anything else (e.g. float unit ids, padded 2-D arrays) would be binned silently into wrong frames."""
    for key, kinds, what in (("spikes/times", "f", "float seconds"), ("spikes/units", "iu", "integer channel ids")):
        ds = f[key]
        base = h5py.check_vlen_dtype(ds.dtype)
        if base is None or base.kind not in kinds or ds.ndim != 1:
            found = f"variable-length {base} arrays" if base is not None else f"{ds.dtype} of shape {ds.shape}"
            raise DataFormatError(f"{path}: '{key}' holds {found}; expected one variable-length array of {what} per sample")
    labels = f["labels"]
    if labels.dtype.kind not in "iu" or labels.ndim != 1:
        raise DataFormatError(f"{path}: 'labels' holds {labels.dtype} of shape {labels.shape}; expected one integer class per sample")


def pooled_channels(n_units: int, pool: int) -> int:
    """Channels after summing groups of `pool` units (the last group may be smaller)."""
    return -(-n_units // pool)


def bin_events(
    times: list[np.ndarray],
    units: list[np.ndarray],
    time_step_ms: float,
    n_units: int = N_UNITS,
    pool: int = 1,
    source: str = "<events>",
    first_sample: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Bin ragged event lists into stacked frames (error messages number samples from `first_sample`).

    Returns (frames, lengths): frames (sum(lengths), ceil(n_units / pool)) int16
    spike counts, sample i occupying rows sum(lengths[:i]) ... + lengths[i];
    lengths[i] = floor(last spike time / dt) + 1 (1 for a sample without spikes).
    """
    if pool < 1 or time_step_ms <= 0:
        raise ValueError("pool must be >= 1 and time_step_ms > 0")
    n_out = pooled_channels(n_units, pool)
    n_events = np.fromiter((len(t) for t in times), dtype=np.int64, count=len(times))
    ev_end = np.cumsum(n_events)
    # Chunks are counted straight into one output buffer, grown (rarely) from an estimate of the
    # rows still to come and shrunk in place at the end: no final concatenation, which copied all
    # frames once more and doubled peak memory (2 GB of frames for SSC's training split).
    frames = np.zeros((0, n_out), np.int16)
    lengths_parts: list[np.ndarray] = []
    rows = start = 0
    while start < len(times):
        # Chunks of about EVENTS_PER_CHUNK events (at least one sample) keep every pass in cache.
        stop = int(np.searchsorted(ev_end, ev_end[start] - n_events[start] + EVENTS_PER_CHUNK, side="right"))
        stop = min(max(stop, start + 1), start + CHUNK)
        flat, lengths, needs_int64_counts = _chunk_indices(times[start:stop], units[start:stop], time_step_ms / 1000.0,
                                                           n_units, pool, n_out, source, first_sample + start)
        chunk_rows = int(lengths.sum())
        if rows + chunk_rows > len(frames):
            rows_to_come = chunk_rows / (stop - start) * (len(times) - stop)
            grown = np.zeros((max(rows + chunk_rows + int(1.1 * rows_to_come), int(1.5 * len(frames))), n_out), np.int16)
            grown[:rows] = frames[:rows]
            frames = grown
        _count(frames[rows : rows + chunk_rows], flat, needs_int64_counts, source)
        lengths_parts.append(lengths)
        rows += chunk_rows
        start = stop
    frames.resize((rows, n_out), refcheck=False)  # shrinks in place (no copy)
    return frames, np.concatenate(lengths_parts) if lengths_parts else np.zeros(0, np.int64)


def _chunk_indices(
    t_list: list[np.ndarray], u_list: list[np.ndarray], dt: float, n_units: int, pool: int, n_out: int, source: str, start: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(flat cell index of every event, relative to the chunk's first row; lengths; whether a count could
    exceed int16) for one chunk of samples, after checking it (sample ids in messages are offset by `start`)."""
    n_ev = np.fromiter((len(t) for t in t_list), dtype=np.int64, count=len(t_list))
    n_un = np.fromiter((len(u) for u in u_list), dtype=np.int64, count=len(u_list))
    bad = np.flatnonzero(n_ev != n_un)
    if bad.size:
        i = int(bad[0])
        raise DataFormatError(
            f"{source}: sample {start + i} has {n_ev[i]} spike times but {n_un[i]} units; they must have the same length"
        )
    ev_end = np.cumsum(n_ev)

    def sample_of(event: int) -> int:  # error messages only
        return start + int(np.searchsorted(ev_end, event, side="right"))

    if not ev_end[-1]:
        return np.zeros(0, np.int64), np.ones(len(t_list), np.int64), False
    # Concatenate in the files' own dtypes (float32 / uint16 in SHD): converting per sample costs more than the binning.
    t = np.concatenate(t_list)
    u = np.concatenate(u_list)
    if u.dtype.kind not in "iu" or u.dtype == np.uint64:  # uint64 + int64 would promote to float
        u = u.astype(np.int64)
    if u.max() >= n_units or (u.dtype.kind == "i" and u.min() < 0):
        j = int(np.flatnonzero((u < 0) | (u >= n_units))[0])
        raise DataFormatError(f"{source}: sample {sample_of(j)} has channel id {int(u[j])} out of range 0..{n_units - 1}")
    t_max = t.max()
    if not (t.min() >= 0 and t_max <= MAX_SPIKE_TIME_S):  # also false for NaN
        j = int(np.flatnonzero(~((t >= 0) & (t <= MAX_SPIKE_TIME_S)))[0])
        raise DataFormatError(f"{source}: sample {sample_of(j)} has spike time {t[j]!s} s, outside the "
                              f"recording (0 to {MAX_SPIKE_TIME_S} s; expected seconds from its start)")
    # Bin = floor(t/dt + eps) in float64; the epsilon keeps e.g. 0.03 s / 0.01 s in bin 3 despite float error.
    # t >= 0, so truncation by astype is the floor. In place to save passes over the events.
    x = t.astype(np.float64)
    x /= dt
    x += 1e-9
    # Flat indices in int32 when every cell of the chunk fits (halves the memory traffic: about 15 % faster).
    max_cells = len(t_list) * (float(t_max) / dt + 1e-9 + 1) * n_out  # rows <= samples * (largest bin + 1)
    index_dtype = np.int32 if max_cells < INT32_INDEX_LIMIT else np.int64
    flat = x.astype(index_dtype)
    has_events = n_ev > 0
    lengths = np.ones(len(t_list), np.int64)
    lengths[has_events] = np.maximum.reduceat(flat, (ev_end - n_ev)[has_events]) + 1  # per-sample max bin, vectorised
    row_end = np.cumsum(lengths)
    row0 = row_end - lengths
    # flat index = (first row of the sample + bin) * channels + pooled channel
    flat += np.repeat(row0.astype(index_dtype), n_ev)
    flat *= n_out
    flat += (u // pool if pool > 1 else u).astype(index_dtype)  # unit ids are checked to lie in 0..n_units-1
    return flat, lengths, bool(n_ev.max() > np.iinfo(np.int16).max)  # only then can one count exceed int16


def _count(frames: np.ndarray, flat: np.ndarray, needs_int64_counts: bool, source: str) -> None:
    """Add one to frames.flat[i] for every i in flat (frames zero, C-contiguous)."""
    if needs_int64_counts:
        counts = np.bincount(flat, minlength=frames.size)
        if counts.max() > np.iinfo(np.int16).max:
            raise DataFormatError(f"{source}: more than 32767 spikes in one bin and channel; use a smaller time step")
        frames.reshape(-1)[:] = counts
    else:
        # torch's index_add_ counts straight into the int16 frames; np.bincount counts in int64 and
        # needs a cast pass afterwards (measured 1.2-2x slower per chunk).
        ones = torch.ones(1, dtype=torch.int16).expand(len(flat))
        torch.from_numpy(frames).view(-1).index_add_(0, torch.from_numpy(flat), ones)
