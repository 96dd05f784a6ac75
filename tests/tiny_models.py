"""Model configs for tests that build a twin directly (the pipeline builds them from params.yaml, in
pipeline/pretrain/models.py; TwinConfig itself has no defaults)."""

from __future__ import annotations

from typing import Any

from pipeline.models.resnet_twins import TwinConfig

# The paper's ResNet-18 twin: ImageNet stem and classes, LIF neurons with decay 0.25 and threshold 0.5,
# 6 steps for static input (Exp1-ImageNet of lyh983012/SNN-ANN-Pretrain, as pipeline/pretrain's presets).
PAPER_TWIN: dict[str, Any] = {
    "arch": "resnet18",
    "width": 64,
    "stem": "imagenet",
    "in_channels": 3,
    "num_classes": 1000,
    "time_steps": 6,
    "decay": 0.25,
    "threshold": 0.5,
    "neuron": "lif",
    "learnable_decay": False,
    "sharpen_epochs": 200,
    "decoder_hidden": None,
}


def twin_config(kind: str, **changes: Any) -> TwinConfig:
    """The paper's ResNet-18 twin of `kind` (ann, snn) with `changes` applied."""
    return TwinConfig(kind=kind, **{**PAPER_TWIN, **changes})
