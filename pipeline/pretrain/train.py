"""Training loops of paper A: ANN pretraining, SNN fine-tuning, SNN from scratch.

One loop serves all three roles; they differ only in the model kind, the
optimiser/schedule and the per-epoch hooks (sharpening for the ANN, frozen
warm-up for fine-tuning). Every SNN batch ends with functional.reset_net so no
membrane state leaks between batches.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from spikingjelly.activation_based import functional
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline import distributed
from pipeline.distributed import Dist, all_sum, unwrap
from pipeline.io import save_torch
from pipeline.models.resnet_twins import ResNetTwin
from pipeline.precision import Precision
from pipeline.resume import KillSwitch, ResumeState, check_finite, rng_state, set_rng_state
from pipeline.tracking import EpochLog


def scaled_lr(lr: float, batch_size: int, reference_batch: int) -> float:
    """Linear scaling rule: `lr` is the rate at `reference_batch` (0.1 at 256 in the paper)."""
    return lr * batch_size / reference_batch


def make_optimizer(model: nn.Module, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    lr = scaled_lr(cfg["lr"], cfg["batch_size"], cfg["lr_reference_batch"])
    params = [p for p in model.parameters()]
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    if cfg["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=cfg["weight_decay"])
    raise ValueError(f"unknown optimizer '{cfg['optimizer']}' (sgd, adam)")


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: dict[str, Any]) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch: cosine over the epochs, or MultiStepLR milestones x gamma."""
    if cfg["schedule"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg["epochs"])
    if cfg["schedule"] == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg["milestones"]), gamma=cfg["gamma"])
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def set_body_frozen(model: ResNetTwin, frozen: bool, trainable_prefixes: tuple[str, ...]) -> None:
    """Freeze everything but the parameters whose names start with `trainable_prefixes`
    (the adapted stem / new classifier during the fine-tuning warm-up)."""
    for name, p in model.named_parameters():
        p.requires_grad_(not frozen or name.startswith(trainable_prefixes))


@dataclass
class RunResult:
    best_val_acc: float = 0.0
    best_epoch: int = 0
    epochs: int = 0
    elapsed_s: float = 0.0
    skipped: list[str] = field(default_factory=list)


def _step_batches(model: nn.Module, loader: DataLoader, device: torch.device, train: bool,
                  optimizer: torch.optim.Optimizer | None, skipped: set[str], desc: str, ctx: "Context",
                  epoch: int = 0) -> tuple[float, float]:
    """One pass; returns (mean loss, accuracy %) over all ranks."""
    model.train(train)
    loss_sum, correct, seen = 0.0, 0, 0
    crit = nn.CrossEntropyLoss()
    is_snn = unwrap(model).is_snn
    bar = tqdm(loader, desc=desc, leave=False, disable=not (train and ctx.dist.is_main), mininterval=1.0)
    with torch.set_grad_enabled(train):
        for b, batch in enumerate(bar):
            x, y, bad = batch if len(batch) == 3 else (*batch, [])
            skipped.update(bad)
            if x is None:
                continue
            x, y = x.to(device, non_blocking=True).float(), y.to(device, non_blocking=True)
            with ctx.precision.autocast():
                out = model(x)
            loss = crit(out.float(), y)
            if train:
                check_finite(loss, epoch, b + 1, ctx.resumer, epoch - 1, ctx.dist, device)
                optimizer.zero_grad(set_to_none=True)
                ctx.precision.backward_and_step(loss, [optimizer])
            if is_snn:
                functional.reset_net(model)
            loss_sum += loss.item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
            if train:
                ctx.kill.tick()
    loss_sum, correct, seen = all_sum([loss_sum, correct, seen], ctx.dist, device)
    if seen == 0:
        raise RuntimeError(f"{desc}: no readable samples in the whole pass")
    return loss_sum / seen, 100.0 * correct / seen


@dataclass
class Context:
    """How a run executes: processes, precision, resumption, fault injection."""

    dist: Dist
    precision: Precision
    resumer: ResumeState
    generator: torch.Generator
    kill: KillSwitch = field(default_factory=KillSwitch)


def run_training(model: ResNetTwin, train_loader: DataLoader, val_loader: DataLoader, cfg: dict[str, Any],
                 device: torch.device, log: EpochLog | None, ckpt: Path, meta: dict[str, Any], ctx: Context,
                 epoch_hook: Callable[[int], None] | None = None,
                 skipped_before: list[str] | None = None) -> RunResult:
    """Train for cfg['epochs'], logging each epoch and checkpointing atomically after it.

    The checkpoint holds the last model (`model`, what transfer uses: the
    fully sharpened ANN), the best one (`best_model`), optimizer state and `meta`
    (model config, role, timing) so later stages can rebuild everything. The
    whole training state also goes to ctx.resumer after every epoch, and a
    matching saved state is picked up first (see pipeline/resume.py).
    Only rank 0 (`log` is not None there) writes.
    """
    model.to(device)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    net = distributed.wrap(model, ctx.dist, device)
    result = RunResult()
    skipped: set[str] = set(skipped_before or [])
    best_state: dict[str, torch.Tensor] | None = None
    start = 1
    state = ctx.resumer.load()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        ctx.precision.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"][ctx.dist.rank], ctx.generator)
        best_state, skipped = state["best_model"], set(state["skipped"])
        result = RunResult(state["best_val_acc"], state["best_epoch"], state["epoch"], state["elapsed_s"])
        start = state["epoch"] + 1
        if log is not None:
            log.replay(state["history"])

    def checkpoint() -> None:
        save_torch(ckpt, {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                          "best_model": best_state, "optimizer": optimizer.state_dict(), "epoch": result.epochs,
                          "best_epoch": result.best_epoch, "best_val_acc": result.best_val_acc,
                          "elapsed_s": result.elapsed_s, **meta})

    for epoch in range(start, cfg["epochs"] + 1):
        if log is not None:
            log.start_epoch()
        if epoch_hook is not None:
            epoch_hook(epoch - 1)
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_acc = _step_batches(net, train_loader, device, True, optimizer, skipped,
                                              f"epoch {epoch}/{cfg['epochs']}", ctx, epoch)
        _, val_acc = _step_batches(net, val_loader, device, False, None, skipped, "val", ctx)
        scheduler.step()
        if val_acc > result.best_val_acc or best_state is None:
            result.best_val_acc, result.best_epoch = val_acc, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        result.epochs = epoch
        rngs = distributed.all_gather_object(rng_state(ctx.generator), ctx.dist)  # collective on every rank
        if log is None:
            continue
        row = log.end_epoch(epoch, {"train_loss": train_loss, "train_acc": train_acc, "val_acc": val_acc, "lr": lr})
        result.elapsed_s = row["elapsed_s"]
        tqdm.write(f"[{meta.get('role')}] epoch {epoch}: loss {train_loss:.4f} train {train_acc:.2f}% "
                   f"val {val_acc:.2f}% ({row['elapsed_s']:.1f}s)")
        checkpoint()
        ctx.resumer.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "scaler": ctx.precision.scaler.state_dict(),
                          "rng": rngs, "best_model": best_state, "skipped": sorted(skipped), "epoch": epoch,
                          "best_epoch": result.best_epoch, "best_val_acc": result.best_val_acc,
                          "elapsed_s": result.elapsed_s, "history": log.history})
    if log is not None and start > cfg["epochs"]:  # killed after the last epoch's state was saved
        checkpoint()
    result.skipped = sorted(skipped)
    return result
