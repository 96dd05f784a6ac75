"""One GPU per job on a machine with several: each training process claims its own.

Concurrent Snakemake jobs and `dvc queue` workers all start with `device: auto`,
and CUDA's default device is GPU 0 for every one of them. So before CUDA starts,
a training stage claims as many GPUs as it runs processes (`nproc`): it takes
an exclusive lock (flock) on a file per GPU in LOCK_DIR and sets
CUDA_VISIBLE_DEVICES to the GPUs it holds; the locks go away with the process,
however it ends. When every GPU is held, the stage says so once and waits for
one to free up; when it needs more GPUs than the machine has, it stops.

A scheduler that hands out GPUs itself (SLURM sets CUDA_VISIBLE_DEVICES for a
job) is respected: nothing is claimed. An explicit `device: cuda:N` is taken as
given.
"""
from __future__ import annotations

import fcntl
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

LOCK_DIR = Path(os.environ.get("PIPELINE_GPU_LOCK_DIR", Path(tempfile.gettempdir()) / "pipeline-gpu-locks"))
WAIT_POLL_S = 2.0


class NotEnoughGpus(ValueError):
    """The job needs more GPUs than the machine has."""


@dataclass
class GpuClaim:
    """GPUs held by this process (their locks are released when the process ends or on release())."""

    gpus: list[int]
    _files: list[IO[str]] = field(default_factory=list, repr=False)

    def release(self) -> None:
        for f in self._files:
            f.close()  # closing the descriptor drops the flock
        self._files.clear()


def _try_lock(gpu: int, lock_dir: Path) -> IO[str] | None:
    f = open(lock_dir / f"gpu{gpu}.lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")  # for the waiting message of others
    f.flush()
    return f


def _holders(count: int, lock_dir: Path) -> str:
    pids = []
    for gpu in range(count):
        path = lock_dir / f"gpu{gpu}.lock"
        text = path.read_text().strip() if path.exists() else ""
        pids.append(f"GPU {gpu}: pid {text or '?'}")
    return ", ".join(pids)


def claim(n: int, count: int, lock_dir: Path = LOCK_DIR, timeout_s: float | None = None) -> GpuClaim:
    """Claim `n` of the machine's `count` GPUs, waiting while they are all held (up to `timeout_s`)."""
    if n > count:
        raise NotEnoughGpus(f"this job needs {n} GPUs (nproc {n}), the machine has {count}")
    lock_dir.mkdir(parents=True, exist_ok=True)
    start, told = time.monotonic(), False
    while True:
        held: list[tuple[int, IO[str]]] = []
        for gpu in range(count):
            f = _try_lock(gpu, lock_dir)
            if f is not None:
                held.append((gpu, f))
                if len(held) == n:
                    return GpuClaim([g for g, _ in held], [f for _, f in held])
        for _, f in held:  # not enough: give back what we took, so two jobs cannot deadlock on halves
            f.close()
        if timeout_s is not None and time.monotonic() - start >= timeout_s:
            raise TimeoutError(f"no {n} free GPU(s) after {timeout_s:.0f} s ({_holders(count, lock_dir)})")
        if not told:
            print(f"waiting for {n} free GPU(s): all {count} are held by other pipeline jobs "
                  f"({_holders(count, lock_dir)}); run at most as many GPU jobs at once as there are GPUs "
                  "(snakemake --resources gpu=N, dvc queue start -j N)", file=sys.stderr, flush=True)
            told = True
        time.sleep(WAIT_POLL_S)


def claim_for_job(device: str, nproc: int) -> GpuClaim | None:
    """Claim GPUs for a training job before CUDA starts, unless something else decided already."""
    if device not in ("auto", "cuda") or "CUDA_VISIBLE_DEVICES" in os.environ:
        return None
    import torch  # CUDA is not initialised by counting devices (it uses NVML)

    count = torch.cuda.device_count()
    if count == 0:
        return None
    held = claim(nproc, count)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, held.gpus))
    print(f"using GPU(s) {os.environ['CUDA_VISIBLE_DEVICES']}", file=sys.stderr, flush=True)
    return held
