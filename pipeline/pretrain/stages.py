"""CLI stages of paper A (registered in pipeline/cli.py).

images-embedded -> es-imagenet-convert -> pretrain-ann -> transfer (pipeS, pipeD)
-> finetune-snn, and train-snn-scratch as the baseline. Training stages write a
checkpoint FILE (`ckpt`, DVC-cached) and a small DVCLive dir (`live`):
config.json, history.json, metrics.json (+ DVCLive's plots), skipped_files.json.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from pipeline import distributed
from pipeline.data.batching import collate_skipping, materialize
from pipeline.distributed import Dist, ShardedBatchSampler, distributed_stage
from pipeline.checks import check_classes, check_index, check_split, load_checkpoint
from pipeline.io import atomic_dir, read_json, save_torch, write_json
from pipeline.models.resnet_twins import TwinConfig, build_twin, count_parameters
from pipeline.precision import Precision
from pipeline.resume import ResumeState, fingerprint
from pipeline.pretrain.train import Context, run_training, set_body_frozen
from pipeline.pretrain.transfer import transfer_state
from pipeline.runtime import pick_device, seed_everything
from pipeline.tracking import EpochLog

EVENT_FORMATS = ("es_imagenet", "es_ucf101")


def _dataset_cfg(params: dict, name: str) -> dict[str, Any]:
    datasets = params["pretrain"]["datasets"]
    if name not in datasets:
        raise ValueError(f"dataset '{name}' is not defined under pretrain.datasets ({', '.join(datasets)})")
    return datasets[name]


def _pipeline_cfg(params: dict, pipeline: str) -> dict[str, Any]:
    pipes = params["pretrain"]["pipelines"]
    if pipeline not in pipes:
        raise ValueError(f"pipeline '{pipeline}' is not defined under pretrain.pipelines ({', '.join(pipes)})")
    return pipes[pipeline]


def in_channels_of(dcfg: dict[str, Any]) -> int:
    """RGB images have 3 input channels, event data 2 polarities."""
    return 2 if dcfg["format"] in EVENT_FORMATS else 3


def _split(dcfg: dict[str, Any], root: Path, split: str) -> Dataset:
    fmt = dcfg["format"]
    if fmt == "imagefolder":
        from pipeline.data.images import imagefolder_split
        return imagefolder_split(root, split, dcfg["image_size"], dcfg["augment"], dcfg["normalize"])
    if fmt == "es_imagenet":
        from pipeline.data.es_imagenet import ESImageNet, Geometry
        return ESImageNet(root, split, Geometry(dcfg["long_side"], dcfg["canvas"], dcfg["margin"]))
    if fmt == "es_ucf101":
        from pipeline.data.es_ucf101 import ESUCF101, discover_classes
        return ESUCF101(root, split, discover_classes(root))
    raise ValueError(f"unknown dataset format '{fmt}'")


def resolve_root(data: Path) -> Path:
    """`data` is the dataset root directory, or a JSON index naming it under key `root`
    (the Snakefile passes data/prepared/pretrain/<dataset>.json)."""
    data = Path(data)
    if data.is_file() and data.suffix == ".json":
        index = read_json(data)
        if not isinstance(index, dict) or "root" not in index:
            raise ValueError(f"{data}: dataset index without a 'root' key")
        return Path(index["root"])
    return data


def build_loaders(params: dict, dataset: str, root: Path, batch_size: int, gen: torch.Generator,
                  d: Dist = Dist()) -> tuple[DataLoader, DataLoader, list[str]]:
    """Train/val loaders for `dataset` read from `root`; also the files skipped while caching.

    Batches come from a seeded permutation (`gen`), each global batch split across
    the processes of a distributed run (pipeline/distributed.py)."""
    dcfg = _dataset_cfg(params, dataset)
    root = resolve_root(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data root of dataset '{dataset}' not found")
    workers = params["pretrain"]["num_workers"]
    loaders, skipped = [], []
    for split in ("train", "val"):
        ds = _split(dcfg, root, split)
        check_split(ds, f"{root}: split '{split}' of dataset '{dataset}'", dcfg["num_classes"])
        if dcfg["in_memory"]:
            # binary event frames cached as uint8 (4x smaller); the loop casts to float
            ds, bad = materialize(ds, torch.uint8 if dcfg["format"] in EVENT_FORMATS else None)
            skipped += bad
        sampler = ShardedBatchSampler(len(ds), batch_size, split == "train", gen, d)
        if dcfg["in_memory"]:
            loaders.append(DataLoader(ds, batch_sampler=sampler))
        else:
            loaders.append(DataLoader(ds, batch_sampler=sampler, num_workers=workers, collate_fn=collate_skipping,
                                      pin_memory=torch.cuda.is_available()))
    return loaders[0], loaders[1], skipped


def _model_cfg(params: dict, kind: str, dataset: str) -> TwinConfig:
    p = params["pretrain"]
    dcfg = _dataset_cfg(params, dataset)
    return TwinConfig(kind=kind, arch=p["model"]["arch"], width=p["model"]["width"], stem=p["model"]["stem"],
                      in_channels=in_channels_of(dcfg), num_classes=dcfg["num_classes"],
                      time_steps=p["snn"]["time_steps"], decay=p["snn"]["decay"], threshold=p["snn"]["threshold"],
                      sharpen_epochs=p["ann"]["sharpen_epochs"])


def _finish(log: EpochLog, live: Path, result, n_params: int) -> None:
    write_json(Path(live) / "skipped_files.json", result.skipped)
    log.finish({"best_val_acc": result.best_val_acc, "best_epoch": result.best_epoch, "epochs": result.epochs,
                "elapsed_s": result.elapsed_s, "skipped_files": len(result.skipped), "n_params": n_params})


def _train(params: dict, *, role: str, dataset: str, pipeline: str | None, model, train_cfg: dict,
           data: Path, ckpt: Path, live: Path, extra: dict[str, Any], gen: torch.Generator,
           epoch_hook=None, inputs: tuple[Path, ...] = ()) -> None:
    d, device = distributed.setup(pick_device(params["device"]))
    distributed.seed_rank(params["pretrain"]["seed"], d)  # the model was built (seeded) before
    train_loader, val_loader, skipped = build_loaders(params, dataset, data, train_cfg["batch_size"], gen, d)
    n_params = count_parameters(model)
    precision = Precision(params["amp"], device)
    config = {"role": role, "dataset": dataset, "pipeline": pipeline, "data": str(data),
              "model": model.cfg.to_dict(), "train": dict(train_cfg), "snn": dict(params["pretrain"]["snn"]),
              "dataset_config": _dataset_cfg(params, dataset), "seed": params["pretrain"]["seed"],
              "device": str(device), "n_params": n_params, "amp": precision.name, "world_size": d.world, **extra}
    digest = fingerprint(config, (Path(data), *inputs), d.world)
    ctx = Context(d, precision, ResumeState(ckpt, digest, params["resume"], d.is_main), gen)
    log = EpochLog(live, config) if d.is_main else None
    meta = {"role": role, "dataset": dataset, "pipeline": pipeline, "model_config": model.cfg.to_dict(), **extra}
    result = run_training(model, train_loader, val_loader, train_cfg, device, log, ckpt, meta, ctx,
                          epoch_hook=epoch_hook, skipped_before=skipped)
    if log is not None:
        _finish(log, live, result, n_params)
    ctx.resumer.clear()
    distributed.cleanup(d)


def images_embedded(params: dict, *, out: Path) -> None:
    """Write scikit-learn's digits (real 8x8 images) as an ImageFolder of PNG files."""
    from pipeline.data.digits import write_digits_imagefolder

    d = params["pretrain"]["digits"]
    with atomic_dir(out) as tmp:
        counts = write_digits_imagefolder(tmp, d["val_fraction"], d["seed"])
    print(f"wrote {counts['train']} train / {counts['val']} val digit images to {out}")


