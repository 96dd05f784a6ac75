"""Training stages of paper A: pretrain_ann, finetune_snn and train_snn_scratch.

Each writes a checkpoint file (`ckpt`, DVC-cached) and a small DVCLive
directory (`live`): config.json, history.json, metrics.json, DVCLive's
per-epoch plots and skipped_files.json.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from pipeline.run import distributed
from pipeline.checks import check_classes, check_index, load_checkpoint
from pipeline.params.configs import PretrainDataset, Recipe, capped_epochs, to_dict
from pipeline.checks import check_unreadable
from pipeline.io import atomic_dir, save_torch, write_json
from pipeline.models.resnet_twins import count_parameters
from pipeline.run.precision import Precision
from pipeline.pretrain.datasets import STATIC_FORMATS, build_loaders, in_channels
from pipeline.pretrain.models import ModelConfig, ann_config, build_model, config_from_dict, snn_config
from pipeline.pretrain.train import PretrainTask, set_body_frozen
from pipeline.pretrain.weights import import_weights
from pipeline.run.runtime import pick_device, seed_everything
from pipeline.drivers.stage_table import AnnConfig, FinetuneConfig, PretrainTraining, ScratchConfig
from pipeline.run.training import Result, fit_run


@dataclass(frozen=True)
class Run:
    """One training run of paper A: what it is and where its inputs and outputs are."""

    role: str  # the stage that trains it: pretrain_ann, finetune_snn or train_snn_scratch
    name: str  # the run's name (ANN run, pipeline, baseline)
    dataset_name: str
    dataset: PretrainDataset
    recipe: Recipe
    data: Path
    ckpt: Path
    live: Path
    meta: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[Path, ...] = ()


@distributed.leaves_process_group
def _train(
    model: nn.Module,
    model_cfg: ModelConfig,
    run: Run,
    common: PretrainTraining,
    gen: torch.Generator,
    epoch_hook: Callable[[int], None] | None = None,
) -> None:
    """Train `model` as `run` says; write the checkpoint and the DVCLive directory."""
    recipe = dataclasses.replace(run.recipe, epochs=capped_epochs(run.recipe.epochs, common.max_epochs))
    d, device = distributed.setup(pick_device(common.runtime.device))
    distributed.seed_rank(common.seed, d)  # the model was built (seeded) before
    train_loader, val_loader, skipped, n_samples = build_loaders(
        run.dataset, run.dataset_name, run.data, recipe.batch_size, gen, common.num_workers, d
    )
    where = f"dataset '{run.dataset_name}'"
    check_unreadable(skipped, n_samples, common.max_skipped_fraction, where)  # before any output
    n_params = count_parameters(model)
    precision = Precision(common.runtime.amp, device)
    config = _run_config(
        run, model_cfg, recipe, common, n_params, device=str(device), amp=precision.name, world_size=d.world
    )
    ckpt_meta = _ckpt_meta(run, model_cfg)
    task = PretrainTask(
        model,
        recipe,
        train_loader,
        val_loader,
        device,
        d,
        precision,
        Path(run.ckpt),
        ckpt_meta,
        epoch_hook,
        skipped,
        n_samples,
        common.max_skipped_fraction,
        run.dataset_name,
    )

    def summary(result: Result) -> dict[str, Any]:
        return {
            "best_val_acc": result.best["val_acc"],
            "best_epoch": result.best_epoch,
            "epochs": result.epochs,
            "elapsed_s": result.elapsed_s,
            "skipped_files": len(task.skipped),
            "n_params": n_params,
        }

    fit_run(
        task,
        dist=d,
        device=device,
        generator=gen,
        name=f"{run.role} {run.name}",
        config=config,
        inputs=(Path(run.data), *run.inputs),
        state_beside=Path(run.ckpt),
        live=Path(run.live),
        resume=common.resume,
        epochs=recipe.epochs,
        select="val_acc",
        summary=summary,
        extra=lambda folder: write_json(folder / "skipped_files.json", sorted(task.skipped)),
    )


def _run_config(
    run: Run, model_cfg: ModelConfig, recipe: Recipe, common: PretrainTraining, n_params: int, **extra: Any
) -> dict[str, Any]:
    """The run's config.json (also what its resume fingerprint covers)."""
    return {
        "role": run.role,
        "run": run.name,
        "dataset": run.dataset_name,
        "data": str(run.data),
        "model": model_cfg.to_dict(),
        "train": to_dict(recipe),
        "dataset_config": to_dict(run.dataset),
        "seed": common.seed,
        "n_params": n_params,
        **extra,
        **run.meta,
    }


def _ckpt_meta(run: Run, model_cfg: ModelConfig) -> dict[str, Any]:
    return {
        "role": run.role,
        "run": run.name,
        "dataset": run.dataset_name,
        "model_config": model_cfg.to_dict(),
        **run.meta,
    }


