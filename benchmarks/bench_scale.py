"""Benchmark: delays_prepare and the training loader at the datasets' full sizes (memory and time).

Writes random content in the official layouts into a temporary folder: SHD
(8,156 + 2,264 samples, about 547 MB: 6 bytes an event, so about 8,750 events
a sample), SSC (75,466 + 9,981 + 20,382 samples, about 5.5 GB) and a subset of
GSC (1-s wavs in 35 word folders with the two split lists); each at two sizes
(half and full; GSC 8,000 and 16,000 files). Then, each in a fresh child
process (`python -m benchmarks.bench_scale --job ...`):

- prepare: the old whole-file code (benchmarks/legacy_prepare.py) and the
  streaming delays_prepare: wall and CPU seconds (the process and its workers),
  samples per CPU second, peak RSS (the sum of the VmHWM of the process and
  of its workers: an upper bound; and the summed RSS sampled every 50 ms). The RSS growth
  per extra sample between the two sizes, against the prepared bytes per
  sample, says whether memory is bounded by a chunk (about 0) or by the data
  (the old code: about 3x); the two points extrapolate to full SSC and GSC.
- gsc memory: GSC's delays_prepare with 1, 2, 4 and 8 feature workers on the
  larger subset and 1 on the smaller (more workers than cores is fine for
  memory): the peaks of the RSS and the PSS summed over the process and its
  workers (smaps_rollup sampled every 50 ms) and the sum of their VmHWM; the
  model base + per worker * workers at the full 105,829 files that SLURM's
  request for a GSC prepare job uses (pipeline/data/gsc.py prepare_memory_mb).
- loader: batches per second over the training split, shuffled, from the
  memory-mapped store (plain and prefetching iterator) and from the old
  in-RAM torch split (its (B, T) gather); the loader time per step left
  exposed when each step also computes for 10 ms without the GIL (as a GPU
  step does; a sleep stands in for it); anonymous RSS at two store sizes.
- sharing: two processes read the same store (every page) at the same time;
  the Pss of their frames.npy mappings (/proc/<pid>/smaps) plus their growth
  of private memory (smaps_rollup) shows one copy in the page cache, against
  two private copies for the old torch split.

Everything written is deleted at the end. `quick` runs small sizes of SHD and
GSC only (a smoke test, under a minute).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from benchmarks.common import REPO, ratio, save

NAME = "scale"
MB = 1 << 20
FULL_SIZES = {  # samples per official file, and GSC files
    "shd": {"train": 8156, "test": 2264},
    "ssc": {"train": 75466, "valid": 9981, "test": 20382},
    "gsc": {"files": 105829},
}
GSC_BENCH_FILES = (
    8000,
    16000,
)  # a subset: its per-file cost extrapolates (both well above the chunks in flight)
EVENTS_PER_SAMPLE = 8750  # SHD holds 547 MB for 10,420 samples at 6 bytes an event
DURATION_S = {"shd": (0.5, 1.4), "ssc": (0.6, 1.0)}
GSC_WORDS = (
    "backward bed bird cat dog down eight five follow forward four go happy house learn left marvin "
    "nine no off on one right seven sheila six stop three tree two up visual wow yes zero"
).split()
BATCH_SIZE = {"shd": 256, "ssc": 128}  # the reference recipes
LOADER_BATCHES = 150  # batches timed per loader
GPU_STEP_S = 0.01  # a training step's device time, for the overlap measurement
TARGETS = {
    "rss_growth_vs_prepared_bytes": 1.3,
    "gsc_full_peak_gb": 4.0,
    "ssc_full_peak_gb": 3.0,
    "loader_speedup": 1.0,
}


# ---- data in the official layouts -----------------------------------------------------------------


def _random_samples(
    n: int, rng: np.random.Generator, duration_s: tuple[float, float], events: int
) -> tuple[np.ndarray, np.ndarray]:
    """Object arrays of n samples' sorted float32 spike times and uint16 units, vectorised."""
    counts = rng.poisson(events, n)
    # Sorted uniform times: normalised running sums of exponential gaps, one extra gap closing each sample.
    closed = counts + 1
    ends = np.cumsum(closed)
    run = np.cumsum(rng.exponential(size=int(ends[-1])))
    starts = np.concatenate([[0.0], run[ends[:-1] - 1]])
    scale = rng.uniform(*duration_s, n) / (run[ends - 1] - starts)
    t = ((run - np.repeat(starts, closed)) * np.repeat(scale, closed)).astype(np.float32)
    keep = np.ones(len(t), bool)
    keep[ends - 1] = False
    cut = np.cumsum(counts)[:-1]
    times, units = np.empty(n, object), np.empty(n, object)
    times[:] = np.split(t[keep], cut)
    units[:] = np.split(rng.integers(0, 700, int(counts.sum())).astype(np.uint16), cut)
    return times, units


