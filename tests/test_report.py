"""The report stage on fake finished runs: readable tables (markdown, HTML), the CSV and metrics
for `compare` and DVC, and the plots."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pandas as pd
import pytest

from pipeline.delays.plots import plot_delay_distributions, plot_training_curves
from pipeline.delays.table import build_table, display_table
from pipeline.io import read_json, write_json
from pipeline.params.load import load_params
from pipeline.pretrain.plots import plot_time_accuracy
from tests.conftest import REPO, call_stage

KERNEL = 5
LAYERS = ["hidden 1", "output"]


def _eval(dataset: str, variant: str, seed: int, epochs: int = 3) -> dict:
    """What delays_evaluate writes for one run (tiny histograms over K = 5 steps)."""
    cont_edges = [-0.5 + i / 4 for i in range(4 * KERNEL + 1)]
    rounded_edges = [-0.5 + i for i in range(KERNEL + 1)]
    has_delays = variant != "no_delay"
    comb = [[(i % 4 == 2) * (3 + i) for i in range(4 * KERNEL)] for _ in LAYERS]  # integer delays
    spread = [[1 + (i * 7 + seed) % 5 for i in range(4 * KERNEL)] for _ in LAYERS]
    return {
        "dataset": dataset,
        "variant": variant,
        "seed": seed,
        "n_params": 5376 if variant == "learned_delay" else 2720,
        "test_acc": 80.0 + seed + 10 * has_delays,
        "best_test_acc": 82.0 + seed + 10 * has_delays,
        "valid_acc": 79.0,
        "time_step_ms": 10.0,
        "kernel": KERNEL,
        "epochs": epochs,
        "delays": {
            "unit": "steps",
            "layers": LAYERS if has_delays else [],
            "continuous_edges": cont_edges,
            "rounded_edges": rounded_edges,
            "init": (comb if variant == "fixed_delay" else spread) if has_delays else [],
            "end": (comb if variant == "fixed_delay" else [h[::-1] for h in spread]) if has_delays else [],
            "rounded": [[4, 6, 8, 6, 4] for _ in LAYERS] if has_delays else [],
        },
    }


def _write_delays_run(root: Path, dataset: str, variant: str, seed: int, epochs: int = 3) -> Path:
    live = root / "results/delays/train" / dataset / variant / f"s{seed}"
    history = [
        {
            "epoch": e,
            "elapsed_s": 0.5 * e,
            "train_loss": 2.0 / e,
            "train_acc": 30.0 * e,
            "lr": 1e-3,
            "lr_positions": 0.1,
            "sigma": 1.0,
            "valid_loss": 2.2 / e,
            "valid_acc": 25.0 * e + seed,
            "test_acc": 24.0 * e + seed,
        }
        for e in range(1, epochs + 1)
    ]
    write_json(live / "history.json", history)
    write_json(live / "config.json", {"dataset": dataset, "variant": variant, "seed": seed})
    write_json(live / "metrics.json", {"best_test_acc": history[-1]["test_acc"], "epochs": epochs})
    write_json(
        root / "results/delays/eval" / dataset / variant / f"s{seed}.json",
        _eval(dataset, variant, seed, epochs),
    )
    return live


def _write_pretrain_run(root: Path, role: str, run: str, dataset: str, accs: list[float], **config) -> dict:
    folder = {"pretrain_ann": "ann", "finetune_snn": "finetune", "train_snn_scratch": "scratch"}[role]
    history = [
        {
            "epoch": e + 1,
            "elapsed_s": 2.0 * (e + 1),
            "train_loss": 1.0,
            "train_acc": a,
            "lr": 0.1,
            "val_loss": 1.0,
            "val_acc": a,
        }
        for e, a in enumerate(accs)
    ]
    files = {
        "config": {
            "role": role,
            "run": run,
            "dataset": dataset,
            "dataset_config": {"format": "imagefolder", "num_classes": 10},
            "model": {"arch": "tiny", "neuron": "lif", "learnable_decay": False, "decoder_hidden": None},
            **config,
        },
        "metrics": {"best_val_acc": max(accs), "epochs": len(accs), "elapsed_s": history[-1]["elapsed_s"]},
        "history": history,
    }
    for name, content in files.items():
        write_json(root / "results/pretrain" / folder / run / f"{name}.json", content)
    return files


def _pretrain_runs(root: Path) -> list[dict]:
    return [
        _write_pretrain_run(root, "pretrain_ann", "digits", "digits", [50.0, 70.0]),
        _write_pretrain_run(root, "train_snn_scratch", "digits", "digits", [20.0, 40.0, 60.0]),
        _write_pretrain_run(
            root,
            "finetune_snn",
            "pipeS",
            "digits",
            [55.0, 65.0],
            ann_run="digits",
            baseline="digits",
            source_dataset="digits",
        ),
    ]


@pytest.fixture()
def reported(tmp_path, monkeypatch):
    """The report stage run in a folder of fake finished runs: synth and shd, 3 variants, 2 seeds; one
    pipeline."""
    params = copy.deepcopy(load_params(REPO / "params.yaml"))
    params["delays"].update(datasets=["synth", "shd"], seeds=[0, 1])
    pre = params["pretrain"]
    pre["anns"] = {"digits": pre["anns"]["digits"]}
    pre["baselines"] = {"digits": pre["baselines"]["digits"]}
    pre["pipelines"] = {"pipeS": pre["pipelines"]["pipeS"]}
    for dataset in ("synth", "shd"):
        for variant in ("no_delay", "fixed_delay", "learned_delay"):
            for seed in (0, 1):
                _write_delays_run(tmp_path, dataset, variant, seed)
    _pretrain_runs(tmp_path)
    monkeypatch.chdir(tmp_path)
    call_stage(
        "report",
        params,
        metrics=Path("results/metrics.json"),
        curves=Path("results/curves"),
        tables=Path("results/tables"),
        plots=Path("results/plots"),
    )
    return tmp_path / "results"


def _markdown_rows(text: str) -> list[list[str]]:
    """The cells of every row of the markdown table in `text` (header first, the separator skipped)."""
    lines = [line for line in text.splitlines() if line.startswith("|") and not set(line) <= set("|:- ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_delays_table_reads_like_the_paper(reported):
    text = (reported / "tables/delays.md").read_text()
    header, *rows = _markdown_rows(text)
    assert header == [
        "dataset",
        "method",
        "#params",
        "test %",
        "best-epoch test %",
        "seeds",
        "epochs",
        "paper %",
    ]
    assert not [h for h in header if re.search(r"[a-z]_[a-z]", h)]  # no snake_case
    assert [r[:2] for r in rows] == [
        [d, m] for d in ("SHD", "synthetic") for m in ("no delays", "fixed random delays", "learned delays")
    ]
    shd_learned = rows[2]
    assert shd_learned[2:] == ["5,376", "90.50 ± 0.71", "92.50 ± 0.71", "2", "3", "95.07 ± 0.24"]
    assert (
        rows[0][-1] == "—" and rows[5][-1] == "—"
    )  # the paper reports learned delays only, no synthetic set
    for bad in ("nan", "True", "False", "(n="):
        assert bad not in text
    assert max(len(line) for line in text.splitlines() if line.startswith("|")) <= 120  # fits a wide terminal


def test_one_seed_has_no_std_and_gsc_an_approximate_paper_number():
    shown = display_table(build_table([_eval("gsc", "learned_delay", 0, epochs=1)]))
    assert shown.iloc[0].tolist() == [
        "GSC-35",
        "learned delays",
        "5,376",
        "90.00",
        "92.00",
        "1",
        "1",
        "~95.3",
    ]


def test_the_epochs_column_tells_a_short_check_and_seeds_that_differ():
    evals = [_eval("shd", "learned_delay", seed, epochs=1) for seed in (0, 1)]
    evals += [_eval("shd", "no_delay", 0, epochs=8), _eval("shd", "no_delay", 1, epochs=12)]
    table = build_table(evals)
    assert table[["epochs", "epochs_max"]].values.tolist() == [[8, 12], [1, 1]]
    assert display_table(table)["epochs"].tolist() == ["8–12", "1"]
    old = {k: v for k, v in _eval("shd", "no_delay", 0).items() if k != "epochs"}  # written before the column
    assert display_table(build_table([old]))["epochs"].tolist() == ["—"]


def test_pretrain_table_readable(reported):
    text = (reported / "tables/pretrain.md").read_text()
    header, *rows = _markdown_rows(text)
    assert header[:7] == ["dataset", "run", "model", "neuron", "initialisation", "top-1 %", "epochs"]
    assert [(r[1], r[4], r[header.index("baseline")]) for r in rows] == [
        ("digits", "scratch", "—"),
        ("pipeS", "pretrained (digits ANN)", "digits"),
    ]  # README maps rows by run
    assert "nan" not in text and "True" not in text and "None" not in text
    assert "run: the run's name in params" in text  # the notes say what the columns hold
    assert "pretrained elsewhere" not in text  # explained only when a row is


def test_a_pipeline_whose_ann_came_from_a_file_was_pretrained_elsewhere(tmp_path, monkeypatch):
    """An ANN run with `weights` (imported: 0 epochs, 0 s) gives its pipeline no ANN time and no paper ratio,
    and the report's table says so."""
    imagenet = {"dataset_config": {"format": "imagefolder", "num_classes": 1000}}  # a paper dataset
    _write_pretrain_run(tmp_path, "pretrain_ann", "digits", "digits", [50.0, 70.0])  # trained here: 4 s
    _write_pretrain_run(tmp_path, "train_snn_scratch", "digits", "digits", [20.0, 40.0, 60.0], **imagenet)
    for pipe, ann in (("pipeS", "digits"), ("pipeTV", "tv18")):
        _write_pretrain_run(
            tmp_path,
            "finetune_snn",
            pipe,
            "digits",
            [55.0, 65.0],
            ann_run=ann,
            baseline="digits",
            source_dataset="digits",
            **imagenet,
        )
    live = tmp_path / "results/pretrain/ann/tv18"  # what pretrain_ann writes for an import
    write_json(
        live / "config.json",
        {
            "role": "pretrain_ann",
            "run": "tv18",
            "dataset": "digits",
            "weights": {"file": "resnet18.pt", "sha256": "0" * 64},
        },
    )
    write_json(live / "metrics.json", {"best_val_acc": None, "best_epoch": 0, "epochs": 0, "elapsed_s": 0.0})
    write_json(live / "history.json", [])
    for variant in ("no_delay", "fixed_delay", "learned_delay"):
        _write_delays_run(tmp_path, "synth", variant, 0)
    params = copy.deepcopy(load_params(REPO / "params.yaml"))
    params["delays"].update(datasets=["synth"], seeds=[0])
    pre = params["pretrain"]
    pre["anns"] = {
        "digits": pre["anns"]["digits"],
        "tv18": {"dataset": "digits", "weights": "resnet18.pt", "ann": {"epochs": 0}},
    }
    pre["baselines"] = {"digits": pre["baselines"]["digits"]}
    pre["pipelines"] = {
        "pipeS": pre["pipelines"]["pipeS"],
        "pipeTV": {"ann": "tv18", "target": "digits", "baseline": "digits", "stem": "adapt"},
    }
    monkeypatch.chdir(tmp_path)
    call_stage(
        "report",
        params,
        metrics=Path("results/metrics.json"),
        curves=Path("results/curves"),
        tables=Path("results/tables"),
        plots=Path("results/plots"),
    )
    table = pd.read_csv(tmp_path / "results/tables/pretrain.csv").set_index("run")
    # scratch best 60 % at 6 s; both pipelines reach it after 4 s of SNN fine-tuning
    assert table.loc["pipeTV", "time_s"] == 4.0 and table.loc["pipeTV", "time_ratio"] == pytest.approx(4 / 6)
    assert table.loc["pipeS", "time_s"] == 8.0 and table.loc["pipeS", "time_ratio"] == pytest.approx(8 / 6)
    text = (tmp_path / "results/tables/pretrain.md").read_text()
    header, *rows = _markdown_rows(text)
    shown = {r[1]: dict(zip(header, r)) for r in rows}
    assert shown["pipeTV"]["initialisation"] == "pretrained elsewhere"
    assert shown["pipeTV"]["baseline"] == "digits"
    assert shown["pipeTV"]["epochs"] == "0 ANN + 2 SNN" and shown["pipeTV"]["training time (s)"] == "4.0"
    assert shown["pipeS"]["paper ratio"] == "1/10 (journal 1/8)"
    assert shown["pipeTV"]["paper ratio"] == "—"  # the paper's ratio counts its own ANN pretraining
    assert "- pretrained elsewhere: the ANN came from a `weights` file" in text


