"""Cell by cell difference of two versions of a results table, with a tolerance for noise.

Rows are matched on key columns. Every other column both versions hold is
compared by what it holds:
- accuracy columns (percentage points): a change counts beyond `tolerance`;
- timing columns: listed, never counted, since wall time depends on the machine;
- other numbers (parameter counts, seeds): any difference counts;
- text and flags: any difference counts.
NaN on both sides is equal; a value appearing or disappearing counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

CHANGED, NOISE, TIMING = "changed", "within tolerance", "timing (not checked)"


def row_label(row: pd.Series | dict[str, Any], keys: list[str]) -> str:
    """The name of a row: its key values joined by '/' (also the row's key in results/metrics.json)."""
    return "/".join(str(row[k]) for k in keys)


def column_kind(name: str, a: pd.Series, b: pd.Series) -> str:
    """'accuracy', 'timing', 'number' or 'value' (text, flags, mixed types)."""
    numeric = all(pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s) for s in (a, b))
    if not numeric:
        return "value"
    if "time" in name:
        return "timing"
    if "acc" in name or "top1" in name:
        return "accuracy"
    return "number"


@dataclass
class TableDiff:
    """What differs between version A and version B of one table."""

    rows_added: list[str]
    rows_removed: list[str]
    columns_added: list[str]
    columns_removed: list[str]
    cells: pd.DataFrame  # one row per differing cell: row, column, a, b, delta, verdict
    equal: int  # cells the same on both sides
    unmatched: str = ""  # why rows could not be matched (layout changed), else empty

    @property
    def changed(self) -> bool:
        """Anything beyond noise: a changed cell, a row or column added or removed, a new layout."""
        return bool(
            self.unmatched
            or self.rows_added
            or self.rows_removed
            or self.columns_added
            or self.columns_removed
            or (self.cells["verdict"] == CHANGED).any()
        )


CELL_COLUMNS = ["row", "column", "a", "b", "delta", "verdict"]


def _same(kind: str, va: Any, vb: Any) -> bool:
    if pd.isna(va) or pd.isna(vb):
        return bool(pd.isna(va) and pd.isna(vb))
    # numbers by value (an int column in one version may be float in the other), the rest as text
    return float(va) == float(vb) if kind != "value" else str(va) == str(vb)


def _verdict(kind: str, va: Any, vb: Any, tolerance: float) -> tuple[float, str]:
    """(b - a, verdict) of two values known to differ."""
    if kind == "value":
        return math.nan, CHANGED
    delta = float(vb) - float(va)
    if kind == "timing":
        return delta, TIMING
    if kind == "accuracy" and not math.isnan(delta) and abs(delta) <= tolerance:
        return delta, NOISE
    return delta, CHANGED


def _shared_keys(a: pd.DataFrame, b: pd.DataFrame, keys: list[str]) -> tuple[list[str], str]:
    """The key columns both versions hold (older tables may lack some), or why rows cannot be matched."""
    shared = [k for k in keys if k in a.columns and k in b.columns]
    if not shared:
        return shared, f"no key column ({', '.join(keys)}) in both versions"
    for side, df in (("A", a), ("B", b)):
        if df.duplicated(shared).any():
            return (
                shared,
                f"several rows of version {side} share their {', '.join(shared)} (the layout changed)",
            )
    return shared, ""


def diff_tables(a: pd.DataFrame, b: pd.DataFrame, keys: list[str], tolerance: float = 0.5) -> TableDiff:
    """Compare table versions `a` and `b` row by row (rows matched on those of `keys` both hold);
    accuracy differences up to `tolerance` points are noise."""
    columns_added = [c for c in b.columns if c not in a.columns]
    columns_removed = [c for c in a.columns if c not in b.columns]
    keys, unmatched = _shared_keys(a, b, keys)
    if unmatched:
        return TableDiff(
            [], [], columns_added, columns_removed, pd.DataFrame(columns=CELL_COLUMNS), 0, unmatched
        )
    ia, ib = (df.set_axis([row_label(row, keys) for _, row in df.iterrows()]) for df in (a, b))
    common_rows = [r for r in ia.index if r in ib.index]
    compared = [c for c in a.columns if c in b.columns and c not in keys]
    kinds = {c: column_kind(c, a[c], b[c]) for c in compared}
    cells, equal = [], 0
    for r in common_rows:
        for c in compared:
            va, vb = ia.at[r, c], ib.at[r, c]
            if _same(kinds[c], va, vb):
                equal += 1
                continue
            delta, verdict = _verdict(kinds[c], va, vb, tolerance)
            cells.append({"row": r, "column": c, "a": va, "b": vb, "delta": delta, "verdict": verdict})
    return TableDiff(
        rows_added=[r for r in ib.index if r not in ia.index],
        rows_removed=[r for r in ia.index if r not in ib.index],
        columns_added=columns_added,
        columns_removed=columns_removed,
        cells=pd.DataFrame(cells, columns=CELL_COLUMNS),
        equal=equal,
    )
