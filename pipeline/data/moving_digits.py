"""The embedded stand-in for UCF101 / ES-UCF101: moving digits whose class is the motion.

Each clip shows one scikit-learn digit (a real 8x8 scan, upscaled a little)
drifting across a noisy coloured canvas in one of up to 8 compass directions;
the direction is the action (`MoveNorth`, `MoveNorthEast`, ...). Digit identity,
colours and position are drawn independently of the action, so only motion
tells the classes apart. Clips are written as UCF101 frame folders
(`<split>/v_<Action>_gXX_cYY/frame_0001.png`), which the ES-UCF101 converter
turns into events like the real frames. As UCF101's groups share their actor,
the clips of a group share their digit scan; train and val use different
groups, so val measures generalisation to unseen digits.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# (name, (row, col) direction); rows grow downwards, so North is -row
COMPASS: tuple[tuple[str, tuple[int, int]], ...] = (
    ("North", (-1, 0)), ("NorthEast", (-1, 1)), ("East", (0, 1)), ("SouthEast", (1, 1)),
    ("South", (1, 0)), ("SouthWest", (1, -1)), ("West", (0, -1)), ("NorthWest", (-1, -1)),
)
CLIPS_PER_GROUP = 4  # UCF101 has 4-7 clips per group
DIGIT_FRACTION = 0.45  # digit side / shorter canvas side
TRAVEL_FRACTION = 0.75  # nominal path length over the clip / shorter canvas side
SPEED_JITTER = 0.2  # per-clip speed within +-20 % of the nominal one (keep travel <= canvas)
TEXTURE_STD = 0.08  # static background texture
FLICKER_STD = 0.02  # per-frame sensor noise


def motion_classes(n_classes: int) -> list[tuple[str, np.ndarray]]:
    """`n_classes` compass directions spread evenly (4: N, E, S, W) as (action name, unit (row, col) vector)."""
    if not 2 <= n_classes <= len(COMPASS):
        raise ValueError(f"n_classes must be in 2..{len(COMPASS)}, got {n_classes}")
    chosen = [COMPASS[k * len(COMPASS) // n_classes] for k in range(n_classes)]
    return [(f"Move{name}", np.array(d, float) / np.hypot(*d)) for name, d in chosen]


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
    mask = np.asarray(Image.fromarray(digit.astype(np.float32)).resize((side, side), Image.BILINEAR)).clip(0, 1)
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
    UCF101's first split, whose test list holds the first groups). Returns the
    actions, the clips written per split and the clip geometry.
    """
    from sklearn.datasets import load_digits

    if n_frames < 2:
        raise ValueError(f"a clip needs at least 2 frames, got {n_frames}")
    digits = load_digits().images / 16.0  # scans are 0..16
    rng = np.random.default_rng(seed)
    classes = motion_classes(n_classes)
    written = {"train": 0, "val": 0}
    for action, direction in classes:
        group = 0
        for split, n_clips in (("val", clips_per_class_val), ("train", clips_per_class_train)):
            for i in range(n_clips):
                if i % CLIPS_PER_GROUP == 0:
                    group += 1
                    digit = digits[rng.integers(len(digits))]  # the group's "actor"
                frames = render_clip(digit, direction, n_frames, height, width, rng)
                folder = Path(out) / split / f"v_{action}_g{group:02d}_c{i % CLIPS_PER_GROUP + 1:02d}"
                folder.mkdir(parents=True, exist_ok=True)
                for k, frame in enumerate(frames, start=1):
                    Image.fromarray(frame).save(folder / f"frame_{k:04d}.png")
                written[split] += 1
    return {"classes": sorted(a for a, _ in classes), **written,
            "n_frames": n_frames, "height": height, "width": width}
