"""Parameter transfer ANN -> SNN, name for name (paper A).

Everything in the ANN's state dict (conv weights, BN affine parameters and
running statistics) is copied unchanged: no folding, no rescaling. Two
adaptations are allowed, as in the reference's pipeD: the stem's input channels
(RGB -> event polarities: the mean over the old input channels is copied to
every new one) and the classifier (newly initialised when the class count
differs). Any other shape mismatch, or a name present on one side only, is an
error naming the parameter.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

STEM_WEIGHT = "conv1.weight"
CLASSIFIER = ("fc.weight", "fc.bias")


class TransferError(ValueError):
    """A parameter that cannot be mapped from the ANN to the SNN."""


def adapt_stem(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """(out, c_old, k, k) -> (out, in_channels, k, k): mean over old inputs, copied to each new one."""
    return weight.mean(dim=1, keepdim=True).expand(-1, in_channels, -1, -1).clone()


def transfer_state(ann_state: dict[str, torch.Tensor], snn: nn.Module) -> dict[str, Any]:
    """Load `ann_state` into `snn` in place; returns a JSON-able report of what happened to each tensor."""
    target = snn.state_dict()
    missing = sorted(set(target) - set(ann_state))
    unexpected = sorted(set(ann_state) - set(target))
    if missing or unexpected:
        raise TransferError(f"parameter names differ: missing in ANN {missing[:10]}, unknown to SNN {unexpected[:10]}")
    report: dict[str, Any] = {"copied": [], "adapted": {}, "new": []}
    new_state: dict[str, torch.Tensor] = {}
    for name, dst in target.items():
        src = ann_state[name]
        if src.shape == dst.shape:
            new_state[name] = src.detach().clone().to(dst.dtype)
            report["copied"].append(name)
        elif name == STEM_WEIGHT and src.dim() == 4 and src.shape[0] == dst.shape[0] and src.shape[2:] == dst.shape[2:]:
            new_state[name] = adapt_stem(src, dst.shape[1]).to(dst.dtype)
            report["adapted"][name] = {"from": list(src.shape), "to": list(dst.shape),
                                       "rule": "mean over input channels copied to each new channel"}
        elif name in CLASSIFIER and src.shape[1:] == dst.shape[1:]:
            new_state[name] = dst  # keep the SNN's fresh initialisation
            report["new"].append(name)
        else:
            raise TransferError(f"{name}: ANN shape {tuple(src.shape)} cannot be mapped to SNN shape {tuple(dst.shape)}")
    if len(set(report["new"])) not in (0, len(CLASSIFIER)):
        raise TransferError(f"classifier only partly replaced: {report['new']}")
    snn.load_state_dict(new_state, strict=True)
    report["n_copied"] = len(report["copied"])
    report["n_adapted"] = len(report["adapted"])
    report["n_new"] = len(report["new"])
    report["n_tensors"] = len(target)
    return report