def _write_import(model: nn.Module, model_cfg: ModelConfig, run: Run, common: PretrainTraining) -> None:
    """`ann: {epochs: 0}` with `weights`: the file's weights are the run's checkpoint as they are (no
    training, no evaluation, elapsed 0 s), with the same keys and DVCLive files a trained run has."""
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun every process gets here: one writes
        return
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch(
        run.ckpt,
        {
            "model": state,
            "best_model": state,
            "epoch": 0,
            "best_epoch": 0,
            "best_val_acc": None,
            "elapsed_s": 0.0,
            **_ckpt_meta(run, model_cfg),
        },
    )
    n_params = count_parameters(model)
    with atomic_dir(run.live) as live:  # replaces the folder whole: no file of an earlier trained run stays
        config = _run_config(run, model_cfg, run.recipe, common, n_params, device=None)
        write_json(live / "config.json", config)
        write_json(live / "history.json", [])
        write_json(live / "skipped_files.json", [])
        write_json(
            live / "metrics.json",
            {
                "best_val_acc": None,
                "best_epoch": 0,
                "epochs": 0,
                "elapsed_s": 0.0,
                "skipped_files": 0,
                "n_params": n_params,
            },
        )
    print(f"pretrain_ann {run.name}: imported without training (ann.epochs 0) -> {run.ckpt}", flush=True)


def pretrain_ann(cfg: AnnConfig, *, ann: str, data: Path, ckpt: Path, live: Path) -> None:
    """Pretrain the sharpened-ReLU ANN twin on a static dataset (images or RGB frames), from its random
    initialisation or from the run's `weights` file; with `weights` and `ann: {epochs: 0}` the file is
    imported as the checkpoint without training (the weights were pretrained elsewhere)."""
    gen = seed_everything(cfg.seed)
    if cfg.dataset.format not in STATIC_FORMATS:
        raise ValueError(
            f"pretrain_ann needs a static dataset ({', '.join(STATIC_FORMATS)}); "
            f"'{cfg.run.dataset}' is {cfg.dataset.format}"
        )
    epochs = capped_epochs(cfg.recipe.epochs, cfg.max_epochs)
    if epochs == 0 and cfg.run.weights is None:
        raise ValueError(
            f"pretrain.anns.{ann}: ann.epochs 0 trains nothing; it imports a `weights` file, "
            "which this run does not name"
        )
    check_index(data, cfg.run.dataset)
    config = ann_config(cfg.model, cfg.dataset, cfg.threshold, cfg.recipe.sharpen_epochs)
    model = build_model(config)  # seeded: what the file does not hold (a new classifier) is reproducible
    meta: dict[str, Any] = {}
    inputs: tuple[Path, ...] = ()
    if cfg.run.weights is not None:  # checked before anything is written: a bad file leaves no output
        imported = import_weights(Path(cfg.run.weights), model, config, ann, cfg.run.dataset)
        model.load_state_dict(imported.state)
        print(imported.summary(f"pretrain_ann {ann}"), flush=True)
        # the record (with the file's sha256) goes to the checkpoint and config.json; the file itself is an
        # input of the resume fingerprint, so a changed file never continues a fine-tuning of the old one
        meta, inputs = {"weights": imported.record}, (Path(cfg.run.weights),)
    run = Run("pretrain_ann", ann, cfg.run.dataset, cfg.dataset, cfg.recipe, data, ckpt, live, meta, inputs)
    if epochs == 0:
        _write_import(model, config, run, cfg)
        return
    _train(model, config, run, cfg, gen, epoch_hook=model.set_epoch)


def finetune_snn(cfg: FinetuneConfig, *, pipe: str, init: Path, data: Path, ckpt: Path, live: Path) -> None:
    """Fine-tune the transferred SNN on the pipeline's target dataset (optional frozen warm-up)."""
    gen = seed_everything(cfg.seed)
    target_name = cfg.pipeline.target
    state = load_checkpoint(init, "transfer")
    if state["pipeline"] != pipe:
        raise ValueError(f"{init}: transfer output of pipeline {state['pipeline']}, expected pipeline {pipe}")
    config = config_from_dict(state["model_config"])
    check_classes(
        config.num_classes,
        cfg.target.num_classes,
        f"{init}: the transferred SNN",
        f"pretrain.datasets.{target_name}.num_classes",
    )
    if config.in_channels != in_channels(cfg.target):
        raise ValueError(
            f"{init}: the transferred SNN takes {config.in_channels} input channels, "
            f"dataset '{target_name}' has {in_channels(cfg.target)}"
        )
    check_index(data, target_name)
    model = build_model(config)
    model.load_state_dict(state["model"])
    rep = state["transfer"]
    warm = cfg.recipe.frozen_warmup_epochs
    trainable = tuple(list(rep["adapted"]) + rep["new"] + rep.get("snn_only", [])) + ("fc.",)

    def hook(epoch: int) -> None:  # epoch is 0-based
        set_body_frozen(model, epoch < warm, trainable)

    meta = {
        "pipeline": pipe,
        "ann_run": cfg.pipeline.ann,
        "baseline": cfg.pipeline.baseline,
        "source_dataset": rep["source_dataset"],
        "pretrain_elapsed_s": rep["ann_elapsed_s"],
        "pretrain_epochs": rep["ann_epochs"],
        "init": str(init),
    }
    run = Run(
        "finetune_snn", pipe, target_name, cfg.target, cfg.recipe, data, ckpt, live, meta, (Path(init),)
    )
    _train(model, config, run, cfg, gen, epoch_hook=hook)


def train_snn_scratch(cfg: ScratchConfig, *, run: str, data: Path, ckpt: Path, live: Path) -> None:
    """Baseline: the same SNN topology trained from random initialisation."""
    gen = seed_everything(cfg.seed)
    config = snn_config(cfg.model, cfg.dataset, cfg.snn)
    model = build_model(config)
    check_index(data, cfg.run.dataset)
    _train(
        model,
        config,
        Run("train_snn_scratch", run, cfg.run.dataset, cfg.dataset, cfg.recipe, data, ckpt, live),
        cfg,
        gen,
    )
