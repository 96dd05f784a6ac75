"""Google Speech Commands v0.02: folder layout -> log-mel frames (T=101, 140).

Layout (docs/data.md): one folder per word of 16 kHz mono wav files;
`validation_list.txt` and `testing_list.txt` at the root list `word/file.wav`
paths of those splits, every other wav is training; folders starting with `_`
(`_background_noise_`) are not classes. Wav files are read with soundfile
(torchaudio.load needs torchcodec, which is not installed).

Features are the DCLS reference's (datasets.py build_transform): pad/cut to
1 s, resample 16 kHz -> 8 kHz, power spectrogram (n_fft 256, hop 80), 140 mel
bands from 50 Hz to 14 kHz, to dB, transposed to (time, mel). 14 kHz is above
the 4 kHz Nyquist frequency of the 8 kHz audio, as in the reference: the mel
points are spaced over 50 Hz-14 kHz, the 53 bands above 4 kHz have all-zero
filters and are constant (-100 dB, AmplitudeToDB's floor), and the 87 others
cover 50 Hz-4 kHz. Features are computed in chunks of FEATURE_CHUNK
files by worker processes (`FeatureWorkers`) and handed over in order: memory
holds a few chunks, and the values do not depend on the worker count. An
unreadable file (empty, truncated, not a wav) is left out and named, for
delays_prepare to count under max_skipped_fraction.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import warnings
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import soundfile as sf
import torch
import torchaudio

SAMPLE_RATE = 16000
TARGET_RATE = 8000
N_MELS = 140
F_MIN = 50.0
F_MAX = 14000.0  # the reference's, above TARGET_RATE / 2: the top bands are empty
SPLITS = ("train", "valid", "test")
LIST_FILES = {"valid": "validation_list.txt", "test": "testing_list.txt"}
# Waveforms per feature batch (one worker task: about 30 MB of features). Float sums depend on the batch
# size, so changing it changes the features' last bits (and the prepared data's hash).
FEATURE_CHUNK = 512


def list_classes(root: str | Path) -> list[str]:
    """Word folders (sorted); `_background_noise_` and other `_` folders are not classes."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root}: GSC root not found "
            "(expected one folder per word plus validation_list.txt, testing_list.txt)"
        )
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
            raise FileNotFoundError(
                f"{root / LIST_FILES[split]}: lists {len(missing)} missing file(s), e.g. {missing[0]}"
            )
    out: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    for label, word in enumerate(classes):
        for wav in sorted((root / word).glob("*.wav")):
            rel = f"{word}/{wav.name}"
            split = "valid" if rel in listed["valid"] else "test" if rel in listed["test"] else "train"
            out[split].append((rel, label))
    return out, classes


class UnreadableWav(ValueError):
    """A wav file that cannot be decoded (empty, truncated, not a wav): its sample is skipped and counted."""


def read_wav(path: str | Path) -> np.ndarray:
    """Mono float32 waveform at 16 kHz, padded with zeros or cut to exactly 1 s."""
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:
        reason = getattr(err, "error_string", None) or err  # libsndfile's reason, without the path again
        raise UnreadableWav(f"{path}: not a readable wav file ({reason})") from err
    missing = _missing_data_bytes(path)
    if missing:
        raise UnreadableWav(f"{path}: truncated wav file ({missing} bytes of its audio data missing)")
    if sr != SAMPLE_RATE:
        raise ValueError(f"{path}: sample rate {sr} Hz, expected {SAMPLE_RATE} Hz (GSC v0.02)")
    wav = wav.mean(axis=1)
    out = np.zeros(SAMPLE_RATE, dtype=np.float32)
    out[: min(len(wav), SAMPLE_RATE)] = wav[:SAMPLE_RATE]
    return out


def _missing_data_bytes(path: str | Path) -> int:
    """Bytes that a RIFF wav's data chunk declares beyond the end of the file (0 when complete, or when the
    size is left open as streaming writers do). libsndfile reads a cut data chunk without complaint, so a
    truncated file would otherwise pass as a shorter recording padded with silence."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return 0  # another container that libsndfile decoded: it checks its own sizes
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, declared = f.read(4), int.from_bytes(f.read(4), "little")
            if chunk_id == b"data":
                return 0 if declared in (0, 0xFFFFFFFF) else max(0, pos + 8 + declared - size)
            pos += 8 + declared + (declared & 1)  # chunks are padded to even sizes
    return 0


class LogMel(torch.nn.Module):
    """(N, 16000) waveforms at 16 kHz -> (N, 101, 140) mel power in dB, the reference's transforms."""

    def __init__(self) -> None:
        super().__init__()
        self.resample = torchaudio.transforms.Resample(SAMPLE_RATE, TARGET_RATE)
        self.spectrogram = torchaudio.transforms.Spectrogram(n_fft=256, hop_length=80, power=2.0)
        with warnings.catch_warnings():
            # The bands above 4 kHz (F_MAX is beyond the Nyquist frequency) have all-zero filters, which
            # torchaudio warns about: they are kept, as the reference's features have them.
            warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero values")
            self.mel = torchaudio.transforms.MelScale(
                n_mels=N_MELS, sample_rate=TARGET_RATE, f_min=F_MIN, f_max=F_MAX, n_stft=256 // 2 + 1
            )
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power")

    @torch.no_grad()
    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.to_db(self.mel(self.spectrogram(self.resample(wav)))).transpose(1, 2).contiguous()


