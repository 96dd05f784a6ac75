"""Parameter transfer ANN -> SNN, name for name (paper A), and the transfer stage.

Everything in the ANN's state dict (conv weights, BN affine parameters and
running statistics) is copied unchanged: no folding, no rescaling. Two
exceptions are allowed, as in the reference: the stem's input channels (RGB ->
event polarities) and the classifier (newly initialised when the class count
differs). The stem is adapted (`stem: adapt`, pipeD on ES-ImageNet: the mean
over the old input channels copied to every new one) or left newly initialised
(`stem: reinit`, ES-UCF101: everything but the first conv is transferred). Parameters that only the SNN has and that belong to its neurons
(learnable decays) keep their configured initialisation and are reported as
"snn_only". Any other shape mismatch, or a name present on one side only, is an
error naming the parameter.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.checks import load_checkpoint
from pipeline.io import save_torch, write_json
from pipeline.models.spiking import neuron_parameter_names
from pipeline.drivers.stage_table import TransferConfig

STEM_WEIGHTS = ("conv1.weight", "encoder.conv1.weight")  # ResNet twin, video twin
CLASSIFIER = ("fc.weight", "fc.bias")
STEM_RULES = {"adapt": "mean over input channels copied to each new channel", "reinit": "newly initialised"}


class TransferError(ValueError):
    """A parameter that cannot be mapped from the ANN to the SNN."""


def adapt_stem(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """(out, c_old, k, k) -> (out, in_channels, k, k): mean over old inputs, copied to each new one."""
    return weight.mean(dim=1, keepdim=True).expand(-1, in_channels, -1, -1).clone()


def transfer_state(ann_state: dict[str, torch.Tensor], snn: nn.Module, stem: str = "adapt") -> dict[str, Any]:
    """Load `ann_state` into `snn` in place; returns a JSON-able report of what happened to each tensor.
    `stem`: what a stem whose input channels differ gets (adapt, reinit)."""
    if stem not in STEM_RULES:
        raise ValueError(f"unknown stem rule '{stem}' (allowed: {', '.join(STEM_RULES)})")
    target = snn.state_dict()
    snn_only = neuron_parameter_names(snn) - set(ann_state)
    missing = sorted(set(target) - set(ann_state) - snn_only)
    unexpected = sorted(set(ann_state) - set(target))
    if missing or unexpected:
        raise TransferError(f"parameter names differ: missing in ANN {missing[:10]}, unknown to SNN {unexpected[:10]}")
    report: dict[str, Any] = {"copied": [], "adapted": {}, "new": [], "snn_only": []}
    new_state: dict[str, torch.Tensor] = {}
    for name, dst in target.items():
        if name in snn_only:
            new_state[name] = dst  # the ANN has no neuron parameters: keep the configured initial decay
            report["snn_only"].append(name)
            continue
        src = ann_state[name]
        if src.shape == dst.shape:
            new_state[name] = src.detach().clone().to(dst.dtype)
            report["copied"].append(name)
        elif name in STEM_WEIGHTS and src.dim() == 4 and src.shape[0] == dst.shape[0] and src.shape[2:] == dst.shape[2:]:
            if stem == "adapt":
                new_state[name] = adapt_stem(src, dst.shape[1]).to(dst.dtype)
                report["adapted"][name] = {"from": list(src.shape), "to": list(dst.shape), "rule": STEM_RULES[stem]}
            else:  # the SNN's fresh initialisation
                new_state[name] = dst
                report["new"].append(name)
        elif name in CLASSIFIER and src.shape[1:] == dst.shape[1:]:
            new_state[name] = dst  # keep the SNN's fresh initialisation
            report["new"].append(name)
        else:
            raise TransferError(f"{name}: ANN shape {tuple(src.shape)} cannot be mapped to SNN shape {tuple(dst.shape)}")
    replaced = set(report["new"]) & set(CLASSIFIER)
    if len(replaced) not in (0, len(CLASSIFIER)):
        raise TransferError(f"classifier only partly replaced: {sorted(replaced)}")
    snn.load_state_dict(new_state, strict=True)
    report["n_copied"] = len(report["copied"])
    report["n_adapted"] = len(report["adapted"])
    report["n_new"] = len(report["new"])
    report["n_snn_only"] = len(report["snn_only"])
    report["n_tensors"] = len(target)
    return report


def transfer(cfg: TransferConfig, *, pipe: str, ann: Path, out: Path, report: Path) -> None:
    """Build the SNN for the pipeline's target dataset and load the pretrained ANN into it name for name."""
    from pipeline.pretrain.models import build_model, dataset_and_neuron_fields
    from pipeline.run.runtime import seed_everything

    seed_everything(cfg.seed)
    state = load_checkpoint(ann, "pretrain_ann")
    if state.get("run") != cfg.pipeline.ann:
        raise ValueError(f"{ann}: checkpoint of ANN run '{state.get('run')}', pipeline {pipe} expects "
                         f"'{cfg.pipeline.ann}'")
    # the topology comes from the ANN so that the names match; inputs, classes and neurons from the target
    snn_cfg = {**state["model_config"], "kind": "snn", **dataset_and_neuron_fields(cfg.snn, cfg.target)}
    snn = build_model(snn_cfg)
    rep = transfer_state(state["model"], snn, cfg.pipeline.stem)
    rep.update({"pipeline": pipe, "ann_run": cfg.pipeline.ann, "source_dataset": state["dataset"],
                "target_dataset": cfg.pipeline.target, "ann_checkpoint": str(ann), "ann_epochs": state["epoch"],
                "ann_elapsed_s": state["elapsed_s"], "ann_best_val_acc": state.get("best_val_acc"),
                "snn_config": snn_cfg})
    save_torch(out, {"model": snn.state_dict(), "model_config": snn_cfg, "transfer": rep, "role": "transfer",
                     "pipeline": pipe})
    write_json(report, rep)
    print(f"{pipe}: copied {rep['n_copied']}, adapted {rep['n_adapted']}, new {rep['n_new']}, "
          f"SNN-only {rep['n_snn_only']} of {rep['n_tensors']} tensors -> {out}")
