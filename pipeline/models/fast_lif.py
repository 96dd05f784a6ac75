"""CPU fast path for the delay SNN's multi-step LIF (SpikingJelly semantics, fewer ops).

On the CPU, SpikingJelly 2.0's `LIFNode(step_mode="m")` trains through autograd
over its Python reference loop: ~10 small tensor ops per step forward, each
recorded and replayed backward. At (B = 32, 256 neurons) an op is a few
microseconds of work, so per-op overhead dominates. This autograd function
computes the same thing for the configuration the delay SNN uses
(decay_input=False, hard reset to 0, detach_reset=True, ATan surrogate) with a
handwritten backward: 5 float ops per step forward, 4 per step backward, and
the surrogate gradient computed once over the whole (T, ...) tensor. Each step keeps
SpikingJelly's arithmetic, including the order in which autograd sums the
gradient reaching a stored membrane, so spikes, membranes and gradients are
bitwise equal to SpikingJelly's (tests check it).

On CUDA, and for any other configuration or dtype, SpikingJelly's own
implementation runs (it picks its CUDA/Triton kernels there).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from spikingjelly.activation_based import neuron, surrogate


class LIFMultiStepCPU(torch.autograd.Function):
    """(x_seq (T, ...), v0, tau, threshold, alpha, store_v_seq) -> (spikes, v, h_seq).

    v is the membrane after reset at every step (T, ...) when store_v_seq, else
    at the last step only; h_seq is the charged membrane before reset, which the
    backward needs (not differentiable).
    """

    @staticmethod
    def forward(ctx: Any, x_seq: torch.Tensor, v0: torch.Tensor, tau: float, threshold: float,
                alpha: float, store_v_seq: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Outputs are filled step by step: whole-sequence temporaries would be fresh
        # multi-MB allocations, and their page faults cost more than the ops here.
        # Only float ops: on the CPU, ops on bool masks are ~5x slower at this size.
        h_seq = torch.empty_like(x_seq, memory_format=torch.contiguous_format)
        spikes = torch.empty_like(h_seq)
        v_seq = torch.empty_like(h_seq) if store_v_seq else None
        v = v0
        for t in range(x_seq.shape[0]):
            # SpikingJelly: h = v - (v - v_reset) / tau + x with v_reset = 0 (v - 0.0 == v)
            h = torch.add(torch.sub(v, v / tau), x_seq[t], out=h_seq[t])
            spike = torch.ge(h, threshold, out=spikes[t])
            # hard reset: spike * 0 + (1 - spike) * h  ==  h - h * spike exactly (spike is 0 or 1)
            v = torch.addcmul(h, h, spike, value=-1.0, out=v_seq[t] if v_seq is not None else None)
        ctx.save_for_backward(h_seq, spikes)
        ctx.tau, ctx.threshold, ctx.alpha, ctx.store_v_seq = tau, threshold, alpha, store_v_seq
        ctx.mark_non_differentiable(h_seq)
        return spikes, (v_seq if v_seq is not None else v), h_seq

    @staticmethod
    def backward(ctx: Any, grad_spikes: torch.Tensor | None, grad_v: torch.Tensor | None,
                 _grad_h: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        h_seq, spikes = ctx.saved_tensors
        tau, threshold, alpha = ctx.tau, ctx.threshold, ctx.alpha
        # ATan surrogate as SpikingJelly evaluates it, (alpha / 2) / (1 + (pi / 2 * alpha * x)^2)
        # (torch computes scalar / tensor as reciprocal * scalar), in place in one buffer,
        # times the spikes' gradient
        direct = h_seq - threshold
        direct.mul_(math.pi / 2 * alpha)
        direct.mul_(direct).add_(1.0).reciprocal_().mul_(alpha / 2)
        if grad_spikes is not None:
            direct.mul_(grad_spikes)
        else:
            direct.zero_()
        grad_x = torch.empty_like(h_seq)
        per_step = ctx.store_v_seq and grad_v is not None
        carry = grad_v if grad_v is not None and not per_step else torch.zeros_like(h_seq[0])
        gh = None
        for t in range(h_seq.shape[0] - 1, -1, -1):
            if per_step:
                # the stored membrane's gradient first, then the next step's two uses of v:
                # the order in which autograd sums them through SpikingJelly's loop
                into_v = grad_v[t] if gh is None else (grad_v[t] + gh).sub_(gh / tau)
            else:
                into_v = carry
            # d v_after_reset / d h = 1 - spike (the spike itself is detached in the reset)
            gh = torch.addcmul(direct[t], into_v, 1.0 - spikes[t], out=grad_x[t])
            carry = gh - gh / tau
        return grad_x, carry, None, None, None, None


def fast_path_applies(node: neuron.LIFNode, x_seq: torch.Tensor) -> bool:
    """True when LIFMultiStepCPU computes exactly what SpikingJelly would for this node and input."""
    sg = node.surrogate_function
    return (
        x_seq.device.type == "cpu"
        and x_seq.dtype == torch.float32
        and not node.decay_input
        and node.v_reset == 0.0
        and node.detach_reset
        and type(sg) is surrogate.ATan
        and getattr(sg, "spiking", True)
        and isinstance(sg.alpha, (int, float))
        and getattr(node, "_neuron_precision", None) is None
        and not torch.is_autocast_enabled("cpu")
    )


class FastLIFNode(neuron.LIFNode):
    """SpikingJelly's LIFNode with LIFMultiStepCPU as its CPU multi-step implementation.

    Same constructor, state (`v`, `v_seq`) and reset as LIFNode; no parameters or
    buffers, so checkpoints are unchanged. `fast = False` forces SpikingJelly's path.
    """

    fast: bool = True

    def multi_step_forward(self, x_seq: torch.Tensor, *args: torch.Tensor, **kwargs: object) -> torch.Tensor:
        if not (self.fast and fast_path_applies(self, x_seq)):
            return super().multi_step_forward(x_seq, *args, **kwargs)
        (v0,) = self.materialize_states((x_seq,), tuple(self._memories.values()), "m")
        spikes, v, _ = LIFMultiStepCPU.apply(x_seq, v0, self.tau, float(self.v_threshold),
                                             float(self.surrogate_function.alpha), self.store_v_seq)
        if self.store_v_seq:
            self.v_seq, v = v, v[-1].clone()
        self._memories["v"] = v
        return spikes
