"""Per-epoch metrics for training stages, through DVCLive.

Each training stage owns one DVCLive directory (git-tracked, small):
`metrics.json` (the summary, declared as DVC metrics), `plots/metrics/*.tsv`
(per-epoch curves, declared as DVC plots) and `config.json` (the resolved
configuration the run used, so a result can always be traced to its settings).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from dvclive import Live

from pipeline.io import write_json


class EpochLog:
    """Logs one row of metrics per epoch plus cumulative wall time.

    `elapsed_s` counts only time spent inside the stage's epochs (data loading,
    training and validation), so the pretrain table can compare training time
    across pipelines without start-up noise.
    """

    def __init__(self, live_dir: str | Path, config: Mapping[str, Any], resume: bool = False) -> None:
        self.dir = Path(live_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json(self.dir / "config.json", dict(config))
        # dvcyaml=None: our dvc.yaml declares metrics/plots itself; no git side effects.
        self.live = Live(dir=str(self.dir), dvcyaml=None, save_dvc_exp=False, resume=resume, report=None)
        self.history: list[dict[str, float]] = []
        self.elapsed_s = 0.0
        self._t0: float | None = None

    def replay(self, history: list[dict[str, float]]) -> None:
        """Re-log the epochs of a killed run (resume): DVCLive's step and files continue where it stopped."""
        for row in history:
            for key, value in row.items():
                if key != "epoch":
                    self.live.log_metric(key, value)
            self.live.next_step()
        self.history = [dict(r) for r in history]
        self.elapsed_s = float(history[-1]["elapsed_s"]) if history else 0.0

    def start_epoch(self, already_s: float = 0.0) -> None:
        """Start timing an epoch; `already_s`: seconds it ran before a preemption (resumed mid-epoch)."""
        self._t0 = time.perf_counter() - already_s

    def epoch_elapsed_s(self) -> float:
        """Seconds of the current epoch so far."""
        return time.perf_counter() - self._t0 if self._t0 is not None else 0.0

    def end_epoch(self, epoch: int, metrics: Mapping[str, float]) -> dict[str, float]:
        """Record `metrics` for `epoch` (1-based); returns the row with timing added."""
        if self._t0 is not None:
            self.elapsed_s += time.perf_counter() - self._t0
            self._t0 = None
        row = {
            "epoch": epoch,
            "elapsed_s": round(self.elapsed_s, 3),
            **{k: float(v) for k, v in metrics.items()},
        }
        for key, value in row.items():
            if key != "epoch":
                self.live.log_metric(key, value)
        self.live.next_step()
        self.history.append(row)
        return row

    def finish(self, summary: Mapping[str, Any]) -> None:
        """Write the final summary as metrics.json (replacing DVCLive's last-step summary)."""
        self.live.end()
        write_json(self.dir / "metrics.json", dict(summary))
        write_json(self.dir / "history.json", self.history)
