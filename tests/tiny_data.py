"""Tiny datasets written in the official formats, for tests: SHD/SSC HDF5 files and a GSC folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.data.gsc import SAMPLE_RATE, SPLITS
from pipeline.data.synth_shd import write_shd_file


def write_h5(path: Path, times: list, units: list, labels: list) -> Path:
    """One SHD/SSC-layout file holding these samples (times in seconds, unit ids, labels)."""
    write_shd_file(
        path,
        [np.asarray(t, np.float32) for t in times],
        [np.asarray(u, np.uint16) for u in units],
        np.asarray(labels, np.uint8),
        np.zeros(len(labels), np.uint16),
        ["a", "b"],
        {"note": "test"},
    )
    return path


def write_random_h5(
    path: Path, n: int, seed: int, n_classes: int = 3, max_events: int = 300, max_s: float = 0.5
) -> Path:
    """An SHD/SSC-layout file of `n` random samples (some without spikes), labels cycling through the
    classes."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, max_events, n)
    counts[:: max(n // 4, 1)] = 0
    times = [np.sort(rng.uniform(0, max_s, c)) for c in counts]
    units = [rng.integers(0, 700, c) for c in counts]
    return write_h5(path, times, units, list(np.arange(n) % n_classes))


def write_tiny_gsc(
    root: str | Path,
    words: list[str],
    per_word: int = 3,
    seed: int = 0,
    lengths_s: tuple[float, ...] = (1.0, 0.6, 1.2),
) -> dict[str, list[str]]:
    """Write a tiny GSC-layout folder: word folders of 16 kHz wavs, split lists, and a
    `_background_noise_` folder that is not a class.

    File j of each word lasts lengths_s[j % len] seconds (to exercise pad/cut);
    file 0 of every word goes to validation, file 1 to testing, the rest train.
    Returns {split: [relative paths]}.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    for w, word in enumerate(words):
        (root / word).mkdir(parents=True, exist_ok=True)
        for j in range(per_word):
            n = int(lengths_s[j % len(lengths_s)] * SAMPLE_RATE)
            t = np.arange(n) / SAMPLE_RATE
            wav = 0.3 * np.sin(2 * np.pi * (300 + 200 * w) * t) + 0.01 * rng.standard_normal(n)
            rel = f"{word}/{j:08x}_nohash_0.wav"
            sf.write(str(root / rel), wav.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
            splits["valid" if j == 0 else "test" if j == 1 else "train"].append(rel)
    (root / "_background_noise_").mkdir(parents=True, exist_ok=True)
    sf.write(
        str(root / "_background_noise_" / "white_noise.wav"),
        0.1 * rng.standard_normal(2 * SAMPLE_RATE),
        SAMPLE_RATE,
    )
    (root / "validation_list.txt").write_text("".join(r + "\n" for r in splits["valid"]))
    (root / "testing_list.txt").write_text("".join(r + "\n" for r in splits["test"]))
    return splits
