"""ES-UCF101: the loader of its on-disk format and the conversion from frame sequences.

On disk: one `<video>.npz` per video with key `arr_0`, uint8 (2, 30, 256, 342)
(polarity, step, H, W); the label is the action name in the file name
(`v_<Action>_gXX_cYY`). Conversion: 31 frames sampled evenly, greyscale in
[0, 1], 30 frame differences, thresholds chosen per clip so that a fraction
`rate` (7.5 %) of the pixels give positive and as many negative events.
`convert_frames_tree` converts a UCF101-style tree of frame folders
(`<split>/v_<Action>_gXX_cYY/<frames>`): the real UCF101 frames, or the default
run's embedded moving-digits clips (pipeline/data/moving_digits.py), which use
fewer frames and a smaller size.
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from pipeline.data.batching import Skipped

NAME_RE = re.compile(r"^v_(?P<action>.+)_g\d+_c\d+$")
N_FRAMES = 31
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def action_of(path: str | Path) -> str:
    stem = Path(path).name.removesuffix(".npz")
    m = NAME_RE.match(stem)
    if not m:
        raise ValueError(f"{path}: file name is not v_<Action>_gXX_cYY[.npz]")
    return m.group("action")


def discover_classes(root: Path) -> list[str]:
    """Sorted action names over every npz under `root` (all splits), so labels agree across splits."""
    return sorted({action_of(p) for p in Path(root).rglob("*.npz")})


def video_folders(split_dir: Path) -> list[Path]:
    """Sorted v_<Action>_gXX_cYY frame folders anywhere under `split_dir` (flat or per-action layout)."""
    return sorted(d for d in Path(split_dir).rglob("v_*") if d.is_dir() and NAME_RE.match(d.name))


def frame_files(video_dir: Path) -> list[Path]:
    """The frame images of one video folder, in file-name order."""
    return sorted(p for p in Path(video_dir).iterdir() if p.suffix.lower() in FRAME_SUFFIXES)


def even_indices(n_available: int, n_frames: int) -> np.ndarray:
    """`n_frames` indices spread evenly over 0..n_available-1, first and last included (repeats if too few)."""
    return np.rint(np.linspace(0, n_available - 1, n_frames)).astype(int)


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
    grey = to_grey(np.asarray(frames)[even_indices(len(frames), n_frames)])
    diff = grey[1:] - grey[:-1]
    # per-clip thresholds: the (1 - rate) and rate quantiles of all differences;
    # strict comparisons so that a still clip (all zeros) gives no events
    hi, lo = np.quantile(diff, 1.0 - rate), np.quantile(diff, rate)
    pos = diff > max(hi, 0.0)
    neg = diff < min(lo, 0.0)
    return np.stack([pos, neg]).astype(np.uint8)


def load_frame(path: Path, size: tuple[int, int]) -> np.ndarray:
    """One frame as uint8 RGB (H, W, 3), bilinearly resized to size = (H, W)."""
    h, w = size
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB").resize((w, h), Image.BILINEAR))


def convert_frame_folder(frames_dir: Path, out_dir: Path, size: tuple[int, int] = (256, 342),
                         rate: float = 0.075, n_frames: int = N_FRAMES) -> Path:
    """Convert one UCF101 frame folder (named v_<Action>_gXX_cYY, sorted image files) to `<video>.npz`
    holding uint8 (2, n_frames - 1, H, W) events."""
    frames_dir = Path(frames_dir)
    action_of(frames_dir.name)  # validates the name
    files = frame_files(frames_dir)
    if len(files) < 2:
        raise ValueError(f"{frames_dir}: expected at least 2 frame images, found {len(files)}")
    # decode only the sampled frames; clip_to_events then takes all n_frames of them
    frames = np.stack([load_frame(files[i], size) for i in even_indices(len(files), n_frames)])
    out = Path(out_dir) / f"{frames_dir.name}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, clip_to_events(frames, n_frames=n_frames, rate=rate))
    return out


def convert_frames_tree(frames_root: Path, out_root: Path, *, size: tuple[int, int], n_frames: int,
                        rate: float) -> dict[str, Any]:
    """Convert every video folder of every split (`frames_root/<split>/**/v_*`) to `out_root/<split>/<video>.npz`.

    Returns the videos written per split and the mean event rate (events per
    pixel, step and polarity; about `rate` unless clips are nearly still).
    """
    frames_root = Path(frames_root)
    splits = sorted(d.name for d in frames_root.iterdir() if d.is_dir()) if frames_root.is_dir() else []
    if not splits:
        raise FileNotFoundError(f"{frames_root}: expected split folders (train/, val/) of v_<Action>_gXX_cYY frame folders")
    report: dict[str, Any] = {"size": list(size), "n_frames": n_frames, "rate": rate, "videos": {}}
    rates = []
    for split in splits:
        videos = video_folders(frames_root / split)
        for video in videos:
            written = convert_frame_folder(video, Path(out_root) / split, size, rate, n_frames)
            with np.load(written) as z:  # read back: checks the file and measures its rate
                rates.append(float(z["arr_0"].mean()))
        report["videos"][split] = len(videos)
    report["mean_event_rate"] = round(float(np.mean(rates)), 5) if rates else 0.0
    return report


class ESUCF101(Dataset):
    """Items (uint8 event tensor (2, T, H, W), label; T = 30 in the real dataset) from `<root>/<split>/**/v_*.npz`.

    The frames stay uint8 (1/4 of float32's bytes) until the training loop casts them on the device.

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
            return torch.from_numpy(arr.astype(np.uint8, copy=False)), self.class_to_idx[action_of(path)]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            return Skipped(str(path), f"{type(err).__name__}: {err}")
