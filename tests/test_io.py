"""Atomic, reproducible writes: what every stage's outputs rely on."""

from __future__ import annotations

import pytest
import torch

from pipeline.io import atomic_path, load_torch, save_torch, write_json


def test_save_torch_is_byte_identical_for_equal_objects(tmp_path) -> None:
    # DVC hashes outputs: a stage rerun that computes the same tensors must not invalidate what follows.
    obj = {"model": {"w": torch.arange(12.0).reshape(3, 4)}, "meta": {"role": "pretrain_ann"}}
    save_torch(tmp_path / "a.pt", obj)
    save_torch(tmp_path / "b.pt", obj)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert torch.equal(load_torch(tmp_path / "b.pt")["model"]["w"], obj["model"]["w"])


def test_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path) -> None:
    target = tmp_path / "metrics.json"
    write_json(target, {"acc": 1.0})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"acc": 0.')  # half-written
            raise RuntimeError("killed")
    assert target.read_text() == '{\n  "acc": 1.0\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_outputs_follow_the_umask(tmp_path) -> None:
    """Atomic writes must not keep mkstemp's private modes (0600 files, 0700 folders): colleagues on a shared
    cluster read the outputs."""
    import os

    from pipeline.io import atomic_dir, write_text

    old = os.umask(0o027)
    try:
        write_text(tmp_path / "file.txt", "x")
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "inner.txt").write_text("y")
    finally:
        os.umask(old)
    assert (tmp_path / "file.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o750


_WRITER = """
import sys
from pathlib import Path
from pipeline.io import atomic_dir, atomic_path
target, kind = Path(sys.argv[1]), sys.argv[2]
with (atomic_dir if kind == "dir" else atomic_path)(target) as tmp:
    (tmp / "part.bin" if kind == "dir" else tmp).write_bytes(b"x" * 1000)
    print(tmp, flush=True)
    sys.stdin.readline()  # inside the write until told to finish
"""


def _writer(target, kind: str):
    """A process writing `target` atomically that stays inside the write until a line comes on its stdin."""
    import subprocess
    import sys

    from tests.conftest import REPO

    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(target), kind],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_the_next_write_removes_what_a_killed_writer_left_and_spares_a_live_one(tmp_path, kind: str) -> None:
    """kill -9 mid-write leaves `.<name>.<host>_<pid>_*.tmp`: the next write of the same output removes it,
    while the temporary of a writer still running is left alone (and that writer still completes)."""
    import signal
    from pathlib import Path

    from pipeline.io import atomic_dir

    target = tmp_path / ("prepared" if kind == "dir" else "metrics.json")
    killed, live = _writer(target, kind), _writer(target, kind)  # started together: torch loads slowly
    left, writing = (Path(p.stdout.readline().strip()) for p in (killed, live))
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert left.exists() and left.name.startswith(f".{target.name}.")
    if kind == "dir":
        with atomic_dir(target) as tmp:
            (tmp / "part.bin").write_bytes(b"y")
    else:
        write_json(target, {"acc": 1.0})
    assert not left.exists() and writing.exists()
    live.communicate("done\n", timeout=60)
    assert live.returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_a_temporary_of_another_host_is_removed_only_by_the_jobs_lock_holder(tmp_path) -> None:
    """On a shared filesystem a pid from another node means nothing here: only a process holding the job's
    lock (no one else can be writing the job's outputs) removes such a temporary."""
    from pipeline.io import HOST, sole_writer

    target = tmp_path / "s0"
    other = tmp_path / f".s0.{HOST}x_1_abcdefgh.tmp"
    other.mkdir()
    write_json(target, {})
    assert other.exists()
    with sole_writer([target]):
        write_json(target, {"b": 1})
    assert not other.exists()
