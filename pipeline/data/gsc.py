"""Google Speech Commands v0.02: folder layout -> log-mel frames (T=101, 140).

Layout (specs/datasets.md): one folder per word of 16 kHz mono wav files;
`validation_list.txt` and `testing_list.txt` at the root list `word/file.wav`
paths of those splits, every other wav is training; folders starting with `_`
(`_background_noise_`) are not classes. Wav files are read with soundfile
(torchaudio.load needs torchcodec, which is not installed).

Features follow the DCLS reference: pad/cut to 1 s, resample 16 kHz -> 8 kHz,
power spectrogram (n_fft 256, hop 80), 140 mel bands from 50 Hz, to dB,
transposed to (time, mel).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

SAMPLE_RATE = 16000
TARGET_RATE = 8000
N_MELS = 140
SPLITS = ("train", "valid", "test")
LIST_FILES = {"valid": "validation_list.txt", "test": "testing_list.txt"}
FEATURE_CHUNK = 512  # waveforms per feature batch


def list_classes(root: str | Path) -> list[str]:
    """Word folders (sorted); `_background_noise_` and other `_` folders are not classes."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: GSC root not found (expected one folder per word plus validation_list.txt, testing_list.txt)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    if not classes:
        raise FileNotFoundError(f"{root}: no word folders found (expected GSC v0.02 layout)")
    return classes


def _read_list(root: Path, name: str) -> set[str]:
    path = root / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split list not found (GSC v0.02 ships it at the dataset root)")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def split_files(root: str | Path) -> tuple[dict[str, list[tuple[str, int]]], list[str]]:
    """{split: [(relative path, label)]} sorted by path, and the class names."""
    root = Path(root)
    classes = list_classes(root)
    listed = {s: _read_list(root, f) for s, f in LIST_FILES.items()}
    for split, rels in listed.items():
        missing = [r for r in rels if not (root / r).is_file()]
        if missing:
            raise FileNotFoundError(f"{root / LIST_FILES[split]}: lists {len(missing)} missing file(s), e.g. {missing[0]}")
    out: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    for label, word in enumerate(classes):
        for wav in sorted((root / word).glob("*.wav")):
            rel = f"{word}/{wav.name}"
            split = "valid" if rel in listed["valid"] else "test" if rel in listed["test"] else "train"
            out[split].append((rel, label))
    return out, classes


def read_wav(path: str | Path) -> np.ndarray:
    """Mono float32 waveform at 16 kHz, padded with zeros or cut to exactly 1 s."""
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable wav file ({err})") from err
    if sr != SAMPLE_RATE:
        raise ValueError(f"{path}: sample rate {sr} Hz, expected {SAMPLE_RATE} Hz (GSC v0.02)")
    wav = wav.mean(axis=1)
    out = np.zeros(SAMPLE_RATE, dtype=np.float32)
    out[: min(len(wav), SAMPLE_RATE)] = wav[:SAMPLE_RATE]
    return out


class LogMel(torch.nn.Module):
    """(N, 16000) waveforms at 16 kHz -> (N, 101, 140) mel power in dB."""

    def __init__(self) -> None:
        super().__init__()
        self.resample = torchaudio.transforms.Resample(SAMPLE_RATE, TARGET_RATE)
        with warnings.catch_warnings():
            # 140 bands over 129 FFT bins leaves some filters empty, as in the reference.
            warnings.simplefilter("ignore")
            self.mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=TARGET_RATE, n_fft=256, hop_length=80, n_mels=N_MELS, f_min=50.0, power=2.0
            )
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power")

    @torch.no_grad()
    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.to_db(self.mel(self.resample(wav))).transpose(1, 2).contiguous()


def load_split(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Features of one split: (frames stacked over samples (N*101, 140) float32, lengths, labels, classes)."""
    if split not in SPLITS:
        raise ValueError(f"unknown GSC split '{split}' (allowed: {', '.join(SPLITS)})")
    files, classes = split_files(root)
    items = files[split]
    logmel = LogMel()
    feats: list[torch.Tensor] = []
    for start in range(0, len(items), FEATURE_CHUNK):
        chunk = items[start : start + FEATURE_CHUNK]
        wav = torch.from_numpy(np.stack([read_wav(Path(root) / rel) for rel, _ in chunk]))
        feats.append(logmel(wav))
    n_mel = N_MELS
    x = torch.cat(feats) if feats else torch.zeros(0, 101, n_mel)
    lengths = np.full(len(items), x.shape[1], dtype=np.int64)
    labels = np.asarray([lab for _, lab in items], dtype=np.int64)
    return x.reshape(-1, n_mel).numpy().astype(np.float32), lengths, labels, classes


def write_tiny_gsc(
    root: str | Path,
    words: list[str],
    per_word: int = 3,
    seed: int = 0,
    lengths_s: tuple[float, ...] = (1.0, 0.6, 1.2),
) -> dict[str, list[str]]:
    """Write a tiny GSC-layout folder (for tests): word folders of 16 kHz wavs,
    split lists, and a `_background_noise_` folder that is not a class.

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
    sf.write(str(root / "_background_noise_" / "white_noise.wav"), 0.1 * rng.standard_normal(2 * SAMPLE_RATE), SAMPLE_RATE)
    (root / "validation_list.txt").write_text("".join(r + "\n" for r in splits["valid"]))
    (root / "testing_list.txt").write_text("".join(r + "\n" for r in splits["test"]))
    return splits
