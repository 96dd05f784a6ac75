"""Paper A's training task for the shared loop (pipeline/run/training.py): ANN pretraining, SNN fine-tuning,
SNN from scratch.

The three roles differ only in the model kind, the recipe (optimiser and
schedule) and a per-epoch hook (sharpening for the ANN, the frozen warm-up for
fine-tuning). Every SNN batch ends with functional.reset_net so no membrane
state leaks between batches. The best epoch is the one with the best
validation accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from spikingjelly.activation_based import functional
from torch import nn
from torch.utils.data import DataLoader

from pipeline.run import distributed
from pipeline.params.configs import Recipe
from pipeline.checks import check_unreadable
from pipeline.data.device_transforms import InputSpec, input_spec_of, prepare_batch
from pipeline.data.sampling import Dist
from pipeline.run.distributed import all_sum
from pipeline.io import save_torch
from pipeline.run.precision import Precision
from pipeline.run.training import EpochMetrics, Result


def scaled_lr(lr: float, batch_size: int, reference_batch: int) -> float:
    """Linear scaling rule: `lr` is the rate at `reference_batch` (0.1 at 256 in the paper)."""
    return lr * batch_size / reference_batch


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    lr = scaled_lr(recipe.lr, recipe.batch_size, recipe.lr_reference_batch)
    params = list(model.parameters())
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=recipe.weight_decay)
    raise ValueError(f"unknown optimizer '{recipe.optimizer}' (sgd, adam)")


def make_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch: cosine over the epochs, or MultiStepLR milestones x gamma."""
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=recipe.epochs)
    if recipe.schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(recipe.milestones), gamma=recipe.gamma
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def set_body_frozen(model: nn.Module, frozen: bool, trainable_prefixes: tuple[str, ...]) -> None:
    """Freeze everything but the parameters whose names start with `trainable_prefixes`
    (the adapted stem / new classifier during the fine-tuning warm-up)."""
    for name, p in model.named_parameters():
        p.requires_grad_(not frozen or name.startswith(trainable_prefixes))


class PretrainTask:
    """One training stage of paper A as a Task of the shared loop."""

    def __init__(
        self,
        model: nn.Module,
        recipe: Recipe,
        train_loader: DataLoader,
        val_loader: DataLoader,
        device: torch.device,
        d: Dist,
        precision: Precision,
        ckpt: Path,
        meta: dict[str, Any],
        epoch_hook: Callable[[int], None] | None = None,
        skipped: list[str] | None = None,
        n_samples: int = 0,
        max_skipped_fraction: float = 0.0,
        dataset_name: str = "",
    ) -> None:
        self.model = model.to(device)
        self.net = distributed.wrap(self.model, d, device)
        self.optimizer = make_optimizer(self.model, recipe)
        self.scheduler = make_scheduler(self.optimizer, recipe)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.train_spec, self.val_spec = (
            input_spec_of(train_loader.dataset),
            input_spec_of(val_loader.dataset),
        )
        self.device, self.d, self.precision, self.ckpt, self.meta = device, d, precision, ckpt, meta
        self.epoch_hook = epoch_hook
        self.skipped: set[str] = set(skipped or [])
        self.n_samples, self.max_skipped_fraction, self.dataset_name = (
            n_samples,
            max_skipped_fraction,
            dataset_name,
        )
        self._reported = len(self.skipped)  # skipped files already warned about (while caching)
        self.crit = nn.CrossEntropyLoss()
        self.is_snn = bool(getattr(model, "is_snn", False))

    def begin_epoch(self, epoch: int) -> dict[str, float]:
        if self.epoch_hook is not None:
            self.epoch_hook(epoch - 1)
        self.net.train()
        return {"lr": self.optimizer.param_groups[0]["lr"]}

    def batches(self, skip: int) -> DataLoader:
        self.train_loader.batch_sampler.skip = skip
        return self.train_loader

    def _inputs(self, batch: Any, spec: InputSpec) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The model's float input on the device (compact samples are converted there), or None when every
        sample of the batch was unreadable; unreadable files are recorded."""
        x, y, bad = batch if len(batch) == 3 else (*batch, [])
        self.skipped.update(bad)
        if x is None:
            return None
        x, y, bad = prepare_batch(x, y, spec, self.device)
        self.skipped.update(bad)
        return None if x is None else (x, y)

    def forward(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        inputs = self._inputs(batch, self.train_spec)
        if inputs is None:
            return None
        x, y = inputs
        with self.precision.autocast():
            out = self.net(x)
        return self.crit(out.float(), y), (out.detach().argmax(1) == y).sum(), len(y)

    def update(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward_and_step(loss, [self.optimizer])
        if self.is_snn:
            functional.reset_net(self.net)

    @torch.no_grad()
    def end_epoch(self, epoch: int) -> dict[str, float]:
        self.scheduler.step()
        self.net.eval()
        metrics = EpochMetrics(self.device)
        for batch in self.val_loader:
            inputs = self._inputs(batch, self.val_spec)
            if inputs is None:
                continue
            x, y = inputs
            with self.precision.autocast():
                out = self.net(x)
            metrics.update(self.crit(out.float(), y), (out.argmax(1) == y).sum(), len(y))
            if self.is_snn:
                functional.reset_net(self.net)
        loss_sum, correct, seen = all_sum(metrics.compute(), self.d, self.device)
        if (
            len(self.skipped) > self._reported
        ):  # new unreadable files: say so (or stop, past the allowed share)
            check_unreadable(
                sorted(self.skipped),
                self.n_samples,
                self.max_skipped_fraction,
                f"dataset '{self.dataset_name}'",
            )
            self._reported = len(self.skipped)
        if seen == 0:
            raise ValueError(
                f"dataset '{self.dataset_name}': no readable sample in the whole validation split"
            )
        return {"val_loss": loss_sum / seen, "val_acc": 100.0 * correct / seen}

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.precision.scaler.state_dict(),
            "skipped": sorted(self.skipped),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.precision.scaler.load_state_dict(state["scaler"])
        self.skipped = set(state["skipped"])

    def save_outputs(self, epoch: int, result: Result, best_state: dict[str, Any]) -> None:
        """One checkpoint file: the last model (`model`: what transfer uses, the fully sharpened ANN), the
        best one (`best_model`), the optimiser state and the stage's metadata (model config, role, timing)."""
        save_torch(
            self.ckpt,
            {
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "best_model": best_state,
                "optimizer": self.optimizer.state_dict(),
                "epoch": epoch,
                "best_epoch": result.best_epoch,
                "best_val_acc": result.best["val_acc"],
                "elapsed_s": result.history[-1]["elapsed_s"],
                **self.meta,
            },
        )
