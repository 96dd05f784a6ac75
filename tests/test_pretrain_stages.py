"""A tiny end-to-end run of the paper-A stages in-process: expected files, keys, table rows."""

import copy
import json

import pandas as pd

from pipeline.params.load import load_params
from pipeline.pretrain.plots import plot_time_accuracy
from pipeline.pretrain.table import build_table, display_table
from tests.conftest import REPO, call_stage


def _tiny_params(tmp):
    p = copy.deepcopy(load_params(REPO / "params.yaml"))
    pre = p["pretrain"]
    pre["model"].update(width=2, decoder_hidden=8)
    pre["snn"]["time_steps"] = 2
    pre["datasets"]["digits"].update(image_size=8, root=str(tmp / "img"))
    pre["datasets"]["digits_events"]["root"] = str(tmp / "es")
    pre["datasets"]["motion_frames"]["root"] = str(tmp / "frames")
    pre["datasets"]["motion_events"]["root"] = str(tmp / "events")
    pre["motion"].update(clips_per_class_train=2, clips_per_class_val=1)
    for k in ("ann", "finetune", "scratch"):
        pre[k].update(epochs=1, batch_size=256)
    pre["pipelines"]["pipeD"]["finetune"] = {"frozen_warmup_epochs": 1, "optimizer": "adam", "lr": 0.01}
    pre["pipelines"]["pipeD"]["snn"] = {"neuron": "liaf", "learnable_decay": True}
    p["device"] = "cpu"
    return p


def _load(d):
    return {k: json.loads((d / f"{k}.json").read_text()) for k in ("config", "metrics", "history")}


def test_tiny_end_to_end(tmp_path):
    p = _tiny_params(tmp_path)
    call_stage("images_embedded", p, out=tmp_path / "img")
    assert (tmp_path / "img" / "train" / "0").is_dir() and (tmp_path / "img" / "val" / "9").is_dir()
    call_stage("es_imagenet_convert", p, images=tmp_path / "img", out=tmp_path / "es")
    assert (tmp_path / "es" / "trainlabel.txt").is_file() and (tmp_path / "es" / "conversion.json").is_file()
    call_stage("motion_embedded", p, out=tmp_path / "frames")
    call_stage("es_ucf101_convert", p, frames=tmp_path / "frames", out=tmp_path / "events")
    assert len(list((tmp_path / "events" / "train").rglob("*.npz"))) == 16  # 8 motions x 2 clips
    runs = []
    for ann, data in (("digits", tmp_path / "img"), ("motion", tmp_path / "frames")):
        call_stage(
            "pretrain_ann",
            p,
            ann=ann,
            data=data,
            ckpt=tmp_path / f"ann_{ann}.pt",
            live=tmp_path / f"live/ann_{ann}",
        )
        runs.append(_load(tmp_path / f"live/ann_{ann}"))
    targets = {
        "pipeS": (tmp_path / "img", "digits"),
        "pipeD": (tmp_path / "es", "digits"),
        "pipeU": (tmp_path / "events", "motion"),
    }
    for pipe, (data, ann) in targets.items():
        call_stage(
            "transfer",
            p,
            pipe=pipe,
            ann=tmp_path / f"ann_{ann}.pt",
            out=tmp_path / f"{pipe}.pt",
            report=tmp_path / f"{pipe}.json",
        )
        rep = json.loads((tmp_path / f"{pipe}.json").read_text())
        assert rep["n_copied"] + rep["n_adapted"] + rep["n_new"] + rep["n_snn_only"] == rep["n_tensors"]
        assert ("conv1.weight" in rep["adapted"]) == (pipe == "pipeD")
        call_stage(
            "finetune_snn",
            p,
            pipe=pipe,
            init=tmp_path / f"{pipe}.pt",
            data=data,
            ckpt=tmp_path / f"ft_{pipe}.pt",
            live=tmp_path / f"live/ft_{pipe}",
        )
        runs.append(_load(tmp_path / f"live/ft_{pipe}"))
    reports = {pipe: json.loads((tmp_path / f"{pipe}.json").read_text()) for pipe in targets}
    assert reports["pipeU"]["new"] == ["encoder.conv1.weight"]  # everything but the first conv is transferred
    assert len(reports["pipeD"]["snn_only"]) > 0  # learnable decays exist only in the SNN
    # a damaged event file is skipped and reported, not fatal
    (tmp_path / "es" / "train" / "class0" / "class0_1.npz").write_bytes(b"junk")
    for run, data in (
        ("digits", tmp_path / "img"),
        ("digits_events", tmp_path / "es"),
        ("motion_events", tmp_path / "events"),
    ):
        call_stage(
            "train_snn_scratch",
            p,
            run=run,
            data=data,
            ckpt=tmp_path / f"sc_{run}.pt",
            live=tmp_path / f"live/sc_{run}",
        )
        runs.append(_load(tmp_path / f"live/sc_{run}"))
    sk = json.loads((tmp_path / "live/sc_digits_events/skipped_files.json").read_text())
    assert runs[-2]["metrics"]["skipped_files"] == 1 and "class0_1.npz" in sk[0]
    for r in runs:
        assert {"best_val_acc", "best_epoch", "epochs", "elapsed_s", "skipped_files", "n_params"} <= set(
            r["metrics"]
        )
        assert r["config"]["role"] in ("pretrain_ann", "finetune_snn", "train_snn_scratch")
        assert {"epoch", "elapsed_s", "val_acc"} <= set(r["history"][0])
    table = build_table(runs)
    assert isinstance(table, pd.DataFrame) and len(table) == 6  # 3 scratch + 3 pretrained rows
    pretrained = table[table["init"] != "scratch"].set_index("run")
    assert set(pretrained.index) == {"pipeS", "pipeD", "pipeU"}
    assert pretrained.loc["pipeD", "neuron"] == "LIAF (learned decay)"
    assert pretrained.loc["pipeU", "model"] == "tiny ResNet + recurrent decoder"
    shown = display_table(table)
    assert "nan" not in shown.to_markdown() and "True" not in shown.to_markdown()
    plot_time_accuracy(runs, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 0
