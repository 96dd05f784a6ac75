"""Training stages of paper A: pretrain_ann, finetune_snn and train_snn_scratch.

Each writes a checkpoint file (`ckpt`, DVC-cached) and a small DVCLive
directory (`live`): config.json, history.json, metrics.json, DVCLive's
per-epoch plots and skipped_files.json.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from pipeline import distributed
from pipeline.checks import check_classes, check_index, load_checkpoint
from pipeline.config import PretrainDataset, Recipe, Runtime, capped_epochs, to_dict
from pipeline.data.batching import check_unreadable
from pipeline.io import write_json
from pipeline.models.resnet_twins import count_parameters
from pipeline.precision import Precision
from pipeline.pretrain.datasets import STATIC_FORMATS, build_loaders, in_channels
from pipeline.pretrain.models import build_model, model_config
from pipeline.pretrain.train import PretrainTask, set_body_frozen
from pipeline.resume import ResumeState, fingerprint
from pipeline.runtime import pick_device, seed_everything
from pipeline.stage_table import AnnConfig, FinetuneConfig, ScratchConfig
from pipeline.tracking import EpochLog
from pipeline.training import Context, fit


def _train(model: nn.Module, model_cfg: dict[str, Any], *, role: str, name: str, dataset_name: str,
           dataset: PretrainDataset, recipe: Recipe, runtime: Runtime, seed: int, num_workers: int, max_epochs: int,
           max_skipped_fraction: float, resume: bool, data: Path, ckpt: Path, live: Path, gen: torch.Generator, meta: dict[str, Any],
           epoch_hook: Callable[[int], None] | None = None, inputs: tuple[Path, ...] = ()) -> None:
    """Train `model` with `recipe` on `dataset`; write the checkpoint and the DVCLive directory."""
    recipe = dataclasses.replace(recipe, epochs=capped_epochs(recipe.epochs, max_epochs))
    d, device = distributed.setup(pick_device(runtime.device))
    distributed.seed_rank(seed, d)  # the model was built (seeded) before
    train_loader, val_loader, skipped, n_samples = build_loaders(dataset, dataset_name, data, recipe.batch_size,
                                                                 gen, num_workers, d)
    check_unreadable(skipped, n_samples, max_skipped_fraction, f"dataset '{dataset_name}'")  # before any output
    n_params = count_parameters(model)
    precision = Precision(runtime.amp, device)
    config = {"role": role, "run": name, "dataset": dataset_name, "data": str(data), "model": model_cfg,
              "train": to_dict(recipe), "dataset_config": to_dict(dataset), "seed": seed, "device": str(device),
              "n_params": n_params, "amp": precision.name, "world_size": d.world, **meta}
    resumer = ResumeState(ckpt, fingerprint(config, (Path(data), *inputs), d.world), resume, d.is_main)
    log = EpochLog(live, config) if d.is_main else None
    ckpt_meta = {"role": role, "run": name, "dataset": dataset_name, "model_config": model_cfg, **meta}
    task = PretrainTask(model, recipe, train_loader, val_loader, device, d, precision, Path(ckpt), ckpt_meta,
                        epoch_hook, skipped, n_samples, max_skipped_fraction, dataset_name)
    result = fit(task, Context(d, device, resumer, log, gen, f"{STAGE_OF_ROLE[role]} {name}"), epochs=recipe.epochs,
                 select="val_acc")
    if log is not None:
        files = sorted(task.skipped)
        write_json(Path(live) / "skipped_files.json", files)
        log.finish({"best_val_acc": result.best["val_acc"], "best_epoch": result.best_epoch, "epochs": result.epochs,
                    "elapsed_s": result.elapsed_s, "skipped_files": len(files), "n_params": n_params})
    resumer.clear()
    distributed.cleanup(d)


STAGE_OF_ROLE = {"ann_pretrain": "pretrain_ann", "finetune": "finetune_snn", "scratch": "train_snn_scratch"}


def pretrain_ann(cfg: AnnConfig, *, ann: str, data: Path, ckpt: Path, live: Path) -> None:
    """Pretrain the sharpened-ReLU ANN twin on a static dataset (images or RGB frames)."""
    gen = seed_everything(cfg.seed)
    if cfg.dataset.format not in STATIC_FORMATS:
        raise ValueError(f"pretrain_ann needs a static dataset ({', '.join(STATIC_FORMATS)}); "
                         f"'{cfg.run.dataset}' is {cfg.dataset.format}")
    check_index(data, cfg.run.dataset)
    config = model_config("ann", cfg.model, cfg.snn, cfg.dataset, cfg.recipe.sharpen_epochs)
    model = build_model(config)
    _train(model, config, role="ann_pretrain", name=ann, dataset_name=cfg.run.dataset, dataset=cfg.dataset,
           recipe=cfg.recipe, runtime=cfg.runtime, seed=cfg.seed, num_workers=cfg.num_workers, max_epochs=cfg.max_epochs,
           max_skipped_fraction=cfg.max_skipped_fraction, resume=cfg.resume,
           data=data, ckpt=ckpt, live=live, gen=gen, meta={}, epoch_hook=model.set_epoch)


def finetune_snn(cfg: FinetuneConfig, *, pipe: str, init: Path, data: Path, ckpt: Path, live: Path) -> None:
    """Fine-tune the transferred SNN on the pipeline's target dataset (optional frozen warm-up)."""
    gen = seed_everything(cfg.seed)
    target_name = cfg.pipeline.target
    state = load_checkpoint(init, "transfer")
    if state["pipeline"] != pipe:
        raise ValueError(f"{init}: transfer output of pipeline {state['pipeline']}, expected pipeline {pipe}")
    check_classes(state["model_config"]["num_classes"], cfg.target.num_classes, f"{init}: the transferred SNN",
                  f"pretrain.datasets.{target_name}.num_classes")
    if state["model_config"]["in_channels"] != in_channels(cfg.target):
        raise ValueError(f"{init}: the transferred SNN takes {state['model_config']['in_channels']} input channels, "
                         f"dataset '{target_name}' has {in_channels(cfg.target)}")
    check_index(data, target_name)
    model = build_model(state["model_config"])
    model.load_state_dict(state["model"])
    rep = state["transfer"]
    warm = cfg.recipe.frozen_warmup_epochs
    trainable = tuple(list(rep["adapted"]) + rep["new"] + rep.get("snn_only", [])) + ("fc.",)

    def hook(epoch: int) -> None:  # epoch is 0-based
        set_body_frozen(model, epoch < warm, trainable)

    meta = {"pipeline": pipe, "ann_run": cfg.pipeline.ann, "baseline": cfg.pipeline.baseline,
            "source_dataset": rep["source_dataset"], "pretrain_elapsed_s": rep["ann_elapsed_s"],
            "pretrain_epochs": rep["ann_epochs"], "init": str(init)}
    _train(model, state["model_config"], role="finetune", name=pipe, dataset_name=target_name, dataset=cfg.target, recipe=cfg.recipe,
           runtime=cfg.runtime, seed=cfg.seed, num_workers=cfg.num_workers, max_epochs=cfg.max_epochs,
           max_skipped_fraction=cfg.max_skipped_fraction, resume=cfg.resume, data=data,
           ckpt=ckpt, live=live, gen=gen, meta=meta, epoch_hook=hook, inputs=(Path(init),))


def train_snn_scratch(cfg: ScratchConfig, *, run: str, data: Path, ckpt: Path, live: Path) -> None:
    """Baseline: the same SNN topology trained from random initialisation."""
    gen = seed_everything(cfg.seed)
    config = model_config("snn", cfg.model, cfg.snn, cfg.dataset)
    model = build_model(config)
    check_index(data, cfg.run.dataset)
    _train(model, config, role="scratch", name=run, dataset_name=cfg.run.dataset, dataset=cfg.dataset, recipe=cfg.recipe,
           runtime=cfg.runtime, seed=cfg.seed, num_workers=cfg.num_workers, max_epochs=cfg.max_epochs,
           max_skipped_fraction=cfg.max_skipped_fraction, resume=cfg.resume, data=data,
           ckpt=ckpt, live=live, gen=gen, meta={})
