"""Bad input, stage by stage, through the CLI: an unknown name, a missing root, a wrong
layout, an empty split, a class-count mismatch, a checkpoint of another model.

Each must exit with code 2 and ONE stderr line (`error: ...`) naming what was
expected, and leave nothing behind at the stage's output paths. The cases run
pipeline.drivers.cli.main in-process (one torch start-up for all of them); a few also run
as `python -m pipeline` subprocesses to check the real process end to end.
Inputs are tiny files in the official formats, written once for the module.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from pipeline.drivers.cli import main
from pipeline.data.gsc import split_files
from pipeline.data.prepared import load_split, save_split
from pipeline.data.synth_shd import write_shd_file
from pipeline.params.load import load_params
from tests.conftest import REPO
from tests.tiny_data import write_tiny_gsc


def write_shd(
    root: Path,
    n_classes: int,
    seed: int = 0,
    per_class: int = 4,
    units_dtype=np.uint16,
    labels_dtype=np.uint8,
    n_test: int | None = None,
) -> Path:
    """shd_train.h5 / shd_test.h5 in SHD's layout: 40 channels, 20 spikes per sample."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        labels = np.repeat(np.arange(n_classes), per_class)
        if split == "test" and n_test is not None:
            labels = labels[:n_test]
        times = [np.sort(rng.uniform(0, 0.1, 20)).astype(np.float32) for _ in labels]
        units = [rng.integers(0, 40, 20).astype(np.uint16) for _ in labels]
        write_shd_file(
            root / f"shd_{split}.h5", times, units, labels.astype(np.uint8), np.zeros(len(labels)), ["a"], {}
        )
        if units_dtype is not np.uint16 or labels_dtype is not np.uint8:  # rewrite with the wrong dtypes
            with h5py.File(root / f"shd_{split}.h5", "a") as f:
                del f["spikes/units"], f["labels"]
                ds = f.create_dataset("spikes/units", (len(labels),), dtype=h5py.vlen_dtype(units_dtype))
                for i, u in enumerate(units):
                    ds[i] = u.astype(units_dtype)
                f.create_dataset("labels", data=labels.astype(labels_dtype))
    return root


def _edit_sample(path: Path, key: str, i: int, change: Callable[[Any], Any]) -> None:
    """Replace entry `i` of dataset `key` of an HDF5 file by change(entry)."""
    with h5py.File(path, "a") as f:
        f[key][i] = change(f[key][i])


def _edit_file(path: Path, change: Callable[[bytes], bytes]) -> None:
    path.write_bytes(change(path.read_bytes()))


TRAIN_WAV = "up/00000002_nohash_0.wav"  # write_tiny_gsc: file 0 of a word is valid, 1 test, 2 train


def write_images(root: Path, classes: dict[str, tuple[str, ...]] | tuple[str, ...] = ("a", "b", "c")) -> Path:
    """ImageFolder train/<class>/*.png, val/<class>/*.png (3 tiny RGB images per class)."""
    rng = np.random.default_rng(0)
    per_split = classes if isinstance(classes, dict) else {"train": classes, "val": classes}
    for split, names in per_split.items():
        for c in names:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(3):
                Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).save(
                    root / split / c / f"{i}.png"
                )
    return root


def tiny_params(ws: Path) -> dict:
    """params.yaml with tiny models and sets pointing into the workspace (schema-valid)."""
    p = copy.deepcopy(load_params(REPO / "params.yaml"))
    p["device"] = "cpu"
    data = dict(
        format="shd",
        root=str(ws / "raw/shd4"),
        valid_fraction=0.25,
        valid_seed=0,
        time_step_ms=10,
        n_channels=40,
        pool=4,
    )
    train = dict(max_delay_ms=30, hidden=[4], tau_ms=10.05, dropout=0.0, epochs=1, batch_size=8)
    p["delays"]["sets"] = {
        "synth": p["delays"]["sets"]["synth"],
        "shd4": {"data": data, "train": train},  # 4 classes
        "shd3": {"data": {**data, "root": str(ws / "raw/shd3")}, "train": train},  # 3 classes
        "gsc": {
            "data": {
                **data,
                "format": "gsc",
                "root": str(ws / "raw/gsc"),
                "n_channels": 140,
                "pool": 1,
                "valid_fraction": 0.0,
            },
            "train": train,
        },
    }
    pre = p["pretrain"]
    for name in ("motion_frames", "motion_events"):
        del pre["datasets"][name]
    pre["anns"] = {"digits": {"dataset": "digits"}}
    pre["baselines"] = {"digits": {"dataset": "digits"}, "digits_events": {"dataset": "digits_events"}}
    del pre["pipelines"]["pipeU"]
    pre["es_convert"].update(long_side=10, canvas=12, margin=1, min_events=1)
    pre["datasets"]["digits"].update(root=str(ws / "raw/img"), num_classes=3, image_size=8)
    pre["datasets"]["digits_events"].update(
        root=str(ws / "raw/es"), num_classes=3, long_side=10, canvas=12, margin=1
    )
    pre["model"]["width"] = 2
    pre["snn"]["time_steps"] = 2
    for k in ("ann", "finetune", "scratch"):
        pre[k].update(epochs=1, batch_size=64)
    pre["finetune"]["milestones"] = [1]
    return p


