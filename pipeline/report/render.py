"""A results table in three forms: CSV (every column, machine-readable), markdown and HTML
(the readable view; Snakemake's report shows HTML outputs rendered, markdown only as a download)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd

from pipeline.io import atomic_path, write_text

# A cell that reads as a number ("1,234", "95.07 ± 0.24", "~95.3", "—") is right-aligned.
NUMBER = re.compile(r"^(—|~?-?[\d,]+(\.\d+)?( ± [\d.]+)?)$")
NO_RUNS = "No runs configured in params.yaml."
STYLE = """body { font-family: sans-serif; font-size: 14px; margin: 1em; }
table { border-collapse: collapse; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: left; }
th { border-bottom: 2px solid #444; }
th.number, td.number { text-align: right; font-variant-numeric: tabular-nums; }
li { color: #444; margin: 2px 0; }"""


def numeric_columns(shown: pd.DataFrame) -> list[bool]:
    """Which columns hold only number-like cells."""
    return [len(shown) > 0 and all(NUMBER.match(str(v)) for v in shown[c]) for c in shown.columns]


def markdown_table(shown: pd.DataFrame, title: str, notes: list[str]) -> str:
    """A '#' title, the table (numbers right-aligned) and the notes as a list."""
    if len(shown):
        align = ["right" if n else "left" for n in numeric_columns(shown)]
        body = shown.to_markdown(index=False, colalign=align, disable_numparse=True)
    else:
        body = f"_{NO_RUNS}_"
    return "\n".join([f"# {title}", "", body, ""] + [f"- {n}" for n in notes]) + "\n"


def html_table(shown: pd.DataFrame, title: str, notes: list[str]) -> str:
    """A standalone HTML page: title, table, notes."""
    if len(shown):
        cls = [" class=number" if n else "" for n in numeric_columns(shown)]
        head = "".join(f"<th{c}>{html.escape(str(name))}</th>" for name, c in zip(shown.columns, cls))
        rows = "\n".join(
            "<tr>" + "".join(f"<td{c}>{html.escape(str(v))}</td>" for v, c in zip(values, cls)) + "</tr>"
            for values in shown.itertuples(index=False)
        )
        body = f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>"
    else:
        body = f"<p><em>{NO_RUNS}</em></p>"
    items = "\n".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
        f"<style>\n{STYLE}\n</style></head>\n<body>\n<h2>{html.escape(title)}</h2>\n{body}\n"
        f"<ul>\n{items}\n</ul>\n</body></html>\n"
    )


def write_table(table: pd.DataFrame, shown: pd.DataFrame, title: str, notes: list[str], stem: Path) -> None:
    """`stem`.csv from `table`; `stem`.md and `stem`.html from its readable view `shown`."""
    with atomic_path(stem.with_suffix(".csv")) as tmp:
        table.to_csv(tmp, index=False)
    write_text(stem.with_suffix(".md"), markdown_table(shown, title, notes))
    write_text(stem.with_suffix(".html"), html_table(shown, title, notes))
