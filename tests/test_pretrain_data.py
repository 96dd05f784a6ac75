"""Paper A data: ES-ImageNet conversion and loader on hand-made samples, ES-UCF101, digits."""

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.data.batching import Skipped, collate_skipping, materialize
from pipeline.data.device_transforms import to_model_input
from pipeline.data.es_imagenet import (
    ESImageNet,
    Geometry,
    convert_imagefolder,
    events_to_frames,
    image_to_events,
)
from pipeline.data.es_ucf101 import ESUCF101, action_of, clip_to_events


def test_real_geometry_defaults():
    g = Geometry()
    assert (g.long_side, g.canvas, g.margin, g.crop) == (254, 256, 16, 224)
    assert g.offset(254, 190) == (0, 32)


def test_single_pixel_events_follow_the_shift_path():
    geom = Geometry(long_side=10, canvas=12, margin=0)
    grey = np.zeros((10, 10), np.float32)
    grey[4, 4] = 1.0
    pos, neg = image_to_events(grey, 0.18, geom)
    # step 1: offset (x, y) (1, 0) -> (0, 2): pixel moves from (row 4, col 5) to (row 6, col 4)
    assert [6, 4, 1] in pos.tolist() and [4, 5, 1] in neg.tolist()
    assert pos.dtype == np.uint8 and pos.shape[1] == 3
    assert sorted(set(pos[:, 2].tolist())) == list(range(1, 9))
    # the loader places it at [polarity, t-1, row + off, col + off]
    frames = events_to_frames(pos, neg, 10, 10, geom)
    assert frames.shape == (2, 8, 12, 12) and frames.dtype == torch.uint8
    off = geom.offset(10, 10)
    assert frames[0, 0, 6 + off[0], 4 + off[1]] == 1 and frames[1, 0, 4 + off[0], 5 + off[1]] == 1
    assert frames.sum() == len(pos) + len(neg)


def test_margin_drops_events_outside_the_crop():
    geom = Geometry(long_side=10, canvas=12, margin=3)
    grey = np.ones((10, 10), np.float32)
    pos, neg = image_to_events(grey, 0.18, geom)
    ev = np.concatenate([pos, neg])
    off = geom.offset(10, 10)
    assert ((ev[:, 0] + off[0] > 3) & (ev[:, 0] + off[0] < 9)).all()
    assert ((ev[:, 1] + off[1] > 3) & (ev[:, 1] + off[1] < 9)).all()


def _imagefolder(root, n_per_class=2):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(n_per_class):
                arr = (rng.random((6, 9, 3)) * 255).astype(np.uint8)  # non-square: a != b
                Image.fromarray(arr).save(root / split / c / f"{i}.png")


def test_converter_writes_the_exact_layout_and_loader_reads_it(tmp_path):
    _imagefolder(tmp_path / "img")
    geom = Geometry(long_side=18, canvas=20, margin=1)
    rep = convert_imagefolder(tmp_path / "img", tmp_path / "es", geom, 0.18, 1)
    lines = (tmp_path / "es" / "trainlabel.txt").read_text().splitlines()
    assert lines[0] == "class0/class0_1.npz 0 12 18"  # a = resized height, b = width
    assert lines[-1].startswith("class1/class1_2.npz 1 ")
    vlines = (tmp_path / "es" / "vallabel.txt").read_text().splitlines()
    assert vlines[0].split()[0] == "ILSVRC2012_val_00000001.npz"
    z = np.load(tmp_path / "es" / "train" / "class0" / "class0_1.npz")
    assert set(z.files) == {"pos", "neg"} and z["pos"].dtype == np.uint8
    ds = ESImageNet(tmp_path / "es", "train", geom)
    packed, y = ds[0]
    assert packed.dtype == torch.uint8 and packed.shape == (2, 8, 18, 3) and y == 0  # 18 bits -> 3 bytes
    x = to_model_input(packed, ds.input_spec)
    assert x.shape == (2, 8, 18, 18) and x.dtype == torch.float32
    # centring offset ((long_side - a)//2, (long_side - b)//2) = (3, 0)
    full = torch.zeros(2, 8, 20, 20)
    p = torch.as_tensor(z["pos"].astype(np.int64))
    full[0, p[:, 2] - 1, p[:, 0] + 3, p[:, 1]] = 1
    assert torch.equal(x[0], full[0, :, 1:19, 1:19])
    assert rep["train"]["written"] == 4


