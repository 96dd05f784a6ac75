"""Paper A neurons: LIAF dynamics, learnable decay, SpikingJelly's nodes vs the equations, LIAF/PLIF twins."""

import math

import pytest
import torch
from spikingjelly.activation_based import functional, neuron

from pipeline.models.resnet_twins import ResNetTwin, count_parameters
from pipeline.models.spiking import (
    DecayResetLIAF,
    ParametricLIAF,
    make_neuron,
    neuron_parameter_names,
    rect_surrogate,
)
from pipeline.pretrain.transfer import TransferError, transfer_state
from tests.tiny_models import twin_config

RESNET18_PARAMS = 11_689_512  # torchvision's, 1000 classes
RESNET18_NEURONS = 17  # stem + 2 per BasicBlock x 8 blocks


def _w_for(decay: float) -> float:
    """The learnable-decay parameter giving `decay` (decay = 1 - sigmoid(w))."""
    return math.log((1.0 - decay) / decay)


def _reference(
    inp: torch.Tensor, decay: float, thr: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Membranes u_t, spikes s_t and the final reset membrane, by hand from the equations."""
    u_prev, s_prev = torch.zeros_like(inp[0]), torch.zeros_like(inp[0])
    us, ss = [], []
    for t in range(inp.shape[0]):
        u = decay * u_prev * (1 - s_prev) + inp[t]
        s = (u > thr).float()
        us.append(u)
        ss.append(s)
        u_prev, s_prev = u, s
    return torch.stack(us), torch.stack(ss), u_prev * (1 - s_prev)


def test_liaf_dynamics_step_by_step():
    torch.manual_seed(0)
    inp = torch.rand(6, 5) - 0.3
    node = make_neuron("liaf", decay=0.25, threshold=0.5, learnable_decay=False)
    assert isinstance(node, DecayResetLIAF)
    out = node(inp)
    u, s, v_end = _reference(inp, 0.25)
    assert torch.equal(out, torch.where(u > 0, u, 0.2 * u))  # LeakyReLU(0.2) of u_t, not of u_t - thr
    assert s.sum() > 0 and (u < 0).any()  # the inputs exercise the reset and the negative slope
    assert torch.equal(node.v, v_end)  # the spike reset the membrane
    functional.reset_net(node)
    assert node.v == 0.0
    assert torch.equal(node(inp), out)  # a reset neuron starts from u = 0 again


@pytest.mark.parametrize("kind", ["lif", "liaf"])
def test_learnable_decay_equals_fixed_and_learns(kind):
    torch.manual_seed(1)
    inp = torch.rand(8, 4, 16) * 0.8 - 0.1
    node = make_neuron(kind, decay=0.25, threshold=0.5, learnable_decay=True)
    ((name, w),) = node.named_parameters()
    assert name == "w" and w.numel() == 1
    assert math.isclose(w.item(), _w_for(0.25), rel_tol=1e-6)
    # set the parameter away from its initial value: the dynamics must follow it
    with torch.no_grad():
        w.fill_(_w_for(0.6))
    out = node(inp)
    fixed = make_neuron(kind, decay=0.6, threshold=0.5, learnable_decay=False)
    assert torch.allclose(out, fixed(inp), atol=1e-6)
    out.sum().backward()
    assert w.grad is not None and w.grad.item() != 0.0 and math.isfinite(w.grad.item())


def test_parametric_lif_node_matches_equations():
    """Learnable LIF is SpikingJelly's ParametricLIFNode(decay_input=False): spikes and reset as by hand."""
    torch.manual_seed(2)
    inp = torch.rand(8, 50) * 0.8 - 0.1
    node = make_neuron("lif", decay=0.25, threshold=0.5, learnable_decay=True)
    assert isinstance(node, neuron.ParametricLIFNode) and node.decay_input is False
    with torch.no_grad():
        node.w.fill_(_w_for(0.6))
    out = node(inp)
    _, s, v_end = _reference(inp, 0.6)
    assert torch.equal(out, s)
    assert torch.allclose(node.v, v_end, atol=1e-6)
    # rectangular surrogate, reset detached: one step d s / d x = 1 where |x - 0.5| < 0.5
    functional.reset_net(node)
    x = torch.tensor([[[0.2, 0.9, 1.2, -0.1]]], requires_grad=True)
    node(x).sum().backward()
    assert x.grad.tolist() == [[[1.0, 1.0, 0.0, 0.0]]]
    # its default decay_input=True scales the input by sigmoid(w): not our LIF
    functional.reset_net(node)
    node.decay_input = True
    assert not torch.equal(node(inp), s)


def test_spikingjelly_liaf_node_differs():
    """Why DecayResetLIAF exists: SpikingJelly 2.0's LIAFNode gives spikes, not act(u), in multi-step mode."""
    torch.manual_seed(3)
    inp = torch.rand(8, 50) - 0.3
    ours = DecayResetLIAF(decay=0.25, v_threshold=0.5)(inp)

    def sj_liaf(step_mode: str, decay_input: bool) -> neuron.LIAFNode:
        return neuron.LIAFNode(
            act=torch.nn.LeakyReLU(0.2),
            threshold_related=False,
            tau=1.0 / (1.0 - 0.25),
            decay_input=decay_input,
            v_threshold=0.5,
            v_reset=0.0,
            surrogate_function=rect_surrogate(),
            detach_reset=True,
            step_mode=step_mode,
        )

    # single-step with decay_input=False: the same equations (rounded differently)
    single = sj_liaf("s", decay_input=False)
    assert torch.allclose(torch.stack([single(x) for x in inp]), ours, atol=1e-6)
    # multi-step, the twins' mode: binary spikes instead of the analog output
    multi = sj_liaf("m", decay_input=False)(inp)
    assert set(multi.unique().tolist()) <= {0.0, 1.0}
    assert not torch.allclose(multi, ours)
    # default decay_input=True: input scaled by 1/tau
    scaled = sj_liaf("s", decay_input=True)
    assert not torch.allclose(torch.stack([scaled(x) for x in inp]), ours)


def _resnet18(kind: str, **kw):
    return ResNetTwin(twin_config(kind=kind, arch="resnet18", stem="imagenet", num_classes=10, **kw))


@pytest.mark.parametrize(
    "neuron_kind,learnable", [("lif", False), ("liaf", False), ("lif", True), ("liaf", True)]
)
def test_snn_parameter_counts(neuron_kind, learnable):
    snn = _resnet18("snn", neuron=neuron_kind, learnable_decay=learnable)
    ann = _resnet18("ann")
    extra = sorted(neuron_parameter_names(snn))
    assert len(extra) == (RESNET18_NEURONS if learnable else 0)
    assert all(name.endswith(".w") for name in extra)
    base = RESNET18_PARAMS - 1000 * 512 - 1000 + 10 * 512 + 10  # 10 classes instead of 1000
    assert count_parameters(ann) == base
    assert count_parameters(snn) == base + len(extra)
    assert [k for k in snn.state_dict() if k not in extra] == list(ann.state_dict())


@pytest.mark.parametrize("arch,expected", [("resnet18", 11_689_512 + 17), ("resnet34", 21_797_672 + 33)])
def test_learnable_decay_adds_one_scalar_per_neuron(arch, expected):
    snn = ResNetTwin(twin_config(kind="snn", arch=arch, neuron="liaf", learnable_decay=True))
    assert count_parameters(snn) == expected


@pytest.mark.parametrize("neuron_kind,learnable", [("liaf", False), ("lif", True), ("liaf", True)])
def test_transfer_into_liaf_and_plif_twins(neuron_kind, learnable):
    torch.manual_seed(4)
    ann = _resnet18("ann")
    ann.train()
    ann(torch.rand(2, 3, 32, 32))  # non-default running statistics, so copying them is visible
    snn = _resnet18("snn", neuron=neuron_kind, learnable_decay=learnable)
    rep = transfer_state(ann.state_dict(), snn)
    state = snn.state_dict()
    for k, v in ann.state_dict().items():
        assert torch.equal(state[k], v), k
    decays = sorted(neuron_parameter_names(snn))
    assert sorted(rep["snn_only"]) == decays and rep["n_snn_only"] == len(decays)
    assert (
        rep["n_copied"] == len(ann.state_dict()) and rep["n_copied"] + rep["n_snn_only"] == rep["n_tensors"]
    )
    assert not rep["adapted"] and not rep["new"]
    for name in decays:  # kept their configured initialisation
        assert math.isclose(state[name].item(), _w_for(0.25), rel_tol=1e-6)


def test_transfer_rejects_other_one_sided_names():
    ann = _resnet18("ann")
    snn = _resnet18("snn", neuron="liaf", learnable_decay=True)
    state = ann.state_dict()
    del state["layer1.0.conv1.weight"]
    with pytest.raises(TransferError, match="layer1.0.conv1.weight"):
        transfer_state(state, snn)
    state = ann.state_dict()
    state["layer1.0.act1.extra"] = torch.zeros(1)
    with pytest.raises(TransferError, match="layer1.0.act1.extra"):
        transfer_state(state, snn)


@pytest.mark.parametrize("learnable", [False, True])
def test_liaf_resnet18_forward_backward(learnable):
    torch.manual_seed(5)
    for in_channels, x in ((2, torch.rand(2, 2, 8, 32, 32)), (3, torch.rand(2, 3, 32, 32))):
        snn = _resnet18(
            "snn", neuron="liaf", learnable_decay=learnable, in_channels=in_channels, time_steps=4
        )
        out = snn(x)
        assert out.shape == (2, 10)
        torch.nn.functional.cross_entropy(out, torch.tensor([1, 7])).backward()
        grads = [p.grad for p in snn.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert snn.conv1.weight.grad.abs().sum() > 0
        if learnable:
            assert all(m.w.grad.item() != 0.0 for m in snn.modules() if isinstance(m, ParametricLIAF))
        functional.reset_net(snn)


def test_twin_config_rejects_bad_neuron():
    with pytest.raises(ValueError, match="unknown neuron 'alif'"):
        twin_config(kind="snn", neuron="alif")
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        twin_config(kind="snn", learnable_decay=True, decay=0.0)
    with pytest.raises(ValueError, match="true or false"):
        twin_config(kind="snn", learnable_decay="yes")
    with pytest.raises(ValueError, match="unknown twin kind 'relu'"):
        twin_config(kind="relu")
