"""`python -m pipeline compare A B`: what changed in the tables of two revisions or two results
directories."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from pipeline.report.diff import CHANGED, NOISE, TIMING, diff_tables
from tests.conftest import REPO, run
from tests.project_copy import commit_all


def _table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def _row(method: str, acc: float, **more) -> dict:
    return {"dataset": "synth", "method": method, "n_params": 2720, "test_acc_mean": acc, **more}


def _write(results: Path, rows: list[dict], name: str = "delays") -> None:
    (results / "tables").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(results / "tables" / f"{name}.csv", index=False)


def _commit_table(repo: Path, rows: list[dict], message: str) -> None:
    _write(repo / "results", rows)
    commit_all(repo, message)


def _compare(*args: str, check: bool = True):
    return run(["python", "-m", "pipeline", "compare", *args], cwd=REPO, check=check)


def test_bool_str_and_nan_columns_compare_without_crashing() -> None:
    a = _table(
        [
            {
                "dataset": "d",
                "run": "p",
                "reached": True,
                "ratio": "1/10",
                "top1": 50.0,
                "paper_top1": math.nan,
                "time_s": 10.0,
            }
        ]
    )
    b = _table(
        [
            {
                "dataset": "d",
                "run": "p",
                "reached": False,
                "ratio": "1/10",
                "top1": 50.2,
                "paper_top1": math.nan,
                "time_s": 30.0,
            }
        ]
    )
    d = diff_tables(a, b, ["dataset", "run"], tolerance=0.5)
    verdicts = dict(zip(d.cells["column"], d.cells["verdict"]))
    assert verdicts == {
        "reached": CHANGED,
        "top1": NOISE,
        "time_s": TIMING,
    }  # equal NaN and text are not listed
    assert d.equal == 2 and d.changed


def test_tolerance_and_rows_added_and_removed() -> None:
    a = _table([_row("no_delay", 80.0), _row("fixed_delay", 70.0)])
    b = _table([_row("no_delay", 80.4), _row("learned_delay", 95.0)])
    d = diff_tables(a, b, ["dataset", "method"], tolerance=0.5)
    assert d.rows_added == ["synth/learned_delay"] and d.rows_removed == ["synth/fixed_delay"]
    assert list(d.cells["verdict"]) == [NOISE] and d.cells["delta"].item() == pytest.approx(0.4)
    assert diff_tables(a, b, ["dataset", "method"], tolerance=0.1).cells["verdict"].item() == CHANGED
    same = diff_tables(a.iloc[:1], b.iloc[:1], ["dataset", "method"], tolerance=0.5)
    assert not same.changed  # within noise


def test_other_numbers_count_exactly_and_int_equals_float() -> None:
    a = _table([_row("no_delay", 80.0)])
    b = _table([_row("no_delay", 80.0, n_params=2721)])
    assert diff_tables(a, b, ["dataset", "method"]).cells["verdict"].tolist() == [CHANGED]
    c = _table([_row("no_delay", 80.0, n_params=2720.0)])
    assert not diff_tables(a, c, ["dataset", "method"]).changed


def test_older_layouts_match_on_the_keys_both_hold() -> None:
    old = _table([{"dataset": "synth", "acc": 1.0}])
    new = _table([_row("no_delay", 80.0), _row("learned_delay", 95.0)])
    d = diff_tables(old, new, ["dataset", "method"])
    assert "several rows of version B" in d.unmatched and d.changed
    assert diff_tables(old, old, ["dataset", "method"]).cells.empty


def test_compare_two_revisions(tmp_path: Path) -> None:
    run(["git", "init", "-q"], cwd=tmp_path)
    _commit_table(
        tmp_path, [_row("no_delay", 50.0, reached=True), _row("learned_delay", 80.0, reached=True)], "one"
    )
    _commit_table(
        tmp_path,
        [
            _row("no_delay", 50.3, reached=False),
            _row("learned_delay", 85.5, reached=True),
            {**_row("learned_delay", 95.0, reached=True), "dataset": "shd"},
        ],
        "two",
    )
    out = _compare("HEAD~1", "HEAD", "--repo", str(tmp_path), "--table", "delays").stdout
    assert "## delays: A = HEAD~1, B = HEAD" in out
    assert "rows only at B: shd/learned_delay" in out
    assert "2 values changed beyond the tolerance (0.5 accuracy points), 1 within it" in out
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines() if "synth/" in line]
    assert ["synth/learned_delay", "test_acc_mean", "80", "85.5", "+5.5", CHANGED] in cells
    assert ["synth/no_delay", "reached", "True", "False", "—", CHANGED] in cells
    assert ["synth/no_delay", "test_acc_mean", "50", "50.3", "+0.3", NOISE] in cells
    assert "Changed beyond the tolerance: delays." in out
    failing = _compare(
        "HEAD~1", "HEAD", "--repo", str(tmp_path), "--table", "delays", "--fail-on-change", check=False
    )
    assert failing.returncode == 1
    loose = _compare(
        "HEAD~1", "HEAD", "--repo", str(tmp_path), "--tolerance", "10", "--fail-on-change", check=False
    )
    assert loose.returncode == 1  # a row was added: a change at any tolerance
    assert "no pretrain table at HEAD~1, HEAD" in loose.stdout


def test_compare_two_results_directories(tmp_path: Path) -> None:
    _write(tmp_path / "machine1" / "results", [_row("no_delay", 80.0)])
    _write(tmp_path / "machine2", [_row("no_delay", 80.2)])
    for name in ("machine1", "machine2"):
        _write(
            tmp_path / name / ("results" if name == "machine1" else ""),
            [{"dataset": "d", "run": "r", "top1": 1.0}],
            "pretrain",
        )
    proc = _compare(str(tmp_path / "machine1"), str(tmp_path / "machine2"), "--fail-on-change")
    assert proc.returncode == 0 and "Nothing changed beyond the tolerance." in proc.stdout
    assert "1 within it" in proc.stdout


def test_compare_names_a_bad_revision(tmp_path: Path) -> None:
    run(["git", "init", "-q"], cwd=tmp_path)
    _commit_table(tmp_path, [_row("no_delay", 1.0)], "one")
    proc = _compare("nope", "HEAD", "--repo", str(tmp_path), check=False)
    assert proc.returncode == 2 and "'nope' is neither a directory nor a git revision" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = _compare(str(tmp_path / "empty"), "HEAD", "--repo", str(tmp_path), check=False)
    assert proc.returncode == 2 and "expected a results directory" in proc.stderr