def es_imagenet_convert(params: dict, *, images: Path, out: Path) -> None:
    """Convert an ImageFolder tree into ES-ImageNet's on-disk format (ES-ImageNet's own conversion)."""
    from pipeline.data.es_imagenet import Geometry, convert_imagefolder

    c = params["pretrain"]["es_convert"]
    with atomic_dir(out) as tmp:
        report = convert_imagefolder(Path(images), tmp, Geometry(c["long_side"], c["canvas"], c["margin"]),
                                     c["threshold"], c["min_events"])
        write_json(tmp / "conversion.json", report)
    print(f"converted {report['train']['written']} train / {report['val']['written']} val samples "
          f"(dropped {report['train']['dropped_under_min_events'] + report['val']['dropped_under_min_events']}) to {out}")


@distributed_stage
def pretrain_ann(params: dict, *, dataset: str, data: Path, ckpt: Path, live: Path) -> None:
    """Pretrain the sharpened-ReLU ANN twin on a static dataset."""
    gen = seed_everything(params["pretrain"]["seed"])
    if _dataset_cfg(params, dataset)["format"] != "imagefolder":
        raise ValueError(f"pretrain-ann needs a static (imagefolder) dataset, '{dataset}' is not")
    check_index(data, dataset)
    model = build_twin(_model_cfg(params, "ann", dataset))
    _train(params, role="ann_pretrain", dataset=dataset, pipeline=None, model=model,
           train_cfg=params["pretrain"]["ann"], data=data, ckpt=ckpt, live=live, extra={}, gen=gen,
           epoch_hook=model.set_epoch)


