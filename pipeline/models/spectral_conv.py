"""The delay layers' temporal convolution computed in the frequency domain (CPU fast path).

A delay layer is a cross-correlation over time that mixes all channels:

    y[t, b, o] = sum_i sum_k w[o, i, k] * x_pad[t + k, b, i],   t < T' = Tp - K + 1

(x_pad = x zero-padded by `left` / `right` steps). Done directly (F.conv1d) that
is 2*T'*B*in*out*K flops; at the paper's shapes (K = 25, T ~ 100, batch 32,
256 channels) it is most of a CPU training step. With a discrete Fourier
transform of length N = Tp (long enough that the T' outputs wrap nowhere) the
correlation becomes, per frequency f, one complex (B x in) @ (in x out)
product: Y_f = X_f conj(W_f), N/2+1 of them instead of K shifted real ones,
about 6x fewer flops forward and backward.

Every transform is a real matrix product with an explicit DFT basis (time
lengths are ~100-200 here, so these are cheap GEMMs), which makes the backward
the exact transpose of the forward: no FFT normalisation conventions to get
right, and all of it in a few large BLAS calls. The complex products are real
ones on the stacked real/imaginary parts of X, A = conj(W_f):

    [Xr; Xi] Ar and [Xr; Xi] Ai  ->  Yr = Xr Ar - Xi Ai,  Yi = Xr Ai + Xi Ar

Results equal F.conv1d's up to float rounding (tests compare them). Used by
`DelayLayer` on the CPU outside autocast where `spectral_is_cheaper`; GPUs keep
cuDNN's convolution.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import torch


@functools.lru_cache(maxsize=64)
def _bases(n: int, k: int, t_in: int, offset: int, t_out: int, dtype: torch.dtype,
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DFT bases for length n (rows ordered 2f + part, part 0 real, 1 imaginary).

    fwd_x (2F, t_in): DFT of the input placed at steps offset.. of the padded sequence;
    inv_y (t_out, 2F): real inverse DFT onto the first t_out steps;
    fwd_w (2F, k): conj DFT of the k kernel taps (cos, +sin).
    """
    f = torch.arange(n // 2 + 1, dtype=torch.float64)
    two_pi_over_n = 2 * math.pi / n

    def interleave(re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:  # (F, m) x2 -> (2F, m)
        return torch.stack((re, im), 1).reshape(-1, re.shape[-1])

    ang_x = two_pi_over_n * torch.outer(f, torch.arange(offset, offset + t_in, dtype=torch.float64))
    fwd_x = interleave(ang_x.cos(), -ang_x.sin())
    weight = torch.full_like(f, 2.0 / n)  # irfft: bins 1..n/2-1 stand for two conjugate bins
    weight[0] = 1.0 / n
    if n % 2 == 0:
        weight[-1] = 1.0 / n
    ang_y = two_pi_over_n * torch.outer(f, torch.arange(t_out, dtype=torch.float64))
    inv_y = interleave(ang_y.cos() * weight[:, None], -ang_y.sin() * weight[:, None]).t()
    ang_w = two_pi_over_n * torch.outer(f, torch.arange(k, dtype=torch.float64))
    fwd_w = interleave(ang_w.cos(), ang_w.sin())
    fwd_x, inv_y, fwd_w = (b.to(device=device, dtype=dtype).contiguous() for b in (fwd_x, inv_y, fwd_w))
    return fwd_x, inv_y, fwd_w


class SpectralCorrelation1d(torch.autograd.Function):
    """(x (T, B, in), w (out, in, K), left, right) -> (T + left + right - K + 1, B, out).

    w is read through its (K, in, out) transpose: `gauss_kernel` returns a view whose
    transpose is contiguous, and the weight gradient comes back in that layout.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, left: int, right: int) -> torch.Tensor:
        t, b, c_in = x.shape
        c_out, _, k = w.shape
        n = t + left + right
        t_out = n - k + 1
        fwd_x, inv_y, fwd_w = _bases(n, k, t, left, t_out, x.dtype, x.device)
        nf = fwd_x.shape[0] // 2
        w_t = w.permute(2, 1, 0).reshape(k, c_in * c_out)
        a_re = (fwd_w[0::2] @ w_t).view(nf, c_in, c_out)  # A = conj(W_f), (F, in, out)
        a_im = (fwd_w[1::2] @ w_t).view(nf, c_in, c_out)
        xf = (fwd_x @ x.reshape(t, b * c_in)).view(nf, 2 * b, c_in)  # [Xr; Xi] per frequency
        p_re, p_im = torch.bmm(xf, a_re), torch.bmm(xf, a_im)  # [Xr Ar; Xi Ar], [Xr Ai; Xi Ai]
        yf = torch.empty(nf, 2, b, c_out, dtype=x.dtype, device=x.device)
        torch.sub(p_re[:, :b], p_im[:, b:], out=yf[:, 0])  # Yr = Xr Ar - Xi Ai
        torch.add(p_im[:, :b], p_re[:, b:], out=yf[:, 1])  # Yi = Xr Ai + Xi Ar
        y = (inv_y @ yf.view(2 * nf, b * c_out)).view(t_out, b, c_out)
        ctx.save_for_backward(xf, a_re, a_im)
        ctx.shape = (n, k, t, left, t_out, b, c_in, c_out)
        return y

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        xf, a_re, a_im = ctx.saved_tensors
        n, k, t, left, t_out, b, c_in, c_out = ctx.shape
        fwd_x, inv_y, fwd_w = _bases(n, k, t, left, t_out, xf.dtype, xf.device)
        nf = fwd_x.shape[0] // 2
        g_re = (inv_y.t() @ gy.reshape(t_out, b * c_out)).view(nf, 2 * b, c_out)  # d p_re = [dYr; dYi]
        g_im = torch.cat((g_re[:, b:], -g_re[:, :b]), 1)  # d p_im = [dYi; -dYr]
        gx = gw = None
        if ctx.needs_input_grad[1]:
            xf_t = xf.transpose(1, 2)
            ga_re = torch.bmm(xf_t, g_re).view(nf, c_in * c_out)
            ga_im = torch.bmm(xf_t, g_im).view(nf, c_in * c_out)
            gw_t = torch.addmm(fwd_w[0::2].t() @ ga_re, fwd_w[1::2].t(), ga_im)
            gw = gw_t.view(k, c_in, c_out).permute(2, 1, 0)
        if ctx.needs_input_grad[0]:
            gxf = torch.baddbmm(torch.bmm(g_re, a_re.transpose(1, 2)), g_im, a_im.transpose(1, 2))
            gx = (fwd_x.t() @ gxf.view(2 * nf, b * c_in)).view(t, b, c_in)
        return gx, gw, None, None


def spectral_is_cheaper(t: int, b: int, c_in: int, c_out: int, k: int, left: int, right: int) -> bool:
    """Whether the spectral form needs fewer forward multiply-adds than the direct correlation.

    Direct: T' B in out K. Spectral: the input's DFT (2F Tp B in), the products
    (4 F B in out), the inverse (2F T' B out) and the kernel's DFT (2F K in out).
    Small kernels (K = 1: no delays) and long sequences into few channels favour the direct form.
    """
    n = t + left + right
    t_out, nf = n - k + 1, n // 2 + 1
    direct = t_out * b * c_in * c_out * k
    spectral = 2 * nf * (n * b * c_in + 2 * b * c_in * c_out + t_out * b * c_out + k * c_in * c_out)
    return spectral < direct


def spectral_correlation(x: torch.Tensor, w: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Cross-correlation of x (T, B, in) zero-padded by left/right steps with w (out, in, K): (T', B, out)."""
    if x.dim() != 3 or w.dim() != 3 or x.shape[2] != w.shape[1]:
        raise ValueError(f"expected x (T, B, in) and w (out, in, K), got {tuple(x.shape)} and {tuple(w.shape)}")
    if x.shape[0] + left + right < w.shape[2]:
        raise ValueError("padded sequence shorter than the kernel")
    return SpectralCorrelation1d.apply(x.contiguous(), w, int(left), int(right))
