"""Paper-B model: parameter counts, rounded (integer) delays, sigma schedule, variants."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.models.delay_snn import (
    VARIANTS,
    DelayLayer,
    DelaySNN,
    class_scores,
    count_trainable,
    kernel_size,
    loss_fn,
    reset,
    sigma_at,
)


@pytest.mark.parametrize(
    "variant,hidden,n_out,kernel,expected",
    [
        ("learned_delay", [256, 256], 20, 25, 214_016),
        ("no_delay", [256, 256], 20, 25, 107_520),
        ("learned_delay", [512, 512, 512], 35, 31, 1_230_848),
        ("no_delay", [512, 512, 512], 35, 31, 616_960),
        ("fixed_delay", [256, 256], 20, 25, 107_520),  # frozen positions are not trainable
    ],
)
def test_parameter_counts_of_the_paper(variant, hidden, n_out, kernel, expected):
    model = DelaySNN(140, hidden, n_out, variant, kernel, tau=1.005, dropout=0.1)
    assert count_trainable(model) == expected


def test_kernel_size_is_odd():
    assert kernel_size(250, 10) == 25 and kernel_size(300, 10) == 31 and kernel_size(150, 10) == 15


def test_rounded_layer_equals_onehot_conv1d():
    torch.manual_seed(0)
    k = 7
    layer = DelayLayer(5, 4, k, "learned_delay")
    with torch.no_grad():
        layer.dcls.P.uniform_(-4.0, 4.0)  # beyond the clamp range on purpose
    p_before = layer.dcls.P.detach().clone()
    x = torch.randn(12, 3, 5)  # (T, B, C)
    layer.rounded = True
    y = layer(x)
    # reference: integer delay d = K//2 - clamp(round(P)) -> tap K-1-d of a plain conv1d kernel
    d = k // 2 - layer.dcls.P.detach()[0, :, :, 0].round().clamp(-(k // 2), k // 2)
    kern = torch.zeros(4, 5, k)
    w = layer.dcls.weight.detach()[:, :, 0]
    for o in range(4):
        for i in range(5):
            kern[o, i, k - 1 - int(d[o, i])] = w[o, i]
    ref = F.conv1d(F.pad(x.permute(1, 2, 0), (k - 1, (k - 1) // 2)), kern).permute(2, 0, 1)
    torch.testing.assert_close(y, ref)
    assert y.shape == (12 + (k - 1) // 2, 3, 4)
    assert torch.equal(layer.dcls.P, p_before)  # rounding never touches the continuous positions


@pytest.mark.parametrize("p", [-3, -1, 0, 2, 3])
def test_effective_delay_is_half_kernel_minus_position(p):
    k = 7
    layer = DelayLayer(1, 1, k, "learned_delay")
    with torch.no_grad():
        layer.dcls.P.fill_(p + 0.3)  # rounds to p
        layer.dcls.weight.fill_(1.0)
    x = torch.zeros(10, 1, 1)
    x[2, 0, 0] = 1.0  # impulse at t = 2
    layer.rounded = True
    y = layer(x)[:, 0, 0]
    assert int(y.detach().argmax()) == 2 + (k // 2 - p) and float(y.detach().sum()) == pytest.approx(1.0)
    assert layer.delays(rounded=True).tolist() == [k // 2 - p]


def test_continuous_kernel_approaches_rounded_at_small_sigma():
    torch.manual_seed(1)
    layer = DelayLayer(3, 2, 9, "learned_delay")
    with torch.no_grad():
        layer.dcls.P.copy_(layer.dcls.P.round())
    layer.set_sigma(0.0)  # std 0.27: neighbours get exp(-0.5 / 0.27**2) ~ 1e-3 relative weight
    x = torch.randn(15, 2, 3)
    cont = layer(x)
    layer.rounded = True
    torch.testing.assert_close(cont, layer(x), atol=0.02, rtol=0.02)


def test_model_rounded_context_restores_state():
    model = DelaySNN(6, [8], 3, "learned_delay", 5, tau=1.5, dropout=0.3)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with model.rounded():
        assert not model.training and all(d.rounded for d in model.delay_layers())
        model(torch.rand(4, 2, 6))
        reset(model)
    assert model.training and not any(d.rounded for d in model.delay_layers())
    for key, value in model.state_dict().items():
        if "running" not in key and "num_batches" not in key:
            assert torch.equal(value, state[key]), key


def test_sigma_schedule():
    k, epochs = 25, 20  # sig_init 12, final_epoch 5
    alpha = (0.23 / 12) ** (1 / 5)
    assert sigma_at(0, epochs, k, 0.23) == 12.0
    assert sigma_at(1, epochs, k, 0.23) == pytest.approx(12 * alpha)
    assert sigma_at(4, epochs, k, 0.23) == pytest.approx(12 * alpha**4)
    assert sigma_at(5, epochs, k, 0.23) == 0.23 and sigma_at(19, epochs, k, 0.23) == 0.23
    assert math.isclose(12 * alpha**5, 0.23)  # continuous at final_epoch
    assert sigma_at(0, 3, k, 0.23) == 0.23  # fewer than 4 epochs: final from the start


def test_fixed_delays_are_integer_and_frozen():
    torch.manual_seed(0)
    model = DelaySNN(6, [8], 3, "fixed_delay", 5, tau=1.5, dropout=0.0)
    p0 = [d.dcls.P.detach().clone() for d in model.delay_layers()]
    for p in p0:
        assert torch.equal(p, p.round()) and p.abs().max() <= 2
    assert not model.param_groups()["positions"]
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss_fn(model(torch.rand(5, 4, 6)), torch.tensor([0, 1, 2, 0])).backward()
    opt.step()
    assert all(torch.equal(a, d.dcls.P) for a, d in zip(p0, model.delay_layers()))


def test_learned_forward_backward_and_clamp():
    torch.manual_seed(0)
    model = DelaySNN(6, [8, 8], 3, "learned_delay", 5, tau=1.005, dropout=0.4)
    out = model(torch.rand(7, 4, 6))
    assert out.shape == (7 + 3 * 2, 4, 3)
    m = class_scores(out)
    torch.testing.assert_close(m.sum(1), torch.full((4,), float(out.shape[0])))  # softmax per step, summed
    loss_fn(out, torch.tensor([0, 1, 2, 0])).backward()
    assert all(p.grad is not None for p in model.param_groups()["positions"])
    reset(model)
    with torch.no_grad():
        model.out_delay.dcls.P.fill_(9.0)
    model.clamp_positions()
    assert model.out_delay.dcls.P.max() == 2


def test_device_move_resets_dcls_cache():
    layer = DelayLayer(2, 2, 5, "learned_delay")
    layer.fused_kernel = False  # the cache belongs to the library's Dcls1d forward
    layer(torch.rand(3, 1, 2))
    assert layer.dcls.DCK.IDX is not None
    layer.to("cpu")
    assert layer.dcls.DCK.IDX is None and layer.dcls.DCK.lim is None


def test_unknown_variant():
    with pytest.raises(ValueError, match="allowed: " + ", ".join(VARIANTS)):
        DelaySNN(4, [4], 2, "bogus", 5, tau=1.5, dropout=0.0)
    with pytest.raises(ValueError, match="tau must be > 1"):
        DelaySNN(4, [4], 2, "no_delay", 5, tau=1.0, dropout=0.0)