def test_html_tables_and_csv(reported):
    for name in ("delays", "pretrain"):
        page = (reported / f"tables/{name}.html").read_text()
        assert page.startswith("<!DOCTYPE html>") and "<table>" in page and 'charset="utf-8"' in page
    assert "95.07 ± 0.24" in (reported / "tables/delays.html").read_text()
    csv = (reported / "tables/delays.csv").read_text().splitlines()
    assert csv[0] == (
        "dataset,method,n_params,seeds,epochs,epochs_max,test_acc_mean,test_acc_std,"
        "best_test_acc_mean,best_test_acc_std,paper_acc_mean,paper_acc_std"
    )
    assert len(csv) == 1 + 6  # one row per dataset x method


def test_metrics_are_flat_numbers_per_row(reported):
    metrics = read_json(reported / "metrics.json")
    assert set(metrics["delays"]) == {
        f"{d}/{m}" for d in ("synth", "shd") for m in ("no_delay", "fixed_delay", "learned_delay")
    }
    assert metrics["delays"]["shd/learned_delay"]["test_acc_mean"] == pytest.approx(90.5)
    assert metrics["delays"]["shd/learned_delay"]["paper_acc_mean"] == pytest.approx(95.07)
    assert "paper_acc_mean" not in metrics["delays"]["synth/no_delay"]  # NaN is left out
    assert set(metrics["pretrain"]) == {"digits/digits", "digits/pipeS"}
    for rows in metrics.values():
        for values in rows.values():
            assert all(isinstance(v, float) for v in values.values())


