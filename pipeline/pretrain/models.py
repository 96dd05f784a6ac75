"""Paper A's models from parameters, chosen by `model.arch`:

- `tiny`, `resnet18`, `resnet34`: the ResNet twin for images and events; on the UCF101 formats the
  video twin (that ResNet per step + a recurrent decoder, pipeline/models/video_twin.py);
- `crnn`: the authors' ES-UCF101 model, a small CNN encoder per step + an LSTM decoder
  (pipeline/models/crnn.py); UCF101 formats only.

A checkpoint stores `model_config` (the TwinConfig fields plus `decoder_hidden`, None for the
ResNet twin; or the CRNNConfig fields), which is all `build_model` needs to rebuild it.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from pipeline.params.configs import ModelParams, PretrainDataset, SnnParams
from pipeline.models.resnet_twins import ResNetTwin, TwinConfig
from pipeline.pretrain.datasets import VIDEO_FORMATS, in_channels

CRNN = "crnn"


def dataset_and_neuron_fields(snn: SnnParams, dataset: PretrainDataset) -> dict[str, Any]:
    """The twin config's fields set by the dataset (inputs, classes) and the SNN block (neurons): what a
    transferred SNN takes from its target rather than from the ANN."""
    return {
        "in_channels": in_channels(dataset),
        "num_classes": dataset.num_classes,
        "time_steps": snn.time_steps,
        "decay": snn.decay,
        "threshold": snn.threshold,
        "neuron": snn.neuron,
        "learnable_decay": snn.learnable_decay,
    }


def _crnn_config(kind: str, model: ModelParams, snn: SnnParams, dataset: PretrainDataset) -> dict[str, Any]:
    from pipeline.models.crnn import CRNNConfig

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
    fields = {k: v for k, v in dataset_and_neuron_fields(snn, dataset).items() if k != "time_steps"}
    return CRNNConfig(
        kind=kind,
        input_size=list(model.input_size),
        steps=model.steps,
        width=model.width,
        decoder_hidden=model.decoder_hidden,
        flatten=model.flatten,
        **fields,
    ).to_dict()


def model_config(
    kind: str, model: ModelParams, snn: SnnParams, dataset: PretrainDataset, sharpen_epochs: int = 1
) -> dict[str, Any]:
    """The config of a model of `kind` (ann, snn) for `dataset`."""
    if model.arch == CRNN:
        return _crnn_config(kind, model, snn, dataset)  # a ReLU ANN: no sharpening
    crnn_only = [k for k in ("input_size", "steps", "flatten") if getattr(model, k) is not None]
    if crnn_only:
        raise ValueError(f"model.{', model.'.join(crnn_only)}: only for arch crnn (arch is '{model.arch}')")
    twin = TwinConfig(
        kind=kind,
        arch=model.arch,
        width=model.width,
        stem=model.stem,
        **dataset_and_neuron_fields(snn, dataset),
        sharpen_epochs=sharpen_epochs,
    )
    hidden = model.decoder_hidden if dataset.format in VIDEO_FORMATS else None
    return {**twin.to_dict(), "decoder_hidden": hidden}


def transferred_config(ann_config: dict[str, Any], snn: SnnParams, target: PretrainDataset) -> dict[str, Any]:
    """The SNN config of a transfer: the ANN's topology (so that the names match), the target's inputs and
    classes, the SNN block's neurons."""
    fields = dataset_and_neuron_fields(snn, target)
    if ann_config.get("arch") == CRNN:
        if target.format not in VIDEO_FORMATS:
            raise ValueError(
                f"a crnn ANN transfers to video datasets only ({', '.join(VIDEO_FORMATS)}), "
                f"target format '{target.format}'"
            )
        del fields["time_steps"]  # the clip's steps are the topology's (model.steps)
    return {**ann_config, "kind": "snn", **fields}


def build_model(config: dict[str, Any]) -> nn.Module:
    """A CRNN for arch crnn; else a ResNetTwin, or a VideoTwin when the config has a recurrent decoder."""
    fields = dict(config)
    if fields.get("arch") == CRNN:
        from pipeline.models.crnn import build_crnn

        return build_crnn(fields)
    hidden = fields.pop("decoder_hidden", None)
    twin = TwinConfig(**fields)
    if hidden:
        from pipeline.models.video_twin import VideoTwin

        return VideoTwin(twin, hidden)
    return ResNetTwin(twin)
