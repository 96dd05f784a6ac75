"""Progress of a long loop: a live bar on a terminal, plain lines everywhere else.

On a terminal (stderr is a TTY: `dvc repro`, or a stage run by hand) the loop
shows a tqdm bar with its total and ETA. Otherwise, and under Snakemake
(several jobs share one console: `--progress lines`), it prints one plain line
every PLAIN_EVERY_S seconds, e.g.
`delays_train synth/learned_delay/s0 epoch 3/12: 40%, 10/25 batches, 1.9 batch/s, ETA 8 s,
loss 0.812 acc 71.5`.
The stage's log file (pipeline/run/logs.py) gets those lines in either mode.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

from tqdm import tqdm

from pipeline.run import logs

MODES = ("auto", "bar", "lines")
mode = "auto"  # set by the CLI's --progress
PLAIN_EVERY_S = 30.0
POSTFIX_EVERY_S = 2.0  # the postfix reads running metrics: a device sync, so not at every step


class Progress:
    def __init__(self, desc: str, total: int | None, initial: int = 0, enabled: bool = True) -> None:
        self.desc, self.total, self.count, self.enabled = desc, total, initial, enabled
        self.live = enabled and (mode == "bar" or (mode == "auto" and sys.stderr.isatty()))
        self._bar: tqdm | None = None
        self._start = self._last_plain = self._last_postfix = time.perf_counter()
        self._initial = initial

    def __enter__(self) -> "Progress":
        if self.live:
            self._bar = tqdm(
                total=self.total, initial=self.count, desc=self.desc, leave=False, dynamic_ncols=True
            )
        return self

    def step(self, postfix: Callable[[], str] | None = None) -> None:
        self.count += 1
        now = time.perf_counter()
        if not self.enabled:
            return
        due_postfix = postfix is not None and now - self._last_postfix >= POSTFIX_EVERY_S
        if self._bar is not None:
            self._bar.update(1)
            if due_postfix:
                self._bar.set_postfix_str(postfix())
                self._last_postfix = now
        if now - self._last_plain >= PLAIN_EVERY_S:
            self._last_plain = now
            line = self._line(now, postfix() if postfix is not None else "")
            if self._bar is not None:
                logs.note(line)  # the console has the bar
            else:
                print(line, file=sys.stderr, flush=True)

    def _line(self, now: float, postfix: str) -> str:
        done = self.count - self._initial
        rate = done / max(now - self._start, 1e-9)
        parts = [
            f"{self.count}/{self.total} batches" if self.total else f"{self.count} batches",
            f"{rate:.2g} batch/s",
        ]
        if self.total:
            parts.insert(0, f"{100 * self.count / self.total:.0f}%")
            parts.append(f"ETA {(self.total - self.count) / max(rate, 1e-9):.0f} s")
        return f"{self.desc}: {', '.join(parts)}" + (f", {postfix}" if postfix else "")

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