def transfer(params: dict, *, pipeline: str, ann: Path, out: Path, report: Path) -> None:
    """Build the SNN for the pipeline's target dataset and load the pretrained ANN into it name for name."""
    seed_everything(params["pretrain"]["seed"])
    pcfg = _pipeline_cfg(params, pipeline)
    state = load_checkpoint(ann, "ann")
    if state.get("dataset") != pcfg["source"]:
        raise ValueError(f"{ann}: ANN was pretrained on '{state.get('dataset')}', pipeline {pipeline} "
                         f"expects source '{pcfg['source']}'")
    src_cfg = state["model_config"]
    check_classes(src_cfg["num_classes"], _dataset_cfg(params, pcfg["source"])["num_classes"],
                  f"{ann}: the ANN", f"pretrain.datasets.{pcfg['source']}.num_classes")
    tgt = _model_cfg(params, "snn", pcfg["target"])
    # the topology comes from the ANN so the names match; inputs/classes from the target data
    snn_cfg = TwinConfig(**{**src_cfg, "kind": "snn", "in_channels": tgt.in_channels, "num_classes": tgt.num_classes,
                            "time_steps": tgt.time_steps, "decay": tgt.decay, "threshold": tgt.threshold})
    snn = build_twin(snn_cfg)
    rep = transfer_state(state["model"], snn)
    rep.update({"pipeline": pipeline, "source_dataset": pcfg["source"], "target_dataset": pcfg["target"],
                "ann_checkpoint": str(ann), "ann_epochs": state["epoch"], "ann_elapsed_s": state["elapsed_s"],
                "ann_best_val_acc": state.get("best_val_acc"),
                "snn_config": snn_cfg.to_dict()})
    save_torch(out, {"model": snn.state_dict(), "model_config": snn_cfg.to_dict(), "transfer": rep,
                     "role": "transfer", "pipeline": pipeline})
    write_json(report, rep)
    print(f"{pipeline}: copied {rep['n_copied']}, adapted {rep['n_adapted']}, new {rep['n_new']} "
          f"of {rep['n_tensors']} tensors -> {out}")


@distributed_stage
def finetune_snn(params: dict, *, pipeline: str, init: Path, data: Path, ckpt: Path, live: Path) -> None:
    """Fine-tune the transferred SNN on the pipeline's target dataset (optional frozen warm-up)."""
    gen = seed_everything(params["pretrain"]["seed"])
    pcfg = _pipeline_cfg(params, pipeline)
    state = load_checkpoint(init, "transfer")
    if state["pipeline"] != pipeline:
        raise ValueError(f"{init}: transfer output of pipeline {state['pipeline']}, expected pipeline {pipeline}")
    target = _model_cfg(params, "snn", pcfg["target"])
    check_classes(state["model_config"]["num_classes"], target.num_classes, f"{init}: the transferred SNN",
                  f"pretrain.datasets.{pcfg['target']}.num_classes")
    if state["model_config"]["in_channels"] != target.in_channels:
        raise ValueError(f"{init}: the transferred SNN takes {state['model_config']['in_channels']} input channels, "
                         f"dataset '{pcfg['target']}' has {target.in_channels}")
    check_index(data, pcfg["target"])
    model = build_twin(state["model_config"])
    model.load_state_dict(state["model"])
    rep = state["transfer"]
    fcfg = params["pretrain"]["finetune"]
    warm = fcfg["frozen_warmup_epochs"]
    trainable = tuple(list(rep["adapted"]) + rep["new"]) + ("fc.",)

    def hook(epoch: int) -> None:  # epoch is 0-based
        set_body_frozen(model, epoch < warm, trainable)

    extra = {"source_dataset": pcfg["source"], "pretrain_elapsed_s": rep["ann_elapsed_s"],
             "pretrain_epochs": rep["ann_epochs"], "init": str(init)}
    _train(params, role="finetune", dataset=pcfg["target"], pipeline=pipeline, model=model, train_cfg=fcfg,
           data=data, ckpt=ckpt, live=live, extra=extra, gen=gen, epoch_hook=hook, inputs=(Path(init),))


@distributed_stage
def train_snn_scratch(params: dict, *, dataset: str, data: Path, ckpt: Path, live: Path) -> None:
    """Baseline: the same SNN topology trained from random initialisation."""
    gen = seed_everything(params["pretrain"]["seed"])
    model = build_twin(_model_cfg(params, "snn", dataset))
    check_index(data, dataset)
    _train(params, role="scratch", dataset=dataset, pipeline=None, model=model,
           train_cfg=params["pretrain"]["scratch"], data=data, ckpt=ckpt, live=live, extra={}, gen=gen)
