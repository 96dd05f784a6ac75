"""Exits a stage reports through its exit code (kept apart so the CLI need not import the training code)."""
from __future__ import annotations

PREEMPTED_EXIT = 75  # EX_TEMPFAIL: try again later (a driver's retry resumes)


class Preempted(SystemExit):
    """Raised after a preemption signal, once the state is saved: exits the process with PREEMPTED_EXIT."""

    def __init__(self, message: str) -> None:
        super().__init__(PREEMPTED_EXIT)
        self.message = message
