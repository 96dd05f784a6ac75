"""Paper A models: twin parameter names/counts, LIF dynamics, sharpened ReLU, transfer."""

import pytest
import torch
import torchvision
from spikingjelly.activation_based import functional

from pipeline.models.resnet_twins import ResNetTwin, count_parameters
from pipeline.models.spiking import DecayResetLIF, SharpenedReLU, sharpen_bounds
from pipeline.pretrain.transfer import TransferError, transfer_state
from tests.tiny_models import twin_config


@pytest.mark.parametrize(
    "arch,tv", [("resnet18", torchvision.models.resnet18), ("resnet34", torchvision.models.resnet34)]
)
def test_param_counts_and_names_match_torchvision(arch, tv):
    ref = tv()
    for kind in ("ann", "snn"):
        m = ResNetTwin(twin_config(kind=kind, arch=arch))
        assert count_parameters(m) == count_parameters(ref)
        assert list(m.state_dict()) == list(ref.state_dict())
    assert count_parameters(ref) == {"resnet18": 11_689_512, "resnet34": 21_797_672}[arch]


def test_lif_dynamics_step_by_step():
    torch.manual_seed(0)
    inp = torch.rand(6, 5) * 0.7
    node = DecayResetLIF(decay=0.25, v_threshold=0.5)
    out = node(inp)
    u_prev, s_prev = torch.zeros(5), torch.zeros(5)
    for t in range(6):
        u = 0.25 * u_prev * (1 - s_prev) + inp[t]
        s = (u > 0.5).float()
        assert torch.equal(out[t], s)
        u_prev, s_prev = u, s
    functional.reset_net(node)
    assert float(node.v if isinstance(node.v, float) else node.v.abs().sum()) == 0.0


def test_lif_surrogate_is_rectangular_and_reset_detached():
    x = torch.tensor([[0.2, 0.9, 1.2, -0.1]], requires_grad=True)
    node = DecayResetLIF()
    node(x).sum().backward()
    # one step: d s / d x = 1 where |u - 0.5| < 0.5, else 0
    assert x.grad.tolist() == [[1.0, 1.0, 0.0, 0.0]]


def test_sharpened_relu_forward_backward():
    assert sharpen_bounds(0, 200) == (0.0, 1.0)
    lo, hi = sharpen_bounds(50, 200)
    assert (lo, hi) == (0.25, 0.75)
    assert sharpen_bounds(150, 200) == (0.49, 0.51)
    act = SharpenedReLU(sharpen_epochs=200)
    act.set_epoch(50)
    x = torch.tensor([0.1, 0.25, 0.5, 0.7, 0.8, 1.2, -0.2], requires_grad=True)
    y = act(x)
    assert torch.allclose(y, torch.tensor([0.0, 0.0, 0.5, 0.9, 1.0, 1.0, 0.0]))
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def _tiny(kind, **kw):
    cfg = dict(kind=kind, arch="tiny", width=4, stem="small", num_classes=10, time_steps=2)
    cfg.update(kw)
    return ResNetTwin(twin_config(**cfg))


def test_transfer_copies_every_tensor_exactly():
    ann = _tiny("ann")
    # make running statistics non-default so copying them is visible
    ann.train()
    ann(torch.rand(4, 3, 8, 8))
    snn = _tiny("snn")
    rep = transfer_state(ann.state_dict(), snn)
    assert rep["n_copied"] == rep["n_tensors"] and not rep["adapted"] and not rep["new"]
    for k, v in ann.state_dict().items():
        assert torch.equal(snn.state_dict()[k], v), k
    out = snn(torch.rand(2, 3, 8, 8))
    assert out.shape == (2, 10)


def test_transfer_adapts_stem_and_replaces_classifier():
    ann = _tiny("ann")
    snn = _tiny("snn", in_channels=2, num_classes=5)
    fresh_fc = snn.fc.weight.detach().clone()
    rep = transfer_state(ann.state_dict(), snn)
    w = ann.state_dict()["conv1.weight"]
    expect = w.mean(dim=1, keepdim=True).repeat(1, 2, 1, 1)
    assert torch.equal(snn.conv1.weight.detach(), expect)
    assert "conv1.weight" in rep["adapted"] and sorted(rep["new"]) == ["fc.bias", "fc.weight"]
    assert torch.equal(snn.fc.weight.detach(), fresh_fc)
    assert snn(torch.rand(2, 2, 8, 6, 6)).shape == (2, 5)  # events (B, C, T, H, W)


def test_transfer_names_unmappable_parameter():
    ann = _tiny("ann", width=4)
    snn = _tiny("snn", width=8)
    with pytest.raises(TransferError, match="bn1.weight|conv1.weight"):
        transfer_state(ann.state_dict(), snn)
