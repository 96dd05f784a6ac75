"""External ANN weights (`pretrain.anns.<run>.weights`): a torchvision ResNet-18 state dict (random
initialisation: nothing is downloaded) imported by pretrain_ann (`ann: {epochs: 0}`), transferred and
fine-tuned for one step as Snakemake runs the stages, a changed file rerunning the chain; a mismatched file
stops the CLI with one line and writes nothing; with epochs the ANN fine-tunes from the file; the table says
"pretrained elsewhere"."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torchvision
import yaml

from pipeline.io import read_json
from pipeline.params.load import load_params, schema_problems
from pipeline.pretrain.models import build_model
from pipeline.pretrain.table import build_table
from pipeline.pretrain.weights import import_weights
from tests.conftest import REPO, call_stage, copy_project, run
from tests.tiny_images import write_imagenet

RESNET18 = {"arch": "resnet18", "width": 64, "stem": "imagenet"}
CLASSIFIER = ["fc.weight", "fc.bias"]


def _save_resnet18(path: Path, seed: int, num_classes: int = 1000) -> Path:
    """torchvision's ResNet-18 as its own code initialises it (weights=None), saved as the docs say."""
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.resnet18(weights=None, num_classes=num_classes).state_dict(), path)
    return path


def _params(images: Path, weights: str, **ann: object) -> dict:
    """Tiny paper-A parameters: a 10-class ImageFolder at 32 px, one ANN run from `weights` (imported unless
    `ann` says otherwise), one pipeline fine-tuning a single step."""
    p = copy.deepcopy(load_params(REPO / "params.yaml"))
    p["device"] = "cpu"
    pre = p["pretrain"]
    pre["datasets"] = {
        "tiny": {
            "format": "imagefolder",
            "root": str(images),
            "num_classes": 10,
            "image_size": 32,
            "augment": False,
            "normalize": True,
            "in_memory": True,
        }
    }
    pre["snn"]["time_steps"] = 1
    pre["anns"] = {
        "tv18": {"dataset": "tiny", "weights": weights, "model": dict(RESNET18), "ann": {"epochs": 0, **ann}}
    }
    pre["baselines"] = {"tiny": {"dataset": "tiny", "model": dict(RESNET18)}}
    pre["pipelines"] = {
        "pipeT": {
            "ann": "tv18",
            "target": "tiny",
            "baseline": "tiny",
            "stem": "adapt",
            "finetune": {"epochs": 1, "batch_size": 16},
        }
    }  # 10 images: one step
    return p


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _planned(work: Path, target: str) -> tuple[list[str], str]:
    proc = run(["snakemake", "-n", "--cores", "1", target], cwd=work)
    return sorted(re.findall(r"^rule (\w+):$", proc.stdout, flags=re.M)), proc.stdout


