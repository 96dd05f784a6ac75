"""Paper-B stage functions end to end on tiny data: synth -> prepare -> train -> evaluate (the tables and
plots built from such results: tests/test_report.py)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from pipeline.params.configs import DelaysNet
from pipeline.data.prepared import load_split
from pipeline.data.synth_shd import write_shd_file
from pipeline.io import read_json
from pipeline.params.load import deep_merge, load_params, raise_problems, structure_problems
from pipeline.drivers.resolve import UnknownName
from tests.conftest import REPO, call_stage
from tests.tiny_data import write_tiny_gsc


PRESET = REPO / "workflow" / "presets" / "paper-delays.yaml"


@pytest.fixture()
def params(tmp_path):
    """params.yaml with the paper-delays preset merged in (defines shd, ssc, gsc) and a tiny synth set."""
    import yaml

    p = deep_merge(copy.deepcopy(load_params(REPO / "params.yaml")), yaml.safe_load(PRESET.read_text()))
    p["device"] = "cpu"
    d = p["delays"]
    d["synth"].update(n_units=40, n_classes=4, n_groups=3, n_train=48, n_test=16, onset_max_ms=30.0)
    d["sets"]["synth"]["data"].update(root=str(tmp_path / "raw"), pool=4, n_channels=40, valid_fraction=0.25)
    d["sets"]["synth"]["train"].update(hidden=[8], epochs=2, batch_size=16, max_delay_ms=50)
    d["recipe"]["eval_batch_size"] = 32
    raise_problems(structure_problems(p))
    return p


def test_end_to_end_synth(params, tmp_path):
    call_stage("delays_synth", params, out=tmp_path / "raw")
    assert sorted(f.name for f in (tmp_path / "raw").iterdir()) == [
        "shd_test.h5",
        "shd_train.h5",
        "synth_config.json",
    ]
    call_stage("delays_prepare", params, dataset="synth", out=tmp_path / "prep")
    splits = {s: load_split(tmp_path / "prep" / s) for s in ("train", "valid", "test")}
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [36, 12, 16]
    assert splits["train"].n_channels == 10 and splits["test"].meta["n_classes"] == 4
    evals, lives = [], []
    for variant in ("no_delay", "learned_delay"):
        ckpt, live, out = (
            tmp_path / f"ck_{variant}",
            tmp_path / f"live_{variant}",
            tmp_path / f"{variant}.json",
        )
        call_stage(
            "delays_train",
            params,
            dataset="synth",
            variant=variant,
            seed=0,
            data=tmp_path / "prep",
            ckpt=ckpt,
            live=live,
        )
        assert {f.name for f in ckpt.iterdir()} == {"init.pt", "best.pt", "last.pt"}
        metrics = read_json(live / "metrics.json")
        assert {
            "best_valid_epoch",
            "test_acc_at_best_valid",
            "best_test_acc",
            "best_test_epoch",
            "epochs",
            "elapsed_s",
            "n_params",
        } <= set(metrics)
        history = read_json(live / "history.json")
        assert len(history) == 2 and {
            "train_loss",
            "train_acc",
            "valid_acc",
            "test_acc",
            "lr",
            "lr_positions",
            "sigma",
        } <= set(history[0])
        assert (live / "config.json").is_file()
        call_stage(
            "delays_evaluate",
            params,
            dataset="synth",
            variant=variant,
            seed=0,
            data=tmp_path / "prep",
            ckpt=ckpt,
            live=live,
            out=out,
        )
        result = read_json(out)
        for key in (
            "dataset",
            "variant",
            "seed",
            "test_acc",
            "valid_acc",
            "selected_epoch",
            "best_test_acc",
            "best_test_epoch",
            "n_params",
            "delays",
        ):
            assert key in result
        assert result["test_acc"] == pytest.approx(
            metrics["test_acc_at_best_valid"]
        )  # same rounded evaluation
        assert result["selected_epoch"] == metrics["best_valid_epoch"]
        evals.append(result)
        lives.append(live)
    no, learned = evals
    assert learned["n_params"] == 2 * no["n_params"] - 2 * 8  # positions double the synapses, BN counted once
    assert no["delays"]["init"] == []
    k = learned["kernel"]
    assert k == 5 and len(learned["delays"]["rounded"]) == 2
    assert all(sum(h) == n for h, n in zip(learned["delays"]["rounded"], (10 * 8, 8 * 4)))
    assert all(sum(h) == n for h, n in zip(learned["delays"]["end"], (10 * 8, 8 * 4)))
    assert len(learned["delays"]["rounded_edges"]) == k + 1 and len(learned["delays"]["init"][0]) == 4 * k
    assert learned["delays"]["layers"] == ["hidden 1", "output"]


def test_preset_gives_the_papers_parameter_counts(params):
    from pipeline.delays.train import build_model

    sets = params["delays"]["sets"]
    counts = {
        (name, v): sum(
            p.numel()
            for p in build_model(140, n_out, v, DelaysNet(**sets[name]["train"]), 10).parameters()
            if p.requires_grad
        )
        for name, n_out in (("shd", 20), ("ssc", 35), ("gsc", 35))
        for v in ("no_delay", "learned_delay")
    }
    assert counts == {
        ("shd", "no_delay"): 107_520,
        ("shd", "learned_delay"): 214_016,
        ("ssc", "no_delay"): 616_960,
        ("ssc", "learned_delay"): 1_230_848,
        ("gsc", "no_delay"): 616_960,
        ("gsc", "learned_delay"): 1_230_848,
    }


def test_unknown_variant(params, tmp_path):
    with pytest.raises(
        UnknownName,
        match=r"delays.variant_recipe.bogus is not defined "
        r"\(delays.variant_recipe defines: no_delay, fixed_delay, learned_delay\)",
    ):
        call_stage(
            "delays_train",
            params,
            dataset="synth",
            variant="bogus",
            seed=0,
            data=tmp_path,
            ckpt=tmp_path,
            live=tmp_path,
        )


def test_prepare_ssc_and_gsc_formats(params, tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "ssc").mkdir()
    for i, split in enumerate(("train", "valid", "test")):
        times = [np.sort(rng.uniform(0, 0.2, 30)).astype(np.float32) for _ in range(3 + i)]
        units = [rng.integers(0, 700, 30).astype(np.uint16) for _ in times]
        labels = np.arange(len(times), dtype=np.uint8) % 3
        write_shd_file(
            tmp_path / "ssc" / f"ssc_{split}.h5", times, units, labels, np.zeros(len(times)), ["a"], {}
        )
    params["delays"]["sets"]["ssc"]["data"]["root"] = str(tmp_path / "ssc")
    call_stage("delays_prepare", params, dataset="ssc", out=tmp_path / "prep_ssc")
    sizes = [len(load_split(tmp_path / "prep_ssc" / s)) for s in ("train", "valid", "test")]
    assert sizes == [3, 4, 5]  # SSC's own valid file, no hold-out
    write_tiny_gsc(tmp_path / "gsc", ["down", "up", "yes"], per_word=3)
    params["delays"]["sets"]["gsc"]["data"]["root"] = str(tmp_path / "gsc")
    call_stage("delays_prepare", params, dataset="gsc", out=tmp_path / "prep_gsc")
    test = load_split(tmp_path / "prep_gsc" / "test")
    assert (
        len(test) == 3 and test.meta["classes"] == ["down", "up", "yes"] and test.frames.shape == (303, 140)
    )
    assert test.frames.dtype == np.float32
    with pytest.raises(Exception, match="data/raw/shd|dataset root not found"):
        call_stage("delays_prepare", params, dataset="shd", out=tmp_path / "prep_shd")