def test_plots_written(reported):
    for name in ("delays_training", "delays_distribution", "pretrain_time_accuracy"):
        assert (reported / f"plots/{name}.png").stat().st_size > 1000


def test_delay_plots_without_any_delays(tmp_path):
    live = _write_delays_run(tmp_path, "synth", "no_delay", 0)
    plot_training_curves([live], tmp_path / "curves.png")
    plot_delay_distributions(
        [tmp_path / "results/delays/eval/synth/no_delay/s0.json"], tmp_path / "delays.png"
    )
    assert (tmp_path / "curves.png").stat().st_size > 0 and (tmp_path / "delays.png").stat().st_size > 0


def test_delay_plots_fixed_and_learned_with_different_lengths(tmp_path):
    lives = [
        _write_delays_run(tmp_path, "shd", "fixed_delay", 0, epochs=2),
        _write_delays_run(tmp_path, "shd", "learned_delay", 0, epochs=4),
        _write_delays_run(tmp_path, "shd", "learned_delay", 1, epochs=3),
    ]
    plot_training_curves(lives, tmp_path / "curves.png")
    plot_delay_distributions(
        sorted((tmp_path / "results/delays/eval").rglob("*.json")), tmp_path / "delays.png"
    )
    assert (tmp_path / "curves.png").stat().st_size > 0 and (tmp_path / "delays.png").stat().st_size > 0


def test_time_accuracy_plot_with_and_without_a_pipeline(tmp_path):
    runs = _pretrain_runs(tmp_path)
    plot_time_accuracy(runs, tmp_path / "plot.png")
    plot_time_accuracy([r for r in runs if r["config"]["role"] == "train_snn_scratch"], tmp_path / "none.png")
    assert (tmp_path / "plot.png").stat().st_size > 0 and (tmp_path / "none.png").stat().st_size > 0
