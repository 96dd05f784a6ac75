"""Time-accuracy plot: validation accuracy against cumulative training time.

The pretrained pipelines' curves start after their ANN pretraining time (shaded),
so the x axis compares total cost with the scratch SNN.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.io import atomic_path  # noqa: E402
from pipeline.pretrain.table import first_reached, runs_by_role  # noqa: E402


def _first_reach(history: list[dict], target: float, offset: float) -> tuple[float, float] | None:
    """(time, accuracy) of the first epoch at or above `target`, None if never."""
    row = first_reached(history, target)
    return None if row is None else (offset + row["elapsed_s"], row["val_acc"])


def _panel(ax: plt.Axes, name: str, ft: dict, ann: dict | None, base: dict | None) -> None:
    """One pipeline: its curve after the ANN pretraining beside its scratch baseline's, the scratch best
    marked."""
    cfg = ft["config"]
    offset = ann["metrics"]["elapsed_s"] if ann else float(cfg.get("pretrain_elapsed_s") or 0.0)
    ax.axvspan(0, offset, color="tab:orange", alpha=0.12, label="ANN pretraining")
    h = ft["history"]
    ax.plot(
        [offset] + [offset + r["elapsed_s"] for r in h],
        [0] + [r["val_acc"] for r in h],
        "s-",
        ms=3,
        color="tab:orange",
        label="ANN pretraining + SNN fine-tuning",
    )
    if base:
        best = base["metrics"]["best_val_acc"]
        hb = base["history"]
        ax.plot(
            [0] + [r["elapsed_s"] for r in hb],
            [0] + [r["val_acc"] for r in hb],
            "o-",
            ms=3,
            color="tab:blue",
            label="SNN from scratch",
        )
        ax.axhline(best, color="grey", lw=0.8, ls=":")
        for point, color in (
            (_first_reach(hb, best, 0.0), "tab:blue"),
            (_first_reach(h, best, offset), "tab:orange"),
        ):
            if point:
                ax.plot(*point, "*", ms=12, color=color, markeredgecolor="black", zorder=3)
        ax.plot(
            [],
            [],
            color="grey",
            lw=0.8,
            ls=":",
            marker="*",
            ms=10,
            markerfacecolor="white",
            markeredgecolor="black",
            label=f"scratch best {best:.1f} % (star: first reached)",
        )
    ax.set_title(f"{name}: {cfg.get('source_dataset')} ANN → {cfg['dataset']} SNN")
    ax.set_xlabel("cumulative training time (s)")
    ax.set_ylabel("validation top-1 %")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def plot_time_accuracy(runs: list[dict], out_png: Path) -> None:
    """One panel per pipeline: its validation accuracy against cumulative time (ANN pretraining shaded),
    beside its scratch baseline's."""
    by_role = runs_by_role(runs)
    finetunes = sorted(by_role["finetune_snn"].items())
    n = max(1, len(finetunes))
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4), squeeze=False)
    for ax, (name, ft) in zip(axes[0], finetunes):
        _panel(
            ax,
            name,
            ft,
            by_role["pretrain_ann"].get(ft["config"].get("ann_run")),
            by_role["train_snn_scratch"].get(ft["config"].get("baseline") or ""),
        )
    if not finetunes:
        axes[0][0].text(0.5, 0.5, "no pretrained pipeline configured", ha="center", va="center")
        axes[0][0].axis("off")
    fig.tight_layout()
    with atomic_path(Path(out_png)) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
