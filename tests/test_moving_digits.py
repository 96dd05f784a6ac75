"""The ES-UCF101 stand-in (digits moving NE or SW), its ES-UCF101 conversion and the RGB frame loader."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.checks import check_split
from pipeline.data.batching import Skipped
from pipeline.data.es_ucf101 import ESUCF101, action_of, convert_frames_tree, to_grey
from pipeline.data.moving_digits import action_classes, scan_pools, write_moving_digits
from pipeline.data.ucf101_frames import UCF101Frames

SIZE = dict(n_frames=9, height=24, width=32)
CLASSES = ["OneMovesNorthEast", "OneMovesSouthWest", "ZeroMovesNorthEast", "ZeroMovesSouthWest"]


def _write(out: Path, seed: int = 0) -> dict:
    return write_moving_digits(
        out, n_classes=4, clips_per_class_train=6, clips_per_class_val=3, seed=seed, **SIZE
    )


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("standin") / "frames"
    return out, _write(out)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_same_seed_same_bytes(standin, tmp_path):
    out, report = standin
    assert _write(tmp_path / "again") == report
    assert _files(tmp_path / "again") == _files(out)
    _write(tmp_path / "other", seed=1)
    assert _files(tmp_path / "other") != _files(out)


def test_classes_counts_and_colour_frames(standin):
    out, report = standin
    assert report["classes"] == CLASSES and (report["train"], report["val"]) == (24, 12)
    for split, per_class in (("train", 6), ("val", 3)):
        videos = sorted(d.name for d in (out / split).iterdir())
        assert sorted({action_of(v) for v in videos}) == CLASSES
        assert all(sum(action_of(v) == c for v in videos) == per_class for c in CLASSES)
    frames = sorted((out / "train" / "v_OneMovesSouthWest_g04_c01").iterdir())  # val holds g01-g03
    assert [f.name for f in frames] == [f"frame_{i:04d}.png" for i in range(1, 10)]
    rgb = np.asarray(Image.open(frames[0]))
    assert rgb.shape == (24, 32, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb[..., 0].astype(int) - rgb[..., 1]).mean() > 5  # colour, not grey
    for bad in (1, 21):  # 2 directions x 10 digits at most
        with pytest.raises(ValueError, match="n_classes"):
            action_classes(bad)


def test_train_and_val_groups_are_disjoint(standin):
    out, _ = standin
    groups = {
        split: {re.match(r"^v_(.+)_g(\d+)_c\d+$", d.name).groups() for d in (out / split).iterdir()}
        for split in ("train", "val")
    }
    assert groups["train"] and groups["val"] and not groups["train"] & groups["val"]


def _motion_of(video: Path) -> np.ndarray:
    """Direction (row, col) in which the centroid of strong frame differences moves over the clip."""
    grey = to_grey(np.stack([np.asarray(Image.open(f)) for f in sorted(video.iterdir())]))
    diff = np.abs(grey[1:] - grey[:-1]) > 0.15  # digit edges; the sensor noise stays far below
    rows, cols = np.mgrid[: grey.shape[1], : grey.shape[2]]
    centroids = np.array([[rows[d].mean(), cols[d].mean()] for d in diff if d.any()])
    return centroids[-1] - centroids[0]


def _videos(out: Path) -> list[Path]:
    return sorted((out / "train").iterdir()) + sorted((out / "val").iterdir())


def test_the_motion_tells_the_two_actions_of_a_digit_apart(standin):
    out, _ = standin
    actions = {name: (digit, d) for name, digit, d in action_classes(4)}
    assert {digit for digit, _ in actions.values()} == {0, 1}  # two actions per digit, opposite directions
    hits = 0
    for video in _videos(out):
        digit, _ = actions[action_of(video.name)]
        same_digit = [name for name, (k, _) in actions.items() if k == digit]
        guess = max(same_digit, key=lambda name: actions[name][1] @ _motion_of(video))
        hits += guess == action_of(video.name)
    assert hits >= 0.9 * len(_videos(out))


def _crop8(mask: np.ndarray) -> np.ndarray:
    """The bounding box of a binary mask resized to 8 x 8 (the scans' size)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32)
    return np.asarray(Image.fromarray(box).resize((8, 8), Image.BILINEAR))


def test_one_frame_tells_the_digit(standin):
    """Appearance carries the class, as in UCF101: the digit of a single frame is the action's digit."""
    from sklearn.datasets import load_digits

    out, _ = standin
    scans = load_digits()
    digit_of = {name: digit for name, digit, _ in action_classes(4)}
    templates = {k: np.mean([_crop8(im > 8) for im in scans.images[scans.target == k]], 0) for k in (0, 1)}
    hits = 0
    for video in _videos(out):
        middle = np.asarray(Image.open(sorted(video.iterdir())[4]))
        ink = _crop8(to_grey(middle[None])[0] > 0.5)  # bright digit, dark background
        guess = min(templates, key=lambda k: ((ink - templates[k]) ** 2).sum())
        hits += guess == digit_of[action_of(video.name)]
    assert hits >= 0.85 * len(_videos(out))


def test_val_and_train_scans_are_disjoint():
    targets = np.array([0] * 10 + [1] * 4 + [2] * 7)
    pools = scan_pools(targets, {0, 1}, 0.2, np.random.default_rng(0))
    assert set(pools) == {(0, "val"), (0, "train"), (1, "val"), (1, "train")}
    for digit, n_val in ((0, 2), (1, 1)):
        val, train = pools[(digit, "val")], pools[(digit, "train")]
        assert len(val) == n_val and not set(val) & set(train)
        assert sorted(val + train) == list(np.flatnonzero(targets == digit))


def test_converted_tree_loads_as_es_ucf101_and_frames(standin, tmp_path):
    out, report = standin
    rep = convert_frames_tree(out, tmp_path / "es", size=(24, 32), n_frames=9, rate=0.075)
    assert rep["videos"] == {"train": 24, "val": 12} and abs(rep["mean_event_rate"] - 0.075) < 0.005
    events = ESUCF101(tmp_path / "es", "val")
    frames = UCF101Frames(out, "val", n_frames=9, height=24, width=32)
    for ds, paths in ((events, events.files), (frames, frames.videos)):
        assert ds.classes == report["classes"] and len(ds) == 12
        assert ds.targets == [CLASSES.index(action_of(p)) for p in paths]
        check_split(ds, "val", num_classes=4)
    x, y = events[0]
    assert x.shape == (2, 8, 24, 32) and y == events.targets[0]
    rate = x.float().mean(dim=(1, 2, 3))
    assert torch.allclose(rate, torch.tensor(0.075), atol=0.01)  # per polarity
    clip, label = frames[0]
    assert clip.shape == (3, 9, 24, 32) and clip.dtype == torch.float32 and label == frames.targets[0]
    assert 0.0 <= clip.min() and clip.max() <= 1.0
    first = np.array(Image.open(frames.videos[0] / "frame_0001.png"))
    assert torch.allclose(clip[:, 0], torch.from_numpy(first).permute(2, 0, 1).float() / 255)


def test_frames_are_sampled_evenly_and_resized(standin):
    out, _ = standin
    ds = UCF101Frames(out, "train", n_frames=5, height=12, width=16)
    clip, _ = ds[0]
    assert clip.shape == (3, 5, 12, 16)
    full = UCF101Frames(out, "train", n_frames=9, height=12, width=16)[0][0]
    assert torch.equal(clip, full[:, ::2])  # frames 1, 3, 5, 7, 9 of 9


def test_damaged_frame_is_skipped_and_missing_split_named(standin, tmp_path):
    out, _ = standin
    video = tmp_path / "train" / "v_ZeroMovesNorthEast_g01_c01"
    video.mkdir(parents=True)
    for f in sorted((out / "train" / "v_ZeroMovesNorthEast_g04_c01").iterdir()):
        (video / f.name).write_bytes(f.read_bytes())
    (video / "frame_0009.png").write_bytes(b"not a png")
    ds = UCF101Frames(tmp_path, "train", n_frames=9, height=24, width=32)
    item = ds[0]
    assert isinstance(item, Skipped) and item.path.endswith("frame_0009.png")
    with pytest.raises(FileNotFoundError, match="val"):
        UCF101Frames(tmp_path, "val", n_frames=9, height=24, width=32)
