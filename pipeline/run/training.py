"""The epoch protocol both papers' training stages share, around a paper's own step and evaluation.

A paper supplies a `Task` (its model, optimisers, schedules, batches, forward,
update, end-of-epoch evaluation and output files); `fit` owns everything
around it:
- resume: after every epoch the whole state (task state, every RNG state per
  process, the DVCLive history, best-so-far) goes to a ResumeState; a rerun
  with the same fingerprint continues from there (pipeline/run/resume.py);
- preemption: SIGUSR1 or SIGTERM (a cluster's notice before its time limit)
  saves the state at the current batch and exits with code 75; a rerun
  continues from that batch (the data order of the epoch is re-drawn from the
  generator state the epoch started with and the done batches are skipped).
  With several ranks (their launcher passes the notice on) they agree on the
  batch through a collective, rank 0 saves every rank's RNGs and partial sums,
  and no rank exits before it has saved;
- DVCLive (one row per epoch, 1-based epochs), the best epoch by a selection
  metric (the first epoch wins ties), the NaN/inf stop, DDP collectives,
  metrics summed on the device and read once per epoch, progress and a
  one-line summary per epoch, fault injection for the tests.
"""

from __future__ import annotations

import contextlib
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sized

import torch

from pipeline.run import distributed
from pipeline.data.sampling import Dist
from pipeline.run.distributed import all_sum, any_rank
from pipeline.io import atomic_dir
from pipeline.run.errors import PREEMPT_SIGNALS, Preempted
from pipeline.run.progress import Progress
from pipeline.run.resume import KillSwitch, ResumeState, check_finite, fingerprint, rng_state, set_rng_state
from pipeline.run.tracking import EpochLog


