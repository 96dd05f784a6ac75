"""Activations shared by the paper-A twins: the spiking neurons of the SNN and the
sharpened ReLU of the pretraining ANN.

The SNN's neuron is chosen by `make_neuron`: LIF (binary spikes) or LIAF (analog
output), each with a fixed or a learnable decay. All of them share the membrane
u_t = decay * u_{t-1} * (1 - s_{t-1}) + I_t, s_t = [u_t > threshold], and the same
rectangular surrogate as the sharpened ReLU (gradient 1 where |x - 0.5| < 0.5),
which is what lets the ANN's parameters carry over to the SNN unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import neuron, surrogate
from torch import nn

NEURON_KINDS = ("lif", "liaf")
# LIAF output slope, as in ES-imagenet-master LIAFnet/LIAFResNet_18.py and _34.py (Config.actFun)
LIAF_NEGATIVE_SLOPE = 0.2


def rect_surrogate() -> surrogate.SurrogateFunctionBase:
    """SpikingJelly's Rect(alpha=1): forward heaviside(u - thr), backward 1 where |u - thr| < 0.5.

    Heaviside fires at u >= thr while the paper writes u > thr; the two differ only
    on the measure-zero set u == thr, so SpikingJelly's class is used as is.
    """
    return surrogate.Rect(alpha=1.0)


class DecayResetLIF(neuron.SimpleBaseNode):
    """LIF of the reference with a fixed decay: u_t = decay * u_{t-1} * (1 - s_{t-1}) + I_t, s_t = [u_t > thr].

    SpikingJelly's LIFNode charges v += (x - (v - v_reset)) / tau by default
    (decay_input=True), which scales the input by 1/tau. With decay_input=False it
    charges v += -(v - v_reset) / tau + x, the same map for tau = 1 / (1 - decay)
    (rounded differently); this class applies decay * u as written and is the base
    of the LIAF below, which SpikingJelly cannot provide (see DecayResetLIAF).
    SimpleBaseNode lets us supply only the charge equation and keeps SpikingJelly's
    fire (surrogate) and hard reset (v <- v * (1 - s), the (1 - s_{t-1}) factor)
    with the reset spike detached, multi-step mode and functional.reset_net support.
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


class DecayResetLIAF(DecayResetLIF):
    """LIAF (leaky integrate and analog fire): DecayResetLIF's membrane, spike and reset; output LeakyReLU(u_t).

    As in ES-imagenet-master LIAF.py (baseNeuron.mem_update): the output is
    actFun(u_t) of the membrane after charging and before the reset, not of
    u_t - thr, with actFun = LeakyReLU(0.2); the spike s_t = [u_t > thr] is still
    computed, and only resets the membrane.

    SpikingJelly's LIAFNode (act, threshold_related=False) is not used because
    (1) it charges like LIFNode, v += (x - v) / tau by default (input scaled by
    1/tau); (2) in multi-step mode, the twins' mode, spikingjelly 2.0.0 returns the
    binary spikes instead of act(u_t): LIAFNode overrides only the single-step
    transition, and the multi-step path runs LIFNode's; (3) it has no learnable decay.
    """

    def __init__(self, decay: float = 0.25, v_threshold: float = 0.5,
                 negative_slope: float = LIAF_NEGATIVE_SLOPE, step_mode: str = "m") -> None:
        super().__init__(decay, v_threshold, step_mode)
        self.negative_slope = negative_slope

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        self.neuronal_charge(x)
        out = F.leaky_relu(self.v, self.negative_slope)  # read u_t before the reset overwrites it
        self.neuronal_reset(self.neuronal_fire())
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, negative_slope={self.negative_slope}"


def _decay_to_w(decay: float) -> float:
    """ParametricLIFNode's parameter for a decay: decay = 1 - sigmoid(w), so w = -logit(decay)."""
    return -math.log(decay / (1.0 - decay))