def write_spike_file(
    path: Path, n: int, seed: int, duration_s: tuple[float, float], events: int, n_classes: int
) -> None:
    """An SHD-layout file (pipeline.data.synth_shd.write_shd_file's datasets) of n random samples, written
    in chunks. Chunks cycle through 8 generated ones: binning costs the same, generation 8x less."""
    rng = np.random.default_rng(seed)
    chunk = 1024
    pool = [_random_samples(chunk, rng, duration_s, events) for _ in range(min(8, -(-n // chunk)))]
    with h5py.File(path, "w", track_order=False) as f:
        times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float32), track_times=False)
        units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16), track_times=False)
        for k, start in enumerate(range(0, n, chunk)):
            stop = min(start + chunk, n)
            times[start:stop], units[start:stop] = (a[: stop - start] for a in pool[k % len(pool)])
        f.create_dataset("labels", data=(np.arange(n) % n_classes).astype(np.uint8), track_times=False)
        f.create_dataset("extra/speaker", data=rng.integers(0, 10, n).astype(np.uint16), track_times=False)
        f.create_dataset(
            "extra/keys", data=np.array([f"class{c}".encode() for c in range(n_classes)]), track_times=False
        )


def write_spike_set(root: Path, fmt: str, fraction: float, events: int) -> int:
    """Official files of `fmt` at `fraction` of the full sample counts; returns the total samples."""
    root.mkdir(parents=True)
    n_classes = 20 if fmt == "shd" else 35
    total = 0
    for k, (split, full) in enumerate(FULL_SIZES[fmt].items()):
        n = max(int(round(full * fraction)), n_classes)
        write_spike_file(root / f"{fmt}_{split}.h5", n, k, DURATION_S[fmt], events, n_classes)
        total += n
    return total