@pytest.mark.e2e
def test_snakemake_imports_transfers_and_finetunes_and_a_changed_file_reruns(tmp_path: Path) -> None:
    write_imagenet(tmp_path / "img", n_classes=10, size=12)
    # committed: DVCLive, in fine-tuning, needs a git work tree with a HEAD
    work = copy_project(tmp_path, _params(tmp_path / "img", "weights/resnet18.pt"), commit=True)
    weights = _save_resnet18(work / "weights/resnet18.pt", seed=0)
    target = "models/pretrain/finetune/pipeT.pt"
    run(["snakemake", "--cores", "1", target], cwd=work)

    file = torch.load(weights, weights_only=True)
    ann = torch.load(work / "models/pretrain/ann/tv18.pt", weights_only=False)
    assert (ann["epoch"], ann["elapsed_s"], ann["best_val_acc"]) == (0, 0.0, None)  # imported, not trained
    assert ann["weights"]["sha256"] == _sha256(weights) and ann["weights"]["new"] == CLASSIFIER
    assert all(torch.equal(ann["model"][k], v) for k, v in file.items() if k not in CLASSIFIER)
    assert ann["model"]["fc.weight"].shape == (10, 512)  # the file's 1000-class classifier is replaced
    log = (work / "logs/pretrain_ann/tv18.log").read_text()
    assert "new: fc.weight, fc.bias (the file's classifier has 1000 classes, dataset 'tiny' has 10)" in log
    report = read_json(work / "results/pretrain/transfer/pipeT.json")
    assert report["n_copied"] == report["n_tensors"] == len(file) and report["ann_elapsed_s"] == 0.0
    snn = torch.load(work / "models/pretrain/transfer/pipeT.pt", weights_only=False)["model"]
    assert torch.equal(snn["layer4.1.conv2.weight"], file["layer4.1.conv2.weight"])
    runs = [
        {name: read_json(work / live / f"{name}.json") for name in ("config", "metrics", "history")}
        for live in ("results/pretrain/ann/tv18", "results/pretrain/finetune/pipeT")
    ]
    assert runs[1]["metrics"]["epochs"] == 1 and len(runs[1]["history"]) == 1
    row = build_table(runs).iloc[0]
    assert row["init"] == "pretrained elsewhere" and row["epochs"] == "0 ANN + 1 SNN"
    assert row["time_s"] == runs[1]["metrics"]["elapsed_s"]  # no ANN time: the pretraining was done elsewhere

    assert _planned(work, target)[0] == []
    _save_resnet18(weights, seed=1)  # the same path, other weights: the file is an input of the job
    rules, plan = _planned(work, target)
    assert rules == ["finetune_snn", "pretrain_ann", "transfer"]
    assert "weights/resnet18.pt" in plan.split("rule pretrain_ann:")[1].split("reason:")[1].splitlines()[0]


def test_a_file_that_does_not_fit_stops_the_cli_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    write_imagenet(tmp_path / "img", n_classes=10, size=12)
    _save_resnet18(tmp_path / "resnet18.pt", seed=0)
    params = _params(tmp_path / "img", str(tmp_path / "resnet18.pt"))
    params["pretrain"]["anns"]["tv18"]["model"]["arch"] = "resnet34"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    call_stage("pretrain_index", params, dataset="tiny", out=tmp_path / "data/prepared/pretrain/tiny.json")
    # dvc.yaml's command, with Snakemake's --params
    proc = run(
        [
            "python",
            "-m",
            "pipeline",
            "--params",
            "params.yaml",
            "pretrain_ann",
            "--ann",
            "tv18",
            "--data",
            "data/prepared/pretrain/tiny.json",
            "--ckpt",
            "models/pretrain/ann/tv18.pt",
            "--live",
            "results/pretrain/ann/tv18",
            "--log",
            "logs/pretrain_ann/tv18.log",
        ],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    expected = f"error: {tmp_path / 'resnet18.pt'}: does not fit the resnet34 ANN of run 'tv18'"
    assert lines[0].startswith(expected)
    assert "missing: layer1.2.conv1.weight [64, 64, 3, 3]" in lines[0]
    assert lines[0].endswith("the file holds a resnet18 (blocks [2, 2, 2, 2], width 64)")
    written = [f for d in ("models", "results") for f in (tmp_path / d).rglob("*") if f.is_file()]
    assert written == []  # (the CLI's job lock may leave the folders)


def _ann(params: dict) -> tuple[torch.nn.Module, dict]:
    from pipeline.params.configs import ModelParams, PretrainDataset
    from pipeline.pretrain.models import ann_config

    pre = params["pretrain"]
    config = ann_config(
        ModelParams(**{**pre["model"], **pre["anns"]["tv18"]["model"]}),
        PretrainDataset(**pre["datasets"]["tiny"]),
        threshold=pre["snn"]["threshold"],
        sharpen_epochs=1,
    )
    return build_model(config), config


def test_what_a_file_may_lack_or_size_differently(tmp_path: Path) -> None:
    params = _params(tmp_path, "unused")
    model, config = _ann(params)
    ten = _save_resnet18(tmp_path / "r18_10.pt", 0, num_classes=10)
    same = import_weights(ten, model, config, "tv18", "tiny")
    assert same.record["new"] == [] and same.record["copied"] == len(model.state_dict())  # fc fits: copied
    params["pretrain"]["anns"]["tv18"]["model"]["width"] = 32
    narrow, narrow_config = _ann(params)
    with pytest.raises(
        ValueError, match=re.escape("conv1.weight has shape [64, 3, 7, 7], the ANN expects [32, 3, 7, 7]")
    ):
        import_weights(tmp_path / "r18_10.pt", narrow, narrow_config, "tv18", "tiny")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="expected a state dict .* found a list"):
        import_weights(tmp_path / "list.pt", model, config, "tv18", "tiny")
    (tmp_path / "junk.pt").write_bytes(b"not torch")
    with pytest.raises(ValueError, match="not a readable torch file"):
        import_weights(tmp_path / "junk.pt", model, config, "tv18", "tiny")
    video_config = replace(config, decoder_hidden=8)  # video twin: a torchvision ResNet is its encoder
    got = import_weights(tmp_path / "r18_10.pt", build_model(video_config), video_config, "tv18", "tiny")
    assert sorted({k.split(".")[0] for k in got.record["new"]}) == ["decoder", "fc"]
    file = torch.load(tmp_path / "r18_10.pt", weights_only=True)
    assert torch.equal(got.state["encoder.layer4.1.conv2.weight"], file["layer4.1.conv2.weight"])


