"""Paper A video twins (ES-UCF101 model): names, shapes, the recurrent LIF decoder, state, transfer."""

import pytest
import torch
from spikingjelly.activation_based import functional
from torch.nn import functional as F

from pipeline.models.spiking import sharpen_bounds
from pipeline.models.video_twin import RecurrentDecoder, VideoTwin
from pipeline.pretrain.transfer import transfer_state
from tests.tiny_models import twin_config

STEM = "encoder.conv1.weight"


def _twin(kind: str, hidden: int = 6) -> VideoTwin:
    cfg = twin_config(
        kind=kind,
        arch="tiny",
        width=4,
        stem="small",
        num_classes=5,
        in_channels=3 if kind == "ann" else 2,
        sharpen_epochs=10,
        decoder_hidden=hidden,
    )
    return VideoTwin(cfg)


def _memories(model: torch.nn.Module) -> list:
    return [v for m in model.modules() if hasattr(m, "_memories") for v in m._memories.values()]


def test_ann_and_snn_differ_only_in_the_first_conv():
    ann, snn = _twin("ann").state_dict(), _twin("snn").state_dict()
    assert list(ann) == list(snn)
    assert [k for k in ann if ann[k].shape != snn[k].shape] == [STEM]
    assert ann[STEM].shape[1] == 3 and snn[STEM].shape[1] == 2
    assert {"decoder.w_in.weight", "decoder.w_rec.weight", "decoder.bn.weight", "fc.weight"} <= set(ann)
    assert not [k for k in ann if k.startswith("encoder.fc")]  # the encoder's own classifier is gone


@pytest.mark.parametrize("kind,channels", [("ann", 3), ("snn", 2)])
def test_forward_and_backward_reach_every_parameter(kind, channels):
    torch.manual_seed(0)
    model = _twin(kind)
    x = torch.rand(2, channels, 4, 8, 10)
    if kind == "snn":
        x = (x > 0.7).float()  # binary events
    out = model(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="B, C, T, H, W"):
        model(torch.rand(2, channels, 8, 10))


@pytest.mark.parametrize("neuron,learnable_decay", [("liaf", False), ("lif", True)])
def test_decoder_uses_the_encoders_neuron(neuron, learnable_decay):
    cfg = twin_config(
        kind="snn",
        arch="tiny",
        width=4,
        stem="small",
        num_classes=5,
        in_channels=2,
        neuron=neuron,
        learnable_decay=learnable_decay,
        decoder_hidden=6,
    )
    model = VideoTwin(cfg)
    assert type(model.decoder.act) is type(model.encoder.act)
    assert ("decoder.act.w" in model.state_dict()) == learnable_decay
    assert model((torch.rand(2, 2, 4, 8, 10) > 0.7).float()).shape == (2, 5)


def test_set_epoch_sharpens_encoder_and_decoder():
    ann = _twin("ann")
    ann.set_epoch(4)
    assert (ann.decoder.act.lo, ann.decoder.act.hi) == sharpen_bounds(4, 10)
    assert (ann.encoder.act.lo, ann.encoder.act.hi) == sharpen_bounds(4, 10)


def test_snn_decoder_follows_the_recurrent_lif_equation():
    torch.manual_seed(1)
    cfg = twin_config(kind="snn", decay=0.25, threshold=0.5)
    dec = RecurrentDecoder(3, 4, cfg).eval()  # eval: BN uses fixed statistics, so the drive is known
    with torch.no_grad():
        dec.w_rec.weight.normal_(0.0, 0.8)
    x = torch.randn(6, 2, 3)
    out = dec(x)
    drive = dec.bn(dec.w_in(x.flatten(0, 1))).view(6, 2, 4)
    u, s = torch.zeros(2, 4), torch.zeros(2, 4)
    for t in range(6):
        u = 0.25 * u * (1 - s) + drive[t] + F.linear(s, dec.w_rec.weight)
        s = (u > 0.5).float()
        assert torch.equal(out[t], s), t
    assert 0 < out.mean() < 1
    functional.reset_net(dec)
    with torch.no_grad():
        dec.w_rec.weight.zero_()
    assert not torch.equal(dec(x), out)  # the recurrent term matters in this example


def test_decoder_state_carries_over_between_calls():
    torch.manual_seed(2)
    dec = RecurrentDecoder(3, 4, twin_config(kind="snn")).eval()
    x = 3 * torch.randn(6, 2, 3)
    whole = dec(x)
    assert 0 < whole.mean() < 1
    functional.reset_net(dec)
    assert torch.equal(torch.cat([dec(x[:3]), dec(x[3:])]), whole)


def test_reset_net_clears_membranes_and_last_outputs():
    torch.manual_seed(2)
    model = _twin("snn")
    model((torch.rand(2, 2, 6, 8, 10) > 0.6).float())
    assert isinstance(model.decoder.last_output, torch.Tensor)
    assert model.decoder.act.v.abs().sum() > 0
    functional.reset_net(model)
    memories = _memories(model)
    assert len(memories) > 2 and all(isinstance(v, float) and v == 0.0 for v in memories)


def test_ann_weights_transfer_to_the_snn_except_the_first_conv():
    torch.manual_seed(3)
    ann = _twin("ann").train()
    ann(torch.rand(2, 3, 4, 8, 10))  # non-default BN running statistics, so copying them is visible
    snn = _twin("snn")
    rep = transfer_state(ann.state_dict(), snn, stem="reinit")  # the RGB stem cannot take 2 polarities
    assert rep["new"] == [STEM] and not rep["adapted"] and rep["n_copied"] == len(ann.state_dict()) - 1
    for k, v in ann.state_dict().items():
        if k != STEM:
            assert torch.equal(snn.state_dict()[k], v), k
    assert snn((torch.rand(2, 2, 4, 8, 10) > 0.7).float()).shape == (2, 5)
