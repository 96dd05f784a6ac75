"""ES-UCF101: the loader of its on-disk format and the conversion from frame sequences.

On disk: one `<video>.npz` per video with key `arr_0`, uint8 (2, 30, 256, 342)
(polarity, step, H, W); the label is the action name in the file name
(`v_<Action>_gXX_cYY`). Conversion: 31 frames sampled evenly, greyscale in
[0, 1], 30 frame differences, thresholds chosen per clip so that a fraction
`rate` (7.5 %) of the pixels give positive and as many negative events.
Not part of the default run (no embedded video); tested on tiny hand-made clips.
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from pipeline.data.batching import Skipped

NAME_RE = re.compile(r"^v_(?P<action>.+)_g\d+_c\d+$")
N_FRAMES = 31


def action_of(path: str | Path) -> str:
    stem = Path(path).name.removesuffix(".npz")
    m = NAME_RE.match(stem)
    if not m:
        raise ValueError(f"{path}: file name is not v_<Action>_gXX_cYY[.npz]")
    return m.group("action")


def discover_classes(root: Path) -> list[str]:
    """Sorted action names over every npz under `root` (all splits), so labels agree across splits."""
    return sorted({action_of(p) for p in Path(root).rglob("*.npz")})


def to_grey(frames: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, H, W, 3), uint8 or float in [0, 1] -> float32 greyscale in [0, 1] (ITU-R 601 luma)."""
    f = frames.astype(np.float32)
    if f.ndim == 4:
        f = f[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if frames.dtype == np.uint8:
        f = f / 255.0
    return f


def clip_to_events(frames: np.ndarray, n_frames: int = N_FRAMES, rate: float = 0.075) -> np.ndarray:
    """Frames (N, H, W[, 3]) -> uint8 (2, n_frames - 1, H, W) events with per-clip thresholds."""
    if len(frames) < 2:
        raise ValueError(f"a clip needs at least 2 frames, got {len(frames)}")
    idx = np.rint(np.linspace(0, len(frames) - 1, n_frames)).astype(int)
    grey = to_grey(np.asarray(frames)[idx])
    diff = grey[1:] - grey[:-1]
    # per-clip thresholds: the (1 - rate) and rate quantiles of all differences;
    # strict comparisons so that a still clip (all zeros) gives no events
    hi, lo = np.quantile(diff, 1.0 - rate), np.quantile(diff, rate)
    pos = diff > max(hi, 0.0)
    neg = diff < min(lo, 0.0)
    return np.stack([pos, neg]).astype(np.uint8)


def convert_frame_folder(frames_dir: Path, out_dir: Path, size: tuple[int, int] = (256, 342),
                         rate: float = 0.075) -> Path:
    """Convert one UCF101 frame folder (named v_<Action>_gXX_cYY, sorted image files) to `<video>.npz`."""
    frames_dir = Path(frames_dir)
    action_of(frames_dir.name)  # validates the name
    files = sorted(p for p in frames_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
    if len(files) < 2:
        raise ValueError(f"{frames_dir}: expected at least 2 frame images, found {len(files)}")
    h, w = size
    frames = np.stack([np.asarray(Image.open(f).convert("RGB").resize((w, h), Image.BILINEAR)) for f in files])
    out = Path(out_dir) / f"{frames_dir.name}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, clip_to_events(frames, rate=rate))
    return out


class ESUCF101(Dataset):
    """Items (float tensor (2, 30, H, W), label) from `<root>/<split>/**/v_*.npz`.

    `classes` fixes the label order (default: every action under `root`); a
    missing split directory is an error naming it; a damaged npz yields `Skipped`.
    """

    def __init__(self, root: Path, split: str, classes: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        folder = self.root / split
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: ES-UCF101 split directory not found (expected <video>.npz files)")
        self.classes = list(classes) if classes is not None else discover_classes(self.root)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.files = sorted(folder.rglob("*.npz"))
        for f in self.files:
            if action_of(f) not in self.class_to_idx:
                raise ValueError(f"{f}: action '{action_of(f)}' is not among the {len(self.classes)} classes")
        self.targets = [self.class_to_idx[action_of(f)] for f in self.files]  # as torchvision's ImageFolder

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        path = self.files[index]
        try:
            with np.load(path) as z:
                arr = z["arr_0"]
            if arr.ndim != 4 or arr.shape[0] != 2:
                raise ValueError(f"arr_0 must be (2, T, H, W), got {arr.shape}")
            return torch.from_numpy(arr.astype(np.float32)), self.class_to_idx[action_of(path)]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            return Skipped(str(path), f"{type(err).__name__}: {err}")
