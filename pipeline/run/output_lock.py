"""One run of a job at a time: an exclusive lock on the job's outputs while its stage runs.

Snakemake and DVC each keep their own books, so nothing stops `snakemake` and
`dvc repro` (or two shells) from running the same job in one checkout at once:
the second would take over the first's resume state and outputs mid-run. Every
stage therefore takes an flock on `.<name>.lock` beside its first output before
it reads or writes anything; a second run of the same job finds it held, says
in one line who holds it (pid, host, start time, command) and stops with exit
code 75 (EX_TEMPFAIL: nothing went wrong, try again later; a driver's retry
may run it once the holder is done). flock is released by the kernel when its
holder dies, so a kill never leaves a stale lock; the file itself is removed
when the run ends (a killed run's file is reused and removed by the next run).

Data-parallel workers started by torchrun run under their parent's lock: the
parent puts the lock's path in $PIPELINE_OUTPUT_LOCK for them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import socket
import time
from pathlib import Path
from typing import Iterator, Sequence

from pipeline.io import sole_writer

BUSY_EXIT = 75  # EX_TEMPFAIL, as a preempted stage: the job can run later
LOCK_ENV = "PIPELINE_OUTPUT_LOCK"


class Busy(SystemExit):
    """Another process runs the same job: exits with BUSY_EXIT after printing `message`."""

    def __init__(self, message: str) -> None:
        super().__init__(BUSY_EXIT)
        self.message = message


def lock_path(output: str | os.PathLike) -> Path:
    """`.<name>.lock` beside a job's first output `<name>` (a file or a folder)."""
    out = Path(output)
    return out.parent / f".{out.name}.lock"


def _holder(fd: int) -> str:
    """Who holds the lock, from what it wrote into the file (it writes right after locking: wait briefly)."""
    for _ in range(20):
        raw = os.pread(fd, 65536, 0)
        if raw:
            try:
                info = json.loads(raw)
                return f"pid {info['pid']} on {info['host']} since {info['since']} ({info['command']})"
            except (ValueError, KeyError):
                break
        time.sleep(0.05)
    return "another process"


def _missing_folders(path: Path) -> list[Path]:
    """The folders above `path` that do not exist yet, deepest first."""
    return [p for p in path.parents if not p.exists()]


def _acquire(path: Path, job: str) -> int:
    """An open descriptor of `path` holding its flock; Busy when another process holds it."""
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:  # another job sharing the new folders removed them as it failed early
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise Busy(
                f"error: {job} is already running: {holder}; lock {path}; "
                f"not starting it twice (exit {BUSY_EXIT}: run it again once that run ends)"
            ) from None
        try:
            current = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            return fd
        os.close(fd)  # locked a file that its previous holder removed as it finished: lock the new one


@contextlib.contextmanager
def holding(outputs: Sequence[str | os.PathLike], job: str, argv: Sequence[str]) -> Iterator[Path]:
    """Hold the lock of the job whose outputs are `outputs` (its first one names the lock) while the block
    runs. `job` names it and `argv` (`python -m pipeline` ARGV) is its command, in the message a second run
    prints."""
    path = lock_path(outputs[0])
    inherited = os.environ.get(LOCK_ENV)
    if inherited == str(path.resolve()):  # a torchrun worker: the parent holds it
        with sole_writer(outputs):
            yield path
        return
    created = _missing_folders(path)  # removed again if the stage leaves them empty (it failed early)
    fd = _acquire(path, job)
    since = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    try:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": since,
            "command": shlex.join(["python", "-m", "pipeline", *argv]),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        os.environ[LOCK_ENV] = str(path.resolve())
        with sole_writer(outputs):
            yield path
    finally:
        if inherited is None:
            os.environ.pop(LOCK_ENV, None)
        else:
            os.environ[LOCK_ENV] = inherited
        path.unlink(missing_ok=True)  # while still holding it: a waiting opener re-checks the path
        os.close(fd)
        for folder in created:
            with contextlib.suppress(OSError):  # not empty: the stage wrote there
                folder.rmdir()
