"""Benchmark: paper A's loaders, the former float32 ones against the uint8 / bit-packed ones.

Data, written to a temporary directory and deleted afterwards: JPEGs of
ImageNet's usual sizes (500 x 375, 375 x 500, 500 x 333) with photo-like
content (random fields at three scales, grain, hard-edged shapes; quality 90,
about 80 KB each, near ImageNet's bytes per pixel) in an ImageFolder layout;
ES-ImageNet samples of 22,000 events each in the real layout (label file +
npz of pos / neg, the real 254 / 256 / 16 geometry); and a few 1600 x 1200
JPEGs, where reduced-size decoding can apply.

Measured: the CPU time (time.process_time, one torch thread as in a DataLoader
worker, one process) of what a worker does per batch of 256: read, decode and
transform every sample, collate them, and move the batch to shared memory (what
the DataLoader does to hand it to the main process). Images at the paper's
settings, normalised: train (RandomResizedCrop 224 + flip) and val (resize 256
+ centre crop 224); the new loader leaves the float conversion and
normalisation to the device, where it is measured separately. Old and new are
checked equal (within the rounding of tests/test_loaders_fast.py) before
timing, and timed interleaved; medians, and the best of the runs (the least
disturbed by other load on a shared machine).

Against what a user would otherwise run: the train images also go through a
torch DataLoader with 2 worker processes, the new loader as the training loop
builds it against torchvision's ImageFolder + Compose(RandomResizedCrop(224),
RandomHorizontalFlip(), ToTensor(), Normalize) with the DataLoader's default
collate (the old loader's recipe, whose default collate stacks a worker's batch
straight into shared memory, where the one-process measure above adds a copy):
CPU seconds of the workers and the main process per shuffled pass, once the
(persistent) workers have started.
"""

from __future__ import annotations

import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets, transforms
from torchvision.io import ImageReadMode, decode_jpeg

from benchmarks.common import ratio, save
from benchmarks.legacy_loaders import LegacyESImageNet, legacy_imagefolder_split
from pipeline.data.batching import collate_skipping
from pipeline.data.device_transforms import IMAGENET_MEAN, IMAGENET_STD, input_spec_of, prepare_batch
from pipeline.data.es_imagenet import ESImageNet, Geometry
from pipeline.data.images import ImageTransform, UInt8ImageFolder, imagefolder_split, read_bytes

NAME = "loaders"
BATCH = 256
IMAGE_SIZE = 224
IMAGENET_SHAPES = ((500, 375), (375, 500), (500, 333))  # width, height: ImageNet's most common
LARGE_SHAPE = (1600, 1200)
EVENTS_PER_SAMPLE = 22_000
DATALOADER_WORKERS = 2  # worker processes of the DataLoader comparison


