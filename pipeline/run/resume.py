"""Resumable training: a per-epoch state outside the stage's declared outputs.

Snakemake deletes the outputs of a failed job and DVC deletes a stage's
outputs before rerunning it, so a checkpoint inside the outputs cannot survive
a kill. The resume state therefore lives beside the stage's checkpoint output
`<name>` as `.<name>.resume.pt` (under the git-ignored models/), and holds everything needed to continue
bit-for-bit: model, optimisers, schedulers, grad scaler, every RNG state
(python, numpy, torch, CUDA, the data-order generator; one set per process),
the DVCLive history and the best-so-far trackers.

A state is used only when its fingerprint matches the rerun: the run's
resolved config, the size and mtime of its input files and the source of the
`pipeline` package. Anything else (new params, new data, new code) starts
fresh. The state is deleted once the stage has written its outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from pipeline.data.sampling import Dist
from pipeline.run.distributed import any_rank
from pipeline.io import load_torch, save_torch

PACKAGE_DIR = Path(__file__).resolve().parent
# Fault injection for the resume tests: send this process a signal (SIGKILL unless $PIPELINE_KILL_SIGNAL
# names another, e.g. USR1 for a preemption notice) after N training batches.
KILL_ENV = "PIPELINE_KILL_AFTER_BATCHES"
KILL_SIGNAL_ENV = "PIPELINE_KILL_SIGNAL"


def state_path(output: str | os.PathLike) -> Path:
    """`.<name>.resume.pt` beside the stage's main output `<name>` (a file or a directory)."""
    out = Path(output)
    return out.parent / f".{out.name}.resume.pt"


def _input_stats(inputs: Iterable[str | os.PathLike]) -> list[list[Any]]:
    """Size and mtime of the input files: an input folder's files and those of its sub-folders (a prepared
    store's splits), not deeper: a dataset root may hold millions of files, and stages write new files on
    change."""
    stats = []
    for inp in inputs:
        p = Path(inp)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file())
            files += sorted(f for d in sorted(p.iterdir()) if d.is_dir() for f in d.iterdir() if f.is_file())
        else:
            files = [p]
        for f in files:
            st = f.stat()
            stats.append([str(f), st.st_size, st.st_mtime_ns])
    return stats


def _code_digest() -> str:
    h = hashlib.sha256()
    for f in sorted(PACKAGE_DIR.rglob("*.py")):
        h.update(f.read_bytes())
    return h.hexdigest()


def fingerprint(config: dict[str, Any], inputs: Iterable[str | os.PathLike], world_size: int = 1) -> str:
    """Digest of everything a resumed run must share with the killed one."""
    blob = json.dumps(
        {"config": config, "inputs": _input_stats(inputs), "world_size": world_size, "code": _code_digest()},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def rng_state(generator: torch.Generator | None) -> dict[str, Any]:
    """Every RNG a training step draws from (dropout, shuffling, numpy/python helpers)."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": generator.get_state() if generator is not None else None,
    }


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and state["generator"] is not None:
        generator.set_state(state["generator"])


class ResumeState:
    """Load/save/clear one stage's resume state; a no-op on non-main ranks' writes."""

    def __init__(
        self, output: str | os.PathLike, digest: str, enabled: bool = True, is_main: bool = True
    ) -> None:
        self.path, self.digest, self.enabled, self.is_main = state_path(output), digest, enabled, is_main

    def load(self) -> dict[str, Any] | None:
        """The saved state when it exists and matches this run's fingerprint, else None."""
        if not self.enabled or not self.path.exists():
            return None
        try:
            state = load_torch(self.path)
        except Exception as err:  # a state from an older format is not worth failing the stage for
            print(f"resume: ignoring unreadable {self.path} ({err})")
            return None
        if not isinstance(state, dict) or state.get("fingerprint") != self.digest:
            print(f"resume: {self.path} belongs to other params, data or code; starting fresh")
            return None
        where = (
            f"epoch {state['epoch'] + 1} at batch {state['batch'] + 1}"
            if "batch" in state
            else f"after epoch {state['epoch']}"
        )
        print(f"resume: continuing {where} from {self.path}")
        return state

    def save(self, state: dict[str, Any]) -> None:
        if self.enabled and self.is_main:
            save_torch(self.path, {**state, "fingerprint": self.digest})

    def clear(self) -> None:
        if self.is_main:
            self.path.unlink(missing_ok=True)


def check_finite(
    loss: torch.Tensor,
    epoch: int,
    batch: int,
    resumer: ResumeState,
    last_good: int,
    d: Dist,
    device: torch.device,
) -> None:
    """Stop a training stage on a NaN/inf loss on any rank (epoch and batch 1-based), naming the last good
    state."""
    if any_rank(not bool(torch.isfinite(loss)), d, device):
        raise _non_finite_error(float(loss.detach()), epoch, batch, resumer, last_good)


def _non_finite_error(
    loss: float, epoch: int, batch: int, resumer: ResumeState, last_good: int
) -> FloatingPointError:
    if not last_good:
        where = "no epoch had completed, so there is no checkpoint to keep"
    elif resumer.enabled:
        where = f"the last good state (epoch {last_good}) stays in {resumer.path}"
    else:
        where = f"the checkpoint of epoch {last_good} is the last good one (resume is off)"
    return FloatingPointError(f"non-finite training loss ({loss}) at epoch {epoch} batch {batch}; {where}")


class KillSwitch:
    """Counts training batches; signals the process after $PIPELINE_KILL_AFTER_BATCHES of them.

    Used by the tests to kill (a real SIGKILL: nothing in the process gets to
    clean up) or preempt (SIGUSR1) a stage mid-epoch at a reproducible point.
    """

    def __init__(self) -> None:
        value = os.environ.get(KILL_ENV, "")
        self.limit = int(value) if value.strip() else None
        self.signal = signal.Signals["SIG" + os.environ.get(KILL_SIGNAL_ENV, "KILL").removeprefix("SIG")]
        self.count = 0

    def tick(self) -> None:
        self.count += 1
        if self.limit is not None and self.count == self.limit:
            os.kill(os.getpid(), self.signal)
