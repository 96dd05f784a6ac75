"""One plain log file per stage run, under both drivers.

`python -m pipeline <stage> ... --log FILE` copies everything the stage prints
(stdout and stderr: epoch lines, warnings, errors) to FILE as plain lines,
while the console keeps its live output: a carriage-return frame of a progress
bar reaches the log only as the text that ends its line (a bar that clears
itself, never). Progress lines meant for the log alone go through `note`.
"""

from __future__ import annotations

import contextlib
import hashlib
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import IO, Iterator, TextIO

_log: IO[str] | None = None


class _Tee:
    """A text stream writing to the console stream and, line by line without \\r frames, to the log."""

    def __init__(self, console: TextIO, log: IO[str]) -> None:
        self.console, self.log, self._line = console, log, ""

    def write(self, text: str) -> int:
        self.console.write(text)
        self._line += text
        *done, self._line = self._line.split("\n")
        for line in done:
            self.log.write(line.rsplit("\r", 1)[-1] + "\n")
        if done:
            self.log.flush()
        return len(text)

    def flush(self) -> None:
        self.console.flush()
        self.log.flush()

    def isatty(self) -> bool:
        return self.console.isatty()

    def fileno(self) -> int:
        return self.console.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.console, "encoding", "utf-8")


def note(line: str) -> None:
    """Write a line to the log only (a progress line the console shows as a live bar instead)."""
    if _log is not None:
        _log.write(line + "\n")
        _log.flush()


def snapshot_of(params_file: Path, text: str) -> Path:
    """The never-rewritten copy of a resolved parameter file (Snakemake's), named by its content's hash."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return params_file.with_name(f"{params_file.stem}-{digest}{params_file.suffix}")


def _rerunnable(argv: list[str]) -> list[str]:
    """argv with a `--params` file replaced by its never-rewritten copy where one exists, so the command the
    log shows reruns the job with the parameters it ran with, whatever Snakemake resolved since."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg == "--params" and Path(out[i + 1]).is_file():
            copy = snapshot_of(Path(out[i + 1]), Path(out[i + 1]).read_text())
            if copy.is_file():
                out[i + 1] = str(copy)
    return out


@contextlib.contextmanager
def logging_to(path: Path | None) -> Iterator[None]:
    """Copy stdout and stderr to `path` (created, replacing an older log) for the duration. The log opens with
    the command and ends with when it ended (an error line, if any, comes before), so a stage that prints
    nothing still says what ran, where and how long."""
    global _log
    if path is None:
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as log:
        start = time.time()
        command = shlex.join(["python", "-m", "pipeline", *_rerunnable(sys.argv[1:])])
        log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} on {socket.gethostname()}: {command}\n")
        log.flush()
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr, _log = _Tee(out, log), _Tee(err, log), log
        ended = "ended"
        try:
            yield
        except BaseException as exc:  # noqa: BLE001 - re-raised: only named in the log
            ended = f"stopped by {type(exc).__name__}"
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr, _log = out, err, None
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {ended} after {time.time() - start:.1f} s\n")