class ParametricLIAF(DecayResetLIAF):
    """LIAF with a learnable decay: one scalar `w` per module, decay = 1 - sigmoid(w), w starts at -logit(decay).

    The parametrisation is ParametricLIFNode's (the learnable LIF), so every
    learnable-decay neuron of a twin has one parameter `w` with one meaning. The
    reference's decay = sigmoid(p) (ES-imagenet-master LIAF.py, norm_decay) is the
    same family with w = -p; it starts at p = 0.5 (decay 0.62), here at the
    configured decay. `self.decay` keeps the initial value only.
    """

    def __init__(self, decay: float = 0.25, v_threshold: float = 0.5,
                 negative_slope: float = LIAF_NEGATIVE_SLOPE, step_mode: str = "m") -> None:
        super().__init__(decay, v_threshold, negative_slope, step_mode)
        self.w = nn.Parameter(torch.as_tensor(_decay_to_w(decay)))

    def neuronal_charge(self, x: torch.Tensor) -> None:
        # ParametricLIFNode's charge with decay_input=False and v_reset = 0
        self.v = self.v - torch.sigmoid(self.w) * self.v + x

    def extra_repr(self) -> str:
        decay = 1.0 - torch.sigmoid(self.w).item()
        return (f"decay={decay:.4f} (learnable: 1 - sigmoid(w)), v_threshold={self.v_threshold}, "
                f"negative_slope={self.negative_slope}, step_mode={self.step_mode}")


def parametric_lif(decay: float, v_threshold: float, step_mode: str = "m") -> neuron.ParametricLIFNode:
    """LIF with a learnable decay: SpikingJelly's ParametricLIFNode with decay_input=False.

    Its charge v <- v - sigmoid(w) * (v - v_reset) + x is, with v_reset = 0 and the
    hard reset, u_t = (1 - sigmoid(w)) * u_{t-1} * (1 - s_{t-1}) + I_t: our LIF with
    decay = 1 - sigmoid(w) and unscaled input. Its default decay_input=True would
    charge v += (x - (v - v_reset)) * sigmoid(w), scaling the input. init_tau =
    1 / (1 - decay) starts it at the configured decay (w = -logit(decay)).
    """
    return neuron.ParametricLIFNode(init_tau=1.0 / (1.0 - decay), decay_input=False, v_threshold=v_threshold,
                                    v_reset=0.0, surrogate_function=rect_surrogate(), detach_reset=True,
                                    step_mode=step_mode)


def check_neuron(kind: str, decay: float, learnable_decay: bool) -> None:
    """Raise ValueError for a neuron configuration that make_neuron cannot build."""
    if kind not in NEURON_KINDS:
        raise ValueError(f"unknown neuron '{kind}' ({', '.join(NEURON_KINDS)})")
    if not isinstance(learnable_decay, bool):
        raise ValueError(f"learnable_decay must be true or false, got {learnable_decay!r}")
    if learnable_decay and not 0.0 < decay < 1.0:
        raise ValueError(f"a learnable decay is a sigmoid, so its initial value must lie in (0, 1); got decay={decay}")


def make_neuron(kind: str, decay: float, threshold: float, learnable_decay: bool) -> nn.Module:
    """The SNN's neuron: 'lif' (spikes) or 'liaf' (LeakyReLU of the membrane), fixed or learnable decay.

    A learnable decay is one scalar parameter `w` per module (decay = 1 - sigmoid(w)),
    initialised so that the decay equals `decay`.
    """
    check_neuron(kind, decay, learnable_decay)
    if kind == "lif":
        return parametric_lif(decay, threshold) if learnable_decay else DecayResetLIF(decay, threshold)
    return ParametricLIAF(decay, threshold) if learnable_decay else DecayResetLIAF(decay, threshold)


def neuron_parameter_names(model: nn.Module) -> set[str]:
    """State-dict names of the parameters owned by spiking neurons (the learnable decays)."""
    return {f"{prefix}.{name}" if prefix else name
            for prefix, module in model.named_modules()
            if isinstance(module, (neuron.BaseNode, neuron.SimpleBaseNode))
            for name, _ in module.named_parameters(recurse=False)}


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
