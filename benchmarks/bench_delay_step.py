"""Benchmark 1: one training step of the delay SNN at the SHD paper settings.

One step = forward + loss + backward + both Adam steps + position clamp + LIF
reset, exactly as pipeline/delays/train.py runs it, on a batch of 32 with T = 100
input steps. Candidates, same initial parameters and inputs:
- straightforward: DCLS `Dcls1d` gauss kernel built by the library and
  convolved with F.conv1d, SpikingJelly's multi-step LIF (`set_fast_paths(False)`);
- ours: the defaults of pipeline.models.delay_snn (fused Gaussian kernel,
  spectral convolution, fused CPU LIF loop).
Measured at both ends of the sigma schedule (SIG = K//2 and SIG = 0.23). Before
timing, one step's outputs and gradients are compared: in float64 (must agree
to 1e-9: same maths) and in float32 (reported; rounding can flip a spike).

Run alone: python -m benchmarks.bench_delay_step [--profile]
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from benchmarks.common import REPO, compare, default_params, ratio, save
from pipeline.models.delay_snn import DelaySNN, kernel_size, loss_fn, reset
from pipeline.delays.train import optimizers
from pipeline.params.configs import DelaysRecipe, LearnedDelays, build

NAME = "delay_step"
PRESET = REPO / "workflow" / "presets" / "paper-delays.yaml"
SHD_CLASSES = 20  # SHD: digits 0-9 in English and German
BATCH, T_STEPS = 32, 100
VERIFY_BATCH = 8
INPUT_RATE = 0.5  # mean spike count per 10 ms frame and pooled channel, about SHD's


def paper_model(seed: int = 0) -> DelaySNN:
    """The SHD paper-settings learned-delay model: 140 inputs (700 pooled by 5), 2 x 256, K = 25."""
    shd = yaml.safe_load(Path(PRESET).read_text())["delays"]["sets"]["shd"]
    data, net = shd["data"], shd["train"]
    torch.manual_seed(seed)
    return DelaySNN(
        n_in=-(-data["n_channels"] // data["pool"]),
        hidden=list(net["hidden"]),
        n_out=SHD_CLASSES,
        variant="learned_delay",
        kernel=kernel_size(net["max_delay_ms"], data["time_step_ms"]),
        tau=net["tau_ms"] / data["time_step_ms"],
        dropout=net["dropout"],
    )


def make_inputs(
    n_in: int, dtype: torch.dtype = torch.float32, batch: int = BATCH
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.full((T_STEPS, batch, n_in), INPUT_RATE), generator=gen).to(dtype)
    return x, torch.randint(0, SHD_CLASSES, (batch,), generator=gen)


def training_step(
    model: DelaySNN, params: dict[str, Any], x: torch.Tensor, y: torch.Tensor
) -> Callable[[], torch.Tensor]:
    """A closure running one step of train.fit's inner loop on (x, y) with the stage's own optimisers."""
    recipe = build(DelaysRecipe, params["delays"]["recipe"], "delays.recipe")
    positions = build(LearnedDelays, params["delays"]["variant_recipe"]["learned_delay"], "learned_delay")
    opt_w, opt_p = optimizers(model, recipe, positions)

    def step() -> torch.Tensor:
        model.train()
        out = model(x)
        loss = loss_fn(out.float(), y)
        for opt in (opt_w, opt_p):
            opt.zero_grad(set_to_none=True)
        loss.backward()
        opt_w.step()
        opt_p.step()
        model.clamp_positions()
        reset(model)
        return loss.detach()

    return step


def _forward_backward(
    model: DelaySNN, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(1)  # same dropout masks for both candidates
    out = model(x)
    loss_fn(out, y).backward()
    reset(model)
    grads = [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    return out.detach(), grads


def max_rel_diffs(ours: DelaySNN, ref: DelaySNN, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Largest |difference| / max |reference| over the output and over every parameter gradient."""
    (out_a, grads_a), (out_b, grads_b) = _forward_backward(ours, x, y), _forward_backward(ref, x, y)
    assert len(grads_a) == len(grads_b)

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))

    return {"output": rel(out_a, out_b), "grads": max(rel(a, b) for a, b in zip(grads_a, grads_b))}


