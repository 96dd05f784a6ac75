"""Feedforward LIF network with synaptic delays learned by DCLS (paper B).

Layout (T, B, C) throughout. Hidden block: delay layer -> BatchNorm (stats over
time and batch) -> LIF -> Dropout (one mask per sample and channel, shared over
time). Then a final delay layer into a readout LIF that never spikes; the
output is its membrane trace over time.

Variants (one parameter):
- `no_delay`: plain bias-free linear layers, no time padding;
- `fixed_delay`: one random integer delay per synapse, drawn once, frozen;
- `learned_delay`: DCLS Gaussian kernels whose positions are learned while
  their width (SIG) follows a schedule.
Evaluation rounds delays: each synapse becomes a one-hot tap at its rounded,
clamped position (SIG -> 0), computed from the continuous positions without
changing them, so training resumes from the exact continuous state.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from DCLS.construct.modules import Dcls1d
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from torch import nn

from pipeline.models.fast_lif import FastLIFNode
from pipeline.models.gauss_kernel import gauss_kernel
from pipeline.models.spectral_conv import spectral_correlation, spectral_is_cheaper

VARIANTS = ("no_delay", "fixed_delay", "learned_delay")
READOUT_THRESHOLD = 1e9  # readout LIF never spikes


def kernel_size(max_delay_ms: float, time_step_ms: float) -> int:
    """K = max_delay // time_step, made odd (250/10 -> 25, 300/10 -> 31)."""
    k = int(max_delay_ms // time_step_ms)
    return k + 1 if k % 2 == 0 else k


def sigma_at(epoch: int, epochs: int, kernel: int, sigma_final: float) -> float:
    """SIG used during 0-based `epoch`: K//2 shrunk by alpha per epoch until epochs//4, then sigma_final.

    alpha = (sigma_final / sig_init) ** (1 / final_epoch), as in the reference.
    """
    sig_init = float(kernel // 2)
    final_epoch = epochs // 4
    if epoch >= final_epoch or sig_init <= sigma_final:
        return sigma_final
    alpha = (sigma_final / sig_init) ** (1.0 / final_epoch)
    return sig_init * alpha**epoch


class DelayLayer(nn.Module):
    """(T, B, in) -> (T', B, out): linear, fixed integer delays or DCLS learned delays.

    Fast paths, each a drop-in with tests proving equality (switch off per
    instance or class to get the straightforward form):
    - `fused_kernel`: learned delays build DCLS's Gaussian kernel with
      `gauss_kernel` (same values and gradients, a fraction of the time and
      memory) instead of running the library's `Dcls1d` forward;
    - `spectral`: on the CPU outside autocast the temporal convolution runs as
      `spectral_correlation` (same result as F.conv1d up to float rounding,
      ~6x fewer flops at K = 25) when that needs fewer flops; elsewhere F.conv1d.
    `self.dcls` holds the parameters either way.
    """

    fused_kernel: bool = True
    spectral: bool = True

    def __init__(self, n_in: int, n_out: int, kernel: int, mode: str) -> None:
        super().__init__()
        if mode not in VARIANTS:
            raise ValueError(f"unknown variant '{mode}' (allowed: {', '.join(VARIANTS)})")
        self.mode, self.kernel, self.rounded = mode, kernel, False
        if mode == "no_delay":
            self.linear = nn.Linear(n_in, n_out, bias=False)
            nn.init.kaiming_uniform_(self.linear.weight, nonlinearity="relu")
            return
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"delay kernel size must be odd and >= 1, got {kernel}")
        self.dcls = Dcls1d(n_in, n_out, kernel_count=1, groups=1, dilated_kernel_size=kernel, bias=False, version="gauss")
        lim = kernel // 2
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.dcls.weight, nonlinearity="relu")
            if mode == "fixed_delay":
                # integer delays drawn once, uniform over 0..K-1, never trained
                self.dcls.P.copy_(torch.randint(-lim, lim + 1, self.dcls.P.shape).float())
                self.dcls.P.requires_grad_(False)
            else:
                nn.init.uniform_(self.dcls.P, a=-kernel // 2, b=kernel // 2)
                self.dcls.clamp_parameters()
            self.dcls.SIG.fill_(float(lim))
        self.dcls.SIG.requires_grad_(False)  # SIG follows a schedule, never a gradient

    @property
    def has_delays(self) -> bool:
        return self.mode != "no_delay"

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        # DCLS caches index tensors on the device of the first forward: drop them on .to()/.cuda().
        out = super()._apply(fn, recurse)
        if self.has_delays:
            self.dcls.DCK.IDX = None
            self.dcls.DCK.lim = None
        return out

    def clamp(self) -> None:
        if self.mode == "learned_delay":
            self.dcls.clamp_parameters()

    def set_sigma(self, value: float) -> None:
        if self.has_delays:
            with torch.no_grad():
                self.dcls.SIG.fill_(value)

    def integer_positions(self) -> torch.Tensor:
        """Positions rounded to integers and clamped to [-K//2, K//2], shape (out, in)."""
        lim = self.kernel // 2
        return self.dcls.P.detach()[0, :, :, 0].round().clamp(-lim, lim)

    def onehot_kernel(self) -> torch.Tensor:
        """(out, in, K) kernel with the weight at tap round(P) + K//2 (gradient flows to the weight)."""
        idx = (self.integer_positions() + self.kernel // 2).long()
        w = self.dcls.weight  # (out, in, 1)
        kern = torch.zeros(w.shape[0], w.shape[1], self.kernel, device=w.device, dtype=w.dtype)
        return kern.scatter(2, idx.unsqueeze(-1), w)

    def delays(self, rounded: bool) -> np.ndarray:
        """Effective delay of every synapse in steps, K//2 - P (cross-correlation), flattened."""
        if not self.has_delays:
            return np.zeros(0)
        p = self.integer_positions() if rounded else self.dcls.P.detach()[0, :, :, 0]
        return (self.kernel // 2 - p).flatten().cpu().numpy()

    def _use_spectral(self, x: torch.Tensor, kern: torch.Tensor) -> bool:
        k = self.kernel
        return (self.spectral and x.device.type == "cpu" and not torch.is_autocast_enabled("cpu")
                and x.dtype == kern.dtype and x.dtype in (torch.float32, torch.float64)
                and spectral_is_cheaper(x.shape[0], x.shape[1], kern.shape[1], kern.shape[0], k, k - 1, (k - 1) // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "no_delay":
            return self.linear(x)
        k = self.kernel
        left, right = k - 1, (k - 1) // 2  # time padding of the reference
        if self.mode == "learned_delay" and not self.rounded and not self.fused_kernel:
            return self.dcls(F.pad(x.permute(1, 2, 0), (left, right))).permute(2, 0, 1)
        if self.mode == "fixed_delay" or self.rounded:
            kern = self.onehot_kernel()
        else:
            kern = gauss_kernel(self.dcls.weight, self.dcls.P, self.dcls.SIG, k)
        if self._use_spectral(x, kern):
            return spectral_correlation(x, kern, left, right)
        y = F.conv1d(F.pad(x.permute(1, 2, 0), (left, right)), kern)  # (B, C, T + left + right) in
        return y.permute(2, 0, 1)


def lif(tau: float, threshold: float = 1.0, store_v_seq: bool = False) -> neuron.LIFNode:
    """SpikingJelly's multi-step LIF of the reference; FastLIFNode only swaps in a faster CPU loop."""
    return FastLIFNode(tau=float(tau), decay_input=False, v_threshold=threshold, v_reset=0.0,
                       surrogate_function=surrogate.ATan(alpha=5.0), detach_reset=True,
                       step_mode="m", store_v_seq=store_v_seq)


class TimeBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over channels of a (T, B, C) tensor, statistics pooled over time and batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        t, b, c = x.shape
        return super().forward(x.reshape(t * b, c)).reshape(t, b, c)


class DelaySNN(nn.Module):
    """Feedforward delay SNN; forward (T, B, n_in) -> readout membrane (T', B, n_out)."""

    def __init__(self, n_in: int, hidden: list[int], n_out: int, variant: str, kernel: int,
                 tau: float, dropout: float) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant '{variant}' (allowed: {', '.join(VARIANTS)})")
        if not tau > 1.0:  # SpikingJelly's LIFNode requires it (decay 1/tau must be < 1)
            raise ValueError(f"LIF tau must be > 1 time step, got {tau} (tau_ms / time_step_ms)")
        self.variant, self.kernel = variant, kernel
        self.config = {"n_in": n_in, "hidden": list(hidden), "n_out": n_out, "variant": variant,
                       "kernel": kernel, "tau": tau, "dropout": dropout}
        sizes = [n_in, *hidden]
        self.blocks = nn.ModuleList()
        for a, b in zip(sizes[:-1], sizes[1:]):
            self.blocks.append(nn.ModuleDict({
                "delay": DelayLayer(a, b, kernel, variant),
                "bn": TimeBatchNorm(b),
                "lif": lif(tau),
                "drop": layer.Dropout(dropout, step_mode="m"),
            }))
        self.out_delay = DelayLayer(sizes[-1], n_out, kernel, variant)
        self.out_lif = lif(tau, threshold=READOUT_THRESHOLD, store_v_seq=True)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "DelaySNN":
        return cls(**config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk["drop"](blk["lif"](blk["bn"](blk["delay"](x))))
        self.out_lif(self.out_delay(x))
        return self.out_lif.v_seq

    def set_fast_paths(self, enabled: bool) -> None:
        """Switch every fast path (fused kernel, spectral convolution, CPU LIF loop) on or off."""
        for d in self.delay_layers():
            d.fused_kernel = d.spectral = enabled
        for m in self.modules():
            if isinstance(m, FastLIFNode):
                m.fast = enabled

    def delay_layers(self) -> list[DelayLayer]:
        return [blk["delay"] for blk in self.blocks] + [self.out_delay]

    def clamp_positions(self) -> None:
        for d in self.delay_layers():
            d.clamp()

    def set_sigma(self, value: float) -> None:
        for d in self.delay_layers():
            d.set_sigma(value)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters split for the optimisers: delay/linear weights, BN affine, positions."""
        groups: dict[str, list[nn.Parameter]] = {"weights": [], "bn": [], "positions": []}
        for d in self.delay_layers():
            if d.mode == "no_delay":
                groups["weights"].append(d.linear.weight)
            else:
                groups["weights"].append(d.dcls.weight)
                if d.dcls.P.requires_grad:
                    groups["positions"].append(d.dcls.P)
        for blk in self.blocks:
            groups["bn"] += [blk["bn"].weight, blk["bn"].bias]
        return groups

    @contextlib.contextmanager
    def rounded(self) -> Iterator["DelaySNN"]:
        """Eval mode with integer one-hot delays; restores the previous mode and continuous kernels."""
        was_training = self.training
        self.eval()
        for d in self.delay_layers():
            d.rounded = True
        try:
            yield self
        finally:
            for d in self.delay_layers():
                d.rounded = False
            self.train(was_training)


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def class_scores(out: torch.Tensor) -> torch.Tensor:
    """Softmax over classes at every step, summed over time: (T, B, C) -> m (B, C)."""
    return F.softmax(out, dim=2).sum(0)


def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on m (the reference applies it to the summed softmax)."""
    return F.cross_entropy(class_scores(out), y)


def reset(model: nn.Module) -> None:
    """Clear LIF membranes and dropout masks between batches."""
    functional.reset_net(model)
