"""The authors' ES-UCF101 model (pipeline/models/crnn.py): shapes, neurons, the reference's flatten,
the transfer key for key against their train_*_from_*.py filters, the stages, the preset's grid.

Reference: lyh983012/SNN-ANN-Pretrain @ 380f6310, Exp3-DVSUCF101/video-classification-SNN.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.neuron import BaseNode
from torch import nn

from pipeline.models.crnn import CRNN, REFERENCE_DECAY, CRNNConfig, crnn_neuron
from pipeline.params.load import load_params
from pipeline.pretrain.transfer import TransferError, transfer_state
from tests.conftest import REPO, call_stage, copy_project, run
from tests.tiny_images import write_es_ucf101, write_ucf101_frames
from tests.tiny_models import twin_config

SIZE = [36, 40]  # the smallest maps are 1 x 1 after the four stride-2 convs


def _cfg(kind: str, **kw) -> CRNNConfig:
    base = dict(
        kind=kind,
        in_channels=3 if kind == "ann" else 2,
        num_classes=5,
        input_size=SIZE,
        steps=4,
        width=2,
        decoder_hidden=6,
    )
    return CRNNConfig(**{**base, **kw})


def _events(batch: int = 2, steps: int = 4) -> torch.Tensor:
    return (torch.rand(batch, 2, steps, *SIZE) < 0.2).float()


def test_paper_scale_model_has_the_reference_layout():
    """configs_*.py: 256 x 342 in, cells 8/16/32/64 (k 5/3/3/3, s 2, p 0) -> 64 x 14 x 20, fc 1024/512,
    LSTM 256."""
    ann, snn = CRNN(CRNNConfig(kind="ann")), CRNN(CRNNConfig(kind="snn", in_channels=2))
    assert ann.cfg.feature_map() == (14, 20)
    convs = [
        (3 if i == 0 else 8 * 2 ** (i - 1)) * 8 * 2**i * k * k + 8 * 2**i * 3  # weight, bias, BN w+b
        for i, k in enumerate((5, 3, 3, 3))
    ]
    fcs = 64 * 14 * 20 * 1024 + 1024 + 1024 * 512 + 512
    lstm = 4 * 256 * (512 + 256) + 2 * 4 * 256
    head = 256 * 101 + 101
    n_ann = sum(convs) + fcs + lstm + head
    assert sum(p.numel() for p in ann.parameters()) == n_ann == 19_715_493
    # 2 polarities in (8 * 25 weights fewer), one learned decay per neuron cell (cnn0..cnn3, fc4)
    assert sum(p.numel() for p in snn.parameters()) == n_ann - 8 * 25 + 5
    assert [m.kernel.stride for m in list(snn.encoder.network)[:4]] == [(2, 2)] * 4
    assert [m.kernel.padding for m in list(snn.encoder.network)[:4]] == [(0, 0)] * 4
    assert not any(isinstance(m, (torch.nn.MaxPool2d, torch.nn.Dropout)) for m in snn.modules())
    assert isinstance(snn.decoder.LSTM, torch.nn.LSTM) and snn.decoder.LSTM.num_layers == 1


@pytest.mark.parametrize("kind,neuron", [("ann", "lif"), ("snn", "lif"), ("snn", "liaf")])
def test_forward_and_backward_reach_every_parameter(kind, neuron):
    torch.manual_seed(0)
    model = CRNN(_cfg(kind, neuron=neuron))
    x = torch.rand(2, 3, 4, *SIZE) if kind == "ann" else _events()
    out = model(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_the_first_steps_are_used_and_bad_clips_named():
    torch.manual_seed(1)
    model = CRNN(_cfg("snn")).eval()
    x = _events(steps=7)
    out = model(x)
    functional.reset_net(model)
    assert torch.equal(out, model(x[:, :, :4]))  # DVS_Dataset: events[:, i-1] for i in 1..15, the first steps
    with pytest.raises(ValueError, match="first 4 steps"):
        model(_events(steps=3))
    with pytest.raises(ValueError, match="input_size"):
        model(torch.zeros(2, 2, 4, 36, 41))
    with pytest.raises(ValueError, match="at least 33 x 33"):
        _cfg("snn", input_size=[32, 40])


def test_the_ann_encoder_sees_one_frame_at_a_time():
    """train_ANN.py calls the encoder per frame: BN statistics (and running-stat updates) per frame."""
    model = CRNN(_cfg("ann")).train()
    model(torch.rand(3, 3, 4, *SIZE))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 4 and all(m.num_batches_tracked.item() == 4 for m in norms)


@pytest.mark.parametrize("flatten", ["reference", "per_step"])
def test_the_encoder_flatten(flatten):
    """reference: LIAFCNN.forward's x.view(B, T, -1) of the (B, C, T, H, W) map; per_step: step t's
    own map."""
    torch.manual_seed(2)
    model = CRNN(_cfg("snn", flatten=flatten, input_size=[52, 60]))  # 2 x 2 maps: flatten orders differ
    seen = {}
    model.encoder.network.cnn3.register_forward_hook(lambda m, i, o: seen.update(conv=o))
    model.encoder.network.fc4.kernel.register_forward_hook(lambda m, i, o: seen.update(fc_in=i[0]))
    model((torch.rand(2, 2, 4, 52, 60) < 0.3).float())
    conv, fc_in = seen["conv"], seen["fc_in"]  # (T, B, C, H, W), (T, B, C*H*W)
    steps, batch = conv.shape[:2]
    theirs = conv.permute(1, 2, 0, 3, 4).contiguous().view(batch, steps, -1).transpose(0, 1)
    expected = theirs if flatten == "reference" else conv.flatten(2)
    assert torch.equal(fc_in, expected)
    assert not torch.equal(theirs, conv.flatten(2))


@pytest.mark.parametrize("learnable", [True, False])
def test_lif_follows_the_reference_membrane_and_gaussian_surrogate(learnable):
    """LIAF.py mem_update + LIFactFun: u_t = decay u_{t-1} (1 - s_{t-1}) + x_t, s_t = [u_t > 0.5];
    ds/du = 0.3989422804014327 * exp(-0.5 * (u - 0.5 - 0.2) ** 2) (sigma 1, bias -0.2)."""
    torch.manual_seed(3)
    node = crnn_neuron("lif", REFERENCE_DECAY, 0.5, learnable)
    x = torch.randn(6, 50)
    out = node(x)
    u, s = torch.zeros(50), torch.zeros(50)
    for t in range(6):
        u = u * REFERENCE_DECAY * (1 - s) + x[t]
        s = (u > 0.5).float()
        assert torch.allclose(out[t], s), t
    functional.reset_net(node)
    x1 = torch.linspace(-2, 3, 41, requires_grad=True)
    node(x1.unsqueeze(0)).sum().backward()
    assert torch.allclose(x1.grad, 0.3989422804014327 * torch.exp(-0.5 * (x1.detach() - 0.7) ** 2))


def test_the_ann_is_plain_relu_and_the_snn_has_no_relu():
    """configs_ANN.py 'actFun': torch.relu: the ANN's cells use ReLU; the SNN's use the neuron instead (no
    analog activation)."""
    ann = CRNN(CRNNConfig(kind="ann", input_size=[40, 40], steps=2, decoder_hidden=8))
    snn = CRNN(CRNNConfig(kind="snn", in_channels=2, input_size=[40, 40], steps=2, decoder_hidden=8))
    ann_acts = [m for m in ann.modules() if isinstance(m, (nn.ReLU, BaseNode))]
    assert ann_acts and all(type(m) is nn.ReLU for m in ann_acts)
    assert not any(isinstance(m, nn.ReLU) for m in snn.modules())
    assert any(isinstance(m, BaseNode) for m in snn.modules())


def test_liaf_outputs_relu_of_the_membrane():
    """configs_LIAF.py 'actFun': torch.relu: output relu(u_t) before the reset."""
    torch.manual_seed(4)
    node = crnn_neuron("liaf", REFERENCE_DECAY, 0.5, True)
    x = torch.randn(6, 50)
    out = node(x)
    u, s = torch.zeros(50), torch.zeros(50)
    for t in range(6):
        u = u * REFERENCE_DECAY * (1 - s) + x[t]
        assert torch.allclose(out[t], torch.relu(u), atol=1e-6), t
        s = (u > 0.5).float()
    assert math.isclose(1 - torch.sigmoid(node.w).item(), 1 / (1 + math.exp(-0.5)), rel_tol=1e-6)


def _reference_keys() -> tuple[list[str], list[str]]:
    """State-dict keys of the authors' LIAFCNN encoder and DecoderRNN (module. prefix of nn.DataParallel
    dropped): LIAFConvCell kernel / NormLayer (BatchNorm3d) / decay, LIAFCell kernel / decay, nn.LSTM, fc."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    encoder = []
    for i in range(4):
        encoder += [f"network.cnn{i}.kernel.{p}" for p in ("weight", "bias")]
        encoder += [f"network.cnn{i}.NormLayer.{p}" for p in bn] + [f"network.cnn{i}.decay"]
    for j in (4, 5):
        encoder += [f"network.fc{j}.kernel.weight", f"network.fc{j}.kernel.bias", f"network.fc{j}.decay"]
    decoder = [f"LSTM.{p}_l0" for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    decoder += ["fc.weight", "fc.bias"]
    return encoder, decoder


def _ours(key: str, part: str) -> str | None:
    """Our name of one of their keys; their decays are our neurons' `w` (fc5 has no neuron here: None)."""
    if key.endswith(".decay"):
        cell = key.split(".")[1]
        return None if cell == "fc5" else f"encoder.network.{cell}.neuron.w"
    return f"{part}.{key}"


@pytest.mark.parametrize("decoder", ["transfer", "reinit"])
def test_transfer_copies_what_their_scripts_copy(decoder):
    """train_*_from_CRNN.py: every encoder key without 'module.network.cnn0', then the whole rnn_decoder;
    train_*_from_CNN.py: the same encoder keys only. Their copied decays hold the ANN's untrained initial
    0.5 (with time_windows 1, mem_update never reads the decay), which is our neurons' own start."""
    torch.manual_seed(5)
    ann = CRNN(_cfg("ann")).train()
    ann(torch.rand(2, 3, 4, *SIZE))  # running statistics move off their initial values
    snn = CRNN(_cfg("snn", neuron="liaf"))
    fresh = {k: v.clone() for k, v in snn.state_dict().items()}
    rep = transfer_state(ann.state_dict(), snn, stem="reinit", decoder=decoder)

    encoder, dec = _reference_keys()
    copied = [k for k in encoder if "network.cnn0" not in k] + (dec if decoder == "transfer" else [])
    part = {k: "encoder" for k in encoder} | {k: "decoder" for k in dec}
    ours_copied = [_ours(k, part[k]) for k in copied]
    assert sorted(rep["copied"]) == sorted(k for k in ours_copied if k and not k.endswith(".w"))
    assert sorted(rep["snn_only"]) == sorted(
        f"encoder.network.{c}.neuron.w" for c in ("cnn0", "cnn1", "cnn2", "cnn3", "fc4")
    )
    not_copied = [_ours(k, part[k]) for k in encoder + dec if k not in copied]
    assert sorted(rep["new"]) == sorted(k for k in not_copied if k and not k.endswith(".w"))
    assert rep["n_copied"] + rep["n_new"] + rep["n_snn_only"] == rep["n_tensors"] == len(snn.state_dict())
    state = snn.state_dict()
    for k in rep["copied"]:
        assert torch.equal(state[k], ann.state_dict()[k]), k
    for k in rep["new"] + rep["snn_only"]:
        assert torch.equal(state[k], fresh[k]), k
    assert all(
        math.isclose(1 - torch.sigmoid(state[k]).item(), REFERENCE_DECAY, rel_tol=1e-6)
        for k in rep["snn_only"]
    )


def test_decoder_reinit_on_the_video_twin_and_without_a_decoder():
    from pipeline.models.resnet_twins import ResNetTwin
    from pipeline.models.video_twin import VideoTwin

    cfg = dict(arch="tiny", width=2, stem="small", num_classes=3)
    ann, snn = ResNetTwin(twin_config(kind="ann", **cfg)), ResNetTwin(twin_config(kind="snn", **cfg))
    with pytest.raises(TransferError, match="decoder: reinit"):
        transfer_state(ann.state_dict(), snn, decoder="reinit")
    ann = VideoTwin(twin_config(kind="ann", decoder_hidden=4, **cfg))
    snn = VideoTwin(twin_config(kind="snn", in_channels=2, decoder_hidden=4, **cfg))
    rep = transfer_state(ann.state_dict(), snn, stem="reinit", decoder="reinit")
    assert sorted(rep["new"]) == sorted(
        ["encoder.conv1.weight"] + [k for k in snn.state_dict() if k.startswith(("decoder.", "fc."))]
    )


def test_frames_first_sampling_reads_the_first_frames(tmp_path):
    """Dataset_CRNN reads frame000001 ... frame000015: sampling 'first' takes the first n_frames files."""
    from pipeline.data.batching import Skipped
    from pipeline.data.ucf101_frames import UCF101Frames

    write_ucf101_frames(tmp_path, n_actions=2, n_frames=6, size=(8, 10))
    first = UCF101Frames(tmp_path, "train", n_frames=4, height=8, width=10, sampling="first")[0][0]
    every = UCF101Frames(tmp_path, "train", n_frames=6, height=8, width=10)[0][0]
    assert torch.equal(first, every[:, :4])
    short = UCF101Frames(tmp_path, "val", n_frames=7, height=8, width=10, sampling="first")
    assert isinstance(short[0], Skipped)


def _tiny_params(tmp: Path) -> dict:
    """params.yaml plus a 3-action frames / events pair, a crnn ANN, a scratch run and both transfers."""
    p = load_params(REPO / "params.yaml")
    pre = p["pretrain"]
    pre["datasets"]["f"] = {
        "format": "ucf101_frames",
        "root": str(tmp / "frames"),
        "num_classes": 3,
        "n_frames": 4,
        "sampling": "first",
        "height": SIZE[0],
        "width": SIZE[1],
        "in_memory": True,
    }
    pre["datasets"]["e"] = {
        "format": "es_ucf101",
        "root": str(tmp / "events"),
        "num_classes": 3,
        "in_memory": True,
    }
    model = {
        "arch": "crnn",
        "width": 2,
        "decoder_hidden": 6,
        "input_size": SIZE,
        "steps": 4,
        "flatten": "reference",
    }
    recipe = {
        "epochs": 1,
        "batch_size": 4,
        "optimizer": "adam",
        "lr": 1e-3,
        "lr_reference_batch": 4,
        "weight_decay": 0.0,
        "schedule": "constant",
    }
    snn = {"neuron": "lif", "learnable_decay": True, "decay": REFERENCE_DECAY}
    pre["anns"]["cr"] = {"dataset": "f", "model": model, "ann": recipe}
    pre["baselines"]["sc"] = {"dataset": "e", "model": model, "snn": snn, "scratch": recipe}
    for name, decoder in (("from_crnn", "transfer"), ("from_cnn", "reinit")):
        pre["pipelines"][name] = {
            "ann": "cr",
            "target": "e",
            "baseline": "sc",
            "stem": "reinit",
            "decoder": decoder,
            "snn": snn,
            "finetune": recipe,
        }
    p["device"] = "cpu"
    return p


def test_the_stages_train_transfer_and_finetune_the_crnn(tmp_path):
    p = _tiny_params(tmp_path)
    write_ucf101_frames(tmp_path / "frames", n_actions=3, n_frames=5, size=tuple(SIZE))
    write_es_ucf101(tmp_path / "events", n_actions=3, steps=6, size=tuple(SIZE))
    call_stage(
        "pretrain_ann",
        p,
        ann="cr",
        data=tmp_path / "frames",
        ckpt=tmp_path / "ann.pt",
        live=tmp_path / "live/ann",
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    cli = [sys.executable, "-m", "pipeline", "--params", str(tmp_path / "params.yaml"), "transfer"]
    proc = subprocess.run(
        [
            *cli,
            "--pipe",
            "from_cnn",
            "--ann",
            str(tmp_path / "ann.pt"),
            "--out",
            str(tmp_path / "cnn.pt"),
            "--report",
            str(tmp_path / "cnn.json"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    call_stage(
        "transfer",
        p,
        pipe="from_crnn",
        ann=tmp_path / "ann.pt",
        out=tmp_path / "crnn.pt",
        report=tmp_path / "crnn.json",
    )
    reports = {k: json.loads((tmp_path / f"{k}.json").read_text()) for k in ("cnn", "crnn")}
    stem = reports["crnn"]["new"]
    assert len(stem) == 7 and all(k.startswith("encoder.network.cnn0.") for k in stem)
    assert sorted(set(reports["cnn"]["new"]) - set(stem)) == sorted(
        k for k in reports["crnn"]["copied"] if k.startswith("decoder.")
    )
    assert reports["cnn"]["rules"] == {"stem": "reinit", "decoder": "reinit"}
    call_stage(
        "finetune_snn",
        p,
        pipe="from_crnn",
        init=tmp_path / "crnn.pt",
        data=tmp_path / "events",
        ckpt=tmp_path / "ft.pt",
        live=tmp_path / "live/ft",
    )
    call_stage(
        "train_snn_scratch",
        p,
        run="sc",
        data=tmp_path / "events",
        ckpt=tmp_path / "sc.pt",
        live=tmp_path / "live/sc",
    )
    ft, sc = (json.loads((tmp_path / f"live/{k}/config.json").read_text()) for k in ("ft", "sc"))
    assert ft["model"] == sc["model"] and ft["model"]["arch"] == "crnn" and ft["model"]["kind"] == "snn"
    assert ft["model"]["steps"] == 4 and ft["model"]["input_size"] == SIZE
    assert ft["n_params"] == sc["n_params"]


def test_a_model_built_for_another_frame_size_stops_before_any_output(tmp_path):
    p = _tiny_params(tmp_path)
    p["pretrain"]["datasets"]["f"]["width"] = 44  # frames resized to 36 x 44, the model built for 36 x 40
    write_ucf101_frames(tmp_path / "frames", n_actions=3, n_frames=5, size=tuple(SIZE))
    with pytest.raises(
        ValueError,
        match=r"model.input_size \[36, 40\] differs from the frames' size "
        r"\[36, 44\]",
    ):
        call_stage(
            "pretrain_ann",
            p,
            ann="cr",
            data=tmp_path / "frames",
            ckpt=tmp_path / "ann.pt",
            live=tmp_path / "live",
        )
    assert not (tmp_path / "ann.pt").exists() and not (tmp_path / "live").exists()


def test_the_preset_plans_the_es_ucf101_grid(tmp_path):
    """`snakemake -n` with the paper-pretrain preset (data roots present, empty): one ANN, two scratch SNNs,
    two transfers and fine-tunings for ES-UCF101; every run of the ES-ImageNet table."""
    work = copy_project(tmp_path)
    preset = yaml.safe_load((work / "workflow/presets/paper-pretrain.yaml").read_text())
    for ds in preset["pretrain"]["datasets"].values():
        for split in ("train", "val"):
            (work / ds["root"] / split).mkdir(parents=True, exist_ok=True)
    plan = run(
        ["snakemake", "-n", "--cores", "1", "--configfile", "workflow/presets/paper-pretrain.yaml"],
        cwd=work,
        timeout=600,
    ).stdout
    jobs = set()
    for block in plan.split("\nrule ")[1:]:  # one job per block: its rule and its (first) wildcard's value
        wildcard = re.search(r"wildcards: \w+=([^,\n]+)", block)
        if wildcard:
            jobs.add((block.split(":", 1)[0], wildcard.group(1)))
    ucf = {(rule, name) for rule, name in jobs if "ucf" in name or name.startswith("pipeU_")}
    assert ucf == {
        ("pretrain_index", "ucf101_frames"),
        ("pretrain_index", "es_ucf101"),
        ("pretrain_ann", "ucf101"),
        ("train_snn_scratch", "es_ucf101_lif"),
        ("train_snn_scratch", "es_ucf101_liaf"),
        ("transfer", "pipeU_lif"),
        ("transfer", "pipeU_liaf"),
        ("finetune_snn", "pipeU_lif"),
        ("finetune_snn", "pipeU_liaf"),
    }
    # every cell of the reference README's ES-ImageNet table (docs/papers.md): four scratch SNNs, and the
    # three ImageNet-pretrained ones with the ImageNet ANNs they start from
    assert {"es_r18_lif", "es_r18_liaf", "es_r34_lif", "es_r34_liaf"} <= {
        name for rule, name in jobs if rule == "train_snn_scratch"
    }
    for rule in ("transfer", "finetune_snn"):
        assert {"pipeD", "pipeD_r18_liaf", "pipeD_r34_liaf"} <= {name for r, name in jobs if r == rule}
    assert {"imagenet_r18", "imagenet_r34"} <= {name for rule, name in jobs if rule == "pretrain_ann"}
    runs = preset["pretrain"]
    assert runs["pipelines"]["pipeU_lif"]["baseline"] == "es_ucf101_lif"
    assert runs["pipelines"]["pipeU_liaf"]["baseline"] == "es_ucf101_liaf"
    recipe_keys = set(load_params(REPO / "params.yaml")["pretrain"]["scratch"])
    for block in (
        runs["anns"]["ucf101"]["ann"],
        runs["baselines"]["es_ucf101_lif"]["scratch"],
        runs["baselines"]["es_ucf101_liaf"]["scratch"],
        runs["pipelines"]["pipeU_lif"]["finetune"],
        runs["pipelines"]["pipeU_liaf"]["finetune"],
    ):
        assert recipe_keys <= set(block)  # stated in full: nothing comes from params.yaml's stand-in runs
        assert (
            block["optimizer"],
            block["lr"],
            block["lr_reference_batch"],
            block["batch_size"],
            block["epochs"],
            block["schedule"],
            block["weight_decay"],
        ) == ("adam", 1e-4, 64, 64, 60, "constant", 0.0)
