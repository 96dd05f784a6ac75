"""A temporary copy of the project, run end to end with one epoch per training stage.

Benchmark 5 (bench_epochs) reads the first-epoch time of every default training
stage from it; benchmark 4 (bench_pipeline_overhead) times no-op runs of
Snakemake and DVC in it. The copy is built once per process
(`one_epoch_project()`) and removed at exit: the build is most of both
benchmarks' time, mostly process start-up (every stage imports torch, several
torchvision).

The build is `snakemake --cores 2` in the copy, so every stage runs through
the CLI with the workflow's own commands and paths (the same as dvc.yaml's),
two jobs at a time as `make run` does on this machine. A fixed reference
workload is timed every REFERENCE_EVERY_S seconds during the build (a
background thread, about 2 % of one core), so epoch times can be divided by
its typical time under the same load.
"""

from __future__ import annotations

import atexit
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import default_params
from pipeline.io import read_json
from pipeline.drivers.stage_table import stage
from pipeline.drivers.stage_spec import jobs, output_paths
from tests.project_copy import copy_project

VENV_BIN = Path(sys.executable).parent
REFERENCE_SIZE = 256  # the reference workload: REFERENCE_ITERS float32 matmuls of this size, one thread
REFERENCE_ITERS = 100
REFERENCE_EVERY_S = 2.0
CORES = 2  # jobs at a time in the build, as `make run` on the 2-core machine the targets are set for


@dataclass
class ProjectRun:
    root: Path
    quick: bool
    params: dict[str, Any]
    build_s: float = 0.0  # wall time of the one-epoch pipeline from scratch (snakemake --cores CORES)
    epoch_s: dict[str, float] = field(
        default_factory=dict
    )  # dvc stage name -> first epoch seconds (history.json)
    reference_s: list[float] = field(default_factory=list)  # reference workload, sampled during the build


def one_epoch_params(quick: bool) -> dict[str, Any]:
    """Default params with one epoch per training stage and one seed (quick: smaller paper-B data)."""
    params = default_params()
    delays, pretrain = params["delays"], params["pretrain"]
    delays["seeds"] = delays["seeds"][:1]
    for cfg in delays["sets"].values():
        cfg["train"]["epochs"] = 1
    for block in ("ann", "finetune", "scratch"):
        pretrain[block]["epochs"] = 1
    if quick:
        delays["synth"].update(n_train=400, n_test=100)
    pretrain["motion"].update(clips_per_class_train=8, clips_per_class_val=4)
    return params


def reference_seconds(samples: int = 3) -> float:
    """Median wall time of the fixed reference workload in this process, on one thread as the stages run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(REFERENCE_SIZE, REFERENCE_SIZE, generator=gen)
        b = torch.randn(REFERENCE_SIZE, REFERENCE_SIZE, generator=gen)
        runs = []
        for _ in range(samples):
            t0 = time.perf_counter()
            for _ in range(REFERENCE_ITERS):
                a @ b
            runs.append(time.perf_counter() - t0)
        return statistics.median(runs)
    finally:
        torch.set_num_threads(threads)


def run(cmd: list[str], cwd: Path, timeout: float = 900) -> tuple[str, float]:
    """Run cmd with the venv first on PATH (as `make` does): (stdout + stderr, wall seconds); raises on
    failure."""
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}) in {cwd}:\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout + proc.stderr, seconds


def training_live_dirs(params: dict[str, Any]) -> dict[str, Path]:
    """DVC stage name (stage@job) -> DVCLive dir (relative) of every training stage the params run."""
    dirs = {}
    for name in ("delays_train", "pretrain_ann", "finetune_snn", "train_snn_scratch"):
        st = stage(name)
        for wildcards, live in zip(jobs(st, params), output_paths(st, "live", params)):
            dirs[f"{name}@{'-'.join(map(str, wildcards.values()))}"] = Path(live)
    return dirs


def build(root: Path, quick: bool) -> ProjectRun:
    """Copy the project into root and run its whole pipeline once with one epoch per training stage."""
    params = one_epoch_params(quick)
    copy_project(root, params)
    result = ProjectRun(root=root, quick=quick, params=params)
    done = threading.Event()

    def sample_reference() -> None:
        while not done.wait(REFERENCE_EVERY_S):
            result.reference_s.append(reference_seconds(samples=1))

    sampler = threading.Thread(target=sample_reference, daemon=True)
    sampler.start()
    try:
        _, result.build_s = run(["snakemake", "--cores", str(CORES)], root)
    finally:
        done.set()
        sampler.join()
    for job, live in training_live_dirs(params).items():
        history = read_json(root / live / "history.json")
        result.epoch_s[job] = float(history[0]["elapsed_s"])
    return result


_BUILT: dict[bool, ProjectRun] = {}


def one_epoch_project(quick: bool = False) -> ProjectRun:
    """The one-epoch project of this process, built on first use and removed at exit."""
    if quick not in _BUILT:
        root = Path(tempfile.mkdtemp(prefix="bench_project_"))
        atexit.register(shutil.rmtree, root, True)
        _BUILT[quick] = build(root, quick)
    return _BUILT[quick]