def write_gsc_set(root: Path, n_files: int, seed: int = 0) -> int:
    """n_files random 1-s 16 kHz wavs over the 35 word folders, about 10 % each in the two split lists."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    lists: dict[str, list[str]] = {"validation_list.txt": [], "testing_list.txt": []}
    for word in GSC_WORDS:
        (root / word).mkdir(parents=True)
    (root / "_background_noise_").mkdir()
    for i in range(n_files):
        rel = f"{GSC_WORDS[i % len(GSC_WORDS)]}/{i:08x}_nohash_0.wav"
        sf.write(str(root / rel), rng.integers(-3000, 3000, 16000).astype(np.int16), 16000, subtype="PCM_16")
        if i % 10 in (1, 2):
            lists["validation_list.txt" if i % 10 == 1 else "testing_list.txt"].append(rel)
    for name, rels in lists.items():
        (root / name).write_text("".join(r + "\n" for r in rels))
    return n_files


def data_config(fmt: str, root: Path) -> Any:
    from pipeline.params.configs import DelaysData

    channels = {"n_channels": 140, "pool": 1} if fmt == "gsc" else {"n_channels": 700, "pool": 5}
    return DelaysData(
        format=fmt, root=str(root), valid_fraction=0.1, valid_seed=0, time_step_ms=10.0, **channels
    )


# ---- child processes: one measurement each ----------------------------------------------------------


def _status_kb(field: str, pid: str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _smaps_kb(path_suffix: str | None = None, pid: str = "self") -> dict[str, int]:
    """A process's memory counters (kB): the whole process (smaps_rollup), or only the mappings of
    files whose path ends with `path_suffix` (smaps)."""
    if path_suffix is None:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    else:
        lines, keep = [], False
        for line in Path("/proc/self/smaps").read_text().splitlines():
            head = line.split()
            if "-" in head[0] and ":" not in head[0]:  # a mapping's header: address range, perms, ..., path
                keep = len(head) >= 6 and head[-1].endswith(path_suffix)
            elif keep:
                lines.append(line)
    out: dict[str, int] = {}
    for line in lines:
        key, value = line.split(":", 1)
        if value.strip().endswith("kB"):
            out[key] = out.get(key, 0) + int(value.split()[0])
    return out


class TreeMemoryWatch:
    """Memory of this process and its children (GSC's feature workers), sampled every 50 ms: `peak`, the
    largest summed RSS seen; `bound()`, the sum of every process's own peak (VmHWM), an upper bound of
    the true peak that sampling cannot miss (for one process it is exact). With `pss`, each sample reads
    every process's smaps_rollup instead (slower): `peak` and `peak_pss`, the largest summed RSS and PSS
    (PSS divides each shared page among the processes mapping it: shared libraries count once)."""

    def __init__(self, interval_s: float = 0.05, pss: bool = False) -> None:
        import psutil

        self._me, self._interval, self.peak, self.peak_pss = psutil.Process(), interval_s, 0, 0
        self._pss = pss
        self._child_hwm: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss_pss(self, proc: Any) -> tuple[int, int]:
        if not self._pss:
            return proc.memory_info().rss, 0
        rollup = _smaps_kb(pid=str(proc.pid))
        return rollup["Rss"] * 1024, rollup["Pss"] * 1024

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            rss, pss = self._rss_pss(self._me)
            for child in self._me.children(recursive=True):
                try:
                    child_rss, child_pss = self._rss_pss(child)
                    hwm = _status_kb("VmHWM", str(child.pid)) * 1024  # 0 once it has exited (a zombie)
                    self._child_hwm[child.pid] = max(self._child_hwm.get(child.pid, 0), hwm)
                    rss, pss = rss + child_rss, pss + child_pss
                except (psutil.Error, OSError, KeyError):  # exited between listing and reading
                    pass
            self.peak, self.peak_pss = max(self.peak, rss), max(self.peak_pss, pss)
            self._stop.wait(self._interval)

    def bound(self) -> int:
        return _status_kb("VmHWM") * 1024 + sum(self._child_hwm.values())

    def __enter__(self) -> "TreeMemoryWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def job_prepare(impl: str, fmt: str, root: str, out: str) -> dict[str, Any]:
    from benchmarks import legacy_prepare
    from pipeline.delays.data_stages import prepare
    from pipeline.drivers.stage_table import DelaysPrepareConfig

    cfg = data_config(fmt, Path(root))
    wall, cpu = time.perf_counter(), _cpu_s()
    with TreeMemoryWatch() as watch:
        if impl == "legacy":
            legacy_prepare.prepare(cfg, fmt, Path(out))
        else:
            prepare(DelaysPrepareConfig(data=cfg, max_skipped_fraction=0.0), dataset=fmt, out=Path(out))
    wall, cpu = time.perf_counter() - wall, _cpu_s() - cpu
    own_peak = _status_kb("VmHWM") * 1024
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss": max(own_peak, watch.peak),
        "peak_rss_bound": watch.bound(),
        "own_peak_rss": own_peak,
    }


def job_gsc_memory(root: str, out: str, workers: int) -> dict[str, Any]:
    """GSC delays_prepare with `workers` feature workers: the peaks of the RSS and the PSS summed over the
    process and its workers (smaps_rollup sampled every 50 ms), and the sum of their VmHWM."""
    from pipeline.data import gsc
    from pipeline.delays.data_stages import prepare
    from pipeline.drivers.stage_table import DelaysPrepareConfig

    # prepare() starts one worker per usable CPU; this machine has fewer CPUs than the counts measured, so
    # the count is given here (memory does not depend on the cores the workers share).
    gsc.FeatureWorkers = functools.partial(gsc.FeatureWorkers, workers)
    cfg = data_config("gsc", Path(root))
    wall, cpu = time.perf_counter(), _cpu_s()
    with TreeMemoryWatch(pss=True) as watch:
        prepare(DelaysPrepareConfig(data=cfg, max_skipped_fraction=0.0), dataset="gsc", out=Path(out))
    return {
        "workers": workers,
        "wall_s": time.perf_counter() - wall,
        "cpu_s": _cpu_s() - cpu,
        "peak_rss": watch.peak,
        "peak_pss": watch.peak_pss,
        "peak_rss_bound": watch.bound(),
        "own_peak_rss": _status_kb("VmHWM") * 1024,
    }


def _load(impl: str, data: str, split: str) -> Any:
    from benchmarks import legacy_prepare
    from pipeline.data.prepared import load_split

    path = Path(data) / split
    return legacy_prepare.load_split(path.with_suffix(".pt")) if impl == "legacy" else load_split(path)


def _batches(impl: str, split: Any, batch_size: int, prefetch: bool) -> Iterator[Any]:
    import torch

    from pipeline.data.prepared import iterate_batches
    from pipeline.data.sampling import Dist, ShardedBatchSampler

    generator = torch.Generator().manual_seed(0)
    if impl == "legacy":
        return (
            split.batch(torch.as_tensor(idx))
            for idx in ShardedBatchSampler(len(split), batch_size, True, generator, Dist())
        )
    return iterate_batches(
        split, batch_size, shuffle=True, generator=generator, prefetch=3 if prefetch else 0
    )


def _seconds_per_batch(batches: Iterator[Any], max_batches: int, step_s: float) -> float:
    t0, n = time.perf_counter(), 0
    for _ in zip(range(max_batches), batches):
        if step_s:
            time.sleep(step_s)
        n += 1
    return (time.perf_counter() - t0) / n


def job_loader(
    impl: str, data: str, split: str, batch_size: int, max_batches: int, step_s: float
) -> dict[str, Any]:
    """Batches per second with nothing else to do, and the loader time left exposed per training step when
    each step computes for `step_s` without the GIL (as a GPU step does: sleep stands in for it)."""
    t0 = time.perf_counter()
    loaded = _load(impl, data, split)
    result: dict[str, Any] = {"load_s": time.perf_counter() - t0, "samples": len(loaded)}
    for prefetch in (False,) if impl == "legacy" else (False, True):
        name = "prefetch" if prefetch else "plain"
        _seconds_per_batch(
            _batches(impl, loaded, batch_size, prefetch), max_batches, 0.0
        )  # warm-up: pages mapped
        per_batch = _seconds_per_batch(_batches(impl, loaded, batch_size, prefetch), max_batches, 0.0)
        per_step = _seconds_per_batch(_batches(impl, loaded, batch_size, prefetch), max_batches, step_s)
        result[f"{name}_batches_per_s"] = round(1 / per_batch, 1)
        result[f"{name}_exposed_ms_per_step"] = round(1000 * (per_step - step_s), 3)
    result.update(
        rss_anon=_status_kb("RssAnon") * 1024,
        rss_file=_status_kb("RssFile") * 1024,
        peak_rss=_status_kb("VmHWM") * 1024,
    )
    return result


def job_share(impl: str, data: str, split: str) -> None:
    """Read every frame, say ready, measure when the parent says so (the other reader then holds them too)
    and print the result; exit when the parent says so (after the other reader has measured).

    Memory of the frames: for the store, the Pss of the frames.npy mapping (page cache pages, divided among
    the processes mapping them); for the old torch split, the growth of private (anonymous) Pss."""
    import torch  # noqa: F401  (imported before the baseline: its own memory is not the split's)

    before = _smaps_kb()
    loaded = _load(impl, data, split)
    frames = loaded.frames if impl != "legacy" else loaded.frames.numpy()
    step = max(1, (64 * MB) // max(frames[:1].nbytes, 1))
    checksum = sum(
        float(np.add.reduce(frames[i : i + step], axis=None, dtype=np.float64))  # reads every page
        for i in range(0, len(frames), step)
    )
    print("ready", flush=True)
    sys.stdin.readline()
    after, mapped = _smaps_kb(), _smaps_kb("/frames.npy")
    print(
        json.dumps(
            {
                "frames_bytes": int(frames.nbytes),
                "checksum": checksum,
                "private_growth": (after["Pss_Anon"] - before["Pss_Anon"]) * 1024,
                "frames_map_rss": mapped.get("Rss", 0) * 1024,
                "frames_map_pss": mapped.get("Pss", 0) * 1024,
            }
        ),
        flush=True,
    )
    sys.stdin.readline()  # keep the frames until the other reader has measured too


JOBS = {
    "prepare": job_prepare,
    "gsc_memory": job_gsc_memory,
    "loader": job_loader,
    "share": job_share,
}


def run_job(kind: str, **kwargs: Any) -> dict[str, Any]:
    """Run one job in a fresh interpreter (its own peak RSS and CPU time) and return its result."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_scale", "--job", json.dumps({"kind": kind, **kwargs})],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench_scale job {kind} {kwargs} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_two_readers(impl: str, data: Path, split: str) -> list[dict[str, Any]]:
    """Two share jobs at once: both read the store, then both measure while both still map it."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.bench_scale",
        "--job",
        json.dumps({"kind": "share", "impl": impl, "data": str(data), "split": split}),
    ]
    procs = [
        subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"bench_scale share job ({impl}) failed before reading its store")
        for p in procs:
            p.stdin.write("measure\n")
            p.stdin.flush()
        results = [json.loads(p.stdout.readline()) for p in procs]
        for p in procs:
            p.communicate("exit\n", timeout=60)
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


# ---- measurements -------------------------------------------------------------------------------------


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _line(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(intercept, slope) through two (samples, value) points."""
    (n1, v1), (n2, v2) = points
    slope = (v2 - v1) / (n2 - n1)
    return v1 - slope * n1, slope


