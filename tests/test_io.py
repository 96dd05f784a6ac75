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