class FeatureChunk(NamedTuple):
    """Features of one chunk of wav files: the readable ones' features, which files those are, and why the
    others could not be read."""

    features: np.ndarray  # (readable files, 101, 140) float32, in the chunk's order
    readable: np.ndarray  # (files of the chunk,) bool
    unreadable: list[str]  # "path: reason" of each unreadable file, in order


class FeatureWorkers:
    """Worker processes computing log-mel features: one per usable CPU by default, one torch thread each.

    Spawned, not forked: a fork of a process whose OpenMP threads ran can hang in the child.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or len(os.sched_getaffinity(0))
        self._pool = ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker
        )

    def chunks(self, root: str | Path, items: list[tuple[str, int]]) -> Iterator[FeatureChunk]:
        """Features of the wav files `items` (relative path, label) in chunks of FEATURE_CHUNK files, in
        order (unreadable files left out and named). The chunk boundaries do not depend on the worker
        count, so neither do the values; a few chunks are computed ahead of the consumer, no more."""
        paths = [str(Path(root) / rel) for rel, _ in items]
        pending: deque[Future] = deque()
        for start in range(0, len(paths), FEATURE_CHUNK):
            pending.append(self._pool.submit(_chunk_features, paths[start : start + FEATURE_CHUNK]))
            if len(pending) > 2 * self.workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def __enter__(self) -> "FeatureWorkers":
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(cancel_futures=True)


_worker_logmel: LogMel | None = None


def _start_worker() -> None:
    global _worker_logmel
    torch.set_num_threads(1)  # the processes are the parallelism
    _worker_logmel = LogMel()


def _chunk_features(paths: list[str]) -> FeatureChunk:
    """Features of some wav files (run in a FeatureWorkers process)."""
    assert _worker_logmel is not None, "run in a FeatureWorkers process"
    wavs = np.zeros((len(paths), SAMPLE_RATE), np.float32)
    readable = np.ones(len(paths), bool)
    unreadable: list[str] = []
    for i, path in enumerate(paths):
        try:
            wavs[i] = read_wav(path)
        except UnreadableWav as err:
            readable[i] = False
            unreadable.append(str(err))
    # Unreadable files stay in the batch as silence and are dropped afterwards: float sums depend on the
    # batch size, so the other files' features are the same as in an intact copy of the dataset.
    return FeatureChunk(_worker_logmel(torch.from_numpy(wavs)).numpy()[readable], readable, unreadable)


# Peak memory of delays_prepare on the full GSC set (105,829 files), summed over the process and its
# feature workers, in MB of 2**20 bytes (SLURM's --mem unit): base + per worker * workers. Measured by
# benchmarks/bench_scale.py (`python -m benchmarks --only scale`; results/bench/scale.json "gsc_memory",
# docs/benchmarks.md) on a 2-core x86-64 machine, torch 2.14 on the CPU. The measure: the sum of every
# process's own peak RSS (VmHWM), an upper bound of the summed RSS that sampling cannot miss, at 1, 2, 4
# and 8 workers on 16,000 files (the line fits within 40 MB), plus its growth with the set's size (2 MB
# per 1000 files) up to the full set. Each worker holds its own torch and chunk buffers (about 1 GB): the
# workers, not the data, set the peak.
PREPARE_BASE_MB = 873
PREPARE_PER_WORKER_MB = 1034
# Safety margin: the process may hold up to 2 finished chunks per worker when writing lags behind the
# workers, as on a many-core node with a slow file system (2 x 512 x 101 x 140 float32 = 55 MB per worker,
# which the measuring runs need not have reached), and other CPUs and library builds differ.
PREPARE_MARGIN = 1.15


def prepare_memory_mb(workers: int) -> int:
    """Memory (MB) to request for delays_prepare of a full GSC set with `workers` feature workers (one per
    CPU of the job): the measured model with its margin, rounded up to 100 MB. Linear in the workers, as
    each worker is a process of the same size: the simplest model that fits the measurements."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    mb = (PREPARE_BASE_MB + PREPARE_PER_WORKER_MB * workers) * PREPARE_MARGIN
    return int(math.ceil(mb / 100) * 100)