def verify(model: DelaySNN, sigma: float) -> dict[str, dict[str, float]]:
    """Ours vs straightforward on one forward/backward, float64 (to 1e-9) and float32 (to 1e-3).

    On a batch of VERIFY_BATCH (the maths does not depend on the batch; float64 is slow).
    """
    found = {}
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-3)):
        ours = copy.deepcopy(model).to(dtype)
        ours.set_sigma(sigma)
        ref = copy.deepcopy(ours)
        ref.set_fast_paths(False)
        x, y = make_inputs(ours.config["n_in"], dtype, VERIFY_BATCH)
        diffs = max_rel_diffs(ours, ref, x, y)
        assert max(diffs.values()) < tol, (
            f"ours and straightforward differ at sigma {sigma} in {dtype}: {diffs}"
        )
        found[str(dtype).removeprefix("torch.")] = diffs
    return found


def main(quick: bool = False, threads: int | None = None) -> dict[str, Any]:
    """`threads` defaults to params.yaml's (what the stages use)."""
    params = default_params()
    threads = threads or int(params["threads"]) or torch.get_num_threads()
    torch.set_num_threads(threads)  # as the stages run
    torch.set_flush_denormal(True)  # as train.fit does, for both candidates
    sigma_final = float(params["delays"]["variant_recipe"]["learned_delay"]["sigma_final"])
    base = paper_model()
    kernel = base.kernel
    x, y = make_inputs(base.config["n_in"])
    result: dict[str, Any] = {
        "name": NAME,
        "what": "one delay-SNN training step (fwd + bwd + both Adam steps + clamp), SHD paper settings",
        "model": base.config,
        "batch": BATCH,
        "input_steps": T_STEPS,
        "threads": threads,
        "quick": quick,
        "sigmas": {},
    }
    ratios = {}
    for sigma in (float(kernel // 2), sigma_final):
        checks = verify(base, sigma) if not quick or sigma == sigma_final else {}
        models = {"straightforward": copy.deepcopy(base), "ours": copy.deepcopy(base)}
        models["straightforward"].set_fast_paths(False)
        steps = {}
        for name, m in models.items():
            m.set_sigma(sigma)
            steps[name] = training_step(m, params, x, y)
        secs = compare(steps, repeats=2 if quick else 4)
        r = ratio(secs["straightforward"], secs["ours"])
        result["sigmas"][f"{sigma:g}"] = {
            "seconds": secs,
            "ratio_ours_vs_straightforward": r,
            "max_rel_diff": checks,
        }
        ratios[f"training step, sigma {sigma:g}: ours vs straightforward"] = r
    result["target_ratio"] = 1.5
    result["ratios"] = ratios
    print(
        f"[{NAME}] "
        + "; ".join(f"{k}: {v:.2f}x" for k, v in ratios.items())
        + f" (target >= 1.5x, {threads} thread(s))"
    )
    return result


def profile(sigma: float) -> None:
    """Print where the time of one step goes, for both candidates."""
    from torch.profiler import profile as torch_profile

    params = default_params()
    torch.set_num_threads(int(params["threads"]) or torch.get_num_threads())
    torch.set_flush_denormal(True)
    base = paper_model()
    base.set_sigma(sigma)
    x, y = make_inputs(base.config["n_in"])
    for name, fast in (("straightforward", False), ("ours", True)):
        m = copy.deepcopy(base)
        m.set_fast_paths(fast)
        step = training_step(m, params, x, y)
        step()
        with torch_profile() as prof:
            step()
        print(f"== {name}, sigma {sigma:g}")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--profile", action="store_true", help="print torch.profiler tables instead of timing"
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: params.yaml's)")
    args = parser.parse_args()
    if args.profile:
        for s in (
            float(paper_model().kernel // 2),
            float(default_params()["delays"]["variant_recipe"]["learned_delay"]["sigma_final"]),
        ):
            profile(s)
    else:
        print(save(NAME, main(quick=args.quick, threads=args.threads)))