def cli(params: Path, stage: str, *args: str) -> int:
    return main([stage, "--params", str(params), *map(str, args)])


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """Good inputs made by the real stages, then bad copies of them."""
    ws = tmp_path_factory.mktemp("bad_input")
    write_shd(ws / "raw/shd4", 4)
    write_shd(ws / "raw/shd3", 3, seed=1)
    write_tiny_gsc(ws / "raw/gsc", ["down", "up", "yes"], per_word=3)
    write_images(ws / "raw/img")
    params = ws / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params(ws), sort_keys=False))
    for ds in ("shd4", "shd3"):
        assert cli(params, "delays_prepare", "--dataset", ds, "--out", ws / f"prep/{ds}") == 0
    assert (
        cli(
            params,
            "delays_train",
            "--dataset",
            "shd4",
            "--variant",
            "learned_delay",
            "--seed",
            0,
            "--data",
            ws / "prep/shd4",
            "--ckpt",
            ws / "models/delays",
            "--live",
            ws / "live/delays",
        )
        == 0
    )
    assert cli(params, "es_imagenet_convert", "--images", ws / "raw/img", "--out", ws / "raw/es") == 0
    for ds in ("digits", "digits_events"):
        assert cli(params, "pretrain_index", "--dataset", ds, "--out", ws / f"prep/{ds}.json") == 0
    assert (
        cli(
            params,
            "pretrain_ann",
            "--ann",
            "digits",
            "--data",
            ws / "prep/digits.json",
            "--ckpt",
            ws / "models/ann.pt",
            "--live",
            ws / "live/ann",
        )
        == 0
    )
    for pipe in ("pipeS", "pipeD"):
        assert (
            cli(
                params,
                "transfer",
                "--pipe",
                pipe,
                "--ann",
                ws / "models/ann.pt",
                "--out",
                ws / f"models/{pipe}.pt",
                "--report",
                ws / f"live/{pipe}.json",
            )
            == 0
        )

    bad = ws / "bad"
    (bad / "shd_nolabels").mkdir(parents=True)
    for split in ("train", "test"):
        with h5py.File(bad / f"shd_nolabels/shd_{split}.h5", "w") as f:
            f.create_dataset("spikes/times", (1,), dtype=h5py.vlen_dtype(np.float32))
            f.create_dataset("spikes/units", (1,), dtype=h5py.vlen_dtype(np.uint16))
    write_shd(bad / "shd_float_units", 2, units_dtype=np.float32)
    write_shd(bad / "shd_float_labels", 2, labels_dtype=np.float32)
    write_shd(bad / "shd_empty_test", 2, n_test=0)
    shutil.copytree(ws / "raw/gsc", bad / "gsc_no_lists")
    (bad / "gsc_no_lists/testing_list.txt").unlink()
    (bad / "gsc_no_words").mkdir()
    for name in ("validation_list.txt", "testing_list.txt"):
        (bad / "gsc_no_words" / name).write_text("")
    shutil.copytree(ws / "raw/gsc", bad / "gsc_empty_test")
    (bad / "gsc_empty_test/testing_list.txt").write_text("")
    write_shd(bad / "shd_test_label_99", 10)  # 10 classes, and a test sample labelled 99
    _edit_sample(bad / "shd_test_label_99/shd_test.h5", "labels", 3, lambda _: 99)
    write_shd(bad / "shd_train_label_99", 10)  # train numbers its 10 classes 0..8 and 99
    for i in range(36, 40):  # the samples of class 9
        _edit_sample(bad / "shd_train_label_99/shd_train.h5", "labels", i, lambda _: 99)
    for name, value in (("1e6", 1e6), ("negative", -0.5), ("nan", np.nan)):
        write_shd(bad / f"shd_time_{name}", 2)
        _edit_sample(
            bad / f"shd_time_{name}/shd_test.h5", "spikes/times", 1, lambda t, v=value: np.r_[t[:7], v, t[8:]]
        )
    for name, damage in (
        ("zero_byte", lambda b: b""),
        ("truncated", lambda b: b[: len(b) // 2]),
        ("not_wav", lambda b: b"not a wav\n"),
    ):
        shutil.copytree(ws / "raw/gsc", bad / f"gsc_{name}")
        _edit_file(bad / f"gsc_{name}" / TRAIN_WAV, damage)
    shutil.copytree(ws / "raw/gsc", bad / "gsc_three_unreadable")  # one damaged wav in each split
    for rel, damage in (
        (TRAIN_WAV, lambda b: b""),
        ("down/00000000_nohash_0.wav", lambda b: b[:-1000]),
        ("yes/00000001_nohash_0.wav", lambda b: b"RIFF"),
    ):
        _edit_file(bad / "gsc_three_unreadable" / rel, damage)
    shutil.copytree(ws / "prep/shd4", bad / "prep_empty_valid")
    valid = load_split(ws / "prep/shd4/valid")
    shutil.rmtree(bad / "prep_empty_valid/valid")
    save_split(bad / "prep_empty_valid/valid", valid.subset(np.zeros(0, np.int64)))
    shutil.copytree(ws / "raw/img", bad / "img_corrupt")
    (bad / "img_corrupt/train/b/1.png").write_bytes(b"not a png")
    write_images(bad / "img_no_val", {"train": ("a", "b", "c")})
    write_images(bad / "img_4_classes", ("a", "b", "c", "d"))
    write_images(bad / "img_val_renamed", {"train": ("a", "b", "c"), "val": ("a", "b", "x")})
    for name in ("es_no_list", "es_empty_val", "es_label_9"):
        shutil.copytree(ws / "raw/es", bad / name)
    (bad / "es_no_list/vallabel.txt").unlink()
    (bad / "es_empty_val/vallabel.txt").write_text("")
    lines = (bad / "es_label_9/trainlabel.txt").read_text().splitlines()
    (bad / "es_label_9/trainlabel.txt").write_text(
        "\n".join(lines[:-1] + [lines[-1].replace(" 2 ", " 9 ", 1)]) + "\n"
    )
    index = json.loads((ws / "prep/digits.json").read_text())
    (bad / "index_no_root.json").write_text(json.dumps({**index, "root": str(bad / "missing")}))
    (bad / "junk.pt").write_text("not a checkpoint\n")
    torch.save(torch.zeros(3), bad / "tensor.pt")
    (bad / "ckpt_of_ann").mkdir()
    for name in ("best.pt", "init.pt"):
        shutil.copy(ws / "models/ann.pt", bad / "ckpt_of_ann" / name)
        (bad / "ckpt_junk").mkdir(exist_ok=True)
        shutil.copy(bad / "junk.pt", bad / "ckpt_junk" / name)
    return ws


Change = Callable[[dict, Path], None]  # edits params; gets the workspace for the {ws} in paths


def _fill(cfg: dict, ws: Path) -> dict:
    return {k: v.format(ws=ws) if isinstance(v, str) else v for k, v in cfg.items()}


def _delays(name: str, **cfg) -> Change:
    return lambda p, ws: p["delays"]["sets"][name]["data"].update(_fill(cfg, ws))


def _pretrain(name: str, **cfg) -> Change:
    return lambda p, ws: p["pretrain"]["datasets"][name].update(_fill(cfg, ws))


def prepare(ds: str) -> list:
    return ["delays_prepare", "--dataset", ds, "--out", "{o}/prepared"]


def train(data: str, ds: str = "shd4", variant: str = "learned_delay") -> list:
    return [
        "delays_train",
        "--dataset",
        ds,
        "--variant",
        variant,
        "--seed",
        "0",
        "--data",
        data,
        "--ckpt",
        "{o}/ckpt",
        "--live",
        "{o}/live",
    ]


def evaluate(
    data: str, ckpt: str = "{ws}/models/delays", ds: str = "shd4", variant: str = "learned_delay"
) -> list:
    return [
        "delays_evaluate",
        "--dataset",
        ds,
        "--variant",
        variant,
        "--seed",
        "0",
        "--data",
        data,
        "--ckpt",
        ckpt,
        "--live",
        "{ws}/live/delays",
        "--out",
        "{o}/eval.json",
    ]


def index(ds: str) -> list:
    return ["pretrain_index", "--dataset", ds, "--out", "{o}/index.json"]


def training(stage: str, run: str, data: str) -> list:
    option = {"pretrain_ann": "--ann", "train_snn_scratch": "--run"}[stage]
    return [stage, option, run, "--data", data, "--ckpt", "{o}/model.pt", "--live", "{o}/live"]


def transfer(ann: str, pipe: str = "pipeS") -> list:
    return ["transfer", "--pipe", pipe, "--ann", ann, "--out", "{o}/snn.pt", "--report", "{o}/report.json"]


def finetune(init: str, data: str = "{ws}/prep/digits.json", pipe: str = "pipeS") -> list:
    return [
        "finetune_snn",
        "--pipe",
        pipe,
        "--init",
        init,
        "--data",
        data,
        "--ckpt",
        "{o}/model.pt",
        "--live",
        "{o}/live",
    ]


B = "{ws}/bad"
# id -> (params change or None, CLI arguments, pattern the single error line must match)
CASES: dict[str, tuple[Change | None, list, str]] = {
    # unknown names
    "prepare-unknown-set": (
        None,
        prepare("nope"),
        r"unknown dataset 'nope' \(defined under delays.sets: synth, shd4, shd3, gsc\)",
    ),
    "train-unknown-set": (
        None,
        train("{ws}/prep/shd4", ds="nope"),
        r"delays.sets.nope.train is not defined \(delays.sets defines: synth, shd4",
    ),
    "train-unknown-variant": (
        None,
        train("{ws}/prep/shd4", variant="slow"),
        r"delays.variant_recipe.slow is not defined \(delays.variant_recipe defines: no_delay, fixed_delay, ",
    ),
    "evaluate-unknown-variant": (None, evaluate("{ws}/prep/shd4", variant="slow"), r"unknown variant 'slow'"),
    "index-unknown-dataset": (
        None,
        index("nope"),
        r"unknown dataset 'nope' \(defined under pretrain.datasets: digits, digits_events\)",
    ),
    "ann-unknown-run": (
        None,
        training("pretrain_ann", "nope", "{ws}/prep/digits.json"),
        r"unknown ann 'nope' \(defined under pretrain.anns: digits\)",
    ),
    "scratch-unknown-run": (
        None,
        training("train_snn_scratch", "nope", "{ws}/prep/digits.json"),
        r"unknown run 'nope' \(defined under pretrain.baselines: digits, digits_events\)",
    ),
    "transfer-unknown-pipeline": (
        None,
        transfer("{ws}/models/ann.pt", pipe="pipeX"),
        r"unknown pipe 'pipeX' \(defined under pretrain.pipelines: pipeS, pipeD\)",
    ),
    "finetune-unknown-pipeline": (
        None,
        finetune("{ws}/models/pipeS.pt", pipe="pipeX"),
        r"unknown pipe 'pipeX'",
    ),
    # roots that do not exist
    "prepare-shd-no-root": (
        _delays("shd4", root=f"{B}/missing"),
        prepare("shd4"),
        r"bad/missing: dataset root not found \(expected a folder holding shd_train.h5, shd_test.h5\)",
    ),
    "prepare-gsc-no-root": (
        _delays("gsc", root=f"{B}/missing"),
        prepare("gsc"),
        r"bad/missing: GSC root not found \(expected one folder per word plus validation_list.txt",
    ),
    "convert-no-images": (
        None,
        ["es_imagenet_convert", "--images", f"{B}/missing", "--out", "{o}/es"],
        r"bad/missing/train: expected an ImageFolder split directory",
    ),
    "index-no-root": (
        _pretrain("digits", root=f"{B}/missing"),
        index("digits"),
        r"bad/missing: dataset root of pretrain.datasets.digits does not exist",
    ),
    "ann-index-root-gone": (
        None,
        training("pretrain_ann", "digits", f"{B}/index_no_root.json"),
        r"bad/missing: data root of dataset 'digits' not found",
    ),
    "ann-no-index": (
        None,
        training("pretrain_ann", "digits", f"{B}/missing.json"),
        r"missing.json: dataset index not found \(pretrain_index --dataset digits writes it\)",
    ),
    # wrong layouts
    "prepare-shd-no-labels": (
        _delays("shd4", root=f"{B}/shd_nolabels"),
        prepare("shd4"),
        r"shd_train.h5: missing dataset 'labels' \(expected SHD layout",
    ),
    "prepare-shd-float-units": (
        _delays("shd4", root=f"{B}/shd_float_units"),
        prepare("shd4"),
        r"shd_train.h5: 'spikes/units' holds variable-length float32 arrays; "
        r"expected one variable-length array of integer channel ids per sample",
    ),
    "prepare-shd-float-labels": (
        _delays("shd4", root=f"{B}/shd_float_labels"),
        prepare("shd4"),
        r"shd_train.h5: 'labels' holds float32 .*; expected one integer class per sample",
    ),
    "prepare-gsc-no-lists": (
        _delays("gsc", root=f"{B}/gsc_no_lists"),
        prepare("gsc"),
        r"testing_list.txt: split list not found",
    ),
    "prepare-gsc-no-word-folders": (
        _delays("gsc", root=f"{B}/gsc_no_words"),
        prepare("gsc"),
        r"gsc_no_words: no word folders found \(expected GSC v0.02 layout\)",
    ),
    "train-raw-root-as-data": (None, train("{ws}/raw/shd4"), r"raw/shd4/train: no prepared split store here"),
    "convert-no-val": (
        None,
        ["es_imagenet_convert", "--images", f"{B}/img_no_val", "--out", "{o}/es"],
        r"img_no_val/val: expected an ImageFolder split directory \(val/<class>/<image>\)",
    ),
    "index-imagefolder-no-val": (
        _pretrain("digits", root=f"{B}/img_no_val"),
        index("digits"),
        r"img_no_val/val: expected an ImageFolder split directory",
    ),
    "index-imagefolder-val-renamed": (
        _pretrain("digits", root=f"{B}/img_val_renamed"),
        index("digits"),
        r"train/ and val/ have different class folders \(only in train: \['c'\], only in val: \['x'\]\)",
    ),
    "index-es-no-label-file": (
        _pretrain("digits_events", root=f"{B}/es_no_list"),
        index("digits_events"),
        r"es_no_list/vallabel.txt: ES-ImageNet label file not found",
    ),
    # unreadable samples beyond max_skipped_fraction (0.001): found by the index before training, and by
    # training
    "index-corrupt-image": (
        _pretrain("digits", root=f"{B}/img_corrupt"),
        index("digits"),
        r"1 of 18 samples of dataset 'digits' \(.*img_corrupt\) are unreadable \(5.56 %\), "
        r"first: .*train/b/1.png: .*; more than max_skipped_fraction 0.001 allows",
    ),
    "ann-corrupt-image": (
        None,
        training("pretrain_ann", "digits", f"{B}/img_corrupt"),
        r"1 of 18 samples of dataset 'digits' are unreadable \(5.56 %\), first: .*train/b/1.png",
    ),
    # samples that cannot be right: labels outside the train file's classes, spike times outside the recording
    "prepare-shd-test-label-99": (
        _delays("shd4", root=f"{B}/shd_test_label_99"),
        prepare("shd4"),
        r"shd_test_label_99/shd_test.h5: sample 3 has label 99, outside the classes 0..9 "
        r"\(shd_train.h5 holds 10 distinct labels, expected numbered from 0\)$",
    ),
    "prepare-shd-train-label-99": (
        _delays("shd4", root=f"{B}/shd_train_label_99"),
        prepare("shd4"),
        r"shd_train_label_99/shd_train.h5: sample 36 has label 99, outside the classes 0..9 "
        r"\(shd_train.h5 holds 10 distinct labels",
    ),
    "prepare-shd-spike-time-1e6": (
        _delays("shd4", root=f"{B}/shd_time_1e6"),
        prepare("shd4"),
        r"shd_time_1e6/shd_test.h5: sample 1 has spike time 1e\+06 s, outside the recording "
        r"\(0 to 5.0 s; expected seconds from its start\)$",
    ),
    "prepare-shd-spike-time-negative": (
        _delays("shd4", root=f"{B}/shd_time_negative"),
        prepare("shd4"),
        r"shd_time_negative/shd_test.h5: sample 1 has spike time -0.5 s, outside the recording",
    ),
    "prepare-shd-spike-time-nan": (
        _delays("shd4", root=f"{B}/shd_time_nan"),
        prepare("shd4"),
        r"shd_time_nan/shd_test.h5: sample 1 has spike time nan s, outside the recording",
    ),
    # unreadable wav files: one of 9 is more than max_skipped_fraction 0.001 allows
    "prepare-gsc-zero-byte-wav": (
        _delays("gsc", root=f"{B}/gsc_zero_byte"),
        prepare("gsc"),
        r"^error: 1 of 9 samples of dataset 'gsc' \(.*gsc_zero_byte\) are unreadable \(11.11 %\), first: "
        r".*gsc_zero_byte/up/00000002_nohash_0.wav: not a readable wav file \(Format not recognised.\); "
        r"more than max_skipped_fraction 0.001 allows$",
    ),
    "prepare-gsc-truncated-wav": (
        _delays("gsc", root=f"{B}/gsc_truncated"),
        prepare("gsc"),
        r"1 of 9 samples of dataset 'gsc' .* first: .*gsc_truncated/up/00000002_nohash_0.wav: truncated wav "
        r"file \(\d+ bytes of its audio data missing\); more than max_skipped_fraction 0.001",
    ),
    "prepare-gsc-not-a-wav": (
        _delays("gsc", root=f"{B}/gsc_not_wav"),
        prepare("gsc"),
        r"1 of 9 samples of dataset 'gsc' .* first: .*gsc_not_wav/up/00000002_nohash_0.wav: not a readable "
        r"wav file \(.*\); more than max_skipped_fraction 0.001",
    ),
    # empty splits
    "prepare-shd-empty-test": (
        _delays("shd4", root=f"{B}/shd_empty_test"),
        prepare("shd4"),
        r"the test split of dataset 'shd4' is empty \(shd_test.h5 holds no samples\)",
    ),
    "prepare-gsc-empty-test": (
        _delays("gsc", root=f"{B}/gsc_empty_test"),
        prepare("gsc"),
        r"the test split of dataset 'gsc' is empty \(testing_list.txt holds no samples\)",
    ),
    "train-empty-valid": (
        None,
        train(f"{B}/prep_empty_valid"),
        r"prep_empty_valid/valid: the valid split is empty",
    ),
    "convert-drops-every-image": (
        lambda p, ws: p["pretrain"]["es_convert"].update(min_events=10**6),
        ["es_imagenet_convert", "--images", "{ws}/raw/img", "--out", "{o}/es"],
        r"raw/img/train: none of its 9 images gives min_events=1000000 events; "
        r"the train split would be empty",
    ),
    "index-es-empty-val": (
        _pretrain("digits_events", root=f"{B}/es_empty_val"),
        index("digits_events"),
        r"split 'val' of digits_events is empty",
    ),
    "scratch-es-empty-val": (
        _pretrain("digits_events", in_memory=False),
        training("train_snn_scratch", "digits_events", f"{B}/es_empty_val"),
        r"split 'val' of dataset 'digits_events' is empty",
    ),
    # class counts that do not match
    "evaluate-other-class-count": (
        None,
        evaluate("{ws}/prep/shd3", ds="shd3"),
        r"models/delays/best.pt has 4 classes, expected 3 \(the classes of dataset 'shd3'",
    ),
    "train-data-of-other-set": (
        None,
        train("{ws}/prep/shd3"),
        r"prep/shd3/train: prepared for dataset 'shd3', expected 'shd4'",
    ),
    "index-imagefolder-4-classes": (
        _pretrain("digits", root=f"{B}/img_4_classes"),
        index("digits"),
        r"split 'train' of digits has 4 classes \(a, b, c, d\) but num_classes is 3",
    ),
    "index-es-label-out-of-range": (
        _pretrain("digits_events", root=f"{B}/es_label_9"),
        index("digits_events"),
        r"has label 9, outside 0..2 \(num_classes 3\)",
    ),
    "ann-root-4-classes": (
        None,
        training("pretrain_ann", "digits", f"{B}/img_4_classes"),
        r"split 'train' of dataset 'digits' has 4 classes .* but num_classes is 3",
    ),
    "scratch-es-label-out-of-range": (
        None,
        training("train_snn_scratch", "digits_events", f"{B}/es_label_9"),
        r"has label 9, outside 0..2",
    ),
    "scratch-num-classes-changed": (
        _pretrain("digits", num_classes=5),
        training("train_snn_scratch", "digits", "{ws}/prep/digits.json"),
        r"split 'train' of dataset 'digits' has 3 classes \(a, b, c\) but num_classes is 5",
    ),
    "finetune-classes-differ": (
        _pretrain("digits", num_classes=5),
        finetune("{ws}/models/pipeS.pt"),
        r"pipeS.pt: the transferred SNN has 3 classes, expected 5 \(pretrain.datasets.digits.num_classes\)",
    ),
    # checkpoints (and indexes) of another model or dataset
    "evaluate-pretrain-checkpoint": (
        None,
        evaluate("{ws}/prep/shd4", ckpt=f"{B}/ckpt_of_ann"),
        r"best.pt: expected a paper-B delay-model checkpoint \(delays_train\), "
        r"found an ANN pretraining checkpoint",
    ),
    "evaluate-other-variant": (
        None,
        evaluate("{ws}/prep/shd4", variant="fixed_delay"),
        r"best.pt holds variant learned_delay, expected fixed_delay",
    ),
    "evaluate-not-torch": (
        None,
        evaluate("{ws}/prep/shd4", ckpt=f"{B}/ckpt_junk"),
        r"best.pt: not a readable torch file .*; expected a paper-B delay-model checkpoint",
    ),
    "evaluate-no-checkpoint": (
        None,
        evaluate("{ws}/prep/shd4", ckpt=f"{B}/missing"),
        r"missing/best.pt: not found; expected a paper-B delay-model checkpoint",
    ),
    "transfer-not-torch": (
        None,
        transfer(f"{B}/junk.pt"),
        r"junk.pt: not a readable torch file .*; expected an ANN pretraining checkpoint",
    ),
    "transfer-other-ann-run": (
        lambda p, ws: (
            p["pretrain"]["anns"].update(other={"dataset": "digits"})
            or p["pretrain"]["pipelines"]["pipeS"].update(ann="other")
        ),
        transfer("{ws}/models/ann.pt"),
        r"ann.pt: checkpoint of ANN run 'digits', pipeline pipeS expects 'other'",
    ),
    "transfer-a-tensor": (
        None,
        transfer(f"{B}/tensor.pt"),
        r"tensor.pt: expected an ANN pretraining checkpoint \(pretrain_ann\), found a torch.Tensor",
    ),
    "transfer-a-transfer-output": (
        None,
        transfer("{ws}/models/pipeS.pt"),
        r"pipeS.pt: expected an ANN pretraining checkpoint \(pretrain_ann\), found a transfer output",
    ),
    "transfer-a-delays-model": (
        None,
        transfer("{ws}/models/delays/best.pt"),
        r"best.pt: expected an ANN pretraining checkpoint \(pretrain_ann\), "
        r"found a paper-B delay-model checkpoint",
    ),
    "finetune-an-ann": (
        None,
        finetune("{ws}/models/ann.pt"),
        r"ann.pt: expected a transfer output \(transfer\), found an ANN pretraining checkpoint",
    ),
    "finetune-not-torch": (
        None,
        finetune(f"{B}/junk.pt"),
        r"junk.pt: not a readable torch file .*; expected a transfer output",
    ),
    "finetune-other-pipeline": (
        None,
        finetune("{ws}/models/pipeD.pt"),
        r"pipeD.pt: transfer output of pipeline pipeD, expected pipeline pipeS",
    ),
    "finetune-index-of-other-dataset": (
        None,
        finetune("{ws}/models/pipeS.pt", data="{ws}/prep/digits_events.json"),
        r"digits_events.json: index of dataset 'digits_events', expected the index of 'digits'",
    ),
    "ann-index-of-other-dataset": (
        None,
        training("pretrain_ann", "digits", "{ws}/prep/digits_events.json"),
        r"index of dataset 'digits_events', expected the index of 'digits'",
    ),
}


def _leftovers(out_dir: Path) -> list[str]:
    """Everything under the case's output folder (outputs, temporary siblings, resume states)."""
    return sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*")) if out_dir.exists() else []


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_leaves_nothing(
    case: str, ws: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.delenv("PIPELINE_DEBUG", raising=False)
    change, argv, expected = CASES[case]
    params = tiny_params(ws)
    if change is not None:
        change(params, ws)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    out_dir = tmp_path / "out"
    args = [a.format(ws=ws, o=out_dir) for a in argv]
    capsys.readouterr()
    code = cli(params_file, *args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, f"exit code {code}, stderr:\n{err}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"expected one error line, got:\n{err}"
    assert re.search(expected, lines[0]), f"{lines[0]!r} does not match {expected!r}"
    assert _leftovers(out_dir) == [], f"left behind: {_leftovers(out_dir)}"


@pytest.mark.parametrize(
    "case", ["prepare-shd-float-labels", "evaluate-pretrain-checkpoint", "finetune-an-ann"]
)
def test_the_real_process_prints_one_line_and_exits_2(case: str, ws: Path, tmp_path: Path) -> None:
    """The same through `python -m pipeline`: no traceback, no warning, nothing else on stderr."""
    change, argv, expected = CASES[case]
    params = tiny_params(ws)
    if change is not None:
        change(params, ws)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out_dir = tmp_path / "out"
    args = [a.format(ws=ws, o=out_dir) for a in argv]
    env = {k: v for k, v in os.environ.items() if k != "PIPELINE_DEBUG"}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", args[0], "--params", "params.yaml", *args[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert re.search(expected, lines[0])
    assert _leftovers(out_dir) == []


def _driver_command(tmp_path: Path, params: dict, dataset: str) -> list[str]:
    """delays_prepare exactly as Snakemake's rule runs it (DVC's reads params.yaml without --params)."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    driver_options = ["--params", "params.yaml", "--progress", "lines"]
    return [
        sys.executable,
        "-m",
        "pipeline",
        *driver_options,
        "delays_prepare",
        "--dataset",
        dataset,
        "--out",
        "out/prepared",
        "--log",
        "logs/delays_prepare.log",
    ]


def _limit_memory() -> None:
    """8 GiB of address space (torch maps about 5): a runaway allocation fails at once instead of filling
    the shared machine."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))


DRIVER_CASES = ["prepare-shd-test-label-99", "prepare-shd-spike-time-1e6", "prepare-gsc-zero-byte-wav"]


@pytest.mark.parametrize("case", DRIVER_CASES)
def test_prepare_run_by_a_driver_stops_with_one_line(case: str, ws: Path, tmp_path: Path) -> None:
    """Bad samples stop delays_prepare run as a driver runs it: exit 2, the one error line on stderr and in
    the log, no output; memory stays bounded (a spike time of 1e6 s once asked for frames of 257 GiB)."""
    change, _, expected = CASES[case]
    params = tiny_params(ws)
    change(params, ws)
    dataset = "gsc" if "gsc" in case else "shd4"
    env = {k: v for k, v in os.environ.items() if k != "PIPELINE_DEBUG"}
    proc = subprocess.run(
        _driver_command(tmp_path, params, dataset),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        preexec_fn=_limit_memory,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(expected, lines[0]), proc.stderr
    assert lines[0] in (tmp_path / "logs/delays_prepare.log").read_text().splitlines()
    assert _leftovers(tmp_path / "out") == []


def test_prepare_skips_unreadable_wavs_within_max_skipped_fraction(ws: Path, tmp_path: Path) -> None:
    """Unreadable wavs up to max_skipped_fraction are skipped: named in a warning line and in each split's
    metadata, left out of the prepared splits; the other samples are prepared as from an intact copy."""
    params = tiny_params(ws)
    _delays("gsc", root=f"{B}/gsc_three_unreadable")(params, ws)
    params["max_skipped_fraction"] = 0.5
    env = {k: v for k, v in os.environ.items() if k != "PIPELINE_DEBUG"}
    proc = subprocess.run(
        _driver_command(tmp_path, params, "gsc"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        preexec_fn=_limit_memory,
    )
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and re.fullmatch(
        r"warning: 3 of 9 samples of dataset 'gsc' \(.*gsc_three_unreadable\) are unreadable \(33.33 %\), "
        r"first: .*/up/00000002_nohash_0.wav: not a readable wav file \(Format not recognised.\); "
        r"skipped \(max_skipped_fraction 0.5\)",
        warnings[0],
    ), warnings
    assert warnings[0] in (tmp_path / "logs/delays_prepare.log").read_text().splitlines()
    intact = _prepare_in_process(ws, tmp_path / "intact")
    for split, bad_wav in (
        ("train", TRAIN_WAV),
        ("valid", "down/00000000_nohash_0.wav"),
        ("test", "yes/00000001_nohash_0.wav"),
    ):
        got, ref = load_split(tmp_path / "out/prepared" / split), load_split(intact / split)
        [reason] = got.meta["unreadable"]
        assert reason.startswith(str(ws / "bad/gsc_three_unreadable" / bad_wav) + ": ")
        assert len(got) == got.meta["n_samples"] == len(ref) - 1 == 2
        keep = [i for i, (rel, _) in enumerate(split_files(ws / "raw/gsc")[0][split]) if rel != bad_wav]
        kept = ref.subset(keep)
        assert got.labels.tolist() == kept.labels.tolist()
        np.testing.assert_array_equal(got.frames, kept.frames)  # bit-identical: the batch keeps its size
    assert "truncated wav file" in load_split(tmp_path / "out/prepared/valid").meta["unreadable"][0]


def _prepare_in_process(ws: Path, out: Path) -> Path:
    params = tiny_params(ws)
    (out.parent / "intact.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert cli(out.parent / "intact.yaml", "delays_prepare", "--dataset", "gsc", "--out", out) == 0
    assert load_split(out / "train").meta["unreadable"] == []
    return out
