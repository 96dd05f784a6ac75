"""Benchmark 3: event binning of SHD-format data, and the prepared-batch loader.

Binning: pipeline.data.shd.bin_events (vectorised over all events of a chunk
of samples) against the straightforward per-sample loop below (what a loader
written one sample at a time does: floor(t/dt), then np.add.at into the
sample's frame), on the default embedded dataset's training file. Outputs are
checked equal before timing; speed is in events per second.

Loader: one epoch of shuffled batches over the prepared training split
(pipeline.data.prepared: one vectorised gather per batch) in samples per
second, against a per-sample collate (slice each sample, pad_sequence).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from benchmarks.common import compare, default_params, ratio, save, timings
from pipeline.data import prepared, shd
from pipeline.delays.data_stages import prepare
from pipeline.drivers.resolve import build_config
from pipeline.drivers.stage_table import stage
from pipeline.data.synth_shd import write_synth

NAME = "binning"


def bin_per_sample(
    times: list[np.ndarray],
    units: list[np.ndarray],
    time_step_ms: float,
    n_units: int = shd.N_UNITS,
    pool: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """The per-sample loop form of shd.bin_events (same outputs, no input checks)."""
    n_out = -(-n_units // pool)
    dt = time_step_ms / 1000.0
    frames: list[np.ndarray] = []
    lengths: list[int] = []
    for t, u in zip(times, units):
        bins = np.floor(np.asarray(t, dtype=np.float64) / dt + 1e-9).astype(np.int64)
        length = int(bins.max()) + 1 if bins.size else 1
        frame = np.zeros((length, n_out), np.int16)
        np.add.at(frame, (bins, np.asarray(u, dtype=np.int64) // pool), 1)
        frames.append(frame)
        lengths.append(length)
    if not frames:
        return np.zeros((0, n_out), np.int16), np.zeros(0, np.int64)
    return np.concatenate(frames), np.asarray(lengths, dtype=np.int64)


def batch_per_sample(split: prepared.Split, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split.batch written one sample at a time (slice, then pad)."""
    samples = [
        torch.from_numpy(np.array(split.frames[split.offsets[i] : split.offsets[i + 1]])).float()
        for i in idx.tolist()
    ]
    return pad_sequence(samples), torch.from_numpy(split.labels[idx.numpy()])


def _epoch(split: prepared.Split, batch_size: int, per_sample: bool) -> int:
    """One shuffled epoch (same seed every time); returns the number of samples seen."""
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(split), generator=generator)
    seen = 0
    for start in range(0, len(split), batch_size):
        idx = order[start : start + batch_size]
        x, _ = batch_per_sample(split, idx) if per_sample else split.batch(idx)
        seen += x.shape[1]
    return seen


def main(quick: bool = False) -> dict[str, Any]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the stages run (params threads: 1)
    try:
        return _measure(quick)
    finally:
        torch.set_num_threads(threads)


def _measure(quick: bool) -> dict[str, Any]:
    params = default_params()
    synth_cfg = dict(params["delays"]["synth"])
    set_cfg = {**params["delays"]["sets"]["synth"]["data"], **params["delays"]["sets"]["synth"]["train"]}
    if quick:
        synth_cfg.update(n_train=400, n_test=100)
    with tempfile.TemporaryDirectory(prefix="bench_binning_") as tmp:
        raw = Path(tmp) / "raw"
        write_synth(raw, synth_cfg)
        times, units, _ = shd.read_events(raw / "shd_train.h5")
        n_events = int(sum(len(t) for t in times))
        args = (times, units, set_cfg["time_step_ms"])
        kwargs = {"n_units": set_cfg["n_channels"], "pool": set_cfg["pool"]}
        ours, loop = shd.bin_events(*args, **kwargs), bin_per_sample(*args, **kwargs)
        assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(ours, loop)), (
            "binning outputs differ"
        )
        samples = timings(
            {
                "per_sample_loop": lambda: bin_per_sample(*args, **kwargs),
                "vectorised": lambda: shd.bin_events(*args, **kwargs),
            },
            repeats=3 if quick else 9,
        )
        binning = {name: statistics.median(s) for name, s in samples.items()}
        best = {name: min(s) for name, s in samples.items()}

        params["delays"]["sets"]["synth"]["data"]["root"] = str(raw)
        prepare(
            build_config(stage("delays_prepare"), params, {"dataset": "synth"}),
            dataset="synth",
            out=Path(tmp) / "prepared",
        )
        split = prepared.load_split(Path(tmp) / "prepared" / "train")
    batch_size = int(set_cfg["batch_size"])
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(1))[:batch_size]
    x_ours, y_ours = split.batch(idx)
    x_loop, y_loop = batch_per_sample(split, idx)
    assert torch.equal(x_ours, x_loop) and torch.equal(y_ours, y_loop), "batch outputs differ"
    loader = compare(
        {
            "per_sample_collate": lambda: _epoch(split, batch_size, per_sample=True),
            "vectorised_gather": lambda: _epoch(split, batch_size, per_sample=False),
        },
        repeats=3 if quick else 5,
    )

    result = {
        "name": NAME,
        "what": "SHD-format event binning (default embedded train file) and one epoch of prepared batches",
        "binning": {
            "samples": len(times),
            "events": n_events,
            "seconds": binning,
            "events_per_s": {k: round(n_events / v) for k, v in binning.items()},
            "ratio_vectorised_vs_per_sample_loop": ratio(binning["per_sample_loop"], binning["vectorised"]),
            # Best of the runs of each: the least disturbed by other load (the binning is memory-bound and
            # suffers more from neighbours on a shared machine than the loop).
            "best_seconds": best,
            "best_ratio_vectorised_vs_per_sample_loop": ratio(best["per_sample_loop"], best["vectorised"]),
            "target_ratio": 10.0,
        },
        "loader": {
            "samples": len(split),
            "batch_size": batch_size,
            "seconds_per_epoch": loader,
            "samples_per_s": {k: round(len(split) / v) for k, v in loader.items()},
            "ratio_vectorised_vs_per_sample_collate": ratio(
                loader["per_sample_collate"], loader["vectorised_gather"]
            ),
        },
        "quick": quick,
    }
    result["ratios"] = {
        "binning: vectorised vs per-sample loop": result["binning"]["ratio_vectorised_vs_per_sample_loop"],
        "binning: vectorised vs per-sample loop, best of runs": result["binning"][
            "best_ratio_vectorised_vs_per_sample_loop"
        ],
        "loader: vectorised gather vs per-sample collate": result["loader"][
            "ratio_vectorised_vs_per_sample_collate"
        ],
    }
    return result


if __name__ == "__main__":
    print(save(NAME, main()))
