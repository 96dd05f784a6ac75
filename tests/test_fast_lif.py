"""FastLIFNode's CPU loop against SpikingJelly's LIFNode: bitwise equal spikes, membranes, gradients."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import functional, neuron, surrogate

from pipeline.models.delay_snn import READOUT_THRESHOLD, lif
from pipeline.models.fast_lif import FastLIFNode, fast_path_applies


def _pair(tau: float, threshold: float, store_v_seq: bool) -> tuple[neuron.LIFNode, FastLIFNode]:
    kw = dict(
        tau=tau,
        decay_input=False,
        v_threshold=threshold,
        v_reset=0.0,
        surrogate_function=surrogate.ATan(alpha=5.0),
        detach_reset=True,
        step_mode="m",
        store_v_seq=store_v_seq,
    )
    return neuron.LIFNode(**kw), FastLIFNode(**kw)


def _run(node: neuron.LIFNode, xs: list[torch.Tensor], grad: torch.Tensor, use: str) -> list[torch.Tensor]:
    """Consecutive calls without reset (the state carries over), then one backward."""
    leaves = [x.clone().requires_grad_() for x in xs]
    loss, outs = 0.0, []
    for x in leaves:
        spikes = node(x)
        trace = node.v_seq if node.store_v_seq else None
        outs += [spikes.detach(), node.v.detach()] + ([trace.detach()] if trace is not None else [])
        if "spikes" in use:
            loss = loss + (spikes * grad).sum()
        if "trace" in use:
            loss = loss + (trace * grad).sum()
    loss.backward()
    return outs + [x.grad for x in leaves]


@pytest.mark.parametrize("tau", [1.005, 1.5])
@pytest.mark.parametrize(
    "store,threshold,use",
    [
        (False, 1.0, "spikes"),  # hidden layers
        (True, READOUT_THRESHOLD, "trace"),  # readout: never spikes, its membrane trace is the output
        (True, 1.0, "spikes+trace"),
        (True, 1.0, "trace"),
    ],
)
def test_bitwise_equal_to_spikingjelly(tau, store, threshold, use):
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(13, 4, 7, generator=gen) * 1.5 for _ in range(2)]
    grad = torch.randn(13, 4, 7, generator=gen)
    ref_node, fast_node = _pair(tau, threshold, store)
    assert fast_path_applies(fast_node, xs[0])
    ref, got = _run(ref_node, xs, grad, use), _run(fast_node, xs, grad, use)
    assert len(ref) == len(got)
    for a, b in zip(got, ref):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert 0.0 < float(got[0].mean()) < 1.0 or threshold == READOUT_THRESHOLD  # spikes do happen


def test_reset_and_model_factory():
    node = lif(1.005)
    assert isinstance(node, FastLIFNode) and node.fast
    node(torch.ones(3, 2, 4) * 2)
    assert float(node.v.abs().sum()) == 0.0  # all fired and were reset
    node(torch.full((1, 2, 4), 0.5))
    functional.reset_net(node)
    assert node.v == 0.0


def test_other_configurations_fall_back_to_spikingjelly():
    x = torch.randn(5, 2, 3)
    fast = FastLIFNode(
        tau=2.0,
        decay_input=True,
        v_reset=0.0,
        detach_reset=True,
        surrogate_function=surrogate.ATan(),
        step_mode="m",
    )
    assert not fast_path_applies(fast, x)  # decay_input
    _, fast = _pair(1.5, 1.0, False)
    assert not fast_path_applies(fast, x.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fast_path_applies(fast, x)
    fast.fast = False
    ref, _ = _pair(1.5, 1.0, False)
    assert torch.equal(fast(x), ref(x))
