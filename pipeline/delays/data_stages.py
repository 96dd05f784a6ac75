"""Data stages of paper B: delays_synth and delays_prepare (no model code).

Kept apart from the training stages so that their code dependencies (the
import closure of this module) do not include the model and the training
loop: changing those never re-prepares data.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.params.configs import DelaysData, to_dict
from pipeline.io import atomic_dir, write_json
from pipeline.params.load import ParamsError
from pipeline.drivers.stage_table import DelaysPrepareConfig, DelaysSynthConfig

SPLITS = ("train", "valid", "test")


def _split_source(fmt: str, split: str, cfg: DelaysData) -> str:
    """Where a split's samples come from, for error messages."""
    if fmt == "gsc":
        from pipeline.data.gsc import LIST_FILES

        return LIST_FILES.get(split, "the word folders (wav files in neither list)")
    from pipeline.data.shd import SPLIT_FILES

    files = SPLIT_FILES[fmt]
    if split in files:
        return files[split]
    return f"valid_fraction {cfg.valid_fraction} of {files['train']}"


def synth(cfg: DelaysSynthConfig, *, out: Path) -> None:
    """Write the embedded timing-coded dataset (out/shd_train.h5, out/shd_test.h5) in SHD's layout."""
    from pipeline.data.synth_shd import write_synth

    with atomic_dir(out) as tmp:
        used = write_synth(tmp, to_dict(cfg.synth))
        write_json(tmp / "synth_config.json", used)
    print(
        f"wrote {cfg.synth.n_train} train / {cfg.synth.n_test} test samples of {cfg.synth.n_classes} timing "
        f"classes in SHD's layout to {out}"
    )


def prepare(stage_cfg: DelaysPrepareConfig, *, dataset: str, out: Path) -> None:
    """Bin/featurise a dataset into one memory-mappable store per split, out/{train,valid,test}/
    (pipeline/data/store.py). Streams: memory holds a chunk of samples, not the dataset."""
    cfg = stage_cfg.data
    meta: dict[str, Any] = {
        "dataset": dataset,
        "format": cfg.format,
        "root": str(Path(cfg.root)),
        "time_step_ms": cfg.time_step_ms,
    }
    if cfg.format in ("shd", "ssc"):
        _prepare_spikes(cfg, dataset, meta, out)
    elif cfg.format == "gsc":
        _prepare_gsc(cfg, dataset, meta, out, stage_cfg.max_skipped_fraction)
    else:
        raise ParamsError(f"unknown format '{cfg.format}' (allowed: shd, ssc, gsc)")
    sizes = {split: _read_meta(Path(out) / split)["n_samples"] for split in SPLITS}
    print(
        f"{dataset}: {cfg.format} at {cfg.root} -> {out}: "
        + ", ".join(f"{n} {split}" for split, n in sizes.items())
        + " samples"
    )


def _read_meta(split_dir: Path) -> dict[str, Any]:
    from pipeline.io import read_json

    return read_json(split_dir / "meta.json")


def _check_not_empty(sizes: dict[str, int], cfg: DelaysData, dataset: str) -> None:
    """Training selects on valid and reports test: every split needs samples (checked before any work)."""
    for split in SPLITS:
        if not sizes[split]:
            raise ValueError(
                f"{Path(cfg.root)}: the {split} split of dataset '{dataset}' is empty "
                f"({_split_source(cfg.format, split, cfg)} holds no samples)"
            )


