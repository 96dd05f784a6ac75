"""Smoke test of benchmarks/bench_scale.py in quick mode (about a minute: 19 child processes).

Quick sizes are too small for its targets; this checks that every measurement runs and reports,
and the one property that holds at any size: two readers of a store share its pages.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from benchmarks import bench_scale
from pipeline.data import gsc, shd


def test_written_sets_are_in_the_official_layouts(tmp_path):
    n = bench_scale.write_spike_set(tmp_path / "ssc", "ssc", fraction=0.001, events=50)
    with shd.SpikeFile(tmp_path / "ssc" / "ssc_valid.h5") as f:
        times, units = f.events(0, len(f))
        assert len(f) == 35 and all(np.all(np.diff(t) >= 0) and t.max() < 1.0 for t in times if len(t))
        assert [len(t) for t in times] == [len(u) for u in units] and f.labels.max() == 34
    assert n == sum(max(round(c * 0.001), 35) for c in bench_scale.FULL_SIZES["ssc"].values())
    with h5py.File(tmp_path / "ssc" / "ssc_train.h5") as f:
        assert set(f) == {"spikes", "labels", "extra"}
    bench_scale.write_gsc_set(tmp_path / "gsc", 50)
    files, classes = gsc.split_files(tmp_path / "gsc")
    assert len(classes) == 35 and [len(files[s]) for s in ("train", "valid", "test")] == [40, 5, 5]
    assert gsc.read_wav(tmp_path / "gsc" / files["train"][0][0]).shape == (16000,)


def test_quick_run_reports_every_measurement(monkeypatch, tmp_path):
    monkeypatch.setattr(bench_scale.tempfile, "tempdir", str(tmp_path))
    result = bench_scale.main(quick=True)
    assert set(result["prepare"]) == {"shd", "gsc"} and result["quick"]
    for fmt, p in result["prepare"].items():
        runs = p["runs"]
        assert [r["output_bytes"] > 0 for r in runs["new"]] == [True, True]
        assert all(r["peak_rss"] > 0 and r["cpu_s"] > 0 for impl in runs for r in runs[impl])
    assert all(np.isfinite(v) for v in {**result["ratios"], **result["absolutes"]}.values())
    memory = result["gsc_memory"]["runs"]  # GSC prepare's memory summed over its processes, by workers
    assert [(r["files"], r["workers"]) for r in memory] == [(100, 1), (200, 1), (200, 2)]
    assert all(0 < r["peak_pss"] <= r["peak_rss"] <= r["peak_rss_bound"] for r in memory)
    assert set(result["targets_met"]) == {
        "rss_growth_vs_prepared_bytes",
        "gsc_full_peak_gb",
        "loader_speedup",
        "sharing_one_copy",
    }
    for reader in result["sharing"]["readers"][
        "new"
    ]:  # both map every page of the frames: each is charged half
        assert reader["frames_map_rss"] >= reader["frames_bytes"]
        assert abs(2 * reader["frames_map_pss"] - reader["frames_map_rss"]) < 0.05 * reader["frames_map_rss"]
    assert list(Path(tmp_path).iterdir()) == []  # everything written was deleted
