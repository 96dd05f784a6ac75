"""A tiny end-to-end run of the paper-A stage functions: expected files and keys."""
import copy
import json

import pandas as pd

from pipeline.params import load_params
from pipeline.pretrain import stages as S
from pipeline.pretrain.plots import plot_time_accuracy
from pipeline.pretrain.table import build_table


def _tiny_params():
    p = copy.deepcopy(load_params("params.yaml"))
    pre = p["pretrain"]
    pre["model"].update(width=2)
    pre["snn"]["time_steps"] = 2
    pre["datasets"]["digits"]["image_size"] = 8
    for k in ("ann", "finetune", "scratch"):
        pre[k].update(epochs=1, batch_size=256)
    pre["finetune"]["frozen_warmup_epochs"] = 1
    p["device"] = "cpu"
    return p


def _load(d):
    return {k: json.loads((d / f"{k}.json").read_text()) for k in ("config", "metrics", "history")}


def test_tiny_end_to_end(tmp_path):
    p = _tiny_params()
    S.images_embedded(p, out=tmp_path / "img")
    assert (tmp_path / "img" / "train" / "0").is_dir() and (tmp_path / "img" / "val" / "9").is_dir()
    S.es_imagenet_convert(p, images=tmp_path / "img", out=tmp_path / "es")
    assert (tmp_path / "es" / "trainlabel.txt").is_file() and (tmp_path / "es" / "conversion.json").is_file()
    S.pretrain_ann(p, dataset="digits", data=tmp_path / "img", ckpt=tmp_path / "ann.pt", live=tmp_path / "live/ann")
    runs = [_load(tmp_path / "live/ann")]
    for pipe, data in (("pipeS", tmp_path / "img"), ("pipeD", tmp_path / "es")):
        S.transfer(p, pipeline=pipe, ann=tmp_path / "ann.pt", out=tmp_path / f"{pipe}.pt", report=tmp_path / f"{pipe}.json")
        rep = json.loads((tmp_path / f"{pipe}.json").read_text())
        assert rep["n_copied"] + rep["n_adapted"] + rep["n_new"] == rep["n_tensors"]
        assert ("conv1.weight" in rep["adapted"]) == (pipe == "pipeD")
        S.finetune_snn(p, pipeline=pipe, init=tmp_path / f"{pipe}.pt", data=data, ckpt=tmp_path / f"ft_{pipe}.pt",
                       live=tmp_path / f"live/ft_{pipe}")
        runs.append(_load(tmp_path / f"live/ft_{pipe}"))
    # a damaged event file is skipped and reported, not fatal
    (tmp_path / "es" / "train" / "class0" / "class0_1.npz").write_bytes(b"junk")
    for ds, data in (("digits", tmp_path / "img"), ("digits_events", tmp_path / "es")):
        S.train_snn_scratch(p, dataset=ds, data=data, ckpt=tmp_path / f"sc_{ds}.pt", live=tmp_path / f"live/sc_{ds}")
        runs.append(_load(tmp_path / f"live/sc_{ds}"))
    sk = json.loads((tmp_path / "live/sc_digits_events/skipped_files.json").read_text())
    assert runs[-1]["metrics"]["skipped_files"] == 1 and "class0_1.npz" in sk[0]
    for r in runs:
        assert {"best_val_acc", "best_epoch", "epochs", "elapsed_s", "skipped_files", "n_params"} <= set(r["metrics"])
        assert r["config"]["role"] in ("ann_pretrain", "finetune", "scratch")
        assert {"dataset", "pipeline"} <= set(r["config"])
        assert {"epoch", "elapsed_s", "val_acc"} <= set(r["history"][0])
    table = build_table(runs)
    assert isinstance(table, pd.DataFrame) and set(table["pipeline"]) == {"pipeS", "pipeD"}
    assert {"time_ratio", "reached_scratch_best", "paper_ratio_arxiv", "pipeline_time_s"} <= set(table.columns)
    plot_time_accuracy(runs, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 0
