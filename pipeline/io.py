"""Atomic output writing: a killed stage never leaves a complete-looking file.

Every file is written to a temporary sibling and renamed into place (rename is
atomic on POSIX within one filesystem), so Snakemake and DVC only ever see
either the old output or the complete new one.

A temporary is named `.<name>.<host>_<pid>_<random>.tmp` after its writer. A
kill leaves it behind (gigabytes for a prepared dataset), so the next atomic
write of the same output removes the temporaries whose writer is dead: a
process of this host that no longer runs, or any writer at all when this
process holds the output's job lock (pipeline/run/output_lock.py: no other
process can be writing it, on any node). A live writer's temporary is never
touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

if TYPE_CHECKING:
    import torch


def umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# The host part of temporary names: no dots or underscores, so a name splits back unambiguously.
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
_sole: list[Path] = []  # outputs whose job lock this process holds


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{HOST}_{os.getpid()}_"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _held_by_us(path: Path) -> bool:
    """Whether this process holds the job lock covering `path`: one of the job's outputs, a file inside one,
    or a hidden sibling of one (the resume state `.<name>.resume.pt`)."""
    path = path.resolve()
    return any(
        path == out
        or out in path.parents
        or (path.parent == out.parent and path.name.startswith(f".{out.name}."))
        for out in _sole
    )


@contextlib.contextmanager
def sole_writer(outputs: Iterable[str | os.PathLike]) -> Iterator[None]:
    """Declare, while the block runs, that this process is the only possible writer of `outputs` (it holds
    their job lock): temporaries of theirs left by writers on other hosts are then known dead too."""
    added = [Path(p).resolve() for p in outputs]
    _sole.extend(added)
    try:
        yield
    finally:
        for out in added:
            _sole.remove(out)


def remove_dead_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of `path` that killed writers left beside it; return them."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.([A-Za-z0-9-]+)_(\d+)_[^.]*\.tmp")
    try:
        siblings = list(os.scandir(path.parent))
    except FileNotFoundError:
        return []
    removed = []
    for entry in siblings:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        host, pid = match.group(1), int(match.group(2))
        dead = not _pid_alive(pid) if host == HOST else _held_by_us(path)
        if not dead:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)
        removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` on success.
    The file gets the mode a plain open() would give it (0644 under umask 022), not mkstemp's private 0600,
    so colleagues on a shared cluster can read the outputs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~umask())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory; it replaces `path` on success (with a plain mkdir's mode,
    0755 under umask 022, not mkdtemp's private 0700)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temps(path)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~umask())
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """torch.save, atomically and byte-reproducibly."""
    import torch  # here, not at the top: atomic writes of text need no torch, which takes seconds to load

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        # A file object, not the path: torch names the zip records after the file it is given, and the
        # temporary name is random, so equal tensors would give different bytes (and DVC hashes).
        torch.save(obj, f)


def load_torch(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint or prepared tensor file, naming the file on failure."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected a torch file written by an earlier stage, found nothing")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # torch raises several types for damaged files
        raise ValueError(f"{path}: not a readable torch file ({err})") from err
