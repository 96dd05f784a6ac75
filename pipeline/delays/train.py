"""Training loop of paper B (reference recipe, described in specs/delays.md).

Two optimisers: Adam on weights (+BN, no weight decay on BN) with OneCycleLR
stepped per epoch, Adam on positions with cosine annealing to 0. Positions are
clamped after every step, SIG follows the per-epoch schedule, and valid and
test are evaluated every epoch with rounded (integer) delays.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch

from pipeline.data.prepared import Split, iterate_batches
from pipeline.io import save_torch
from pipeline.models.delay_snn import DelaySNN, class_scores, count_trainable, kernel_size, loss_fn, reset, sigma_at
from pipeline.runtime import pick_device, seed_everything


@torch.no_grad()
def evaluate_rounded(model: DelaySNN, split: Split, batch_size: int, device: torch.device) -> tuple[float, float]:
    """(accuracy %, mean loss) with integer delays in eval mode; the continuous state is untouched."""
    correct, loss_sum = 0, 0.0
    with model.rounded():
        for x, y in iterate_batches(split, batch_size, device=device):
            out = model(x)
            loss_sum += float(loss_fn(out, y)) * len(y)
            correct += int((class_scores(out).argmax(1) == y).sum())
            reset(model)
    n = max(len(split), 1)
    return 100.0 * correct / n, loss_sum / n


def build_model(n_in: int, n_out: int, variant: str, set_cfg: dict[str, Any]) -> DelaySNN:
    return DelaySNN(
        n_in=n_in,
        hidden=list(set_cfg["hidden"]),
        n_out=n_out,
        variant=variant,
        kernel=kernel_size(set_cfg["max_delay_ms"], set_cfg["time_step_ms"]),
        tau=set_cfg["tau_ms"] / set_cfg["time_step_ms"],
        dropout=set_cfg["dropout"],
    )


def _checkpoint(model: DelaySNN, epoch: int, extra: dict[str, Any]) -> dict[str, Any]:
    return {"config": model.config, "state_dict": copy.deepcopy(model.state_dict()), "epoch": epoch, **extra}


def fit(
    splits: dict[str, Split],
    *,
    variant: str,
    seed: int,
    set_cfg: dict[str, Any],
    train_cfg: dict[str, Any],
    device_name: str,
    ckpt_dir: Path,
    live_dir: Path,
    run_info: dict[str, Any],
) -> dict[str, Any]:
    """Train one model; writes ckpt_dir/{init,last,best}.pt and the DVCLive dir; returns the summary."""
    from tqdm import tqdm  # imported here: evaluation reuses this module without DVCLive/tqdm start-up cost

    from pipeline.tracking import EpochLog
    gen = seed_everything(seed)
    device = pick_device(device_name)
    # Narrow Gaussian kernels underflow to denormals, which slow CPU convolutions ~5x.
    torch.set_flush_denormal(True)
    n_classes = int(splits["train"].meta["n_classes"])
    model = build_model(splits["train"].n_channels, n_classes, variant, set_cfg).to(device)
    epochs, batch_size = int(set_cfg["epochs"]), int(set_cfg["batch_size"])
    eval_bs = int(train_cfg.get("eval_batch_size", batch_size))
    kernel = model.kernel

    groups = model.param_groups()
    opt_w = torch.optim.Adam([
        {"params": groups["weights"], "lr": train_cfg["lr"], "weight_decay": train_cfg["weight_decay"]},
        {"params": groups["bn"], "lr": train_cfg["lr"], "weight_decay": 0.0},
    ])
    sched_w = torch.optim.lr_scheduler.OneCycleLR(opt_w, max_lr=train_cfg["max_lr"], total_steps=epochs)
    opt_p = sched_p = None
    if groups["positions"]:
        opt_p = torch.optim.Adam(groups["positions"], lr=train_cfg["lr_positions"], weight_decay=0.0)
        sched_p = torch.optim.lr_scheduler.CosineAnnealingLR(opt_p, T_max=epochs, eta_min=0.0)

    n_params = count_trainable(model)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    model.set_sigma(sigma_at(0, epochs, kernel, train_cfg["sigma_final"]))
    save_torch(ckpt_dir / "init.pt", _checkpoint(model, 0, {"n_params": n_params}))

    config = {**run_info, "variant": variant, "seed": seed, "device": str(device), "set": set_cfg,
              "train": train_cfg, "kernel": kernel, "n_params": n_params, "n_classes": n_classes,
              "n_train": len(splits["train"]), "n_valid": len(splits["valid"]), "n_test": len(splits["test"])}
    log = EpochLog(live_dir, config)
    best: dict[str, Any] = {"valid_acc": -1.0}
    best_test = {"acc": -1.0, "epoch": 0}
    t_start = time.perf_counter()
    for epoch in range(epochs):
        log.start_epoch()
        sigma = sigma_at(epoch, epochs, kernel, train_cfg["sigma_final"])
        model.set_sigma(sigma)
        lr, lr_pos = opt_w.param_groups[0]["lr"], (opt_p.param_groups[0]["lr"] if opt_p else 0.0)
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(iterate_batches(splits["train"], batch_size, shuffle=True, generator=gen, device=device),
                   total=-(-len(splits["train"]) // batch_size), desc=f"{variant} s{seed} epoch {epoch + 1}/{epochs}",
                   leave=False, mininterval=2.0)
        for x, y in bar:
            out = model(x)
            loss = loss_fn(out, y)
            opt_w.zero_grad(set_to_none=True)
            if opt_p:
                opt_p.zero_grad(set_to_none=True)
            loss.backward()
            opt_w.step()
            if opt_p:
                opt_p.step()
            model.clamp_positions()
            reset(model)
            loss_sum += float(loss.detach()) * len(y)
            correct += int((class_scores(out.detach()).argmax(1) == y).sum())
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}")
        sched_w.step()
        if sched_p:
            sched_p.step()
        valid_acc, valid_loss = evaluate_rounded(model, splits["valid"], eval_bs, device)
        test_acc, _ = evaluate_rounded(model, splits["test"], eval_bs, device)
        row = log.end_epoch(epoch + 1, {
            "loss": loss_sum / max(seen, 1), "train_acc": 100.0 * correct / max(seen, 1),
            "valid_loss": valid_loss, "valid_acc": valid_acc, "test_acc": test_acc,
            "lr": lr, "lr_positions": lr_pos, "sigma": sigma,
        })
        tqdm.write(f"[{variant} seed {seed}] epoch {epoch + 1}/{epochs} loss {row['loss']:.3f} "
                   f"train {row['train_acc']:.1f} valid {valid_acc:.1f} test {test_acc:.1f} sigma {sigma:.2f}")
        state = {"valid_acc": valid_acc, "test_acc": test_acc, "n_params": n_params}
        if test_acc > best_test["acc"]:
            best_test = {"acc": test_acc, "epoch": epoch + 1}
        if valid_acc > best["valid_acc"]:  # first epoch wins ties: earliest model reaching the best
            best = {"valid_acc": valid_acc, "test_acc": test_acc, "epoch": epoch + 1}
            save_torch(ckpt_dir / "best.pt", _checkpoint(model, epoch + 1, state))
        save_torch(ckpt_dir / "last.pt", _checkpoint(model, epoch + 1, {
            **state, "history": log.history, "optimizers": [opt_w.state_dict(), opt_p.state_dict() if opt_p else None]}))
    summary = {
        "best_valid_acc": best["valid_acc"], "best_valid_epoch": best["epoch"], "test_acc_at_best_valid": best["test_acc"],
        "best_test_acc": best_test["acc"], "best_test_epoch": best_test["epoch"], "epochs": epochs,
        "elapsed_s": round(log.elapsed_s, 3), "wall_s": round(time.perf_counter() - t_start, 3), "n_params": n_params,
    }
    log.finish(summary)
    return summary
