"""The spectral delay convolution (pipeline/models/spectral_conv.py) against F.conv1d."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.models.delay_snn import DelayLayer
from pipeline.models.spectral_conv import SpectralCorrelation1d, spectral_correlation, spectral_is_cheaper

# (T, B, in, out, K, left, right): the delay layers' padding (K-1, (K-1)//2), odd and even
# padded lengths, K = 1, a sequence shorter than the kernel, no padding
CASES = [
    (20, 3, 6, 5, 7, 6, 3),
    (33, 2, 4, 9, 25, 24, 12),
    (9, 1, 3, 2, 1, 0, 0),
    (4, 2, 5, 3, 15, 14, 7),
    (12, 2, 3, 4, 5, 0, 0),
]


def _conv1d(x: torch.Tensor, w: torch.Tensor, left: int, right: int) -> torch.Tensor:
    return F.conv1d(F.pad(x.permute(1, 2, 0), (left, right)), w).permute(2, 0, 1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", CASES)
def test_equals_conv1d_with_gradients(case, dtype):
    t, b, c_in, c_out, k, left, right = case
    gen = torch.Generator().manual_seed(sum(case))
    x = torch.randn(t, b, c_in, generator=gen, dtype=dtype, requires_grad=True)
    w = torch.randn(c_out, c_in, k, generator=gen, dtype=dtype, requires_grad=True)
    ref = _conv1d(x, w, left, right)
    got = spectral_correlation(x, w, left, right)
    upstream = torch.randn(ref.shape, generator=gen, dtype=dtype)
    grads_ref = torch.autograd.grad((ref * upstream).sum(), (x, w))
    grads_got = torch.autograd.grad((got * upstream).sum(), (x, w))
    tol = {"rtol": 1e-10, "atol": 1e-11} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 2e-5}
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, **tol)
    for a, r in zip(grads_got, grads_ref):
        torch.testing.assert_close(a, r, **tol)


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: SpectralCorrelation1d.apply(x, w, 4, 2), (x, w))


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="expected x"):
        spectral_correlation(torch.zeros(5, 2, 3), torch.zeros(4, 2, 3), 2, 1)
    with pytest.raises(ValueError, match="shorter than the kernel"):
        spectral_correlation(torch.zeros(2, 1, 3), torch.zeros(4, 3, 9), 1, 1)


@pytest.mark.parametrize("mode", ["fixed_delay", "learned_delay"])
def test_integer_delay_inference_default_equals_dense_onehot_conv1d(mode):
    """Rounded/fixed delays run spectrally by default: same outputs as the one-hot dense conv1d."""
    torch.manual_seed(3)
    layer = DelayLayer(140, 32, 25, mode).eval()
    layer.rounded = mode == "learned_delay"
    spikes = (torch.rand(40, 4, 140) < 0.05).float()
    assert layer.spectral and layer._use_spectral(spikes, layer.onehot_kernel())
    with torch.no_grad():
        got = layer(spikes)
        layer.spectral = False
        ref = layer(spikes)
    assert got.shape == ref.shape == (40 + 12, 4, 32)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def test_used_only_where_it_needs_fewer_flops():
    assert spectral_is_cheaper(100, 32, 140, 256, 25, 24, 12)  # the paper's SHD layers
    assert spectral_is_cheaper(124, 32, 256, 20, 25, 24, 12)
    assert not spectral_is_cheaper(50, 32, 256, 256, 1, 0, 0)  # K = 1: nothing to gain
    assert not spectral_is_cheaper(1000, 32, 256, 20, 25, 24, 12)  # long sequence into few channels


def test_conv1d_kept_under_autocast_and_for_other_dtypes():
    layer = DelayLayer(64, 64, 15, "learned_delay")
    kern = layer.onehot_kernel()
    x = torch.randn(25, 8, 64)
    assert layer._use_spectral(x, kern)
    assert not layer._use_spectral(x.half(), kern)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not layer._use_spectral(x, kern)
