"""DCLS's 1-D Gaussian kernel as one autograd function with an analytic backward.

`Dcls1d(version="gauss")` builds its (out, in, K) kernel from a chain of
broadcast tensor ops (``ConstructKernel1d.forward_vgauss``), and autograd keeps
every (K, out, in) intermediate of that chain for the backward. On the CPU that
chain costs about as much as the convolution it feeds. This function computes
exactly the same kernel (DCLS's formula, read from DCLS 0.1.1's source)

    c      = P + K // 2                  centre tap
    s      = |SIG| + 0.27                std
    g_k    = exp(-0.5 * ((k - c) / s)^2)  k = 0..K-1
    S      = sum_k g_k + 1e-7             normalisation (with DCLS's epsilon)
    kern_k = g_k / S * W

(no clamping inside: DCLS clamps P only in `clamp_parameters`), saves only W, P
and SIG, and in the backward recomputes n_k = g_k / S and uses

    dL/dW   = sum_k G_k n_k                               (= A)
    dL/dP   = W / s * sum_k (G_k - A) n_k d_k             d_k = (k - c) / s
    dL/dSIG = sign(SIG) * W / s * sum_k (G_k - A) n_k d_k^2

where G is the gradient of the kernel. Only `kernel_count == 1`, `groups == 1`
(the delay SNN's configuration) is covered.

Under autocast the kernel is built in float32 (bf16/fp16 exponentials of
narrow Gaussians would lose the normalisation); the convolution that consumes
it is left to autocast.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

SIG_OFFSET = 0.27  # DCLS adds this to |SIG|
NORM_EPS = 1e-7  # DCLS's epsilon in the normalisation
# Below these exponents exp() underflows to (near) zero, and the CPU's vectorised
# exp takes a ~100x slower path for such inputs: narrow Gaussians (the end of
# the sigma schedule) put most taps there. They are clamped, and exp(floor) then
# zeroed (what DCLS gets there is 0 or a denormal).
EXP_FLOOR = {torch.float32: -87.0, torch.float64: -708.0}
EXP_AT_FLOOR = {dtype: float(torch.tensor(v, dtype=dtype).exp()) for dtype, v in EXP_FLOOR.items()}


def _normalised_gaussian(p: torch.Tensor, sig: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, d, s) for positions and SIG of shape (in, out): n = g / S and d = (k - c) / s of shape (K, in, out).

    Taps lead (K, in, out): sums over them are then vectorised over synapses, and
    the spectral convolution reads the kernel in this layout without a copy.
    """
    taps = torch.arange(k, device=p.device, dtype=p.dtype).view(k, 1, 1)
    s = sig.abs() + SIG_OFFSET
    d = (taps - (p + k // 2)) / s
    # same rounding as DCLS: exp(-0.5 * |d|^2), |d|^2 == d*d exactly
    n = (d * d).mul_(-0.5).clamp_min_(EXP_FLOOR[d.dtype]).exp_()
    F.threshold_(n, EXP_AT_FLOOR[d.dtype], 0.0)  # n <= exp(floor) -> 0
    n.div_(n.sum(0, keepdim=True).add_(NORM_EPS))
    return n, d, s


def _in_out(t: torch.Tensor) -> torch.Tensor:
    """(out, in) parameter view -> contiguous (in, out)."""
    return t.t().contiguous()


class GaussKernel1d(torch.autograd.Function):
    """(W (out, in, 1), P (1, out, in, 1), SIG (1, out, in, 1), K) -> kernel (out, in, K).

    The kernel is returned as the (out, in, K) view of a contiguous (K, in, out) tensor.
    """

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, pos: torch.Tensor, sig: torch.Tensor, k: int) -> torch.Tensor:
        ctx.save_for_backward(weight, pos, sig)
        ctx.k = k
        n, _, _ = _normalised_gaussian(_in_out(pos[0, :, :, 0]), _in_out(sig[0, :, :, 0]), k)
        return n.mul_(_in_out(weight[:, :, 0])).permute(2, 1, 0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight, pos, sig = ctx.saved_tensors
        need_w, need_p, need_s = ctx.needs_input_grad[:3]
        if not (need_w or need_p or need_s):
            return None, None, None, None
        sig_io = _in_out(sig[0, :, :, 0])
        n, d, s = _normalised_gaussian(_in_out(pos[0, :, :, 0]), sig_io, ctx.k)
        grad = grad.permute(2, 1, 0).to(n.dtype).contiguous()  # (K, in, out); no copy when it came so
        a = (grad * n).sum(0)  # dL/dW, (in, out)
        grad_p = grad_s = None
        if need_p or need_s:
            r = (grad - a).mul_(n).mul_(d)  # (G - A) n d
            scale = _in_out(weight[:, :, 0]).div_(s[0])
            if need_p:
                grad_p = (r.sum(0) * scale).t().reshape(pos.shape)
            if need_s:
                grad_s = (r.mul_(d).sum(0) * scale * torch.sgn(sig_io)).t().reshape(sig.shape)
        grad_w = a.t().reshape(weight.shape) if need_w else None
        return grad_w, grad_p, grad_s, None


def gauss_kernel(weight: torch.Tensor, pos: torch.Tensor, sig: torch.Tensor, k: int) -> torch.Tensor:
    """The kernel DCLS's `Dcls1d(..., version="gauss")` convolves with, built by `GaussKernel1d`.

    Half-precision inputs (or an active autocast) build it in float32; the result
    is float32 then, and F.conv1d under autocast casts it as it does any weight.
    """
    if weight.shape[-1] != 1 or pos.shape[0] != 1 or pos.shape[-1] != 1:
        raise ValueError("gauss_kernel covers Dcls1d with kernel_count=1 only")
    dtype = weight.dtype if weight.dtype in (torch.float32, torch.float64) else torch.float32
    with torch.autocast(weight.device.type, enabled=False):
        return GaussKernel1d.apply(weight.to(dtype), pos.to(dtype), sig.to(dtype), int(k))
