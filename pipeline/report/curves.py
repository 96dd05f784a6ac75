"""Per-epoch curves of every run as small TSV files, for `dvc plots diff`.

The report writes, for each training run, one file per headline metric:
`<curves>/<stage>/<run>/<metric>.tsv` with the columns `epoch` and the metric.
dvc.yaml declares the folder as a plot (x: epoch), so `dvc plots show` draws
every run's curves and `dvc plots diff HEAD~1` overlays two commits' curves.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.io import atomic_dir, read_json

# What a person compares across commits: the loss going down, the selection accuracy going up.
HEADLINE = ("train_loss", "valid_acc", "test_acc", "val_acc")


def write_curves(runs: dict[str, dict[str, Path]], out: Path) -> None:
    """`runs`: training stage name -> {run name: its DVCLive folder (holding history.json)}."""
    with atomic_dir(out) as tmp:
        for stage_name, by_run in runs.items():
            for run, live in by_run.items():
                history = read_json(Path(live) / "history.json")
                folder = tmp / stage_name / run
                folder.mkdir(parents=True)
                for metric in HEADLINE:
                    if history and metric in history[0]:
                        rows = "".join(f"{r['epoch']}\t{r[metric]:.6g}\n" for r in history)
                        (folder / f"{metric}.tsv").write_text(f"epoch\t{metric}\n{rows}")
