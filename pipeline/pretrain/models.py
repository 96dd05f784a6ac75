"""Paper A's models from parameters, chosen by `model.arch`:

- `tiny`, `resnet18`, `resnet34`: the ResNet twin for images and events; on the UCF101 formats the
  video twin (that ResNet per step + a recurrent decoder, pipeline/models/video_twin.py);
- `crnn`: the authors' ES-UCF101 model, a small CNN encoder per step + an LSTM decoder
  (pipeline/models/crnn.py); UCF101 formats only.

The SNN block's and the dataset's values go straight into the model's config (a TwinConfig or a
CRNNConfig), which `build_model` takes. A checkpoint stores that config's `to_dict()` as `model_config`;
`config_from_dict` reads it back.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import nn

from pipeline.models.crnn import CRNN as CRNNModel
from pipeline.models.crnn import CRNNConfig
from pipeline.models.resnet_twins import ResNetTwin, TwinConfig
from pipeline.models.video_twin import VideoTwin
from pipeline.params.configs import ModelParams, PretrainDataset, SnnParams
from pipeline.pretrain.datasets import VIDEO_FORMATS, in_channels

CRNN = "crnn"
ModelConfig = TwinConfig | CRNNConfig


def _crnn_config(model: ModelParams, dataset: PretrainDataset) -> CRNNConfig:
    """The ReLU ANN's CRNN: its neuron keys keep CRNNConfig's defaults, which it never reads."""
    if dataset.format not in VIDEO_FORMATS:
        raise ValueError(
            f"model arch 'crnn' needs a video dataset ({', '.join(VIDEO_FORMATS)}), "
            f"got format '{dataset.format}'"
        )
    if model.input_size is None or model.steps is None or model.flatten is None:
        raise ValueError("model arch 'crnn' needs model.input_size, model.steps and model.flatten")
    if dataset.format == "ucf101_frames" and [dataset.height, dataset.width] != list(model.input_size):
        raise ValueError(
            f"model.input_size {list(model.input_size)} differs from the frames' size "
            f"[{dataset.height}, {dataset.width}] (the dataset's height and width)"
        )
    return CRNNConfig(  # the clip's steps are the topology's (model.steps), not snn.time_steps
        kind="ann",
        input_size=list(model.input_size),
        steps=model.steps,
        width=model.width,
        decoder_hidden=model.decoder_hidden,
        flatten=model.flatten,
        in_channels=in_channels(dataset),
        num_classes=dataset.num_classes,
    )


def _refuse_crnn_keys(model: ModelParams) -> None:
    crnn_only = [k for k in ("input_size", "steps", "flatten") if getattr(model, k) is not None]
    if crnn_only:
        raise ValueError(f"model.{', model.'.join(crnn_only)}: only for arch crnn (arch is '{model.arch}')")


def _decoder_hidden(model: ModelParams, dataset: PretrainDataset) -> int | None:
    return model.decoder_hidden if dataset.format in VIDEO_FORMATS else None


def ann_config(
    model: ModelParams, dataset: PretrainDataset, threshold: float, sharpen_epochs: int
) -> ModelConfig:
    """The ANN's config for `dataset`: the sharpened ReLU reads the SNN's threshold (its ceiling, and the BN
    weights' start) and nothing else of the neuron; the transfer sets the SNN's neuron keys."""
    if model.arch == CRNN:
        return _crnn_config(model, dataset)  # a plain ReLU ANN: no sharpening, no threshold
    _refuse_crnn_keys(model)
    return TwinConfig(
        kind="ann",
        arch=model.arch,
        width=model.width,
        stem=model.stem,
        in_channels=in_channels(dataset),
        num_classes=dataset.num_classes,
        time_steps=None,
        decay=None,
        threshold=threshold,
        neuron=None,
        learnable_decay=None,
        sharpen_epochs=sharpen_epochs,
        decoder_hidden=_decoder_hidden(model, dataset),
    )


def snn_config(model: ModelParams, dataset: PretrainDataset, snn: SnnParams) -> ModelConfig:
    """The config of an SNN trained from scratch on `dataset`: the ANN's topology with the SNN block's
    neurons, as the transfer makes it."""
    return transferred_config(ann_config(model, dataset, snn.threshold, sharpen_epochs=1), snn, dataset)


def transferred_config(ann: ModelConfig, snn: SnnParams, target: PretrainDataset) -> ModelConfig:
    """The SNN config of a transfer: the ANN's topology (so that the names match), the target's inputs and
    classes, the SNN block's neurons."""
    if isinstance(ann, CRNNConfig) and target.format not in VIDEO_FORMATS:
        raise ValueError(
            f"a crnn ANN transfers to video datasets only ({', '.join(VIDEO_FORMATS)}), "
            f"target format '{target.format}'"
        )
    # a CRNN's steps are its topology's (model.steps); a twin's static-input steps are the SNN block's
    steps = {} if isinstance(ann, CRNNConfig) else {"time_steps": snn.time_steps}
    return replace(
        ann,
        kind="snn",
        in_channels=in_channels(target),
        num_classes=target.num_classes,
        decay=snn.decay,
        threshold=snn.threshold,
        neuron=snn.neuron,
        learnable_decay=snn.learnable_decay,
        **steps,
    )


def config_from_dict(stored: dict[str, Any]) -> ModelConfig:
    """The config a checkpoint's `model_config` was written from."""
    return CRNNConfig(**stored) if stored.get("arch") == CRNN else TwinConfig(**stored)


def build_model(config: ModelConfig) -> nn.Module:
    """A CRNN for a CRNNConfig; else a ResNetTwin, or a VideoTwin when the twin has a recurrent decoder."""
    if isinstance(config, CRNNConfig):
        return CRNNModel(config)
    return VideoTwin(config) if config.decoder_hidden is not None else ResNetTwin(config)
