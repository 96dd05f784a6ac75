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


def plot_time_accuracy(runs: list[dict], out_png: Path) -> None:
    finetunes = sorted((r for r in runs if r["config"].get("role") == "finetune"), key=lambda r: r["config"]["pipeline"])
    scratch = {r["config"]["dataset"]: r for r in runs if r["config"].get("role") == "scratch"}
    anns = {r["config"]["dataset"]: r for r in runs if r["config"].get("role") == "ann_pretrain"}
    n = max(1, len(finetunes))
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.8), squeeze=False)
    for ax, ft in zip(axes[0], finetunes):
        cfg = ft["config"]
        ann = anns.get(cfg.get("source_dataset"))
        offset = ann["metrics"]["elapsed_s"] if ann else float(cfg.get("pretrain_elapsed_s") or 0.0)
        sc = scratch.get(cfg["dataset"])
        if sc:
            h = sc["history"]
            ax.plot([0] + [r["elapsed_s"] for r in h], [0] + [r["val_acc"] for r in h], "o-", ms=3,
                    label="SNN from scratch")
            ax.axhline(sc["metrics"]["best_val_acc"], color="grey", lw=0.8, ls=":", label="scratch best")
        h = ft["history"]
        ax.plot([offset] + [offset + r["elapsed_s"] for r in h], [0] + [r["val_acc"] for r in h], "s-", ms=3,
                label=f"{cfg['pipeline']}: ANN pretrain + SNN fine-tune")
        ax.axvspan(0, offset, color="tab:orange", alpha=0.12, label="ANN pretraining")
        ax.set_title(f"{cfg['pipeline']} ({cfg.get('source_dataset')} -> {cfg['dataset']})")
        ax.set_xlabel("cumulative training time (s)")
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