def test_more_epochs_finetune_from_the_file_and_a_checkpoint_is_a_weights_file_too(tmp_path: Path) -> None:
    write_imagenet(tmp_path / "img", n_classes=10, size=12)
    weights = _save_resnet18(tmp_path / "resnet18.pt", seed=0)
    # one SGD step at a vanishing rate: the conv weights stay the file's, BN statistics move
    params = _params(
        tmp_path / "img", str(weights), epochs=1, batch_size=16, lr=1e-12, momentum=0.0, weight_decay=0.0
    )
    index = tmp_path / "tiny.json"
    call_stage("pretrain_index", params, dataset="tiny", out=index)
    call_stage(
        "pretrain_ann", params, ann="tv18", data=index, ckpt=tmp_path / "ann.pt", live=tmp_path / "live"
    )
    ckpt = torch.load(tmp_path / "ann.pt", weights_only=False)
    file = torch.load(weights, weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["weights"]["sha256"] == _sha256(weights)
    assert torch.allclose(ckpt["model"]["layer4.1.conv2.weight"], file["layer4.1.conv2.weight"], atol=1e-6)
    assert not torch.equal(ckpt["model"]["bn1.running_mean"], file["bn1.running_mean"])  # it did train
    assert json.loads((tmp_path / "live/config.json").read_text())["weights"]["file"] == str(weights)
    # the project's own checkpoint as a weights file: imported as it is
    params["pretrain"]["anns"]["tv18"].update(weights=str(tmp_path / "ann.pt"), ann={"epochs": 0})
    call_stage(
        "pretrain_ann", params, ann="tv18", data=index, ckpt=tmp_path / "again.pt", live=tmp_path / "live2"
    )
    again = torch.load(tmp_path / "again.pt", weights_only=False)
    assert again["weights"]["layout"] == "pretrain_ann checkpoint of run 'tv18' (tiny)"
    assert again["weights"]["new"] == []
    assert all(torch.equal(again["model"][k], v) for k, v in ckpt["model"].items())


def test_epochs_0_needs_a_file_and_only_snakemake_can_declare_it(tmp_path: Path) -> None:
    params = _params(tmp_path, "weights/resnet18.pt")
    assert schema_problems(params) == []
    del params["pretrain"]["anns"]["tv18"]["weights"]
    assert schema_problems(params) == [
        "pretrain.anns.tv18: 'weights' is a required property (ann.epochs 0 "
        "imports a `weights` file without training: name one.)"
    ]
    # DVC: one deps list for every item of a foreach, so the file is not among them; the run's entry (its
    # path) is a parameter of the stage, so a new path reruns it, a changed file at the same path needs -f
    from pipeline.drivers.dvc import render

    entry = yaml.safe_load(render())["stages"]["pretrain_ann"]["do"]
    assert "pretrain.anns.${key}" in entry["params"] and not any("item.weights" in d for d in entry["deps"])
    assert "pipeline/pretrain/weights.py" in entry["deps"]
