"""The memory-mapped prepared store, the streaming delays_prepare and the prefetching loader.

The reference for values is the frozen pre-streaming prepare (benchmarks/legacy_prepare.py):
whole files in memory, one torch file per split.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import legacy_prepare
from pipeline.params.configs import DelaysData
from pipeline.data import gsc, prepared, shd, store
from pipeline.run.training import EpochMetrics
from pipeline.delays.data_stages import SPLITS, prepare
from pipeline.data.sampling import Dist
from pipeline.io import save_torch
from pipeline.drivers.stage_table import DelaysPrepareConfig
from tests.tiny_data import write_random_h5, write_tiny_gsc


def data_cfg(fmt: str, root: Path, **changes) -> DelaysData:
    values = {
        "format": fmt,
        "root": str(root),
        "valid_fraction": 0.25,
        "valid_seed": 3,
        "time_step_ms": 10.0,
        "n_channels": 700,
        "pool": 5,
    }
    if fmt == "gsc":
        values.update(n_channels=140, pool=1)
    return DelaysData(**{**values, **changes})


def store_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture
def shd_root(tmp_path):
    root = tmp_path / "shd"
    root.mkdir()
    write_random_h5(root / "shd_train.h5", 41, seed=0, n_classes=4)
    write_random_h5(root / "shd_test.h5", 9, seed=1, n_classes=4)
    return root


def assert_same_split(new: prepared.Split, old: legacy_prepare.Split) -> None:
    assert new.frames.dtype == old.frames.numpy().dtype
    np.testing.assert_array_equal(new.frames, old.frames.numpy())
    np.testing.assert_array_equal(new.lengths, old.lengths.numpy())
    np.testing.assert_array_equal(new.labels, old.labels.numpy())
    # GSC metadata also lists the wavs it skipped as unreadable; the old path had no such list.
    meta = dict(new.meta)
    if meta["format"] == "gsc":
        assert meta.pop("unreadable") == []
    assert meta == old.meta
    idx = np.random.default_rng(0).permutation(len(new))[:7]
    for a, b in zip(new.batch(idx), old.batch(torch.as_tensor(idx))):
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_store_round_trip_and_layout(tmp_path):
    rng = np.random.default_rng(0)
    lengths = np.array([3, 1, 5, 2])
    split = prepared.make_split(
        rng.integers(0, 9, (11, 6)).astype(np.int16), lengths, [2, 0, 1, 1], {"dataset": "x"}
    )
    prepared.save_split(tmp_path / "s", split)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "frames.npy",
        "labels.npy",
        "lengths.npy",
        "meta.json",
        "offsets.npy",
    ]
    loaded = prepared.load_split(tmp_path / "s")
    assert isinstance(loaded.frames, np.memmap) and loaded.frames.mode == "r"  # shared page cache, not a copy
    with pytest.raises(ValueError, match="read-only"):
        loaded.frames[0, 0] = 1
    np.testing.assert_array_equal(loaded.frames, split.frames)
    np.testing.assert_array_equal(loaded.offsets, [0, 3, 4, 9, 11])
    assert (
        loaded.labels.tolist() == [2, 0, 1, 1] and loaded.meta == {"dataset": "x"} and loaded.n_channels == 6
    )
    # frames.npy is what np.save writes for the same array: readable by any numpy, no hidden state
    np.save(tmp_path / "ref.npy", split.frames)
    assert (tmp_path / "s" / "frames.npy").read_bytes() == (tmp_path / "ref.npy").read_bytes()
    for a, b in zip(loaded.batch([3, 0, 2]), split.batch([3, 0, 2])):
        assert torch.equal(a, b)
    prepared.save_split(tmp_path / "empty", split.subset([]))
    assert len(prepared.load_split(tmp_path / "empty")) == 0


def test_streaming_shd_with_holdout_equals_the_whole_file_prepare(shd_root, tmp_path, monkeypatch):
    cfg = data_cfg("shd", shd_root)
    old = legacy_prepare.prepare(cfg, "shd", tmp_path / "old")
    monkeypatch.setattr(
        shd, "READ_SAMPLES", 4
    )  # many reads, hold-out samples on both sides of their boundaries
    prepare(DelaysPrepareConfig(data=cfg, max_skipped_fraction=0.0), dataset="shd", out=tmp_path / "new")
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["test", "train", "valid"]
    for split in SPLITS:
        assert_same_split(prepared.load_split(tmp_path / "new" / split), old[split])
    assert [len(old[s]) for s in SPLITS] == [32, 9, 9]


def test_streaming_ssc_equals_the_whole_file_prepare(tmp_path, monkeypatch):
    root = tmp_path / "ssc"
    root.mkdir()
    for i, split in enumerate(SPLITS):
        write_random_h5(root / f"ssc_{split}.h5", 7 + 3 * i, seed=i, n_classes=5)
    cfg = data_cfg("ssc", root, pool=1, time_step_ms=4.0)
    old = legacy_prepare.prepare(cfg, "ssc", tmp_path / "old")
    monkeypatch.setattr(shd, "READ_SAMPLES", 3)
    prepare(DelaysPrepareConfig(data=cfg, max_skipped_fraction=0.0), dataset="ssc", out=tmp_path / "new")
    for split in SPLITS:
        assert_same_split(prepared.load_split(tmp_path / "new" / split), old[split])


def test_prepare_is_byte_reproducible(shd_root, tmp_path):
    outputs = []
    for name in ("a", "b"):
        prepare(
            DelaysPrepareConfig(data=data_cfg("shd", shd_root), max_skipped_fraction=0.0),
            dataset="shd",
            out=tmp_path / name,
        )
        outputs.append(store_bytes(tmp_path / name))
    assert outputs[0] == outputs[1] and len(outputs[0]) == 3 * 5


def test_gsc_streams_in_parallel_and_the_worker_count_does_not_change_the_bytes(tmp_path, monkeypatch):
    write_tiny_gsc(tmp_path / "gsc", ["down", "up", "yes"], per_word=7)
    cfg = data_cfg("gsc", tmp_path / "gsc")
    monkeypatch.setattr(gsc, "FEATURE_CHUNK", 2)  # several chunks per split, in flight at once
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the CLI ran the old stage (and as the workers compute)
    try:
        old = legacy_prepare.prepare(
            cfg, "gsc", tmp_path / "old"
        )  # same chunks: a batch's values depend on its size
    finally:
        torch.set_num_threads(threads)
    outputs = {}
    for workers in (1, 2):
        monkeypatch.setattr(gsc.os, "sched_getaffinity", lambda pid, n=workers: set(range(n)))
        prepare(
            DelaysPrepareConfig(data=cfg, max_skipped_fraction=0.0),
            dataset="gsc",
            out=tmp_path / f"w{workers}",
        )
        outputs[workers] = store_bytes(tmp_path / f"w{workers}")
    assert outputs[1] == outputs[2]
    for split in SPLITS:
        new = prepared.load_split(tmp_path / "w2" / split)
        assert new.frames.dtype == np.float32 and new.frames.shape == (len(new) * 101, 140)
        assert_same_split(new, old[split])


def test_a_bad_wav_in_a_worker_is_named_and_nothing_is_written(tmp_path):
    splits = write_tiny_gsc(tmp_path / "gsc", ["down", "up"], per_word=3)
    (tmp_path / "gsc" / splits["test"][1]).write_bytes(b"RIFF not really")
    with pytest.raises(ValueError, match=r"up/00000001_nohash_0.wav: not a readable wav file"):
        prepare(
            DelaysPrepareConfig(data=data_cfg("gsc", tmp_path / "gsc"), max_skipped_fraction=0.0),
            dataset="gsc",
            out=tmp_path / "out",
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gsc"]


def test_empty_split_is_reported_before_any_work(tmp_path):
    root = tmp_path / "ssc"
    root.mkdir()
    for split, n in (("train", 4), ("valid", 0), ("test", 3)):
        write_random_h5(root / f"ssc_{split}.h5", n, seed=0)
    with pytest.raises(
        ValueError, match=r"the valid split of dataset 'ssc' is empty \(ssc_valid.h5 holds no samples\)"
    ):
        prepare(
            DelaysPrepareConfig(data=data_cfg("ssc", root), max_skipped_fraction=0.0),
            dataset="ssc",
            out=tmp_path / "out",
        )
    assert not (tmp_path / "out").exists()


def test_old_format_and_damaged_stores_give_one_line_errors(shd_root, tmp_path):
    old_dir = tmp_path / "old"
    legacy_prepare.prepare(data_cfg("shd", shd_root), "shd", old_dir)
    for path in (old_dir / "train", old_dir / "train.pt"):  # as the new and as the old code named it
        with pytest.raises(
            store.StoreError, match=r"train.pt: a prepared split of an older format .*rerun delays_prepare"
        ) as err:
            prepared.load_split(path)
        assert "\n" not in str(err.value)
    with pytest.raises(store.StoreError, match=r"nothing: no prepared split store here"):
        prepared.load_split(tmp_path / "nothing")
    prepare(
        DelaysPrepareConfig(data=data_cfg("shd", shd_root), max_skipped_fraction=0.0),
        dataset="shd",
        out=tmp_path / "new",
    )
    meta = tmp_path / "new" / "test" / "meta.json"
    meta.write_text(meta.read_text().replace('"format_version": 2', '"format_version": 3'))
    with pytest.raises(
        store.StoreError,
        match=r"test: prepared store of format version 3, this code reads version 2; rerun delays_prepare",
    ):
        prepared.load_split(tmp_path / "new" / "test")
    np.save(tmp_path / "new" / "valid" / "lengths.npy", np.ones(3, np.int64))
    with pytest.raises(store.StoreError, match=r"valid: damaged prepared store .*rerun delays_prepare"):
        prepared.load_split(tmp_path / "new" / "valid")
    save_torch(tmp_path / "new" / "train" / "frames.npy", {"x": 1})
    with pytest.raises(store.StoreError, match=r"train: damaged prepared store"):
        prepared.load_split(tmp_path / "new" / "train")


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_store_files_get_the_users_umask(shd_root, tmp_path, umask):
    old = os.umask(umask)
    try:
        prepare(
            DelaysPrepareConfig(data=data_cfg("shd", shd_root), max_skipped_fraction=0.0),
            dataset="shd",
            out=tmp_path / "out",
        )
    finally:
        os.umask(old)
    for path in (tmp_path / "out").rglob("*"):
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


@pytest.fixture
def ragged_split(tmp_path):
    """A stored split of 23 samples of lengths 1..12, float frames with distinct values."""
    rng = np.random.default_rng(5)
    lengths = rng.integers(1, 13, 23)
    frames = rng.standard_normal((int(lengths.sum()), 4)).astype(np.float32)
    prepared.save_split(tmp_path / "s", prepared.make_split(frames, lengths, rng.integers(0, 3, 23)))
    return prepared.load_split(tmp_path / "s")


@pytest.mark.parametrize(
    "shuffle, d, skip",
    [
        (False, Dist(), 0),
        (True, Dist(), 0),
        (True, Dist(1, 2, 1), 0),
        (False, Dist(0, 3, 0), 0),
        (True, Dist(), 2),
    ],
)
def test_prefetching_loader_yields_exactly_the_plain_batches(ragged_split, shuffle, d, skip):
    plain_gen, prefetch_gen = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    plain = list(prepared.iterate_batches(ragged_split, 5, shuffle, plain_gen, d=d, skip=skip))
    ahead = list(prepared.iterate_batches(ragged_split, 5, shuffle, prefetch_gen, d=d, skip=skip, prefetch=2))
    assert len(plain) == len(ahead) > 1
    for (xa, ya), (xb, yb) in zip(plain, ahead):
        assert xa.dtype == xb.dtype == torch.float32 and torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(plain_gen.get_state(), prefetch_gen.get_state())  # the generator is used alike


def test_prefetching_loader_stops_its_thread_and_passes_errors_on(ragged_split, monkeypatch):
    before = threading.active_count()
    batches = prepared.iterate_batches(ragged_split, 2, prefetch=1)
    next(batches)
    batches.close()  # the consumer leaves early
    assert threading.active_count() == before

    def broken(idx, pin_memory=False):
        raise OSError("disk gone")

    monkeypatch.setattr(ragged_split, "gather", broken)
    with pytest.raises(OSError, match="disk gone"):
        next(prepared.iterate_batches(ragged_split, 2, prefetch=3))
    assert threading.active_count() == before


def test_epoch_metrics_sum_on_the_device_like_the_per_step_floats():
    metrics = EpochMetrics(torch.device("cpu"))
    loss_sum, correct, seen = 0.0, 0, 0
    rng = np.random.default_rng(0)
    for n in (7, 3, 5):
        loss, right = (
            torch.tensor(rng.uniform(0, 3), dtype=torch.float32),
            torch.tensor(int(rng.integers(0, n))),
        )
        metrics.update(loss, right, n)
        loss_sum, correct, seen = loss_sum + float(loss) * n, correct + int(right), seen + n
    assert metrics.compute() == [loss_sum, correct, seen]
