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

from pipeline import distributed
from pipeline.data.prepared import Split, iterate_batches
from pipeline.distributed import Dist, all_sum
from pipeline.io import save_torch
from pipeline.models.delay_snn import DelaySNN, class_scores, count_trainable, kernel_size, loss_fn, reset, sigma_at
from pipeline.precision import Precision
from pipeline.resume import KillSwitch, ResumeState, check_finite, fingerprint, rng_state, set_rng_state
from pipeline.runtime import pick_device, seed_everything


@torch.no_grad()
def evaluate_rounded(model: DelaySNN, split: Split, batch_size: int, device: torch.device,
                     d: Dist = Dist()) -> tuple[float, float]:
    """(accuracy %, mean loss) with integer delays in eval mode; the continuous state is untouched.

    With several processes each scores its share of the split and the counts are summed.
    """
    correct, loss_sum = 0, 0.0
    with model.rounded():
        for x, y in iterate_batches(split, batch_size, device=device, d=d):
            out = model(x)
            loss_sum += float(loss_fn(out.float(), y)) * len(y)
            correct += int((class_scores(out).argmax(1) == y).sum())
            reset(model)
    correct, loss_sum = all_sum([correct, loss_sum], d, device)
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
    amp: str = "off",
    resume: bool = True,
    inputs: tuple[Path, ...] = (),
) -> dict[str, Any]:
    """Train one model; writes ckpt_dir/{init,last,best}.pt and the DVCLive dir; returns the summary.

    Resumable: after every epoch the whole training state goes to .resume/ (see
    pipeline/resume.py); a rerun with the same config, `inputs` and code continues
    from there and ends with the same metrics as an uninterrupted run.
    """
    from tqdm import tqdm  # imported here: evaluation reuses this module without DVCLive/tqdm start-up cost

    from pipeline.tracking import EpochLog
    gen = seed_everything(seed)
    d, device = distributed.setup(pick_device(device_name))
    # Narrow Gaussian kernels underflow to denormals, which slow CPU convolutions ~5x.
    torch.set_flush_denormal(True)
    n_classes = int(splits["train"].meta["n_classes"])
    core = build_model(splits["train"].n_channels, n_classes, variant, set_cfg).to(device)
    distributed.seed_rank(seed, d)
    model = distributed.wrap(core, d, device)
    prec = Precision(amp, device)
    epochs, batch_size = int(set_cfg["epochs"]), int(set_cfg["batch_size"])
    eval_bs = int(train_cfg.get("eval_batch_size", batch_size))
    kernel = core.kernel

    groups = core.param_groups()
    opt_w = torch.optim.Adam([
        {"params": groups["weights"], "lr": train_cfg["lr"], "weight_decay": train_cfg["weight_decay"]},
        {"params": groups["bn"], "lr": train_cfg["lr"], "weight_decay": 0.0},
    ])
    sched_w = torch.optim.lr_scheduler.OneCycleLR(opt_w, max_lr=train_cfg["max_lr"], total_steps=epochs)
    opt_p = sched_p = None
    if groups["positions"]:
        opt_p = torch.optim.Adam(groups["positions"], lr=train_cfg["lr_positions"], weight_decay=0.0)
        sched_p = torch.optim.lr_scheduler.CosineAnnealingLR(opt_p, T_max=epochs, eta_min=0.0)
    optimizers = [o for o in (opt_w, opt_p) if o is not None]

    n_params = count_trainable(core)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    config = {**run_info, "variant": variant, "seed": seed, "device": str(device), "set": set_cfg,
              "train": train_cfg, "kernel": kernel, "n_params": n_params, "n_classes": n_classes,
              "n_train": len(splits["train"]), "n_valid": len(splits["valid"]), "n_test": len(splits["test"]),
              "amp": prec.name, "world_size": d.world}
    resumer = ResumeState(ckpt_dir, fingerprint(config, inputs, d.world), enabled=resume, is_main=d.is_main)
    log = EpochLog(live_dir, config) if d.is_main else None
    best: dict[str, Any] = {"valid_acc": -1.0}
    best_test = {"acc": -1.0, "epoch": 0}
    best_ckpt: dict[str, Any] | None = None
    start_epoch = 0
    state = resumer.load()
    if state is None:
        core.set_sigma(sigma_at(0, epochs, kernel, train_cfg["sigma_final"]))
        init_ckpt = _checkpoint(core, 0, {"n_params": n_params})
    else:
        core.load_state_dict(state["model"])
        for obj, key in ((opt_w, "opt_w"), (sched_w, "sched_w"), (opt_p, "opt_p"), (sched_p, "sched_p"),
                         (prec.scaler, "scaler")):
            if obj is not None:
                obj.load_state_dict(state[key])
        set_rng_state(state["rng"][d.rank], gen)
        best, best_test, best_ckpt, init_ckpt = state["best"], state["best_test"], state["best_ckpt"], state["init_ckpt"]
        start_epoch = int(state["epoch"])
        if log is not None:
            log.replay(state["history"])
    if d.is_main:
        save_torch(ckpt_dir / "init.pt", init_ckpt)
        if best_ckpt is not None:
            save_torch(ckpt_dir / "best.pt", best_ckpt)

    kill = KillSwitch()
    t_start = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        if log is not None:
            log.start_epoch()
        sigma = sigma_at(epoch, epochs, kernel, train_cfg["sigma_final"])
        core.set_sigma(sigma)
        lr, lr_pos = opt_w.param_groups[0]["lr"], (opt_p.param_groups[0]["lr"] if opt_p else 0.0)
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        batches = iterate_batches(splits["train"], batch_size, shuffle=True, generator=gen, device=device, d=d)
        bar = tqdm(batches, desc=f"{variant} s{seed} epoch {epoch + 1}/{epochs}", leave=False, mininterval=2.0,
                   disable=not d.is_main)
        for b, (x, y) in enumerate(bar):
            with prec.autocast():
                out = model(x)
            loss = loss_fn(out.float(), y)
            check_finite(loss, epoch + 1, b + 1, resumer, epoch, d, device)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            prec.backward_and_step(loss, optimizers)
            core.clamp_positions()
            reset(model)
            loss_sum += float(loss.detach()) * len(y)
            correct += int((class_scores(out.detach()).argmax(1) == y).sum())
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}")
            kill.tick()
        loss_sum, correct, seen = all_sum([loss_sum, correct, seen], d, device)
        sched_w.step()
        if sched_p:
            sched_p.step()
        valid_acc, valid_loss = evaluate_rounded(core, splits["valid"], eval_bs, device, d)
        test_acc, _ = evaluate_rounded(core, splits["test"], eval_bs, device, d)
        metrics = {
            "loss": loss_sum / max(seen, 1), "train_acc": 100.0 * correct / max(seen, 1),
            "valid_loss": valid_loss, "valid_acc": valid_acc, "test_acc": test_acc,
            "lr": lr, "lr_positions": lr_pos, "sigma": sigma,
        }
        st = {"valid_acc": valid_acc, "test_acc": test_acc, "n_params": n_params}
        if test_acc > best_test["acc"]:
            best_test = {"acc": test_acc, "epoch": epoch + 1}
        if valid_acc > best["valid_acc"]:  # first epoch wins ties: earliest model reaching the best
            best = {"valid_acc": valid_acc, "test_acc": test_acc, "epoch": epoch + 1}
            best_ckpt = _checkpoint(core, epoch + 1, st)
        rngs = distributed.all_gather_object(rng_state(gen), d)  # collective: every rank takes part
        if log is None:
            continue
        row = log.end_epoch(epoch + 1, metrics)
        tqdm.write(f"[{variant} seed {seed}] epoch {epoch + 1}/{epochs} loss {row['loss']:.3f} "
                   f"train {row['train_acc']:.1f} valid {valid_acc:.1f} test {test_acc:.1f} sigma {sigma:.2f}")
        if best["epoch"] == epoch + 1:
            save_torch(ckpt_dir / "best.pt", best_ckpt)
        save_torch(ckpt_dir / "last.pt", _checkpoint(core, epoch + 1, {
            **st, "history": log.history, "optimizers": [o.state_dict() for o in optimizers]}))
        resumer.save({
            "epoch": epoch + 1, "model": core.state_dict(), "opt_w": opt_w.state_dict(), "sched_w": sched_w.state_dict(),
            "opt_p": opt_p.state_dict() if opt_p else None, "sched_p": sched_p.state_dict() if sched_p else None,
            "scaler": prec.scaler.state_dict(), "rng": rngs, "history": log.history, "best": best,
            "best_test": best_test, "best_ckpt": best_ckpt, "init_ckpt": init_ckpt,
        })
    summary = {
        "best_valid_acc": best["valid_acc"], "best_valid_epoch": best["epoch"], "test_acc_at_best_valid": best["test_acc"],
        "best_test_acc": best_test["acc"], "best_test_epoch": best_test["epoch"], "epochs": epochs,
        "elapsed_s": round(log.elapsed_s, 3) if log else 0.0, "wall_s": round(time.perf_counter() - t_start, 3),
        "n_params": n_params,
    }
    if log is not None:
        if start_epoch == epochs:  # killed after the last epoch's state was saved: outputs from the state
            save_torch(ckpt_dir / "last.pt", _checkpoint(core, epochs, {"history": log.history}))
        log.finish(summary)
    resumer.clear()
    distributed.cleanup(d)
    return summary
