"""Activations shared by the paper-A twins: the LIF neuron of the SNN and the
sharpened ReLU of the pretraining ANN.

Both use the same rectangular surrogate (gradient 1 where |x - 0.5| < 0.5), which
is what lets the ANN's parameters carry over to the SNN unchanged.
"""
from __future__ import annotations

import torch
from spikingjelly.activation_based import neuron, surrogate
from torch import nn


def rect_surrogate() -> surrogate.SurrogateFunctionBase:
    """SpikingJelly's Rect(alpha=1): forward heaviside(u - thr), backward 1 where |u - thr| < 0.5.

    Heaviside fires at u >= thr while the paper writes u > thr; the two differ only
    on the measure-zero set u == thr, so SpikingJelly's class is used as is.
    """
    return surrogate.Rect(alpha=1.0)


class DecayResetLIF(neuron.SimpleBaseNode):
    """LIF of the reference: u_t = decay * u_{t-1} * (1 - s_{t-1}) + I_t, s_t = [u_t > thr].

    SpikingJelly's LIFNode charges as v += (x - (v - v_reset)) / tau, which has the
    input scaled by 1/tau, so it cannot express this multiplicative decay with
    unscaled input. SimpleBaseNode lets us supply only the charge equation and
    keeps SpikingJelly's fire (surrogate) and hard reset (v <- v * (1 - s), the
    (1 - s_{t-1}) factor) with the reset spike detached, multi-step mode and
    functional.reset_net support.
    """

    def __init__(self, decay: float = 0.25, v_threshold: float = 0.5, step_mode: str = "m") -> None:
        super().__init__(v_threshold=v_threshold, v_reset=0.0, surrogate_function=rect_surrogate(),
                         detach_reset=True, step_mode=step_mode)
        self.decay = decay

    def neuronal_charge(self, x: torch.Tensor) -> None:
        # self.v already holds u_{t-1} * (1 - s_{t-1}) after SpikingJelly's hard reset
        self.v = self.decay * self.v + x

    def extra_repr(self) -> str:
        return f"decay={self.decay}, v_threshold={self.v_threshold}, step_mode={self.step_mode}"


class _SharpenedReLUFn(torch.autograd.Function):
    """Clipped ramp forward; the SNN's rectangular surrogate backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lo: float, hi: float, threshold: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.threshold = threshold
        return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        window = ((x - ctx.threshold).abs() < 0.5).to(grad.dtype)
        return grad * window, None, None, None


def sharpen_bounds(epoch: int, sharpen_epochs: int) -> tuple[float, float]:
    """Ramp ends for `epoch` (0-based): lo = min(e/S, 0.49), hi = 1 - e/S (S = 200 in the paper).

    The paper pretrains for 100 of S = 200 epochs, so hi never reaches lo there; we
    floor hi at 0.51 so that a schedule run past S/2 stays a (very steep) ramp
    instead of dividing by zero or inverting.
    """
    r = epoch / float(sharpen_epochs)
    return min(r, 0.49), max(1.0 - r, 0.51)


class SharpenedReLU(nn.Module):
    """The pretraining ANN's activation: 0 below lo, 1 above hi, linear between.

    The training loop calls `set_epoch` so the ramp narrows around the threshold
    epoch by epoch; by the end the ANN behaves like a one-step spiking net.
    """

    def __init__(self, threshold: float = 0.5, sharpen_epochs: int = 200) -> None:
        super().__init__()
        self.threshold = threshold
        self.sharpen_epochs = sharpen_epochs
        self.lo, self.hi = sharpen_bounds(0, sharpen_epochs)

    def set_epoch(self, epoch: int) -> None:
        self.lo, self.hi = sharpen_bounds(epoch, self.sharpen_epochs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SharpenedReLUFn.apply(x, self.lo, self.hi, self.threshold)

    def extra_repr(self) -> str:
        return f"lo={self.lo:.3f}, hi={self.hi:.3f}, sharpen_epochs={self.sharpen_epochs}"
