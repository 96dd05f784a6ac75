"""Paper B's training task for the shared loop (pipeline/run/training.py): the reference recipe
(docs/papers.md).

Two optimisers: Adam on weights and BN (no weight decay on BN) with OneCycleLR
stepped per epoch up to 5 x lr, Adam on positions with cosine annealing to 0.
Positions are clamped after every step, SIG follows the per-epoch schedule, and valid and
test are evaluated every epoch with rounded (integer) delays; the best epoch is
the one with the best validation accuracy.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from pipeline.run import distributed
from pipeline.params.configs import DelaysNet, DelaysRecipe, LearnedDelays, capped_epochs, to_dict
from pipeline.data.prepared import Split, iterate_batches
from pipeline.data.sampling import Dist, ShardedBatchSampler
from pipeline.run.distributed import all_sum
from pipeline.io import save_torch
from pipeline.models.delay_snn import (
    DelaySNN,
    class_scores,
    count_trainable,
    kernel_size,
    loss_fn,
    reset,
    sigma_at,
)
from pipeline.run.precision import Precision
from pipeline.run.runtime import pick_device, seed_everything
from pipeline.drivers.stage_table import DelaysTrainConfig
from pipeline.run.training import EpochMetrics, Result, fit_run


@torch.no_grad()
def evaluate_rounded(
    model: DelaySNN, split: Split, batch_size: int, device: torch.device, d: Dist = Dist()
) -> tuple[float, float]:
    """(accuracy %, mean loss) with integer delays in eval mode; the continuous state is untouched.

    With several processes each scores its share of the split and the counts are summed.
    """
    metrics = EpochMetrics(device)  # one sync at the end
    with model.rounded():
        for x, y in iterate_batches(split, batch_size, device=device, d=d):
            out = model(x)
            metrics.update(loss_fn(out.float(), y), (class_scores(out).argmax(1) == y).sum(), len(y))
            reset(model)
    loss_sum, correct, _ = all_sum(metrics.compute(), d, device)
    n = max(len(split), 1)
    return 100.0 * correct / n, loss_sum / n


def build_model(n_in: int, n_out: int, variant: str, net: DelaysNet, time_step_ms: float) -> DelaySNN:
    return DelaySNN(
        n_in=n_in,
        hidden=list(net.hidden),
        n_out=n_out,
        variant=variant,
        kernel=kernel_size(net.max_delay_ms, time_step_ms),
        tau=net.tau_ms / time_step_ms,
        dropout=net.dropout,
    )


# OneCycleLR's peak over the recipe's lr: `max_lr_w = 5 * lr_w` in Thvnvtos/SNN-delays
# best_config_{SHD,SSC,GSC}.py. OneCycleLR sets the lr itself (max_lr / 25 up to max_lr): lr acts through it.
PEAK_LR_FACTOR = 5

PREFETCH_DEPTH = 3  # training batches assembled ahead: enough to hide an uneven batch, little memory


def optimizers(
    model: DelaySNN, recipe: DelaysRecipe, positions: LearnedDelays | None
) -> tuple[torch.optim.Adam, torch.optim.Adam | None]:
    """The reference's two Adams: weights and BN (weight decay on weights only), and delay positions
    (learned delays only)."""
    groups = model.param_groups()
    opt_w = torch.optim.Adam(
        [
            {"params": groups["weights"], "lr": recipe.lr, "weight_decay": recipe.weight_decay},
            {"params": groups["bn"], "lr": recipe.lr, "weight_decay": 0.0},
        ]
    )
    if not groups["positions"]:
        return opt_w, None
    if positions is None:
        raise ValueError("learned delays need delays.variant_recipe.learned_delay")
    return opt_w, torch.optim.Adam(groups["positions"], lr=positions.lr_positions, weight_decay=0.0)


class _Batches:
    """One epoch of prefetched training batches, sized for the progress bar."""

    def __init__(
        self, split: Split, batch_size: int, gen: torch.Generator, device: torch.device, d: Dist, skip: int
    ) -> None:
        self.args = (split, batch_size, gen, device, d, skip)
        self.n = len(ShardedBatchSampler(len(split), batch_size, True, None, d))

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        split, batch_size, gen, device, d, skip = self.args
        return iterate_batches(
            split,
            batch_size,
            shuffle=True,
            generator=gen,
            device=device,
            d=d,
            skip=skip,
            prefetch=PREFETCH_DEPTH,
        )


class DelaysTask:
    """One (dataset, variant, seed) of paper B as a Task of the shared loop."""

    def __init__(
        self,
        splits: dict[str, Split],
        cfg: DelaysTrainConfig,
        variant: str,
        epochs: int,
        device: torch.device,
        d: Dist,
        gen: torch.Generator,
        ckpt_dir: Path,
    ) -> None:
        self.splits, self.cfg, self.epochs, self.device, self.d, self.gen = (
            splits,
            cfg,
            epochs,
            device,
            d,
            gen,
        )
        self.ckpt_dir = ckpt_dir
        self.time_step_ms = float(splits["train"].meta["time_step_ms"])
        n_classes = int(splits["train"].meta["n_classes"])
        self.model = build_model(
            splits["train"].n_channels, n_classes, variant, cfg.net, self.time_step_ms
        ).to(device)
        self._apply_sigma(1)  # the saved initial state holds epoch 1's kernels
        self.init_state = copy.deepcopy(self.model.state_dict())
        self.net = distributed.wrap(self.model, d, device)
        self.precision = Precision(cfg.runtime.amp, device)
        self.opt_w, self.opt_p = optimizers(self.model, cfg.recipe, cfg.positions)
        self.sched_w = torch.optim.lr_scheduler.OneCycleLR(
            self.opt_w, max_lr=PEAK_LR_FACTOR * cfg.recipe.lr, total_steps=epochs
        )
        self.sched_p = None
        if self.opt_p:
            self.sched_p = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt_p, T_max=epochs, eta_min=0.0)
        self.n_params = count_trainable(self.model)
        self._init_saved = False

    def _apply_sigma(self, epoch: int) -> float:
        """Set and return SIG of the Gaussian kernels in 1-based `epoch`; 0 for variants without learned
        positions (their kernels are integer: fixed delays use a one-hot tap, no delays no kernel)."""
        if self.cfg.positions is None:
            return 0.0
        sigma = sigma_at(epoch - 1, self.epochs, self.model.kernel, self.cfg.positions.sigma_final)
        self.model.set_sigma(sigma)
        return sigma

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [o for o in (self.opt_w, self.opt_p) if o is not None]

    def begin_epoch(self, epoch: int) -> dict[str, float]:
        sigma = self._apply_sigma(epoch)
        self.net.train()
        return {
            "lr": self.opt_w.param_groups[0]["lr"],
            "lr_positions": self.opt_p.param_groups[0]["lr"] if self.opt_p else 0.0,
            "sigma": sigma,
        }

    def batches(self, skip: int) -> _Batches:
        return _Batches(self.splits["train"], self.cfg.net.batch_size, self.gen, self.device, self.d, skip)

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
        x, y = batch
        with self.precision.autocast():
            out = self.net(x)
        return loss_fn(out.float(), y), (class_scores(out.detach()).argmax(1) == y).sum(), len(y)

    def update(self, loss: torch.Tensor) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        self.precision.backward_and_step(loss, self.optimizers)
        self.model.clamp_positions()
        reset(self.net)

    def end_epoch(self, epoch: int) -> dict[str, float]:
        self.sched_w.step()
        if self.sched_p:
            self.sched_p.step()
        bs = self.cfg.recipe.eval_batch_size
        valid_acc, valid_loss = evaluate_rounded(self.model, self.splits["valid"], bs, self.device, self.d)
        test_acc, _ = evaluate_rounded(self.model, self.splits["test"], bs, self.device, self.d)
        return {"valid_loss": valid_loss, "valid_acc": valid_acc, "test_acc": test_acc}

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "init": self.init_state,
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in (self.sched_w, self.sched_p) if s is not None],
            "scaler": self.precision.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.init_state = state["init"]
        for obj, s in zip(
            [*self.optimizers, *(x for x in (self.sched_w, self.sched_p) if x is not None)],
            [*state["optimizers"], *state["schedulers"]],
        ):
            obj.load_state_dict(s)
        self.precision.scaler.load_state_dict(state["scaler"])

    def _checkpoint(self, state: dict[str, Any], epoch: int, **extra: Any) -> dict[str, Any]:
        return {
            "config": self.model.config,
            "state_dict": state,
            "epoch": epoch,
            "n_params": self.n_params,
            **extra,
        }

    def save_outputs(self, epoch: int, result: Result, best_state: dict[str, Any]) -> None:
        """ckpt/init.pt (once per process: a driver may have deleted the outputs before a resumed run),
        best.pt when this epoch is the best (or after a resume), last.pt."""
        if not self._init_saved:
            save_torch(self.ckpt_dir / "init.pt", self._checkpoint(self.init_state, 0))
        if result.best_epoch == epoch or not self._init_saved:
            save_torch(self.ckpt_dir / "best.pt", self._checkpoint(best_state, result.best_epoch))
        self._init_saved = True
        save_torch(
            self.ckpt_dir / "last.pt",
            self._checkpoint(
                self.model.state_dict(), epoch, optimizers=[o.state_dict() for o in self.optimizers]
            ),
        )


@distributed.leaves_process_group
def fit_delays(
    splits: dict[str, Split],
    cfg: DelaysTrainConfig,
    *,
    variant: str,
    seed: int,
    ckpt_dir: Path,
    live_dir: Path,
    name: str,
    run_info: dict[str, Any],
    inputs: tuple[Path, ...] = (),
) -> dict[str, Any]:
    """Train one model; writes ckpt_dir/{init,best,last}.pt and the DVCLive dir; returns the summary."""
    gen = seed_everything(seed)
    d, device = distributed.setup(pick_device(cfg.runtime.device))
    torch.set_flush_denormal(
        True
    )  # narrow Gaussian kernels underflow to denormals, which slow CPU convolutions ~5x
    epochs = capped_epochs(cfg.net.epochs, cfg.max_epochs)
    task = DelaysTask(splits, cfg, variant, epochs, device, d, gen, Path(ckpt_dir))
    distributed.seed_rank(seed, d)  # after the model is built: same weights, own dropout masks per rank
    Path(ckpt_dir).mkdir(parents=True, exist_ok=True)
    config = {
        **run_info,
        "variant": variant,
        "seed": seed,
        "device": str(device),
        "net": to_dict(cfg.net),
        "recipe": to_dict(cfg.recipe),
        "positions": to_dict(cfg.positions),
        "epochs": epochs,
        "time_step_ms": task.time_step_ms,
        "kernel": task.model.kernel,
        "n_params": task.n_params,
        "n_classes": int(splits["train"].meta["n_classes"]),
        "n_train": len(splits["train"]),
        "n_valid": len(splits["valid"]),
        "n_test": len(splits["test"]),
        "amp": task.precision.name,
        "world_size": d.world,
    }
    t0 = time.perf_counter()

    def summary(result: Result) -> dict[str, Any]:
        best_test = max(result.history, key=lambda r: (r["test_acc"], -r["epoch"]))
        return {
            "best_valid_acc": result.best["valid_acc"],
            "best_valid_epoch": result.best_epoch,
            "test_acc_at_best_valid": result.best["test_acc"],
            "best_test_acc": best_test["test_acc"],
            "best_test_epoch": best_test["epoch"],
            "epochs": result.epochs,
            "elapsed_s": round(result.elapsed_s, 3),
            "wall_s": round(time.perf_counter() - t0, 3),
            "n_params": task.n_params,
        }

    return fit_run(
        task,
        dist=d,
        device=device,
        generator=gen,
        name=name,
        config=config,
        inputs=inputs,
        state_beside=ckpt_dir,
        live=live_dir,
        resume=cfg.resume,
        epochs=epochs,
        select="valid_acc",
        summary=summary,
    )
