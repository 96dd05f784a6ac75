"""Figures of paper B: training curves and the distribution of the delays."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless build machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from pipeline.delays.table import DATASETS, METHODS, dataset_order  # noqa: E402
from pipeline.io import atomic_path, read_json  # noqa: E402
from pipeline.models.delay_snn import VARIANTS  # noqa: E402

COLORS = {"no_delay": "tab:gray", "fixed_delay": "tab:orange", "learned_delay": "tab:blue"}
SPLIT_STYLES = {"train": ":", "valid": "-", "test": "--"}
# Rows of the training-curve figure: (y label, {split: history key}).
CURVES = (
    ("accuracy % (rounded delays)", {"valid": "valid_acc", "test": "test_acc"}),
    ("loss", {"train": "train_loss", "valid": "valid_loss"}),
)


def _save(fig: plt.Figure, out_png: Path) -> None:
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _empty(ax: plt.Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.axis("off")


def plot_training_curves(live_dirs: list[Path], out_png: Path) -> None:
    """One column per dataset: accuracy (valid, test) and loss (train, valid) per epoch, one colour per
    variant, each seed thin and the mean over seeds thick."""
    histories: dict[str, dict[str, list[pd.DataFrame]]] = defaultdict(lambda: defaultdict(list))
    for live in live_dirs:
        config = read_json(Path(live) / "config.json")
        histories[config["dataset"]][config["variant"]].append(
            pd.DataFrame(read_json(Path(live) / "history.json"))
        )
    datasets = sorted(histories, key=dataset_order)
    fig, axes = plt.subplots(
        len(CURVES),
        max(len(datasets), 1),
        figsize=(5 * max(len(datasets), 1), 6.5),
        squeeze=False,
        sharex="col",
    )
    for col, dataset in enumerate(datasets):
        for row, (ylabel, keys) in enumerate(CURVES):
            ax = axes[row][col]
            for variant in (v for v in VARIANTS if v in histories[dataset]):
                runs = histories[dataset][variant]
                mean = pd.concat(runs).groupby("epoch").mean(numeric_only=True)
                for split, key in keys.items():
                    style = {"color": COLORS[variant], "ls": SPLIT_STYLES[split]}
                    if len(runs) > 1:
                        for run in runs:
                            ax.plot(run["epoch"], run[key], lw=0.7, alpha=0.35, **style)
                    ax.plot(mean.index, mean[key], lw=2, **style)
            ax.set(ylabel=ylabel)
            ax.grid(alpha=0.3)
        axes[0][col].set_title(DATASETS.get(dataset, dataset))
        axes[-1][col].set_xlabel("epoch")
        axes[-1][col].xaxis.set_major_locator(MaxNLocator(integer=True))
    if not datasets:
        for ax in axes[:, 0]:
            _empty(ax, "no delays training run")
    variants = [v for v in VARIANTS if any(v in h for h in histories.values())]
    handles = [Line2D([], [], color=COLORS[v], lw=2, label=METHODS[v]) for v in variants]
    handles += [Line2D([], [], color="black", ls=ls, label=split) for split, ls in SPLIT_STYLES.items()]
    fig.legend(
        handles=handles, loc="lower center", ncol=len(handles), frameon=False, bbox_to_anchor=(0.5, -0.02)
    )
    fig.suptitle("Training curves: thin lines one seed each, thick the mean over seeds")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _save(fig, Path(out_png))


def _sum_over_seeds(evals: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (dataset, variant) with delays: the histograms of every layer summed over seeds, edges, layer
    names."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for e in evals:
        d = e.get("delays") or {}
        if not d.get("rounded"):
            continue  # no_delay has no delay layers
        key = (e["dataset"], e["variant"])
        hists = {
            stage: [np.asarray(h, dtype=float) for h in d[stage]] for stage in ("init", "end", "rounded")
        }
        if key in groups:
            hists = {s: [a + b for a, b in zip(groups[key][s], h)] for s, h in hists.items()}
        groups[key] = {
            **hists,
            "continuous_edges": np.asarray(d["continuous_edges"]),
            "rounded_edges": np.asarray(d["rounded_edges"]),
            "layers": d["layers"],
            "step_ms": e.get("time_step_ms"),
        }
    return groups


def _density(counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Fraction of synapses per step of delay, so 1/4-step and 1-step bins share a scale."""
    return counts / max(counts.sum(), 1) / np.diff(edges)


def plot_delay_distributions(eval_jsons: list[Path], out_png: Path) -> None:
    """One row per (dataset, variant) with delays, one column per delay layer, summed over seeds.

    Learned delays: the continuous positions at initialisation and at the end, and the rounded
    integer delays evaluation uses (bars). Fixed random delays: their integer histogram (bars).
    """
    groups = _sum_over_seeds([read_json(p) for p in eval_jsons])
    keys = sorted(groups, key=lambda k: (dataset_order(k[0]), VARIANTS.index(k[1])))
    n_cols = max((len(groups[k]["layers"]) for k in keys), default=1)
    fig, axes = plt.subplots(
        max(len(keys), 1), n_cols, figsize=(4 * n_cols, 2.6 * max(len(keys), 1) + 0.6), squeeze=False
    )
    for r, key in enumerate(keys):
        g = groups[key]
        learned = key[1] == "learned_delay"
        for c, ax in enumerate(axes[r]):
            if c >= len(g["layers"]):
                ax.axis("off")
                continue
            centres = (g["rounded_edges"][:-1] + g["rounded_edges"][1:]) / 2
            ax.bar(
                centres,
                _density(g["rounded"][c], g["rounded_edges"]),
                width=1.0,
                color="tab:red" if learned else COLORS["fixed_delay"],
                alpha=0.35 if learned else 0.7,
            )
            if learned:
                for stage, color in (("init", "tab:gray"), ("end", "tab:blue")):
                    ax.stairs(
                        _density(g[stage][c], g["continuous_edges"]),
                        g["continuous_edges"],
                        color=color,
                        lw=1.4,
                    )
            step = f" ({g['step_ms']:g} ms)" if g["step_ms"] else ""
            ax.set(title=g["layers"][c], xlabel=f"delay in time steps{step}")
        axes[r][0].set_ylabel(f"{DATASETS.get(key[0], key[0])}\n{METHODS[key[1]]}\n\nfraction of synapses")
    if not keys:
        _empty(axes[0][0], "no model with delays")
    handles = []
    if any(k[1] == "learned_delay" for k in keys):
        handles += [
            Line2D([], [], color="tab:gray", lw=1.4, label="learned: initial (continuous)"),
            Line2D([], [], color="tab:blue", lw=1.4, label="learned: trained (continuous)"),
            Patch(color="tab:red", alpha=0.35, label="learned: trained, rounded (used at test)"),
        ]
    if any(k[1] == "fixed_delay" for k in keys):
        handles.append(Patch(color=COLORS["fixed_delay"], alpha=0.7, label="fixed random delays (integers)"))
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0.05 if handles else 0, 1, 1))
    _save(fig, Path(out_png))
