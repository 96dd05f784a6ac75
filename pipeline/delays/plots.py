"""Figures of paper B: training curves and the distribution of learned delays."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless build machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.io import atomic_path, read_json  # noqa: E402


def _save(fig: plt.Figure, out_png: Path) -> None:
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_training_curves(live_dirs: list[Path], out_png: Path) -> None:
    """Loss and rounded-delay valid/test accuracy per epoch for each training run (DVCLive dirs)."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    colors = {"no_delay": "tab:gray", "fixed_delay": "tab:orange", "learned_delay": "tab:blue"}
    for live in live_dirs:
        live = Path(live)
        history = read_json(live / "history.json")
        config = read_json(live / "config.json")
        variant = config.get("variant", "?")
        label = f"{config.get('dataset', '?')} {variant} s{config.get('seed', '?')}"
        epochs = [r["epoch"] for r in history]
        color = colors.get(variant)
        ax_loss.plot(epochs, [r["loss"] for r in history], color=color, alpha=0.8, label=label)
        ax_acc.plot(epochs, [r["valid_acc"] for r in history], color=color, alpha=0.8, label=f"{label} valid")
        ax_acc.plot(epochs, [r["test_acc"] for r in history], color=color, alpha=0.8, ls="--", label=f"{label} test")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy, rounded delays (solid valid, dashed test)")
    ax_loss.legend(fontsize=6)
    _save(fig, Path(out_png))


def plot_delay_distributions(eval_jsons: list[Path], out_png: Path) -> None:
    """Delay histograms per layer at init, at the end (continuous) and rounded, summed over seeds.

    One row per (dataset, variant) that has delays, one column per delay layer;
    each curve is a density (fraction of synapses per step of delay).
    """
    groups: dict[tuple[str, str], dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    edges: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    names: dict[tuple[str, str], list[str]] = {}
    for path in eval_jsons:
        e = read_json(path)
        d = e.get("delays") or {}
        if not d.get("init"):
            continue  # no_delay has no delay layers
        key = (e["dataset"], e["variant"])
        edges[key] = {"init": np.asarray(d["continuous_edges"]), "end": np.asarray(d["continuous_edges"]),
                      "rounded": np.asarray(d["rounded_edges"])}
        names[key] = d.get("layers") or [f"layer {i + 1}" for i in range(len(d["init"]))]
        for stage in ("init", "end", "rounded"):
            hists = [np.asarray(h, dtype=float) for h in d[stage]]
            old = groups[key][stage]
            groups[key][stage] = [a + b for a, b in zip(old, hists)] if old else hists
    keys = sorted(groups)
    n_rows = max(len(keys), 1)
    n_layers = max((len(groups[k]["init"]) for k in keys), default=1)
    fig, axes = plt.subplots(n_rows, n_layers, figsize=(4 * n_layers, 2.8 * n_rows), squeeze=False)
    styles = {"init": ("tab:gray", "init"), "end": ("tab:blue", "end (continuous)"), "rounded": ("tab:red", "end (rounded)")}
    for r, key in enumerate(keys):
        for c in range(n_layers):
            ax = axes[r][c]
            if c >= len(groups[key]["init"]):
                ax.axis("off")
                continue
            for stage, (color, label) in styles.items():
                h, e = groups[key][stage][c], edges[key][stage]
                ax.stairs(h / max(h.sum(), 1) / np.diff(e), e, color=color, label=label)
            ax.set(title=f"{key[0]} {key[1]}: {names[key][c]}", xlabel="delay (steps)", ylabel="density")
    if not keys:
        axes[0][0].text(0.5, 0.5, "no model with delays", ha="center", va="center")
        axes[0][0].axis("off")
    else:
        axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, Path(out_png))
