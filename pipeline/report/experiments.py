"""`python -m pipeline experiments`: DVC's experiments in a table that fits a terminal.

`dvc exp show` prints a column per parameter and per metric (about 800 columns
here). This reads `dvc exp show --json` and prints one row per experiment: its
name, its state (queued and running experiments have no metrics of their own
yet, so none are shown for them), the parameters it changed against its
baseline commit, and each paper's headline metrics from results/metrics.json.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any, Iterator

PARAMS_FILE = "params.yaml"
METRICS_FILE = "results/metrics.json"
WIDTH = 100  # columns


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def _params(state: dict[str, Any]) -> dict[str, Any]:
    data = (state.get("data") or {}).get("params", {}).get(PARAMS_FILE, {}).get("data") or {}
    return _flat(data)


def _metrics(state: dict[str, Any]) -> dict[str, Any]:
    return (state.get("data") or {}).get("metrics", {}).get(METRICS_FILE, {}).get("data") or {}


def headline(metrics: dict[str, Any]) -> list[tuple[str, float | None]]:
    """(label, value) of each paper's headline numbers: paper B's learned-delay test accuracy per dataset,
    paper A's pipeline top-1 and time ratio (pipeD when it ran, else the first pipeline)."""
    found: list[tuple[str, float | None]] = []
    for row, values in sorted((metrics.get("delays") or {}).items()):
        if row.endswith("/learned_delay"):
            found.append((f"B {row.split('/')[0]} %", values.get("test_acc_mean")))
    pipelines = {
        row.split("/")[1]: values
        for row, values in (metrics.get("pretrain") or {}).items()
        if "/" in row and "top1" in values and "time_ratio" in values
    }
    if pipelines:
        name = "pipeD" if "pipeD" in pipelines else sorted(pipelines)[0]
        found += [
            (f"A {name} %", pipelines[name].get("top1")),
            (f"A {name} ratio", pipelines[name].get("time_ratio")),
        ]
    return found


def rows(show: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """One dict per baseline commit and per experiment: name, state, changed parameters, headline metrics."""
    for base in show:
        base_params = _params(base)
        name = base.get("name") or (base["rev"] if base["rev"] == "workspace" else base["rev"][:7])
        yield {"name": name, "state": "", "changed": "", "metrics": headline(_metrics(base))}
        for group in base.get("experiments") or []:
            state = ((group.get("executor") or {}).get("state") or "success").lower()
            for exp in group.get("revs") or []:
                params = _params(exp)
                changed = [f"{key}={value}" for key, value in params.items() if base_params.get(key) != value]
                metrics = headline(_metrics(exp)) if state in ("success", "failed") else []
                yield {
                    "name": exp.get("name") or group.get("name") or exp["rev"][:7],
                    "state": state,
                    "changed": " ".join(changed),
                    "metrics": metrics,
                }


def _short_key(change: str) -> str:
    """`delays.variant_recipe.learned_delay.lr_positions=0.05` -> `lr_positions=0.05`: the last key names
    it well enough."""
    key, _, value = change.partition("=")
    return f"{key.rsplit('.', 1)[-1]}={value}"


def render(table: list[dict[str, Any]], width: int = WIDTH) -> str:
    labels: list[str] = []
    for row in table:
        labels += [label for label, _ in row["metrics"] if label not in labels]
    cells = [
        [
            row["name"],
            row["state"],
            " ".join(map(_short_key, row["changed"].split())),
            *[_number(dict(row["metrics"]).get(label)) if row["metrics"] else "" for label in labels],
        ]
        for row in table
    ]
    header = ["experiment", "state", "changed", *labels]
    widths = [max(len(str(r[i])) for r in [header, *cells]) for i in range(len(header))]
    fixed = sum(w + 2 for i, w in enumerate(widths) if i != 2)
    widths[2] = max(len("changed"), min(widths[2], width - fixed))  # the changed keys wrap into their column
    lines = []
    for cols in [header, *cells]:
        text = [str(c) for c in cols]
        lines += _wrap_row(text, widths)
    return "\n".join(lines)


def _wrap_row(text: list[str], widths: list[int]) -> list[str]:
    changed, parts = text[2], []
    while len(changed) > widths[2]:
        cut = changed.rfind(" ", 0, widths[2] + 1)
        cut = widths[2] if cut <= 0 else cut
        parts.append(changed[:cut])
        changed = changed[cut:].lstrip()
    parts.append(changed)
    out = []
    for i, part in enumerate(parts):
        cols = text if i == 0 else [""] * len(text)
        cols = [*cols[:2], part, *cols[3:]]
        out.append(
            "  ".join(
                c.ljust(w) if j < 3 else c.rjust(w) for j, (c, w) in enumerate(zip(cols, widths))
            ).rstrip()
        )
    return out


def _number(value: Any) -> str:
    return "" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def experiments(*, all_commits: bool = False) -> None:
    """DVC's experiments, one row each (name, state, changed parameters, headline metrics), in 100 columns."""
    cmd = ["dvc", "exp", "show", "--json"] + (["--all-commits"] if all_commits else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ValueError(
            f"`{' '.join(cmd)}` failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}"
        )
    print(render(list(rows(json.loads(proc.stdout)))))
