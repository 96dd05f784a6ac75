"""The embedded default dataset of paper B: spikes whose classes differ only in timing.

Written in SHD's exact HDF5 layout (shd_train.h5, shd_test.h5 with
`spikes/times` vlen float seconds, `spikes/units` vlen uint16, `labels`,
`extra/`), so the real SHD loader reads it unchanged.

Construction (why delays matter): the units are split into `n_groups`
contiguous groups. In every sample every group fires one burst (each unit
about `spikes_per_unit` spikes, jittered by `spike_jitter_ms`) at
onset + lag[class, group]; the onset is random per sample. A class is an
ordering of the groups on an evenly spaced lag grid, and classes come in pairs
(an ordering and its reverse). So
- every unit fires the same number of spikes on average in every class;
- absolute time carries no class information (random onset);
- a network that only sees coincident activity can at best tell which groups
  burst next to each other, which is the same for an ordering and its reverse;
  telling the pair apart needs memory of *which group came first*, i.e. delays.
Background Poisson noise on every unit and per-burst timing jitter make the
task not trivially separable.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "n_units": 700,
    "n_classes": 10,
    "n_groups": 5,
    "n_train": 2000,
    "n_test": 500,
    "lag_step_ms": 25.0,
    "onset_max_ms": 100.0,
    "burst_jitter_ms": 8.0,
    "spike_jitter_ms": 4.0,
    "spikes_per_unit": 0.5,
    "noise_rate_hz": 5.0,
    "tail_ms": 30.0,
}


def class_lags(n_classes: int, n_groups: int, lag_step_ms: float, rng: np.random.Generator) -> np.ndarray:
    """(n_classes, n_groups) lag of each group per class, in ms.

    Classes 2k and 2k+1 are a random ordering of the groups and its reverse;
    all orderings are distinct.
    """
    if n_classes < 2 or n_classes % 2:
        raise ValueError(f"n_classes must be even and >= 2 (an ordering and its reverse), got {n_classes}")
    if n_classes > math.factorial(n_groups):
        raise ValueError(f"n_classes={n_classes} exceeds the {math.factorial(n_groups)} orderings of {n_groups} groups")
    seen: set[tuple[int, ...]] = set()
    orders: list[np.ndarray] = []
    while len(orders) < n_classes:
        perm = rng.permutation(n_groups)
        key, rkey = tuple(perm), tuple(perm[::-1])
        if key in seen or rkey in seen or key == rkey:
            continue
        seen.update((key, rkey))
        orders += [perm, perm[::-1].copy()]
    # order[k] = group that fires k-th -> lag of group g = position of g in the order.
    lags = np.zeros((n_classes, n_groups))
    for c, order in enumerate(orders):
        lags[c, order] = np.arange(n_groups) * lag_step_ms
    return lags


def generate(cfg: dict[str, Any], n_samples: int, rng: np.random.Generator, lags: np.ndarray):
    """Samples as (times list, units list, labels, speakers); vectorised over spikes per sample."""
    n_units, n_groups = int(cfg["n_units"]), int(cfg["n_groups"])
    group_of_unit = (np.arange(n_units) * n_groups) // n_units  # contiguous, near-equal groups
    duration_ms = cfg["onset_max_ms"] + (n_groups - 1) * cfg["lag_step_ms"] + cfg["tail_ms"]
    labels = np.arange(n_samples) % lags.shape[0]
    rng.shuffle(labels)
    times: list[np.ndarray] = []
    units: list[np.ndarray] = []
    for label in labels:
        onset = rng.uniform(0, cfg["onset_max_ms"])
        burst = onset + lags[label] + rng.normal(0, cfg["burst_jitter_ms"], n_groups)  # per-group burst time
        n_spk = rng.poisson(cfg["spikes_per_unit"], n_units)
        u_b = np.repeat(np.arange(n_units), n_spk)
        t_b = burst[group_of_unit[u_b]] + rng.normal(0, cfg["spike_jitter_ms"], u_b.size)
        n_noise = rng.poisson(cfg["noise_rate_hz"] * duration_ms / 1000.0 * n_units)
        u_n = rng.integers(0, n_units, n_noise)
        t_n = rng.uniform(0, duration_ms, n_noise)
        t = np.clip(np.concatenate([t_b, t_n]), 0, duration_ms) / 1000.0
        u = np.concatenate([u_b, u_n])
        order = np.argsort(t, kind="stable")  # SHD lists spikes in time order
        times.append(t[order].astype(np.float32))
        units.append(u[order].astype(np.uint16))
    speakers = rng.integers(0, 10, n_samples)
    return times, units, labels.astype(np.uint8), speakers


def write_shd_file(path: str | Path, times: list[np.ndarray], units: list[np.ndarray], labels: np.ndarray,
                   speakers: np.ndarray, class_names: list[str], meta: dict[str, Any]) -> None:
    """Write one file in SHD's layout (times/units as vlen datasets, labels, extra/)."""
    n = len(labels)
    with h5py.File(path, "w", track_order=False) as f:
        spikes = f.create_group("spikes")
        t_ds = spikes.create_dataset("times", (n,), dtype=h5py.vlen_dtype(np.float32), track_times=False)
        u_ds = spikes.create_dataset("units", (n,), dtype=h5py.vlen_dtype(np.uint16), track_times=False)
        for i in range(n):  # h5py has no bulk vlen write; one assignment per sample, not per spike
            t_ds[i] = times[i]
            u_ds[i] = units[i]
        f.create_dataset("labels", data=labels, track_times=False)
        extra = f.create_group("extra")
        extra.create_dataset("speaker", data=speakers.astype(np.uint16), track_times=False)
        extra.create_dataset("keys", data=np.array([s.encode() for s in class_names]), track_times=False)
        info = extra.create_group("meta_info")
        for key, value in sorted(meta.items()):
            info.attrs[key] = value


def write_synth(out_dir: str | Path, cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write shd_train.h5 and shd_test.h5 into out_dir, deterministic from cfg['seed'].

    Returns the full config used (defaults filled in) plus the class lags.
    """
    cfg = {**DEFAULTS, **(cfg or {})}
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown synth option(s) {sorted(unknown)} (allowed: {', '.join(DEFAULTS)})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(int(cfg["seed"]))
    lags = class_lags(int(cfg["n_classes"]), int(cfg["n_groups"]), float(cfg["lag_step_ms"]), rng)
    names = ["order_" + "".join(str(g) for g in np.argsort(l, kind="stable")) for l in lags]
    meta = {k: v for k, v in cfg.items()}
    meta["generator"] = "pipeline.data.synth_shd"
    for split, n in (("train", int(cfg["n_train"])), ("test", int(cfg["n_test"]))):
        times, units, labels, speakers = generate(cfg, n, rng, lags)
        write_shd_file(out_dir / f"shd_{split}.h5", times, units, labels, speakers, names, meta)
    return {**cfg, "class_lags_ms": lags.tolist(), "class_names": names}