class Task(Protocol):
    """What a paper gives the loop. Epochs are 1-based."""

    model: (
        torch.nn.Module
    )  # the model itself (not its DDP wrapper): the best epoch's weights are copied from it

    def begin_epoch(self, epoch: int) -> dict[str, float]:
        """Set the epoch's schedule (sigma, sharpening, frozen layers); return what to log (lr, ...)."""

    def batches(self, skip: int) -> Iterable[Any]:
        """This epoch's training batches from the `skip`-th on (sized: len() is the whole epoch)."""

    def forward(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        """(mean loss, number of correct predictions, batch size) of one training batch; None to skip it
        (every sample unreadable)."""

    def update(self, loss: torch.Tensor) -> None:
        """Backward and optimiser steps for `loss` (and whatever follows a step: clamps, membrane resets)."""

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Step the schedulers, evaluate; return the evaluation metrics (they hold the selection metric)."""

    def state_dict(self) -> dict[str, Any]:
        """Model, optimisers, schedulers, grad scaler: everything a resumed run needs."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def save_outputs(self, epoch: int, result: "Result", best_state: dict[str, Any]) -> None:
        """Write the stage's checkpoint(s) after `epoch`; `best_state`: the model of result.best_epoch
        (rank 0)."""


@dataclass
class Context:
    """How a run executes: processes, device, resumption, logging, data-order generator."""

    dist: Dist
    device: torch.device
    resumer: ResumeState
    log: EpochLog | None  # None on every rank but 0
    generator: torch.Generator
    name: str  # for progress lines: "delays_train synth/learned_delay/s0"
    kill: KillSwitch = field(default_factory=KillSwitch)


@dataclass
class Result:
    epochs: int = 0
    best_epoch: int = 0
    best: dict[str, float] = field(default_factory=dict)  # the row of the best epoch
    elapsed_s: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


class _PreemptionFlag:
    """Set by SIGUSR1/SIGTERM; the loop checks it between batches."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_PreemptionFlag":
        for sig in PREEMPT_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            # Once noticed, a repeated notice (a launcher passing it on to its ranks, the cluster's own) must
            # not kill the process while it exits with the saved state.
            signal.signal(sig, signal.SIG_IGN if self.signal is not None else handler)


class EpochMetrics:
    """An epoch's loss sum, correct count and sample count, summed on the device: reading a GPU number
    every step (`float(loss)`) would wait for the step to finish. Read once per epoch (and for progress)."""

    def __init__(self, device: torch.device, start: list[float] | None = None) -> None:
        self._sums = torch.tensor(start or [0.0, 0.0, 0.0], dtype=torch.float64, device=device)

    def update(self, loss: torch.Tensor, correct: torch.Tensor | int, n: int) -> None:
        self._sums[0] += loss.detach().double() * n
        self._sums[1] += correct
        self._sums[2] += n

    def compute(self) -> list[float]:
        """[loss sum, correct, samples]: one device sync."""
        return self._sums.tolist()

    def summary(self) -> str:
        loss_sum, correct, seen = self.compute()
        return f"loss {loss_sum / max(seen, 1):.3f} acc {100 * correct / max(seen, 1):.1f}"


def _better(value: float, best: float | None) -> bool:
    return best is None or value > best


def fit(task: Task, ctx: Context, *, epochs: int, select: str) -> Result:
    """Train `task` for `epochs`, keeping the epoch with the highest `select` metric as the best."""
    result = Result()
    state = ctx.resumer.load()
    start, skip, partial, best_state = 1, 0, None, None
    if state is not None:
        task.load_state_dict(state["task"])
        set_rng_state(state["rng"][ctx.dist.rank], ctx.generator)
        result.history, result.best, result.best_epoch = state["history"], state["best"], state["best_epoch"]
        best_state = state["best_state"]
        start = state["epoch"] + 1
        if ctx.log is not None:
            ctx.log.replay(result.history)
        if "batch" in state:  # preempted mid-epoch: continue that epoch at its next batch
            skip, partial = state["batch"], state["partial"]
            ctx.generator.set_state(state["epoch_generator"])
    with _PreemptionFlag() as flag:
        for epoch in range(start, epochs + 1):
            row = _epoch(task, ctx, epoch, epochs, skip, partial, flag, result, best_state)
            skip, partial = 0, None
            is_best = _better(row[select], result.best.get(select))
            if is_best:
                result.best, result.best_epoch = row, epoch
                best_state = {k: v.detach().cpu().clone() for k, v in task.model.state_dict().items()}
            rngs = distributed.all_gather_object(rng_state(ctx.generator), ctx.dist)  # collective: every rank
            result.history.append(row)
            if ctx.log is None:
                continue
            task.save_outputs(epoch, result, best_state)
            ctx.resumer.save(
                {
                    "epoch": epoch,
                    "task": task.state_dict(),
                    "rng": rngs,
                    "history": result.history,
                    "best": result.best,
                    "best_epoch": result.best_epoch,
                    "best_state": best_state,
                }
            )
    if ctx.log is not None and start > epochs:  # killed after the last epoch's state was saved
        task.save_outputs(epochs, result, best_state)
    result.epochs = len(result.history)
    result.elapsed_s = (
        result.history[-1].get("elapsed_s", 0.0) if result.history else 0.0
    )  # timed on rank 0 only
    return result


def fit_run(
    task: Task,
    *,
    dist: Dist,
    device: torch.device,
    generator: torch.Generator,
    name: str,
    config: dict[str, Any],
    inputs: tuple[Path, ...],
    state_beside: Path,
    live: Path,
    resume: bool,
    epochs: int,
    select: str,
    summary: Callable[[Result], dict[str, Any]],
    extra: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """A training stage's run around `fit`, the same for both papers: resumption keyed by the run's config and
    input files, DVCLive logging on rank 0 (`config`, then `summary(result)` once done), then the resume state
    removed; returns the summary. `state_beside`: the checkpoint file or folder the resume state lives beside;
    `extra(folder)`: writes more files into the DVCLive folder (rank 0, once done)."""
    resumer = ResumeState(
        state_beside, fingerprint(config, inputs, dist.world), enabled=resume, is_main=dist.is_main
    )
    # The DVCLive folder is built in a temporary sibling that replaces `live` whole on success: a failed or
    # killed run leaves the last good run's folder (DVC keeps it: persist), a successful one no stale file.
    with atomic_dir(live) if dist.is_main else contextlib.nullcontext(Path(live)) as live_dir:
        log = EpochLog(live_dir, config) if dist.is_main else None
        result = fit(task, Context(dist, device, resumer, log, generator, name), epochs=epochs, select=select)
        done = summary(result)
        if log is not None:
            log.finish(done)
            if extra is not None:
                extra(live_dir)
    resumer.clear()
    return done


def _epoch(
    task: Task,
    ctx: Context,
    epoch: int,
    epochs: int,
    skip: int,
    partial: dict[str, Any] | None,
    flag: _PreemptionFlag,
    result: Result,
    best_state: dict[str, Any] | None,
) -> dict[str, float]:
    """One epoch: train (from batch `skip` on), evaluate; the epoch's row of metrics."""
    epoch_generator = ctx.generator.get_state()
    if ctx.log is not None:
        ctx.log.start_epoch(already_s=partial["elapsed_s"] if partial else 0.0)
    settings = task.begin_epoch(epoch)
    metrics = EpochMetrics(ctx.device, partial["sums"][ctx.dist.rank] if partial else None)  # this rank's
    batches = task.batches(skip)
    total = len(batches) if isinstance(batches, Sized) else None
    progress = Progress(
        f"{ctx.name} epoch {epoch}/{epochs}", total=total, initial=skip, enabled=ctx.dist.is_main
    )
    with progress:
        for b, batch in enumerate(batches, start=skip + 1):
            step = task.forward(batch)
            if step is None:
                continue
            loss, correct, n = step
            check_finite(loss, epoch, b, ctx.resumer, epoch - 1, ctx.dist, ctx.device)
            task.update(loss)
            metrics.update(loss, correct, n)
            progress.step(metrics.summary)
            ctx.kill.tick()
            if any_rank(flag.signal is not None, ctx.dist, ctx.device):
                _preempt(task, ctx, epoch, b, metrics, epoch_generator, result, best_state, flag.signal)
    loss_sum, correct, seen = all_sum(list(metrics.compute()), ctx.dist, ctx.device)
    row = {
        "train_loss": loss_sum / max(seen, 1),
        "train_acc": 100.0 * correct / max(seen, 1),
        **settings,
        **task.end_epoch(epoch),
    }
    if ctx.log is None:  # other ranks: the same row, untimed
        return {"epoch": epoch, **row}
    row = ctx.log.end_epoch(epoch, row)
    shown = " ".join(f"{k} {v:.3g}" for k, v in row.items() if k not in ("epoch", "elapsed_s"))
    print(f"[{ctx.name}] epoch {epoch}/{epochs}: {shown} ({row['elapsed_s']:.1f} s)", flush=True)
    return row


def _preempt(
    task: Task,
    ctx: Context,
    epoch: int,
    batch: int,
    metrics: "EpochMetrics",
    epoch_generator: torch.Tensor,
    result: Result,
    best_state: dict[str, Any] | None,
    signum: int | None,
) -> None:
    """Save the state after `batch` of `epoch` and leave with PREEMPTED_EXIT."""
    rngs = distributed.all_gather_object(rng_state(ctx.generator), ctx.dist)
    sums = distributed.all_gather_object(metrics.compute(), ctx.dist)  # each rank's own part of the epoch
    elapsed = ctx.log.epoch_elapsed_s() if ctx.log is not None else 0.0
    ctx.resumer.save(
        {
            "epoch": epoch - 1,
            "batch": batch,
            "epoch_generator": epoch_generator,
            "partial": {"sums": sums, "elapsed_s": elapsed},
            "task": task.state_dict(),
            "rng": rngs,
            "history": result.history,
            "best": result.best,
            "best_epoch": result.best_epoch,
            "best_state": best_state,
        }
    )
    distributed.barrier(ctx.dist)  # no rank leaves before rank 0 has saved (its launcher may stop the rest)
    name = signal.Signals(signum).name if signum else "a signal"
    raise Preempted(
        f"preempted by {name}: state saved after epoch {epoch} batch {batch} in {ctx.resumer.path}; "
        "a rerun continues from there"
    )
