"""Benchmark 2: inference of one delay layer with rounded integer delays.

Evaluation rounds every synapse's delay to an integer tap (DelayLayer.rounded).
Candidates for that forward pass, no gradient, same layer and input:
- dense_conv1d: F.conv1d with the one-hot (out, in, K) kernel, what the
  reference evaluates with;
- grouped_by_delay: synapses grouped by their tap k, K dense GEMMs of the
  shifted input with each group's (out, in) weights (no kernel tensor);
- sparse_input: the input as a CSR matrix (spikes are rare) times all K weight
  groups at once, then the K shifted slices summed;
- spectral: pipeline.models.spectral_conv (what DelayLayer uses on the CPU).
Shapes: 140 -> 256 with K = 25, batch 32, T = 136 (SHD-like spike
counts), and a hidden 256 -> 256 layer fed binary spikes at a 5 % rate.
Outputs must equal dense_conv1d's up to float rounding (asserted: max |diff|
<= 1e-5 * max |output|).

Run alone: python -m benchmarks.bench_integer_inference
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import torch
import torch.nn.functional as F

from benchmarks.common import compare, default_params, ratio, save
from pipeline.models.delay_snn import DelayLayer

NAME = "integer_inference"
KERNEL, BATCH, T_STEPS = 25, 32, 136
INPUT_RATE = 0.5  # SHD-like mean spike count per frame and pooled channel
HIDDEN_SPIKE_RATE = 0.05  # share of (step, neuron) pairs spiking in a hidden layer
TOLERANCE = 1e-5  # relative to max |output|: float32 rounding of sums of ~n_in terms


def rounded_layer(n_in: int, n_out: int, seed: int) -> DelayLayer:
    torch.manual_seed(seed)
    layer = DelayLayer(n_in, n_out, KERNEL, "learned_delay")
    layer.rounded = True
    return layer.eval()


def _padded(layer: DelayLayer, x: torch.Tensor) -> torch.Tensor:
    k = layer.kernel
    return F.pad(x, (0, 0, 0, 0, k - 1, (k - 1) // 2))  # (Tp, B, in), time padding of the reference


def _weight_groups(layer: DelayLayer) -> torch.Tensor:
    """(K, in, out): synapse weights placed at their integer tap, zero elsewhere."""
    return layer.onehot_kernel().permute(2, 1, 0)


def dense_conv1d(layer: DelayLayer, x: torch.Tensor) -> torch.Tensor:
    layer.spectral = False
    try:
        return layer(x)
    finally:
        layer.spectral = True


def grouped_by_delay(layer: DelayLayer, x: torch.Tensor) -> torch.Tensor:
    xp = _padded(layer, x)
    groups = _weight_groups(layer)
    tp, b, c_in = xp.shape
    t_out = tp - layer.kernel + 1
    x2 = xp.reshape(tp * b, c_in)
    y = x2[: t_out * b] @ groups[0]
    for k in range(1, layer.kernel):
        y.addmm_(x2[k * b : (k + t_out) * b], groups[k])
    return y.view(t_out, b, -1)


def sparse_input(layer: DelayLayer, x: torch.Tensor) -> torch.Tensor:
    xp = _padded(layer, x)
    groups = _weight_groups(layer)  # (K, in, out)
    k_taps, c_in, c_out = groups.shape
    tp, b, _ = xp.shape
    t_out = tp - k_taps + 1
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        x_csr = xp.reshape(tp * b, c_in).to_sparse_csr()
    z = torch.sparse.mm(x_csr, groups.permute(1, 0, 2).reshape(c_in, k_taps * c_out))  # (Tp B, K out)
    z = z.view(tp, b, k_taps, c_out)
    y = z[:t_out, :, 0].clone()
    for k in range(1, k_taps):
        y += z[k : k + t_out, :, k]
    return y


def spectral(layer: DelayLayer, x: torch.Tensor) -> torch.Tensor:
    layer.spectral = True
    return layer(x)


CANDIDATES: dict[str, Callable[[DelayLayer, torch.Tensor], torch.Tensor]] = {
    "dense_conv1d": dense_conv1d,
    "grouped_by_delay": grouped_by_delay,
    "sparse_input": sparse_input,
    "spectral": spectral,
}


def _case(layer: DelayLayer, x: torch.Tensor, repeats: int) -> dict[str, Any]:
    with torch.no_grad():
        ref = dense_conv1d(layer, x)
        scale = float(ref.abs().max())
        diffs = {}
        for name, fn in CANDIDATES.items():
            out = fn(layer, x)
            diffs[name] = float((out - ref).abs().max()) / scale
            assert out.shape == ref.shape and diffs[name] <= TOLERANCE, (
                f"{name} differs from dense_conv1d: {diffs[name]}"
            )
        secs = compare(
            {name: (lambda fn=fn: fn(layer, x)) for name, fn in CANDIDATES.items()}, repeats=repeats
        )
    layer.spectral = True
    return {
        "seconds": secs,
        "max_rel_diff_vs_dense": diffs,
        "ratio_vs_dense_conv1d": {
            n: ratio(secs["dense_conv1d"], s) for n, s in secs.items() if n != "dense_conv1d"
        },
    }


def main(quick: bool = False) -> dict[str, Any]:
    params = default_params()
    threads = int(params["threads"]) or torch.get_num_threads()
    torch.set_num_threads(threads)  # as the stages run
    gen = torch.Generator().manual_seed(0)
    x_in = torch.poisson(torch.full((T_STEPS, BATCH, 140), INPUT_RATE), generator=gen)
    t_hidden = T_STEPS + (KERNEL - 1) // 2  # what the first layer hands on
    x_hidden = (torch.rand(t_hidden, BATCH, 256, generator=gen) < HIDDEN_SPIKE_RATE).float()
    repeats = 3 if quick else 5
    cases = {
        "input 140->256": _case(rounded_layer(140, 256, 0), x_in, repeats),
        "hidden 256->256": _case(rounded_layer(256, 256, 1), x_hidden, repeats),
    }
    ratios = {
        f"{case}: {name} vs dense_conv1d": r
        for case, res in cases.items()
        for name, r in res["ratio_vs_dense_conv1d"].items()
    }
    result = {
        "name": NAME,
        "what": "one rounded (integer-delay) delay layer forward, no grad",
        "kernel": KERNEL,
        "batch": BATCH,
        "input_steps": T_STEPS,
        "input_rate": INPUT_RATE,
        "hidden_spike_rate": HIDDEN_SPIKE_RATE,
        "threads": threads,
        "quick": quick,
        "cases": cases,
        "default": "spectral",
        "ratios": ratios,
    }
    print(f"[{NAME}] " + "; ".join(f"{k}: {v:.2f}x" for k, v in ratios.items()) + f" ({threads} thread(s))")
    return result


if __name__ == "__main__":
    print(save(NAME, main()))
