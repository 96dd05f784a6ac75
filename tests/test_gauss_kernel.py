"""The fused Gaussian kernel (pipeline/models/gauss_kernel.py) against DCLS's own construction."""

from __future__ import annotations

import copy

import pytest
import torch
from DCLS.construct.modules import Dcls1d

from pipeline.models.delay_snn import DelayLayer, DelaySNN, loss_fn, reset
from pipeline.models.gauss_kernel import GaussKernel1d, gauss_kernel
from pipeline.models.spectral_conv import spectral_is_cheaper

SHAPES = [(5, 3, 7), (17, 11, 25), (4, 9, 1), (8, 2, 31)]  # (out, in, K)


def _dcls(n_out: int, n_in: int, k: int, sigma: float, dtype: torch.dtype, seed: int) -> Dcls1d:
    torch.manual_seed(seed)
    d = Dcls1d(n_in, n_out, kernel_count=1, dilated_kernel_size=k, bias=False, version="gauss").to(dtype)
    with torch.no_grad():
        d.P.uniform_(-(k // 2) - 1.5, k // 2 + 1.5)  # some beyond the clamp range: no clamping inside
        d.SIG.fill_(sigma)
        d.SIG[..., ::3, :] *= -1  # DCLS uses |SIG|
    return d


def _kernel_and_grads(build, d: Dcls1d, upstream: torch.Tensor) -> tuple[torch.Tensor, ...]:
    params = (d.weight, d.P, d.SIG)
    kern = build(*params)
    grads = torch.autograd.grad((kern * upstream).sum(), params)
    return (kern.detach(), *grads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sigma_at", ["start", "end"])
@pytest.mark.parametrize("shape", SHAPES)
def test_values_and_gradients_equal_dcls(shape, sigma_at, dtype):
    n_out, n_in, k = shape
    sigma = float(k // 2) if sigma_at == "start" else 0.23
    d = _dcls(n_out, n_in, k, sigma, dtype, seed=k)
    upstream = torch.randn(n_out, n_in, k, dtype=dtype, generator=torch.Generator().manual_seed(1))
    ref = _kernel_and_grads(lambda w, p, s: d.DCK(w, p, s), d, upstream)
    got = _kernel_and_grads(lambda w, p, s: gauss_kernel(w, p, s, k), d, upstream)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-13}
    for name, a, b in zip(("kernel", "d weight", "d P", "d SIG"), got, ref):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        torch.testing.assert_close(a, b, **tol, msg=lambda m, n=name: f"{n}: {m}")


def test_gradcheck_float64():
    d = _dcls(3, 2, 5, 0.8, torch.float64, seed=0)
    w, p, s = (t.detach().clone().requires_grad_() for t in (d.weight, d.P, d.SIG))
    assert torch.autograd.gradcheck(lambda w, p, s: GaussKernel1d.apply(w, p, s, 5), (w, p, s))


def test_narrow_gaussian_underflow_is_zero_not_slow_path():
    d = _dcls(4, 4, 25, 0.23, torch.float32, seed=3)
    kern = gauss_kernel(d.weight, d.P, d.SIG, 25).detach()
    ref = d.DCK(d.weight, d.P, d.SIG).detach()
    assert (kern == 0).float().mean() > 0.5  # most taps of a std-0.5 Gaussian underflow
    torch.testing.assert_close(kern, ref, rtol=1e-5, atol=1e-30)


def _tiny_model(seed: int = 0) -> DelaySNN:
    torch.manual_seed(seed)
    return DelaySNN(12, [32, 32], 5, "learned_delay", 15, tau=1.5, dropout=0.2)


def _fwd_bwd(model: DelaySNN, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(5)  # same dropout masks
    out = model(x)
    loss_fn(out, y).backward()
    reset(model)
    return out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("sigma", [3.0, 0.23])
def test_delay_snn_fused_path_equals_dcls_path(sigma, dtype):
    ours = _tiny_model().to(dtype)
    ours.set_sigma(sigma)
    ref = copy.deepcopy(ours)
    ref.set_fast_paths(False)  # Dcls1d forward, F.conv1d, SpikingJelly's LIF
    assert not any(d.fused_kernel for d in ref.delay_layers())
    x = torch.poisson(torch.full((30, 4, 12), 0.6), generator=torch.Generator().manual_seed(2)).to(dtype)
    y = torch.tensor([0, 1, 4, 2])
    # at these shapes the hidden delay layers convolve spectrally, the output layer with F.conv1d
    assert spectral_is_cheaper(30, 4, 12, 32, 15, 14, 7) and not spectral_is_cheaper(44, 4, 32, 5, 15, 14, 7)
    out_a, grads_a = _fwd_bwd(ours, x, y)
    out_b, grads_b = _fwd_bwd(ref, x, y)
    # float64: the same maths; float32: rounding (a flipped spike would show as a large difference)
    tol = {"rtol": 1e-9, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    torch.testing.assert_close(out_a, out_b, **tol)
    assert len(grads_a) == len(grads_b) == len(list(ours.parameters())) - 3  # every parameter but the SIGs
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b, **tol)


def test_only_the_kernel_switch_changes_the_path():
    layer = DelayLayer(6, 5, 9, "learned_delay")
    layer.spectral = False
    x = torch.randn(11, 3, 6)
    fused = layer(x)
    layer.fused_kernel = False
    torch.testing.assert_close(fused, layer(x), rtol=1e-5, atol=1e-6)


def test_state_dict_and_checkpoints_unchanged():
    model = _tiny_model()
    keys = set(model.state_dict())
    assert {
        "blocks.0.delay.dcls.weight",
        "blocks.0.delay.dcls.P",
        "blocks.0.delay.dcls.SIG",
        "out_delay.dcls.P",
    } <= keys
    other = _tiny_model(seed=1)
    other.load_state_dict(model.state_dict())  # strict: same keys and shapes
    x = torch.rand(8, 2, 12)
    model.eval(), other.eval()
    torch.testing.assert_close(model(x), other(x))


def test_autocast_bf16_cpu_runs():
    model = _tiny_model()
    x = torch.rand(15, 3, 12)
    y = torch.tensor([0, 3, 1])
    layer = model.blocks[0]["delay"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kern = gauss_kernel(layer.dcls.weight, layer.dcls.P, layer.dcls.SIG, layer.kernel)
        out = model(x)
    assert kern.dtype == torch.float32  # built in float32 whatever autocast does downstream
    loss = loss_fn(out.float(), y)
    loss.backward()
    assert torch.isfinite(loss)
    positions = model.param_groups()["positions"]
    assert positions and all(p.grad is not None and torch.isfinite(p.grad).all() for p in positions)
