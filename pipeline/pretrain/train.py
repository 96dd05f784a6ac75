"""Training loops of paper A: ANN pretraining, SNN fine-tuning, SNN from scratch.

One loop serves all three roles; they differ only in the model kind, the
optimiser/schedule and the per-epoch hooks (sharpening for the ANN, frozen
warm-up for fine-tuning). Every SNN batch ends with functional.reset_net so no
membrane state leaks between batches.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from spikingjelly.activation_based import functional
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline.io import save_torch
from pipeline.models.resnet_twins import ResNetTwin
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


def _step_batches(model: ResNetTwin, loader: DataLoader, device: torch.device, train: bool,
                  optimizer: torch.optim.Optimizer | None, skipped: set[str], desc: str) -> tuple[float, float]:
    """One pass; returns (mean loss, accuracy %)."""
    model.train(train)
    loss_sum, correct, seen = 0.0, 0, 0
    crit = nn.CrossEntropyLoss()
    bar = tqdm(loader, desc=desc, leave=False, disable=not train, mininterval=1.0)
    with torch.set_grad_enabled(train):
        for batch in bar:
            x, y, bad = batch if len(batch) == 3 else (*batch, [])
            skipped.update(bad)
            if x is None:
                continue
            x, y = x.to(device, non_blocking=True).float(), y.to(device, non_blocking=True)
            out = model(x)
            loss = crit(out, y)
            if train:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            if model.is_snn:
                functional.reset_net(model)
            loss_sum += loss.item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
    if seen == 0:
        raise RuntimeError(f"{desc}: no readable samples in the whole pass")
    return loss_sum / seen, 100.0 * correct / seen


def run_training(model: ResNetTwin, train_loader: DataLoader, val_loader: DataLoader, cfg: dict[str, Any],
                 device: torch.device, log: EpochLog, ckpt: Path, meta: dict[str, Any],
                 epoch_hook: Callable[[int], None] | None = None,
                 skipped_before: list[str] | None = None) -> RunResult:
    """Train for cfg['epochs'], logging each epoch and checkpointing atomically after it.

    The checkpoint holds the last model (`model`, what transfer uses: the
    fully sharpened ANN), the best one (`best_model`), optimizer state and `meta`
    (model config, role, timing) so later stages can rebuild everything.
    """
    model.to(device)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    result = RunResult()
    skipped: set[str] = set(skipped_before or [])
    best_state: dict[str, torch.Tensor] | None = None
    for epoch in range(1, cfg["epochs"] + 1):
        log.start_epoch()
        if epoch_hook is not None:
            epoch_hook(epoch - 1)
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_acc = _step_batches(model, train_loader, device, True, optimizer, skipped,
                                              f"epoch {epoch}/{cfg['epochs']}")
        _, val_acc = _step_batches(model, val_loader, device, False, None, skipped, "val")
        scheduler.step()
        row = log.end_epoch(epoch, {"train_loss": train_loss, "train_acc": train_acc, "val_acc": val_acc, "lr": lr})
        if val_acc > result.best_val_acc or best_state is None:
            result.best_val_acc, result.best_epoch = val_acc, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        result.epochs, result.elapsed_s = epoch, row["elapsed_s"]
        tqdm.write(f"[{meta.get('role')}] epoch {epoch}: loss {train_loss:.4f} train {train_acc:.2f}% "
                   f"val {val_acc:.2f}% ({row['elapsed_s']:.1f}s)")
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"training loss is {train_loss} at epoch {epoch}")
        save_torch(ckpt, {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                          "best_model": best_state, "optimizer": optimizer.state_dict(), "epoch": epoch,
                          "best_epoch": result.best_epoch, "best_val_acc": result.best_val_acc,
                          "elapsed_s": result.elapsed_s, **meta})
    result.skipped = sorted(skipped)
    return result
