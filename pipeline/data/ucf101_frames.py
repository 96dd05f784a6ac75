"""UCF101-style RGB frame folders as clips: the ANN's input for the ES-UCF101 pipeline.

Layout: `<root>/<split>/v_<Action>_gXX_cYY/<frames>.{jpg,jpeg,png}` (split =
train or val). Each item samples `n_frames` frames evenly, exactly as the
ES-UCF101 conversion does, so the ANN sees the frames the SNN's events were
made from (`sampling="even"`), or takes the first `n_frames` frames
(`sampling="first"`: the ES-UCF101 reference's Dataset_CRNN reads frame000001
to frame000015).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.data.batching import Skipped
from pipeline.data.es_ucf101 import action_of, even_indices, frame_files, load_frame, video_folders

SAMPLINGS = ("even", "first")


def discover_frame_classes(root: Path) -> list[str]:
    """Sorted action names over every video folder under `root` (all splits), so labels agree across splits."""
    return sorted({action_of(d.name) for d in video_folders(root)})


class UCF101Frames(Dataset):
    """Items (float tensor (3, n_frames, H, W) in [0, 1], label) from the video folders of `<root>/<split>`.

    `classes` fixes the label order (default: every action under `root`);
    `classes` / `targets` follow torchvision's ImageFolder. A missing split
    folder is an error naming it; a video with an unreadable frame, or with no
    frames, yields `Skipped`.
    """

    def __init__(self, root: Path, split: str, n_frames: int, height: int, width: int,
                 classes: Sequence[str] | None = None, sampling: str = "even") -> None:
        self.root = Path(root)
        folder = self.root / split
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: UCF101 frame split directory not found "
                                    f"(expected v_<Action>_gXX_cYY/<frame images>)")
        if sampling not in SAMPLINGS:
            raise ValueError(f"unknown frame sampling '{sampling}' ({', '.join(SAMPLINGS)})")
        self.n_frames, self.sampling = n_frames, sampling
        self.size = (height, width)
        self.classes = list(classes) if classes is not None else discover_frame_classes(self.root)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.videos = video_folders(folder)
        for v in self.videos:
            if action_of(v.name) not in self.class_to_idx:
                raise ValueError(f"{v}: action '{action_of(v.name)}' is not among the {len(self.classes)} classes")
        self.targets = [self.class_to_idx[action_of(v.name)] for v in self.videos]

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int):
        video = self.videos[index]
        files = frame_files(video)
        if not files:
            return Skipped(str(video), "no frame images")
        if self.sampling == "first" and len(files) < self.n_frames:
            return Skipped(str(video), f"{len(files)} frame images, fewer than the {self.n_frames} used")
        path = video
        indices = even_indices(len(files), self.n_frames) if self.sampling == "even" else range(self.n_frames)
        try:
            frames = []
            for i in indices:
                path = files[i]
                frames.append(load_frame(path, self.size))
        except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
            return Skipped(str(path), f"{type(err).__name__}: {err}")
        clip = torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2)  # (T, H, W, 3) -> (3, T, H, W)
        return clip.float().div_(255.0), self.targets[index]
