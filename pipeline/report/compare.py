"""`python -m pipeline compare A B`: what changed in the benchmark tables between two versions.

A and B are git revisions (results/tables/*.csv as committed there) or results
directories (e.g. two machines' `results/`, or project folders holding one).
For each table: rows added and removed, and every value that differs, with
whether it changed beyond noise (pipeline/report/diff.py). Exits 0; with
--fail-on-change, 1 when something changed beyond the tolerance.
"""

from __future__ import annotations

import io
import math
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.report.diff import CHANGED, NOISE, TIMING, TableDiff, diff_tables

TABLES = ("delays", "pretrain")
# Columns that identify a row; every other column is compared.
KEYS = {"delays": ["dataset", "method"], "pretrain": ["dataset", "run"]}


def results_dir(source: str) -> Path | None:
    """The results directory `source` names (it or its results/ holds tables/); None for a git revision."""
    path = Path(source)
    if not path.is_dir():
        return None
    for candidate in (path, path / "results"):
        if (candidate / "tables").is_dir():
            return candidate
    raise ValueError(
        f"{path}: neither {path}/tables nor {path}/results/tables exists (expected a results directory)"
    )


def read_table(source: str, name: str, repo: Path = Path(".")) -> pd.DataFrame | None:
    """Table `name` of a results directory or of a git revision of `repo` (None if it has none)."""
    directory = results_dir(source)
    if directory is not None:
        path = directory / "tables" / f"{name}.csv"
        return pd.read_csv(path) if path.is_file() else None
    proc = subprocess.run(
        ["git", "-C", str(repo), "show", f"{source}:results/tables/{name}.csv"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        if any(s in proc.stderr for s in ("unknown revision", "bad revision", "invalid object name")):
            raise ValueError(f"'{source}' is neither a directory nor a git revision of {repo.resolve()}")
        return None
    return pd.read_csv(io.StringIO(proc.stdout))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def render(diff: TableDiff, tolerance: float) -> str:
    """The difference of versions A and B as markdown: added/removed rows and columns, a count of values
    changed, then the values that differ, those beyond the tolerance first."""
    lines: list[str] = []
    for what, names, side in (
        ("rows", diff.rows_added, "B"),
        ("rows", diff.rows_removed, "A"),
        ("columns", diff.columns_added, "B"),
        ("columns", diff.columns_removed, "A"),
    ):
        if names:
            lines.append(f"{what} only at {side}: {', '.join(map(str, names))}")
    if diff.unmatched:
        return "\n".join([f"Rows not compared: {diff.unmatched}.", *lines])
    counts = diff.cells["verdict"].value_counts()
    summary = (
        f"{counts.get(CHANGED, 0)} values changed beyond the tolerance ({tolerance:g} accuracy points), "
        f"{counts.get(NOISE, 0)} within it, {diff.equal} equal"
    )
    if counts.get(TIMING, 0):
        summary += f"; {counts[TIMING]} timings differ (machine-dependent, not checked)"
    lines.append(summary + ".")
    if len(diff.cells):
        shown = diff.cells.sort_values("verdict", key=lambda v: v != CHANGED, kind="stable")
        shown = pd.DataFrame(
            {
                "row": shown["row"],
                "column": shown["column"],
                "A": shown["a"].map(_fmt),
                "B": shown["b"].map(_fmt),
                "Δ": [("—" if math.isnan(d) else f"{d:+.6g}") for d in shown["delta"]],
                "verdict": shown["verdict"],
            }
        )
        lines += ["", shown.to_markdown(index=False, disable_numparse=True)]
    return "\n".join(lines)


def compare(
    rev_a: str,
    rev_b: str,
    *,
    repo: Path = Path("."),
    table: str = "all",
    tolerance: float = 0.5,
    fail_on_change: bool = False,
) -> None:
    """Compare the benchmark tables of two git revisions or results directories, within a tolerance.

    rev_a, rev_b: a git revision of --repo (its committed results/tables/*.csv) or a results directory
    (one holding tables/, or a project holding results/tables/), e.g. two machines' results.
    --table: all, delays or pretrain. --tolerance: accuracy differences up to this many points are noise.
    --fail-on-change: exit 1 when something changed beyond the tolerance (else always 0).
    """
    names = TABLES if table == "all" else (table,)
    unknown = [n for n in names if n not in TABLES]
    if unknown:
        raise ValueError(f"unknown table '{unknown[0]}' (allowed: all, {', '.join(TABLES)})")
    changed = []
    for name in names:
        a, b = read_table(rev_a, name, repo), read_table(rev_b, name, repo)
        print(f"## {name}: A = {rev_a}, B = {rev_b}\n")
        if a is None or b is None:
            missing = [s for s, t in ((rev_a, a), (rev_b, b)) if t is None]
            print(f"no {name} table at {', '.join(missing)}\n")
            continue
        diff = diff_tables(a, b, KEYS[name], tolerance)
        print(render(diff, tolerance) + "\n")
        if diff.changed:
            changed.append(name)
    print(
        f"Changed beyond the tolerance: {', '.join(changed)}."
        if changed
        else "Nothing changed beyond the tolerance."
    )
    if changed and fail_on_change:
        raise SystemExit(1)
