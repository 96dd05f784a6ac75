"""Paper A's models from parameters: the ResNet twin for images and events, the
video twin (per-step encoder + recurrent decoder) for UCF101 clips and events.

A checkpoint stores `model_config` (the TwinConfig fields plus `decoder_hidden`,
None for the ResNet twin), which is all `build_model` needs to rebuild it.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from pipeline.params.configs import ModelParams, PretrainDataset, SnnParams
from pipeline.models.resnet_twins import ResNetTwin, TwinConfig
from pipeline.pretrain.datasets import VIDEO_FORMATS, in_channels


def dataset_and_neuron_fields(snn: SnnParams, dataset: PretrainDataset) -> dict[str, Any]:
    """The twin config's fields set by the dataset (inputs, classes) and the SNN block (neurons): what a
    transferred SNN takes from its target rather than from the ANN."""
    return {"in_channels": in_channels(dataset), "num_classes": dataset.num_classes, "time_steps": snn.time_steps,
            "decay": snn.decay, "threshold": snn.threshold, "neuron": snn.neuron,
            "learnable_decay": snn.learnable_decay}


def model_config(kind: str, model: ModelParams, snn: SnnParams, dataset: PretrainDataset,
                 sharpen_epochs: int = 1) -> dict[str, Any]:
    """The config of a twin of `kind` (ann, snn) for `dataset`."""
    twin = TwinConfig(kind=kind, arch=model.arch, width=model.width, stem=model.stem,
                      **dataset_and_neuron_fields(snn, dataset), sharpen_epochs=sharpen_epochs)
    return {**twin.to_dict(), "decoder_hidden": model.decoder_hidden if dataset.format in VIDEO_FORMATS else None}


def build_model(config: dict[str, Any]) -> nn.Module:
    """A ResNetTwin, or a VideoTwin when the config has a recurrent decoder."""
    fields = dict(config)
    hidden = fields.pop("decoder_hidden", None)
    twin = TwinConfig(**fields)
    if hidden:
        from pipeline.models.video_twin import VideoTwin

        return VideoTwin(twin, hidden)
    return ResNetTwin(twin)
