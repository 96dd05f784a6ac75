"""Exits a stage reports through its exit code (kept apart so the CLI need not import the training code)."""

from __future__ import annotations

import signal

PREEMPTED_EXIT = 75  # EX_TEMPFAIL: try again later (a driver's retry resumes)
# A cluster's notice before its time limit: SLURM's `--signal` (the slurm profile sends SIGTERM) and the
# SIGTERM it sends at the limit itself, or SIGUSR1 from a script or an older profile.
PREEMPT_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class Preempted(SystemExit):
    """Raised after a preemption signal, once the state is saved: exits the process with PREEMPTED_EXIT."""

    def __init__(self, message: str) -> None:
        super().__init__(PREEMPTED_EXIT)
        self.message = message
