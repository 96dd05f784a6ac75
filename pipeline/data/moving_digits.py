"""The embedded stand-in for UCF101 / ES-UCF101: moving digits; the class is the digit and its direction.

Each clip shows one scikit-learn digit (a real 8x8 scan, upscaled) drifting
across a noisy coloured canvas towards the north-east or the south-west; action
2d is digit d moving north-east, action 2d + 1 the same digit moving south-west
(`ZeroMovesNorthEast`, `ZeroMovesSouthWest`, `OneMovesNorthEast`, ...). As in
UCF101, where single frames already tell most actions apart, appearance carries
the class: one frame narrows it to the two actions of its digit, the direction
of motion decides between them. The digit's shape reaches the events too (the
edges of the moving digit; a diagonal motion shows both its horizontal and
vertical strokes), so an ANN pretrained on the RGB frames learns features the
event SNN can use, while an SNN from scratch must learn shapes and direction
from the events. Why not the direction alone, or one direction per digit:
docs/papers.md. Colours and positions are drawn independently of the action
(colour and the static background make no events). Clips are written as UCF101
frame folders (`<split>/v_<Action>_gXX_cYY/frame_0001.png`), which the
ES-UCF101 converter turns into events like the real frames. As UCF101's groups
share their actor, the clips of a group share their digit scan (by default a
group is one clip, for more distinct scans); val and train take their scans
from disjoint parts of each digit's scans, so val measures generalisation to
unseen handwriting.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# (name, (row, col) direction); rows grow downwards, so North is -row
DIRECTIONS: tuple[tuple[str, tuple[int, int]], ...] = (("NorthEast", (-1, 1)), ("SouthWest", (1, -1)))
DIGIT_NAMES = ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine")
CLIPS_PER_GROUP = 1  # clips sharing a scan (UCF101 has 4-7 per group; 4 here left 10 val scans per digit)
DIGIT_FRACTION = 0.6  # digit side / shorter canvas side
TRAVEL_FRACTION = 0.75  # nominal path length over the clip / shorter canvas side
SPEED_JITTER = 0.2  # per-clip speed within +-20 % of the nominal one (keep travel <= canvas)
TEXTURE_STD = 0.08  # static background texture
FLICKER_STD = 0.02  # per-frame sensor noise


def action_classes(n_classes: int) -> list[tuple[str, int, np.ndarray]]:
    """`n_classes` actions as (name, digit, unit (row, col) direction): action k is digit k // 2 moving in
    direction k % 2 (4: Zero north-east, Zero south-west, One north-east, One south-west)."""
    most = len(DIGIT_NAMES) * len(DIRECTIONS)
    if not 2 <= n_classes <= most:
        raise ValueError(f"n_classes must be in 2..{most}, got {n_classes}")
    actions = []
    for k in range(n_classes):
        digit, (name, d) = k // len(DIRECTIONS), DIRECTIONS[k % len(DIRECTIONS)]
        actions.append((f"{DIGIT_NAMES[digit]}Moves{name}", digit, np.array(d, float) / np.hypot(*d)))
    return actions


def scan_pools(targets: np.ndarray, digits: set[int], val_share: float,
               rng: np.random.Generator) -> dict[tuple[int, str], list[int]]:
    """Per digit, its scans' indices shuffled and split into a val and a train pool, (digit, split) ->
    indices: val gets `val_share` of them (at least one), train the rest, so no scan is in both splits."""
    pools: dict[tuple[int, str], list[int]] = {}
    for digit in sorted(digits):
        order = rng.permutation(np.flatnonzero(targets == digit)).tolist()
        n_val = min(len(order) - 1, max(1, round(val_share * len(order))))
        pools[(digit, "val")], pools[(digit, "train")] = order[:n_val], order[n_val:]
    return pools


def _paste(mask: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """`mask` placed with its corner at (top, left) on a zero canvas, cut at the borders."""
    canvas = np.zeros((height, width), np.float32)
    d = mask.shape[0]
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + d, height), min(left + d, width)
    if r0 < r1 and c0 < c1:
        canvas[r0:r1, c0:c1] = mask[r0 - top:r1 - top, c0 - left:c1 - left]
    return canvas


def render_clip(digit: np.ndarray, direction: np.ndarray, n_frames: int, height: int, width: int,
                rng: np.random.Generator) -> np.ndarray:
    """uint8 RGB frames (n_frames, height, width, 3) of `digit` (8x8 in [0, 1]) moving along `direction`.

    A bright digit on a dark textured background (random colours), so the
    leading edge always gives positive events and the trailing edge negative
    ones, as for a lit object; the path has a random midpoint and the digit's
    centre stays on the canvas, its edges may leave it.
    """
    side = max(8, round(DIGIT_FRACTION * min(height, width)))
    mask = np.asarray(Image.fromarray(digit.astype(np.float32)).resize((side, side), Image.BILINEAR))
    mask = mask.clip(0, 1)
    travel = TRAVEL_FRACTION * min(height, width) * rng.uniform(1 - SPEED_JITTER, 1 + SPEED_JITTER)
    half = np.abs(direction) * travel / 2
    mid = rng.uniform(half, np.array([height, width]) - half)
    background, ink = rng.uniform(0.0, 0.35, 3), rng.uniform(0.65, 1.0, 3)
    texture = background + rng.normal(0.0, TEXTURE_STD, (height, width, 3))
    frames = []
    for t in np.linspace(-0.5, 0.5, n_frames):
        top, left = np.rint(mid + t * travel * direction - side / 2).astype(int)
        alpha = _paste(mask, top, left, height, width)[..., None]
        frame = texture * (1 - alpha) + ink * alpha + rng.normal(0.0, FLICKER_STD, (height, width, 3))
        frames.append(np.rint(frame.clip(0, 1) * 255).astype(np.uint8))
    return np.stack(frames)


def write_moving_digits(out: Path, *, n_classes: int, clips_per_class_train: int, clips_per_class_val: int,
                        n_frames: int, height: int, width: int, seed: int) -> dict[str, Any]:
    """Write train/ and val/ UCF101 frame folders of moving-digit clips; deterministic for `seed`.

    Per action, val takes groups g01.. and train the groups after them (as in
    UCF101's first split, whose test list holds the first groups). Each group
    shows the next scan of its digit's pool for the split (about 180 scans per
    digit, split in the ratio of the clip counts; a pool is reused from its
    start when the groups outnumber it). Returns the actions, the clips written
    per split and the clip geometry.
    """
    from sklearn.datasets import load_digits

    if n_frames < 2:
        raise ValueError(f"a clip needs at least 2 frames, got {n_frames}")
    data = load_digits()
    scans = data.images / 16.0  # scans are 0..16
    rng = np.random.default_rng(seed)
    classes = action_classes(n_classes)
    pools = scan_pools(data.target, {digit for _, digit, _ in classes},
                       clips_per_class_val / (clips_per_class_val + clips_per_class_train), rng)
    drawn = {key: 0 for key in pools}  # scans taken from each pool so far
    written = {"train": 0, "val": 0}
    for action, digit, direction in classes:
        group = 0
        for split, n_clips in (("val", clips_per_class_val), ("train", clips_per_class_train)):
            pool = pools[(digit, split)]
            for i in range(n_clips):
                if i % CLIPS_PER_GROUP == 0:
                    group += 1
                    scan = scans[pool[drawn[(digit, split)] % len(pool)]]  # the group's "actor"
                    drawn[(digit, split)] += 1
                frames = render_clip(scan, direction, n_frames, height, width, rng)
                folder = Path(out) / split / f"v_{action}_g{group:02d}_c{i % CLIPS_PER_GROUP + 1:02d}"
                folder.mkdir(parents=True, exist_ok=True)
                for k, frame in enumerate(frames, start=1):
                    Image.fromarray(frame).save(folder / f"frame_{k:04d}.png")
                written[split] += 1
    return {"classes": sorted(a for a, _, _ in classes), **written,
            "n_frames": n_frames, "height": height, "width": width}
