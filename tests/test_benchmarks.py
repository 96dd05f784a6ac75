"""The benchmark runner (python -m benchmarks) and the one-epoch params of benchmarks 4-5.

The benchmarks themselves are run by `make bench`, not here (minutes); the
binning benchmark's equality with the per-sample loop is in test_delays_data.py.
"""

from __future__ import annotations

import json
import sys
import types

import pytest

import benchmarks.__main__ as runner
from benchmarks import common
from benchmarks.project import one_epoch_params, training_live_dirs
from pipeline.params.load import structure_problems


def test_headline_prefers_declared_numbers_else_finds_ratios():
    assert runner.headline({"ratios": {"a vs b": 2.0}, "absolutes": {"x (s)": 3.1}, "ratio_other": 9}) == {
        "a vs b": 2.0,
        "x (s)": 3.1,
    }
    found = runner.headline(
        {"inner": {"ratio_fast_vs_slow": 4.5, "seconds": 1.0, "speedup": 2}, "flag_ratio": True}
    )
    assert found == {"inner.ratio_fast_vs_slow": 4.5, "inner.speedup": 2}


@pytest.fixture
def fake_benchmarks(tmp_path, monkeypatch):
    """Three registered benchmarks: one that works, one that raises, one whose module does not exist."""
    ok = types.ModuleType("benchmarks.fake_ok")
    ok.main = lambda quick=False: {"ratios": {"fast vs slow": 3.0 if not quick else 1.0}}
    bad = types.ModuleType("benchmarks.fake_bad")

    def broken(quick=False):
        raise RuntimeError("boom")

    bad.main = broken
    monkeypatch.setitem(sys.modules, "benchmarks.fake_ok", ok)
    monkeypatch.setitem(sys.modules, "benchmarks.fake_bad", bad)
    monkeypatch.setattr(
        runner,
        "BENCHMARKS",
        {
            "ok": "benchmarks.fake_ok",
            "bad": "benchmarks.fake_bad",
            "absent": "benchmarks.bench_not_written_yet",
        },
    )
    out = tmp_path / "results" / "bench"
    monkeypatch.setattr(common, "RESULTS", out)
    monkeypatch.setattr(runner, "RESULTS", out)
    return out


def test_runner_writes_results_and_summary_and_survives_failures(fake_benchmarks, capsys):
    assert runner.main([]) == 1  # one benchmark failed
    printed = capsys.readouterr().out
    assert "benchmarks/bench_not_written_yet.py does not exist yet" in printed
    assert "fast vs slow" in printed and "3" in printed
    assert json.loads((fake_benchmarks / "ok.json").read_text()) == {"ratios": {"fast vs slow": 3.0}}
    assert not (fake_benchmarks / "bad.json").exists()
    summary = json.loads((fake_benchmarks / "summary.json").read_text())
    assert {k: v["status"] for k, v in summary["benchmarks"].items()} == {
        "ok": "ok",
        "bad": "failed",
        "absent": "missing",
    }
    assert "boom" in summary["benchmarks"]["bad"]["error"]

    # --only reruns one benchmark and keeps the other entries of the summary
    assert runner.main(["--only", "ok", "--quick"]) == 0
    summary = json.loads((fake_benchmarks / "summary.json").read_text())
    assert summary["benchmarks"]["ok"]["headline"] == {"fast vs slow": 1.0}
    assert summary["benchmarks"]["bad"]["status"] == "failed"


def test_one_epoch_params_are_valid_defaults_with_one_epoch():
    for quick in (False, True):
        params = one_epoch_params(quick)
        assert structure_problems(params) == []
        assert all(cfg["train"]["epochs"] == 1 for cfg in params["delays"]["sets"].values())
        assert all(params["pretrain"][block]["epochs"] == 1 for block in ("ann", "finetune", "scratch"))
    stages = training_live_dirs(one_epoch_params(False))
    assert set(stages) == {
        "delays_train@synth-no_delay-0",
        "delays_train@synth-fixed_delay-0",
        "delays_train@synth-learned_delay-0",
        "pretrain_ann@digits",
        "pretrain_ann@motion",
        "finetune_snn@pipeS",
        "finetune_snn@pipeD",
        "finetune_snn@pipeU",
        "train_snn_scratch@digits",
        "train_snn_scratch@digits_events",
        "train_snn_scratch@motion_events",
    }
