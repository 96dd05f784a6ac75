"""LIF multi-step loop on the CPU: SpikingJelly's implementation vs our fused loop (vs torch.compile).

The delay SNN's two LIF configurations at the paper-B shapes (batch 32, SHD
tau), forward + backward: a hidden layer (256 neurons, T = 112, loss on the
spikes) and the readout (20 neurons, T = 136, threshold 1e9, membrane trace
stored and used as the output). decay_input=False, hard reset to 0,
detach_reset=True, ATan(alpha=5) surrogate. Candidates:
- spikingjelly: `LIFNode(step_mode="m")`, SpikingJelly 2.0's CPU path;
- fused: pipeline.models.fast_lif.FastLIFNode (what the model uses on the CPU);
- compiled (only with --compile, its start-up is minutes): torch.compile of
  SpikingJelly's pure-torch reference loop (`_ops.lif.reference.multi_step`,
  the formulation torch.compile can trace; its registered CPU op is opaque to
  it). The loop is unrolled over T, so every new sequence length compiles again.
Spikes, membranes and input gradients are checked equal to SpikingJelly's first
(bitwise for fused; asserted to 1e-6).

Run alone: python -m benchmarks.bench_lif [--compile]
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import torch
from spikingjelly.activation_based import neuron, surrogate

from benchmarks.common import compare, default_params, ratio, save
from pipeline.models.delay_snn import READOUT_THRESHOLD
from pipeline.models.fast_lif import FastLIFNode

NAME = "lif"
BATCH, TAU, ALPHA = 32, 1.005, 5.0  # SHD: tau 10.05 ms / 10 ms steps; ATan(alpha=5)
# name: (T, neurons, threshold, store_v_seq): what DelaySNN's LIFs see at T = 100 input steps
CASES = {"hidden": (112, 256, 1.0, False), "readout": (136, 20, READOUT_THRESHOLD, True)}


def module_forward(cls: type, threshold: float, store: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """x -> the tensor the model uses: spikes (hidden) or the membrane trace (readout)."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        node = cls(
            tau=TAU,
            decay_input=False,
            v_threshold=threshold,
            v_reset=0.0,
            surrogate_function=surrogate.ATan(alpha=ALPHA),
            detach_reset=True,
            step_mode="m",
            store_v_seq=store,
        )
        spikes = node(x)
        return node.v_seq if store else spikes

    return forward


def compiled_reference(threshold: float, store: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    from spikingjelly._ops.lif.reference import multi_step

    sg = surrogate.ATan(alpha=ALPHA)

    def loop(x: torch.Tensor) -> torch.Tensor:
        spikes, _, v_seq = multi_step(x, torch.zeros_like(x[0]), TAU, False, threshold, 0.0, sg, True, store)
        return v_seq if store else spikes

    return torch.compile(loop)


def _run(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, grad: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward + backward; the output and d loss / d x."""
    x = x.detach().requires_grad_()
    out = forward(x)
    (out * grad).sum().backward()
    return out.detach(), x.grad


def _case(name: str, repeats: int, with_compile: bool) -> dict[str, Any]:
    t, neurons, threshold, store = CASES[name]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(t, BATCH, neurons, generator=gen) * 1.5
    grad = torch.randn(t, BATCH, neurons, generator=gen)
    candidates = {
        "spikingjelly": module_forward(neuron.LIFNode, threshold, store),
        "fused": module_forward(FastLIFNode, threshold, store),
    }
    startup = {}
    if with_compile:
        candidates["compiled"] = compiled_reference(threshold, store)
        t0 = time.perf_counter()
        _run(candidates["compiled"], x, grad)  # compiles forward and backward
        startup["compiled_first_call_s"] = round(time.perf_counter() - t0, 2)
    ref = _run(candidates["spikingjelly"], x, grad)
    max_abs = {}
    for cand, fn in candidates.items():
        got = _run(fn, x, grad)
        max_abs[cand] = max(float((a - b).abs().max()) for a, b in zip(got, ref))
        assert max_abs[cand] <= 1e-6, f"{name}: {cand} differs from SpikingJelly by {max_abs[cand]}"
    secs = compare({n: (lambda fn=fn: _run(fn, x, grad)) for n, fn in candidates.items()}, repeats=repeats)
    return {
        "shape": [t, BATCH, neurons],
        "threshold": threshold,
        "store_v_seq": store,
        "seconds": secs,
        "max_abs_diff_vs_spikingjelly": max_abs,
        "startup": startup,
        "ratio_vs_spikingjelly": {
            n: ratio(secs["spikingjelly"], s) for n, s in secs.items() if n != "spikingjelly"
        },
    }


def main(quick: bool = False, with_compile: bool = False) -> dict[str, Any]:
    params = default_params()
    threads = int(params["threads"]) or torch.get_num_threads()
    torch.set_num_threads(threads)  # as the stages run
    cases = {name: _case(name, 5 if quick else 15, with_compile) for name in CASES}
    ratios = {
        f"LIF {name} fwd+bwd: {cand} vs spikingjelly": r
        for name, res in cases.items()
        for cand, r in res["ratio_vs_spikingjelly"].items()
    }
    startup = {
        f"{name}: torch.compile first call (s)": res["startup"]["compiled_first_call_s"]
        for name, res in cases.items()
        if res["startup"]
    }
    print(
        f"[{NAME}] "
        + "; ".join(f"{k}: {v:.2f}x" for k, v in ratios.items())
        + f" ({threads} thread(s))"
        + "".join(f"; {k} {v}" for k, v in startup.items())
    )
    return {
        "name": NAME,
        "what": "multi-step LIF forward + backward, the delay SNN's hidden and readout LIFs",
        "batch": BATCH,
        "tau": TAU,
        "threads": threads,
        "quick": quick,
        "cases": cases,
        "ratios": ratios,
        **({"absolutes": startup} if startup else {}),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow start-up)")
    args = parser.parse_args()
    print(save(NAME, main(with_compile=args.compile)))