def photo_like_jpeg(rng: np.random.Generator, width: int, height: int) -> bytes:
    """Smooth random content with grain and hard edges: compresses about like a photo."""
    img = np.full((height, width, 3), 120, np.int16)
    for cell, halvings in ((48, 0), (12, 1), (3, 1)):
        field = rng.integers(0, 256, (height // cell + 2, width // cell + 2, 3), dtype=np.uint8)
        resized = np.asarray(Image.fromarray(field).resize((width, height), Image.BICUBIC)).astype(np.int16)
        img += (resized - 128) >> halvings
    img += rng.integers(-6, 7, img.shape, dtype=np.int16)
    picture = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for _ in range(8):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(10, width // 3)), int(rng.integers(10, height // 3))
        draw.ellipse([x, y, x + w, y + h], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    buf = io.BytesIO()
    picture.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write_imagefolder(root: Path, n: int, shapes: tuple[tuple[int, int], ...], seed: int) -> int:
    """n JPEGs in train/ and val/ (the same files, hard-linked), 10 classes; returns their total bytes."""
    rng = np.random.default_rng(seed)
    total = 0
    for i in range(n):
        data = photo_like_jpeg(rng, *shapes[i % len(shapes)])
        total += len(data)
        train, val = (root / split / f"n{i % 10:08d}" / f"img_{i:05d}.JPEG" for split in ("train", "val"))
        for path in (train, val):
            path.parent.mkdir(parents=True, exist_ok=True)
        train.write_bytes(data)
        val.hardlink_to(train)
    return total


def write_es_imagenet(root: Path, n: int, geom: Geometry, seed: int) -> None:
    """n samples of EVENTS_PER_SAMPLE distinct events (train split), landscape and portrait."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        a, b = (geom.long_side, 190) if i % 2 else (190, geom.long_side)
        h, w = a + 2, b + 2  # the shifted image's extent
        flat = np.sort(rng.choice(2 * 8 * h * w, EVENTS_PER_SAMPLE, replace=False))
        polarity, rest = np.divmod(flat, 8 * h * w)
        t, rest = np.divmod(rest, h * w)
        row, col = np.divmod(rest, w)
        events = np.stack([row, col, t + 1], axis=1).astype(np.uint8)
        rel = f"class{i % 10}/class{i % 10}_{i + 1}.npz"
        (root / "train" / rel).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(root / "train" / rel, pos=events[polarity == 0], neg=events[polarity == 1])
        lines.append(f"{rel} {i % 10} {a} {b}\n")
    (root / "trainlabel.txt").write_text("".join(lines))


def batches(dataset: Dataset, seed: int):
    """What a DataLoader worker hands over: collated batches, moved to shared memory."""
    torch.manual_seed(seed)
    for start in range(0, len(dataset), BATCH):
        x, y, skipped = collate_skipping([dataset[i] for i in range(start, min(start + BATCH, len(dataset)))])
        assert not skipped, skipped[:3]
        yield x.share_memory_(), y


def cpu_seconds(fn: Callable[[], Any]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def worker_cpu_seconds(dataset: Dataset) -> Callable[[], float]:
    return lambda: cpu_seconds(lambda: sum(1 for _ in batches(dataset, seed=0)))


def interleaved(candidates: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """CPU seconds of every run of each candidate, run round-robin so that drift hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            samples[name].append(fn())
    return samples


def first_batch(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(batches(dataset, seed=1)))


def check_images(old: Dataset, new: UInt8ImageFolder) -> float:
    """Largest difference of the first batch's normalised model input, in uint8 levels (at most 2:
    the resize's two passes may each round differently)."""
    x_old, _ = first_batch(old)
    x_new, y_new = first_batch(new)
    x, _, _ = prepare_batch(x_new, y_new, input_spec_of(new), "cpu")
    levels = (x - x_old).abs().max().item() * 255 * min(IMAGENET_STD)
    assert levels <= 2 + 1e-3, f"new loader differs from the old by {levels:.2f} uint8 levels"
    return round(levels, 3)


def device_side_seconds(dataset: Dataset, repeats: int) -> float:
    """CPU seconds per sample of prepare_batch on the CPU (the work moved out of the workers)."""
    x, y = first_batch(dataset)
    spec = input_spec_of(dataset)
    return statistics.median(
        cpu_seconds(lambda: prepare_batch(x, y, spec, "cpu")) for _ in range(repeats)
    ) / len(x)


def ratios_of(runs: dict[str, list[float]], label: str) -> dict[str, float]:
    """new/old speed from the medians, and from the best runs (the least disturbed by other load)."""
    return {
        label: ratio(statistics.median(runs["old"]), statistics.median(runs["new"])),
        f"{label}, best of runs": ratio(min(runs["old"]), min(runs["new"])),
    }


def torchvision_train_folder(root: Path) -> datasets.ImageFolder:
    """What a user would otherwise run: torchvision's ImageFolder with the usual ImageNet train transforms
    (the old loader's train recipe too), whose items are normalised float32 (3, 224, 224)."""
    recipe = transforms.Compose(
        [
            transforms.RandomResizedCrop(IMAGE_SIZE),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    return datasets.ImageFolder(str(root / "train"), transform=recipe)


def _process_tree_cpu_s() -> float:
    """CPU seconds of this process and of its live child processes (a DataLoader's workers)."""
    import psutil

    total = time.process_time()
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:  # exited since the listing: not one of the persistent workers measured
            continue
        total += times.user + times.system
    return total


def dataloader_cpu_seconds(dataset: Dataset, collate_fn: Callable | None) -> Callable[[], float]:
    """CPU seconds of one shuffled pass of a DataLoader as a training loop runs it (batches of 256,
    DATALOADER_WORKERS worker processes, `collate_fn` or the DataLoader's default, which stacks a worker's
    batch straight into shared memory): the workers' plus the main process's. The workers persist and a
    first pass, not counted, starts them: an epoch of ImageNet (5,000 batches) starts them once, so their
    start is not part of the steady cost per image."""
    loader = DataLoader(
        dataset,
        batch_size=BATCH,
        shuffle=True,
        num_workers=DATALOADER_WORKERS,
        collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(0),
        persistent_workers=True,
    )

    def run() -> float:
        start = _process_tree_cpu_s()
        seen = sum(len(batch[1]) for batch in loader)  # the labels of (x, y, skipped) and of [x, y]
        assert seen == len(dataset), f"{seen} of {len(dataset)} samples loaded"
        return _process_tree_cpu_s() - start

    run()
    return run


def measure_dataloaders(
    root: Path, new: UInt8ImageFolder, repeats: int
) -> tuple[dict[str, Any], dict[str, float]]:
    """Train images per CPU-second through a DataLoader with 2 workers: the new loader as the training
    loop builds it (collate_skipping) against torchvision's ImageFolder with its default collate."""
    runs = interleaved(
        {
            "torchvision": dataloader_cpu_seconds(torchvision_train_folder(root), None),
            "new": dataloader_cpu_seconds(new, collate_skipping),
        },
        repeats,
    )
    n = len(new)
    rates = {name: [round(n / s, 1) for s in samples] for name, samples in runs.items()}
    per_run = [round(t / s, 3) for t, s in zip(runs["torchvision"], runs["new"])]  # each round's ratio
    label = f"train images_per_cpu_s new/torchvision ImageFolder, DataLoader {DATALOADER_WORKERS} workers"
    ratios = {
        label: ratio(statistics.median(runs["torchvision"]), statistics.median(runs["new"])),
        f"{label}, best of runs": ratio(min(runs["torchvision"]), min(runs["new"])),
    }
    print(
        f"[loaders] {label}: {ratios[label]}x median, {min(per_run)}-{max(per_run)}x over rounds; "
        f"images per CPU-s {rates}",
        flush=True,
    )
    section = {
        "workers": DATALOADER_WORKERS,
        "train_images_per_cpu_s_runs": rates,
        "ratio_per_round": per_run,
        "cpu_s_median": {name: statistics.median(samples) for name, samples in runs.items()},
    }
    return section, ratios


def measure_images(root: Path, n: int, repeats: int) -> tuple[dict[str, Any], dict[str, float]]:
    image_bytes = write_imagefolder(root, n, IMAGENET_SHAPES, seed=0)
    loaders = {
        split: (
            legacy_imagefolder_split(root, split, IMAGE_SIZE, True, True),
            imagefolder_split(root, split, IMAGE_SIZE, True, True),
        )
        for split in ("train", "val")
    }
    max_levels = {split: check_images(old, new) for split, (old, new) in loaders.items()}
    batch_bytes = {
        "old": first_batch(loaders["train"][0])[0].nbytes,
        "new": first_batch(loaders["train"][1])[0].nbytes,
    }
    runs = {
        split: interleaved({"old": worker_cpu_seconds(old), "new": worker_cpu_seconds(new)}, repeats)
        for split, (old, new) in loaders.items()
    }
    dataloader, dataloader_ratios = measure_dataloaders(root, loaders["train"][1], repeats)
    jpegs = [read_bytes(path) for path, _ in loaders["train"][1].samples]
    decode_s = statistics.median(
        cpu_seconds(lambda: [decode_jpeg(d, mode=ImageReadMode.RGB) for d in jpegs]) for _ in range(repeats)
    )
    section = {
        "count": n,
        "shapes": [list(shape) for shape in IMAGENET_SHAPES],
        "mean_jpeg_kb": round(image_bytes / n / 1024, 1),
        "images_per_cpu_s": {
            split: {k: round(n / statistics.median(v), 1) for k, v in r.items()} for split, r in runs.items()
        },
        "max_difference_uint8_levels": max_levels,
        "jpeg_decode_only_per_cpu_s": round(n / decode_s, 1),
        "device_side_cpu_us_per_image": round(device_side_seconds(loaders["train"][1], repeats) * 1e6, 1),
        "batch_bytes": batch_bytes,
        "dataloader": dataloader,
    }
    # Without a GPU the new loader's float conversion and normalisation (prepare_batch) run on the CPU too.
    with_device_side = dataloader["cpu_s_median"]["new"] + section["device_side_cpu_us_per_image"] * 1e-6 * n
    dataloader_ratios[
        "train images_per_cpu_s new/torchvision ImageFolder, DataLoader, new's float conversion on the CPU"
    ] = ratio(dataloader["cpu_s_median"]["torchvision"], with_device_side)
    return section, {
        **ratios_of(runs["train"], "images_per_cpu_s new/old, train"),
        **dataloader_ratios,
        **ratios_of(runs["val"], "images_per_cpu_s new/old, val"),
        "batch_bytes new/old, images": round(batch_bytes["new"] / batch_bytes["old"], 4),
    }


def measure_events(root: Path, n: int, repeats: int) -> tuple[dict[str, Any], dict[str, float]]:
    geom = Geometry()
    write_es_imagenet(root, n, geom, seed=2)
    old, new = LegacyESImageNet(root, "train", geom), ESImageNet(root, "train", geom)
    x_old, _ = first_batch(old)
    x_new, y_new = first_batch(new)
    assert torch.equal(prepare_batch(x_new, y_new, new.input_spec, "cpu")[0], x_old), "event frames differ"
    batch_bytes = {"old": x_old.nbytes, "new": x_new.nbytes}
    del x_old, x_new
    runs = interleaved({"old": worker_cpu_seconds(old), "new": worker_cpu_seconds(new)}, repeats)
    section = {
        "count": n,
        "events_per_sample": EVENTS_PER_SAMPLE,
        "samples_per_cpu_s": {k: round(n / statistics.median(v), 1) for k, v in runs.items()},
        "batch_bytes": batch_bytes,
    }
    return section, {
        **ratios_of(runs, "es_samples_per_cpu_s new/old"),
        "batch_bytes new/old, es_imagenet": round(batch_bytes["new"] / batch_bytes["old"], 4),
    }


def measure_reduced_decoding(root: Path, n: int, repeats: int) -> tuple[dict[str, Any], dict[str, float]]:
    write_imagefolder(root, n, (LARGE_SHAPE,), seed=1)
    datasets = {
        name: UInt8ImageFolder(root / "train", ImageTransform(IMAGE_SIZE, "train", reduced), normalize=True)
        for name, reduced in (("off", False), ("on", True))
    }
    runs = interleaved({name: worker_cpu_seconds(ds) for name, ds in datasets.items()}, repeats)
    seconds = {k: statistics.median(v) for k, v in runs.items()}
    section = {
        "count": n,
        "shape": list(LARGE_SHAPE),
        "train_images_per_cpu_s": {k: round(n / s, 1) for k, s in seconds.items()},
    }
    return section, {
        "train images_per_cpu_s reduced decoding on/off, 1600x1200": ratio(seconds["off"], seconds["on"])
    }


def _measure(quick: bool) -> dict[str, Any]:
    n_images, n_events, n_large, repeats = (512, 512, 32, 2) if quick else (2560, 2048, 160, 3)
    with tempfile.TemporaryDirectory(prefix="bench_loaders_") as tmp:
        images, image_ratios = measure_images(Path(tmp) / "imagenet", n_images, repeats)
        events, event_ratios = measure_events(Path(tmp) / "es_imagenet", n_events, repeats)
        reduced, reduced_ratios = measure_reduced_decoding(Path(tmp) / "large", n_large, repeats)
    return {
        "name": NAME,
        "what": "CPU time of a DataLoader worker's work (read, decode, transform, collate, to shared "
        "memory), former float32 loaders vs uint8 / bit-packed ones, batches of 256, one process, one thread",
        "images": images,
        "es_imagenet": events,
        "reduced_jpeg_decoding": reduced,
        "quick": quick,
        "ratios": {**image_ratios, **event_ratios, **reduced_ratios},
        "targets": {
            "images_per_cpu_s new/old": ">= 2",
            "es_samples_per_cpu_s new/old": ">= 2",
            "batch_bytes new/old": "<= 0.25",
        },
    }


def main(quick: bool = False) -> dict[str, Any]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    try:
        return _measure(quick)
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    print(save(NAME, main()))
