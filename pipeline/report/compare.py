"""`python -m pipeline compare REV_A REV_B`: the benchmark tables of two git
revisions side by side, with the change of every numeric column."""
from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pandas as pd

TABLES = ("delays", "pretrain")
# Columns that identify a row; everything numeric besides them is compared.
KEYS = {"delays": ["dataset"], "pretrain": ["dataset", "pipeline"]}


def read_table_at(rev: str, name: str, repo: Path = Path(".")) -> pd.DataFrame | None:
    """results/tables/<name>.csv as committed at `rev` (None if absent there)."""
    spec = f"{rev}:results/tables/{name}.csv"
    proc = subprocess.run(["git", "-C", str(repo), "show", spec], capture_output=True, text=True)
    if proc.returncode != 0:
        if "unknown revision" in proc.stderr or "bad revision" in proc.stderr or "invalid object name" in proc.stderr:
            raise ValueError(f"git revision '{rev}' not found in {repo.resolve()}")
        return None
    return pd.read_csv(io.StringIO(proc.stdout))


def diff_tables(a: pd.DataFrame, b: pd.DataFrame, keys: list[str], rev_a: str, rev_b: str) -> pd.DataFrame:
    """Outer-join on `keys`; for each numeric column give both values and b - a."""
    keys = [k for k in keys if k in a.columns and k in b.columns] or [a.columns[0]]
    merged = a.merge(b, on=keys, how="outer", suffixes=(f"@{rev_a}", f"@{rev_b}"))
    out = merged[keys].copy()
    numeric = [c for c in a.columns if c not in keys and c in b.columns
               and pd.api.types.is_numeric_dtype(a[c]) and pd.api.types.is_numeric_dtype(b[c])]
    for col in numeric:
        va, vb = merged[f"{col}@{rev_a}"], merged[f"{col}@{rev_b}"]
        out[f"{col}@{rev_a}"] = va
        out[f"{col}@{rev_b}"] = vb
        out[f"Δ {col}"] = vb - va
    return out


def compare(rev_a: str, rev_b: str, *, repo: Path = Path("."), table: str = "all") -> None:
    """Print the benchmark tables of two git revisions side by side with deltas."""
    names = TABLES if table == "all" else (table,)
    for name in names:
        if name not in TABLES:
            raise ValueError(f"unknown table '{name}' (allowed: all, {', '.join(TABLES)})")
        a, b = read_table_at(rev_a, name, repo), read_table_at(rev_b, name, repo)
        print(f"## {name}: {rev_a} -> {rev_b}\n")
        if a is None or b is None:
            missing = [r for r, t in ((rev_a, a), (rev_b, b)) if t is None]
            print(f"results/tables/{name}.csv is not committed at {', '.join(missing)}\n")
            continue
        print(diff_tables(a, b, KEYS[name], rev_a, rev_b).to_markdown(index=False, floatfmt=".2f"))
        print()
