"""Parameter transfer ANN -> SNN, name for name (paper A), and the transfer stage.

Everything in the ANN's state dict (conv weights, BN affine parameters and
running statistics) is copied unchanged: no folding, no rescaling. Exceptions,
as in the reference:
- the stem, when its input channels differ (RGB -> event polarities): adapted
  (`stem: adapt`, pipeD on ES-ImageNet: the mean over the old input channels
  copied to every new one) or left newly initialised (`stem: reinit`,
  ES-UCF101). For the ResNet and video twins the stem is the first conv's
  weight; for the crnn it is the whole first conv cell (conv weight and bias,
  BN affine and statistics), as the reference's train_*_from_*.py skip every
  key containing `module.network.cnn0`;
- a video model's recurrent decoder and classifier with `decoder: reinit`
  (the reference's train_*_from_CNN.py; `decoder: transfer`, the default, is
  train_*_from_CRNN.py);
- the classifier, newly initialised when the class count differs.
Parameters that only the SNN has and that belong to its neurons (learnable
decays) keep their configured initialisation and are reported as "snn_only".
Any other shape mismatch, or a name present on one side only, is an error
naming the parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.checks import load_checkpoint
from pipeline.io import save_torch, write_json
from pipeline.models.crnn import CRNN, DECODER_PREFIX, STEM_PREFIX
from pipeline.models.spiking import neuron_parameter_names
from pipeline.models.video_twin import VideoTwin
from pipeline.drivers.stage_table import TransferConfig

STEM_WEIGHTS = ("conv1.weight", "encoder.conv1.weight")  # ResNet twin, video twin
CLASSIFIER = ("fc.weight", "fc.bias")
STEM_RULES = {"adapt": "mean over input channels copied to each new channel", "reinit": "newly initialised"}
DECODER_RULES = ("transfer", "reinit")


class TransferError(ValueError):
    """A parameter that cannot be mapped from the ANN to the SNN."""


@dataclass(frozen=True)
class Parts:
    """Where a model keeps what the transfer rules act on (state-dict names)."""

    stem_weight: str  # the first conv's weight (its input channels: RGB or polarities)
    stem_cell: tuple[str, ...]  # what `stem: reinit` leaves new when the channels differ
    decoder: tuple[str, ...]  # prefixes of what `decoder: reinit` leaves new (none: no decoder)
    classifier: tuple[str, str]


def model_parts(model: nn.Module) -> Parts:
    if isinstance(model, CRNN):
        names = tuple(k for k in model.state_dict() if k.startswith(STEM_PREFIX))
        classifier = (DECODER_PREFIX + "fc.weight", DECODER_PREFIX + "fc.bias")
        return Parts(STEM_PREFIX + "kernel.weight", names, (DECODER_PREFIX,), classifier)
    if isinstance(model, VideoTwin):
        return Parts(STEM_WEIGHTS[1], (STEM_WEIGHTS[1],), ("decoder.", "fc."), CLASSIFIER)
    return Parts(STEM_WEIGHTS[0], (STEM_WEIGHTS[0],), (), CLASSIFIER)


def adapt_stem(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """(out, c_old, k, k) -> (out, in_channels, k, k): mean over old inputs, copied to each new one."""
    return weight.mean(dim=1, keepdim=True).expand(-1, in_channels, -1, -1).clone()


def _fresh_names(
    ann_state: dict[str, torch.Tensor], target: dict[str, torch.Tensor], parts: Parts, stem: str, decoder: str
) -> set[str]:
    """Names that keep the SNN's initialisation by rule: the stem cell (reinit, channels differ), the
    decoder (reinit)."""
    fresh: set[str] = set()
    if stem == "reinit" and ann_state[parts.stem_weight].shape[1] != target[parts.stem_weight].shape[1]:
        fresh |= set(parts.stem_cell)
    if decoder == "reinit":
        if not parts.decoder:
            raise TransferError(
                "decoder: reinit needs a video model with a recurrent decoder; this model has none"
            )
        fresh |= {k for k in target if k.startswith(parts.decoder)}
    return fresh


def transfer_state(
    ann_state: dict[str, torch.Tensor], snn: nn.Module, stem: str = "adapt", decoder: str = "transfer"
) -> dict[str, Any]:
    """Load `ann_state` into `snn` in place; returns a JSON-able report of what happened to each tensor.
    `stem`: what a stem whose input channels differ gets (adapt, reinit); `decoder`: whether a video model's
    decoder and classifier are copied (transfer) or keep their new initialisation (reinit)."""
    if stem not in STEM_RULES:
        raise ValueError(f"unknown stem rule '{stem}' (allowed: {', '.join(STEM_RULES)})")
    if decoder not in DECODER_RULES:
        raise ValueError(f"unknown decoder rule '{decoder}' (allowed: {', '.join(DECODER_RULES)})")
    target = snn.state_dict()
    parts = model_parts(snn)
    snn_only = neuron_parameter_names(snn) - set(ann_state)
    missing = sorted(set(target) - set(ann_state) - snn_only)
    unexpected = sorted(set(ann_state) - set(target))
    if missing or unexpected:
        raise TransferError(
            f"parameter names differ: missing in ANN {missing[:10]}, unknown to SNN {unexpected[:10]}"
        )
    fresh = _fresh_names(ann_state, target, parts, stem, decoder) - snn_only
    report: dict[str, Any] = {
        "copied": [],
        "adapted": {},
        "new": [],
        "snn_only": [],
        "rules": {"stem": stem, "decoder": decoder},
    }
    new_state: dict[str, torch.Tensor] = {}
    for name, dst in target.items():
        if name in snn_only or name in fresh:
            new_state[name] = dst  # the SNN's own initialisation (neurons: the configured initial decay)
            report["snn_only" if name in snn_only else "new"].append(name)
            continue
        src = ann_state[name]
        if src.shape == dst.shape:
            new_state[name] = src.detach().clone().to(dst.dtype)
            report["copied"].append(name)
        elif (
            name == parts.stem_weight
            and stem == "adapt"
            and src.dim() == 4
            and src.shape[0] == dst.shape[0]
            and src.shape[2:] == dst.shape[2:]
        ):
            new_state[name] = adapt_stem(src, dst.shape[1]).to(dst.dtype)
            report["adapted"][name] = {
                "from": list(src.shape),
                "to": list(dst.shape),
                "rule": STEM_RULES[stem],
            }
        elif name in parts.classifier and src.shape[1:] == dst.shape[1:]:
            new_state[name] = dst  # another class count: keep the SNN's fresh classifier
            report["new"].append(name)
        else:
            raise TransferError(
                f"{name}: ANN shape {tuple(src.shape)} cannot be mapped to SNN shape {tuple(dst.shape)}"
            )
    replaced = set(report["new"]) & set(parts.classifier)
    if len(replaced) not in (0, len(parts.classifier)):
        raise TransferError(f"classifier only partly replaced: {sorted(replaced)}")
    snn.load_state_dict(new_state, strict=True)
    for key in ("copied", "adapted", "new", "snn_only"):
        report[f"n_{key}"] = len(report[key])
    report["n_tensors"] = len(target)
    return report


def transfer(cfg: TransferConfig, *, pipe: str, ann: Path, out: Path, report: Path) -> None:
    """Build the SNN for the pipeline's target dataset and load the pretrained ANN into it name for name."""
    from pipeline.pretrain.models import build_model, config_from_dict, transferred_config
    from pipeline.run.runtime import seed_everything

    seed_everything(cfg.seed)
    state = load_checkpoint(ann, "pretrain_ann")
    if state.get("run") != cfg.pipeline.ann:
        raise ValueError(
            f"{ann}: checkpoint of ANN run '{state.get('run')}', pipeline {pipe} expects '{cfg.pipeline.ann}'"
        )
    # the topology comes from the ANN so that the names match; inputs, classes and neurons from the target
    snn_cfg = transferred_config(config_from_dict(state["model_config"]), cfg.snn, cfg.target)
    snn = build_model(snn_cfg)
    rep = transfer_state(state["model"], snn, cfg.pipeline.stem, cfg.pipeline.decoder or "transfer")
    rep.update(
        {
            "pipeline": pipe,
            "ann_run": cfg.pipeline.ann,
            "source_dataset": state["dataset"],
            "target_dataset": cfg.pipeline.target,
            "ann_checkpoint": str(ann),
            "ann_epochs": state["epoch"],
            "ann_elapsed_s": state["elapsed_s"],
            "ann_best_val_acc": state.get("best_val_acc"),
            "snn_config": snn_cfg.to_dict(),
        }
    )
    save_torch(
        out,
        {
            "model": snn.state_dict(),
            "model_config": snn_cfg.to_dict(),
            "transfer": rep,
            "role": "transfer",
            "pipeline": pipe,
        },
    )
    write_json(report, rep)
    print(
        f"{pipe}: copied {rep['n_copied']}, adapted {rep['n_adapted']}, new {rep['n_new']}, "
        f"SNN-only {rep['n_snn_only']} of {rep['n_tensors']} tensors -> {out}"
    )