def test_corrupt_and_missing_npz_are_skipped_and_counted(tmp_path):
    _imagefolder(tmp_path / "img")
    geom = Geometry(long_side=18, canvas=20, margin=1)
    convert_imagefolder(tmp_path / "img", tmp_path / "es", geom, 0.18, 1)
    (tmp_path / "es" / "train" / "class0" / "class0_1.npz").write_bytes(b"not a zip")
    (tmp_path / "es" / "train" / "class1" / "class1_1.npz").unlink()
    ds = ESImageNet(tmp_path / "es", "train", geom)
    assert isinstance(ds[0], Skipped)
    x, y, skipped = collate_skipping([ds[i] for i in range(len(ds))])
    assert len(x) == 2 and len(skipped) == 2 and "class0_1.npz" in skipped[0]
    _, bad = materialize(ds)
    assert len(bad) == 2


def test_missing_root_or_label_file_is_a_named_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ESImageNet(tmp_path / "nowhere", "train")
    (tmp_path / "es").mkdir()
    with pytest.raises(FileNotFoundError, match="vallabel.txt"):
        ESImageNet(tmp_path / "es", "val")


def test_es_ucf101_converter_and_loader(tmp_path):
    rng = np.random.default_rng(0)
    frames = (rng.random((40, 8, 10, 3)) * 255).astype(np.uint8)
    ev = clip_to_events(frames)
    assert ev.shape == (2, 30, 8, 10) and ev.dtype == np.uint8
    n = ev[0].size
    assert abs(ev[0].sum() / n - 0.075) < 0.01 and abs(ev[1].sum() / n - 0.075) < 0.01
    assert clip_to_events(np.zeros((31, 4, 4), np.uint8)).sum() == 0  # still clip: no events
    assert action_of("v_ApplyEyeMakeup_g08_c01.npz") == "ApplyEyeMakeup"
    for name in ("v_Biking_g01_c01", "v_ApplyEyeMakeup_g02_c03"):
        (tmp_path / "train").mkdir(exist_ok=True)
        np.savez_compressed(tmp_path / "train" / f"{name}.npz", ev)
    (tmp_path / "train" / "v_Biking_g03_c01.npz").write_bytes(b"broken")
    ds = ESUCF101(tmp_path, "train")
    assert ds.classes == ["ApplyEyeMakeup", "Biking"]
    x, y = ds[0]
    assert x.shape == (2, 30, 8, 10) and x.dtype == torch.uint8 and y == 0
    assert torch.equal(x, torch.from_numpy(ev))
    assert isinstance(ds[2], Skipped)


def test_unreadable_samples_are_counted_with_a_warning_up_to_the_allowed_share(capsys):
    from pipeline.checks import TooManyUnreadable, check_unreadable

    check_unreadable(["a.png: OSError: bad"], 1000, 0.001, "dataset 'x'")
    assert capsys.readouterr().err.strip() == (
        "warning: 1 of 1000 samples of dataset 'x' are unreadable (0.10 %), "
        "first: a.png: OSError: bad; skipped (max_skipped_fraction 0.001)"
    )
    with pytest.raises(
        TooManyUnreadable, match=r"2 of 1000 samples .* \(0.20 %\).*more than max_skipped_fraction"
    ):
        check_unreadable(["a", "b"], 1000, 0.001, "dataset 'x'")
    check_unreadable([], 10, 0.0, "dataset 'x'")  # nothing unreadable: silent
    assert capsys.readouterr().err == ""