def measure_prepare(fmt: str, roots: list[tuple[Path, int]], work: Path, keep: set[int]) -> dict[str, Any]:
    """Both implementations at both sizes; stores of the sizes in `keep` stay for the loader."""
    runs: dict[str, list[dict[str, Any]]] = {"legacy": [], "new": []}
    for size, (root, n) in enumerate(roots):
        for impl in runs:
            out = work / f"prepared_{fmt}_{size}_{impl}"
            run = run_job("prepare", impl=impl, fmt=fmt, root=str(root), out=str(out))
            run.update(samples=n, output_bytes=_tree_bytes(out), samples_per_cpu_s=n / run["cpu_s"])
            runs[impl].append(run)
            if size not in keep:
                shutil.rmtree(out)
    full = FULL_SIZES[fmt]["files"] if fmt == "gsc" else sum(FULL_SIZES[fmt].values())
    store_per_sample = runs["new"][-1]["output_bytes"] / runs["new"][-1]["samples"]
    summary: dict[str, Any] = {
        "samples": [n for _, n in roots],
        "full_samples": full,
        "prepared_bytes_per_sample": round(store_per_sample),
        "runs": runs,
    }
    for impl, impl_runs in runs.items():
        # The bound, not the sampled peak: a sampled sum over processes creeps up with the run's length as
        # their peaks coincide by chance, which a line would extrapolate as growth.
        _, growth = _line([(r["samples"], r["peak_rss_bound"]) for r in impl_runs])
        largest = impl_runs[-1]
        scale = full / largest["samples"]  # time: proportional to the largest run (start-up costs included)
        summary[impl] = {
            "rss_growth_per_sample_bytes": round(growth),
            "rss_growth_vs_prepared_bytes": round(growth / store_per_sample, 3),
            "full_peak_rss_gb": round(
                (largest["peak_rss_bound"] + max(growth, 0) * (full - largest["samples"])) / 2**30, 3
            ),
            "full_wall_s": round(largest["wall_s"] * scale, 1),
            "full_cpu_s": round(largest["cpu_s"] * scale, 1),
            "measured_at_full_size": largest["samples"] == full,
        }
    return summary