def _prepare_spikes(cfg: DelaysData, dataset: str, meta: dict[str, Any], out: Path) -> None:
    """SHD/SSC: each official file is binned chunk by chunk into the store(s) its samples go to."""
    from pipeline.data import shd
    from pipeline.data.prepared import holdout
    from pipeline.data.store import StoreWriter

    with contextlib.ExitStack() as stack:
        sources = {
            name: stack.enter_context(shd.SpikeFile(shd.split_path(cfg.root, cfg.format, name)))
            for name in shd.SPLIT_FILES[cfg.format]
        }
        # Which samples of each file go to which split: SHD has no validation file, valid is held out of
        # train.
        routes = {name: {name: np.ones(len(f), bool)} for name, f in sources.items()}
        if "valid" not in sources:
            if not cfg.valid_fraction > 0:
                raise ParamsError(
                    f"delays.sets.{dataset}.data.valid_fraction must be > 0: "
                    f"format {cfg.format} has no validation split"
                )
            in_valid = np.zeros(len(sources["train"]), bool)
            in_valid[holdout(sources["train"].labels, cfg.valid_fraction, cfg.valid_seed)[1]] = True
            routes["train"] = {"train": ~in_valid, "valid": in_valid}
            meta["valid_from_train"] = {"fraction": cfg.valid_fraction, "seed": cfg.valid_seed}
        sizes = {split: int(take.sum()) for route in routes.values() for split, take in route.items()}
        _check_not_empty(sizes, cfg, dataset)
        # the training file's classes; a label outside them stops here, before anything is written
        meta.update(pool=cfg.pool, n_units=cfg.n_channels, n_classes=shd.class_count(sources))
        n_out = shd.pooled_channels(cfg.n_channels, cfg.pool)
        with atomic_dir(out) as tmp:
            for name, source in sources.items():
                writers = {
                    split: stack.enter_context(StoreWriter(tmp / split, n_out, np.int16))
                    for split in routes[name]
                }
                _bin_into(source, routes[name], writers, cfg)
                for split, writer in writers.items():
                    writer.close({**meta, "split": split, "n_samples": sizes[split]})


def _bin_into(source: Any, routes: dict[str, np.ndarray], writers: dict[str, Any], cfg: DelaysData) -> None:
    """Bin `source` (a shd.SpikeFile) chunk by chunk; the samples `routes[split]` selects go to
    `writers[split]`."""
    start = 0
    for frames, lengths in source.binned_chunks(cfg.time_step_ms, n_units=cfg.n_channels, pool=cfg.pool):
        stop = start + len(lengths)
        labels = source.labels[start:stop]
        for split, take in routes.items():
            chunk_take = take[start:stop]
            if chunk_take.all():
                writers[split].append(frames, lengths, labels)
            else:
                writers[split].append(
                    frames[np.repeat(chunk_take, lengths)], lengths[chunk_take], labels[chunk_take]
                )
        start = stop


def _prepare_gsc(
    cfg: DelaysData, dataset: str, meta: dict[str, Any], out: Path, max_skipped_fraction: float
) -> None:
    """GSC: log-mel features computed in chunks by worker processes, written in order. Unreadable wav files
    follow the one rule of every stage (pipeline/data/batching.py): skipped, named in each split's metadata
    ("unreadable") and in a warning line; more than max_skipped_fraction of the dataset stops the stage."""
    from pipeline.data import gsc
    from pipeline.checks import check_unreadable
    from pipeline.data.store import StoreWriter

    if cfg.time_step_ms != 10 or cfg.n_channels != gsc.N_MELS or cfg.pool != 1:
        raise ParamsError(
            f"delays.sets.{dataset}.data: gsc features are fixed at 10 ms steps and "
            f"{gsc.N_MELS} mel bands: set time_step_ms 10, n_channels {gsc.N_MELS}, pool 1"
        )
    files, classes = gsc.split_files(cfg.root)
    _check_not_empty({split: len(files[split]) for split in SPLITS}, cfg, dataset)
    meta.update(classes=classes, n_classes=len(classes))  # one class per word folder
    total, where = sum(len(f) for f in files.values()), f"dataset '{dataset}' ({Path(cfg.root)})"
    unreadable: list[str] = []
    with atomic_dir(out) as tmp, gsc.FeatureWorkers() as workers:
        for split in SPLITS:
            items = files[split]
            labels = np.asarray([label for _, label in items], dtype=np.int64)
            split_unreadable: list[str] = []
            with StoreWriter(tmp / split, gsc.N_MELS, np.float32) as writer:
                start = 0
                for chunk in workers.chunks(cfg.root, items):
                    n, (n_read, n_frames) = len(chunk.readable), chunk.features.shape[:2]
                    writer.append(
                        chunk.features.reshape(-1, gsc.N_MELS),
                        np.full(n_read, n_frames),
                        labels[start : start + n][chunk.readable],
                    )
                    start += n
                    split_unreadable += chunk.unreadable
                    if (len(unreadable) + len(split_unreadable)) / total > max_skipped_fraction:
                        # already more than allowed: stop now rather than after featurising the rest
                        check_unreadable(unreadable + split_unreadable, total, max_skipped_fraction, where)
                writer.close(
                    {
                        **meta,
                        "split": split,
                        "n_samples": len(items) - len(split_unreadable),
                        "unreadable": split_unreadable,
                    }
                )
            unreadable += split_unreadable
        check_unreadable(unreadable, total, max_skipped_fraction, where)  # warns before the output appears
