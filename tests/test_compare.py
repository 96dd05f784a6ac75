"""`python -m pipeline compare A B` renders two revisions' tables with deltas."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline.report.compare import diff_tables
from tests.conftest import REPO, run


def _commit_table(repo: Path, rows: list[dict], message: str) -> None:
    (repo / "results" / "tables").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(repo / "results" / "tables" / "delays.csv", index=False)
    run(["git", "add", "-A"], cwd=repo)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", message], cwd=repo)


def test_compare_two_revisions(tmp_path: Path) -> None:
    run(["git", "init", "-q"], cwd=tmp_path)
    _commit_table(tmp_path, [{"dataset": "synth", "learned_delay_mean": 80.0, "no_delay_mean": 50.0, "label": "a"}], "one")
    _commit_table(tmp_path, [{"dataset": "synth", "learned_delay_mean": 85.5, "no_delay_mean": 49.0, "label": "b"},
                             {"dataset": "shd", "learned_delay_mean": 95.0, "no_delay_mean": 70.0, "label": "c"}], "two")
    proc = run(["python", "-m", "pipeline", "compare", "HEAD~1", "HEAD", "--repo", str(tmp_path), "--table", "delays"], cwd=REPO)
    out = proc.stdout
    assert "## delays: HEAD~1 -> HEAD" in out
    line = next(l for l in out.splitlines() if "synth" in l)
    cells = [c.strip() for c in line.strip("|").split("|")]
    # dataset, learned@A, learned@B, delta, no_delay@A, no_delay@B, delta
    assert cells == ["synth", "80.00", "85.50", "5.50", "50.00", "49.00", "-1.00"]
    assert any("shd" in l and "nan" in l for l in out.splitlines())  # new row: no old value


def test_compare_names_a_bad_revision(tmp_path: Path) -> None:
    run(["git", "init", "-q"], cwd=tmp_path)
    _commit_table(tmp_path, [{"dataset": "synth", "x": 1.0}], "one")
    proc = run(["python", "-m", "pipeline", "compare", "nope", "HEAD", "--repo", str(tmp_path)], cwd=REPO, check=False)
    assert proc.returncode == 2 and "git revision 'nope' not found" in proc.stderr


def test_diff_tables_outer_joins_on_keys() -> None:
    a = pd.DataFrame({"dataset": ["x", "y"], "pipeline": ["p", "p"], "acc": [1.0, 2.0]})
    b = pd.DataFrame({"dataset": ["x"], "pipeline": ["p"], "acc": [4.0]})
    d = diff_tables(a, b, ["dataset", "pipeline"], "A", "B")
    assert d.loc[d.dataset == "x", "Δ acc"].item() == pytest.approx(3.0)
    assert pd.isna(d.loc[d.dataset == "y", "Δ acc"].item())