def measure_gsc_memory(
    roots: list[tuple[Path, int]], work: Path, workers: tuple[tuple[int, ...], ...]
) -> dict[str, Any]:
    """GSC delays_prepare's peak memory summed over its processes, at the worker counts `workers` of each
    set size (one worker at both sizes, every count at the larger), and the model of each measure at the
    full size: base + per_worker * workers.

    per_worker and the base: a least-squares line over the worker counts at the larger size. The set's
    size: the growth between the two sizes with one worker (whose chunks per worker are many at both,
    so none of it is a worker's first chunks), extrapolated to the full set and added to the base. With
    several workers the smaller size would mix in that warm-up: each worker computes only a few chunks."""
    runs = []
    for (root, n), counts in zip(roots, workers):
        for count in counts:
            out = work / f"gsc_memory_{n}_{count}"
            runs.append({"files": n, **run_job("gsc_memory", root=str(root), out=str(out), workers=count)})
            shutil.rmtree(out)
    full, (small, large) = FULL_SIZES["gsc"]["files"], (n for _, n in roots)
    at_large = [r for r in runs if r["files"] == large]
    one = {r["files"]: r for r in runs if r["workers"] == 1}
    design = np.array([[1.0, r["workers"]] for r in at_large])
    models = {}
    for measure in ("peak_rss", "peak_pss", "peak_rss_bound"):
        values = np.array([r[measure] for r in at_large], float)
        coef = np.linalg.lstsq(design, values, rcond=None)[0]
        per_file = (one[large][measure] - one[small][measure]) / (large - small)
        # a decrease with the set's size is noise: the full size adds nothing then
        base = float(coef[0]) + max(per_file, 0.0) * (full - large)
        models[measure] = {
            "base_mb": round(base / MB),
            "per_worker_mb": round(float(coef[1]) / MB),
            "per_1000_files_mb": round(per_file * 1000 / MB, 1),
            "max_residual_mb": round(float(np.abs(values - design @ coef).max()) / MB),
            "full_gb": {r["workers"]: round((base + coef[1] * r["workers"]) / 2**30, 2) for r in at_large},
        }
    return {
        "files": [small, large],
        "workers": [list(c) for c in workers],
        "full_files": full,
        "runs": runs,
        "model": models,
    }


def gsc_memory_absolutes(memory: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of measure_gsc_memory: the model's terms and its full-size peak at the most
    workers measured."""
    out: dict[str, float] = {}
    most = max(memory["workers"][-1])
    for measure, label in (
        ("peak_rss", "RSS"),
        ("peak_pss", "PSS"),
        ("peak_rss_bound", "RSS upper bound (VmHWM)"),
    ):
        model = memory["model"][measure]
        out[f"prepare gsc: summed {label} MB per worker"] = model["per_worker_mb"]
        out[f"prepare gsc full: summed {label} MB, base"] = model["base_mb"]
        out[f"prepare gsc: summed {label} MB per 1000 files, 1 worker"] = model["per_1000_files_mb"]
        out[f"prepare gsc full, {most} workers: summed {label} GB (extrapolated)"] = model["full_gb"][most]
    return out


def measure_loader(
    fmt: str, work: Path, sizes: tuple[int, ...], max_batches: int
) -> dict[int, dict[str, Any]]:
    """{size: {implementation: loader job result}} over the training split of the kept stores."""
    return {
        size: {
            impl: run_job(
                "loader",
                impl=impl,
                data=str(work / f"prepared_{fmt}_{size}_{impl}"),
                split="train",
                batch_size=BATCH_SIZE[fmt],
                max_batches=max_batches,
                step_s=GPU_STEP_S,
            )
            for impl in ("legacy", "new")
        }
        for size in sizes
    }


@dataclass(frozen=True)
class Plan:
    """What one run measures: sizes, formats, and which prepared stores the loader and sharing read."""

    events_per_sample: int
    fractions: tuple[float, float]  # of the official SHD/SSC sample counts
    gsc_files: tuple[int, int]
    prepare: tuple[str, ...]
    loader: dict[
        str, tuple[int, ...]
    ]  # format -> sizes (indices into the two) whose training split is loaded
    sharing: tuple[str, int]  # format, size
    max_batches: int
    gsc_workers: tuple[tuple[int, ...], tuple[int, ...]]  # worker counts whose memory is measured, per size


FULL = Plan(
    EVENTS_PER_SAMPLE,
    (0.5, 1.0),
    GSC_BENCH_FILES,
    ("shd", "ssc", "gsc"),
    {"shd": (1,), "ssc": (0, 1)},
    ("ssc", 1),
    LOADER_BATCHES,
    ((1,), (1, 2, 4, 8)),  # one worker at both sizes: the set size's part; every count at the larger
)
# The smoke test's plan: SSC runs the same code as SHD (without the hold-out), so quick leaves it out.
QUICK = Plan(2000, (0.02, 0.04), (100, 200), ("shd", "gsc"), {"shd": (0, 1)}, ("shd", 1), 20, ((1,), (1, 2)))


def main(quick: bool = False) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        work = Path(tmp)
        roots = {
            fmt: [
                (
                    work / f"raw_{fmt}_{i}",
                    write_spike_set(work / f"raw_{fmt}_{i}", fmt, f, plan.events_per_sample),
                )
                for i, f in enumerate(plan.fractions)
            ]
            for fmt in plan.prepare
            if fmt != "gsc"
        }
        if "gsc" in plan.prepare:
            roots["gsc"] = [
                (work / f"raw_gsc_{i}", write_gsc_set(work / f"raw_gsc_{i}", n))
                for i, n in enumerate(plan.gsc_files)
            ]
        raw_bytes = {fmt: _tree_bytes(r[-1][0]) for fmt, r in roots.items()}
        write_s = time.perf_counter() - t_start
        prep, gsc_memory = {}, None
        for fmt in plan.prepare:
            keep = set(plan.loader.get(fmt, ())) | ({plan.sharing[1]} if plan.sharing[0] == fmt else set())
            prep[fmt] = measure_prepare(fmt, roots[fmt], work, keep)
            if fmt == "gsc":
                gsc_memory = measure_gsc_memory(roots[fmt], work, plan.gsc_workers)
            for root, _ in roots.pop(fmt):  # frees the disk for the next format
                shutil.rmtree(root)
        loader = {
            fmt: measure_loader(fmt, work, sizes, plan.max_batches) for fmt, sizes in plan.loader.items()
        }
        fmt, size = plan.sharing
        sharing = {
            impl: run_two_readers(impl, work / f"prepared_{fmt}_{size}_{impl}", "train")
            for impl in ("legacy", "new")
        }
    result = summarise(prep, loader, sharing, quick, raw_bytes, write_s, time.perf_counter() - t_start)
    if gsc_memory is not None:
        result["gsc_memory"] = gsc_memory
        # quick's sets hold a chunk or less: too few for every worker to start or reach its peak
        if not quick:
            result["absolutes"].update(gsc_memory_absolutes(gsc_memory))
    return result


def summarise(
    prep: dict[str, Any],
    loader: dict[str, Any],
    sharing: dict[str, list[dict[str, Any]]],
    quick: bool,
    raw_bytes: dict[str, int],
    write_s: float,
    total_s: float,
) -> dict[str, Any]:
    # Frames held by both readers together, in copies of the frames: page-cache Pss plus private growth.
    copies = {
        impl: round(
            sum(r["frames_map_pss"] + r["private_growth"] for r in readers) / readers[0]["frames_bytes"], 2
        )
        for impl, readers in sharing.items()
    }
    growing = next(
        fmt for fmt, by_size in loader.items() if len(by_size) > 1
    )  # the loader measured at two sizes
    anon = {
        impl: [loader[growing][size][impl]["rss_anon"] for size in sorted(loader[growing])]
        for impl in ("legacy", "new")
    }
    ratios: dict[str, float] = {}
    absolutes: dict[str, float] = {}
    for fmt, p in prep.items():
        old, new = p["runs"]["legacy"][-1], p["runs"]["new"][-1]
        ratios[f"prepare {fmt}: RSS growth per sample / prepared bytes per sample, new (target <= 1.3)"] = p[
            "new"
        ]["rss_growth_vs_prepared_bytes"]
        ratios[f"prepare {fmt}: RSS growth per sample / prepared bytes per sample, old"] = p["legacy"][
            "rss_growth_vs_prepared_bytes"
        ]
        ratios[f"prepare {fmt}: peak RSS old / new, largest size"] = ratio(
            old["peak_rss_bound"], new["peak_rss_bound"]
        )
        ratios[f"prepare {fmt}: wall old / new, largest size"] = ratio(old["wall_s"], new["wall_s"])
        ratios[f"prepare {fmt}: samples per CPU-s new / old, largest size"] = ratio(
            old["cpu_s"], new["cpu_s"]
        )
    for fmt in ("ssc", "gsc") if not quick else ():
        how = "measured" if prep[fmt]["new"]["measured_at_full_size"] else "extrapolated"
        for impl in ("new", "legacy"):
            # GSC's new prepare runs one feature worker per usable CPU: its peak is this machine's count's
            workers = f", {len(os.sched_getaffinity(0))} workers" if fmt == "gsc" and impl == "new" else ""
            absolutes[f"prepare {fmt} full, {impl}: peak RSS GB ({how}{workers})"] = prep[fmt][impl][
                "full_peak_rss_gb"
            ]
            absolutes[f"prepare {fmt} full, {impl}: wall s ({how})"] = prep[fmt][impl]["full_wall_s"]
    exposed = f"ms per step not overlapped with a {1000 * GPU_STEP_S:g} ms device step"
    for fmt, by_size in loader.items():
        old, new = by_size[max(by_size)]["legacy"], by_size[max(by_size)]["new"]
        ratios[f"loader {fmt}: batches/s, memmap prefetching / old in-RAM (target >= 1)"] = round(
            new["prefetch_batches_per_s"] / old["plain_batches_per_s"], 3
        )
        ratios[f"loader {fmt}: batches/s, memmap plain / old in-RAM"] = round(
            new["plain_batches_per_s"] / old["plain_batches_per_s"], 3
        )
        absolutes[f"loader {fmt}: {exposed}, old in-RAM"] = old["plain_exposed_ms_per_step"]
        absolutes[f"loader {fmt}: {exposed}, memmap plain"] = new["plain_exposed_ms_per_step"]
        absolutes[f"loader {fmt}: {exposed}, memmap prefetching"] = new["prefetch_exposed_ms_per_step"]
    ratios[f"loader {growing}: anonymous RSS, full / half store, new (target ~1)"] = round(
        anon["new"][-1] / anon["new"][0], 3
    )
    ratios[f"loader {growing}: anonymous RSS, full / half store, old"] = round(
        anon["legacy"][-1] / anon["legacy"][0], 3
    )
    ratios["sharing: copies of the frames held by 2 readers, new (target 1)"] = copies["new"]
    ratios["sharing: copies of the frames held by 2 readers, old"] = copies["legacy"]
    met = {
        "rss_growth_vs_prepared_bytes": all(
            p["new"]["rss_growth_vs_prepared_bytes"] <= TARGETS["rss_growth_vs_prepared_bytes"]
            for p in prep.values()
        ),
        **{
            f"{fmt}_full_peak_gb": prep[fmt]["new"]["full_peak_rss_gb"] < TARGETS[f"{fmt}_full_peak_gb"]
            for fmt in ("ssc", "gsc")
            if fmt in prep
        },
        "loader_speedup": all(
            v >= TARGETS["loader_speedup"] for k, v in ratios.items() if "(target >= 1)" in k
        ),
        "sharing_one_copy": copies["new"] < 1.5,
    }
    return {
        "name": NAME,
        "what": (
            "delays_prepare (old whole-file vs streaming store) and the loader at full dataset sizes: "
            "memory, time"
        ),
        "quick": quick,  # quick: sizes too small for the targets to mean anything (start-up dominates)
        "cpus": len(os.sched_getaffinity(0)),
        "raw_bytes_largest_size": raw_bytes,
        "write_raw_s": round(write_s, 1),
        "total_s": round(total_s, 1),
        "prepare": prep,
        "loader": loader,
        "sharing": {"readers": sharing, "copies": copies},
        "loader_anonymous_rss_bytes": {"format": growing, **anon},
        "targets": TARGETS,
        "targets_met": met,
        "ratios": ratios,
        "absolutes": absolutes,
    }


def _child(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_scale")
    parser.add_argument("--job", help="run one measurement (JSON) and print its result (used by main)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.job is None:
        print(save(NAME, main(quick=args.quick)))
        return
    import torch

    torch.set_num_threads(1)  # as the CLI runs delays_prepare (runtime threads 1)
    spec = json.loads(args.job)
    result = JOBS[spec.pop("kind")](**spec)
    if result is not None:  # the share job talks with the parent itself
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    _child(sys.argv[1:])
