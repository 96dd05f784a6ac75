"""Typed views of params.yaml: one small frozen dataclass per parameter block.

Stages never index the raw parameter dict. The CLI validates the whole file
against workflow/schemas/params.schema.yaml, then hands each stage an instance
of its config class (declared in pipeline/drivers/stage_table.py) holding exactly the
keys the stage declares, so code reads `cfg.recipe.lr_positions`. Defaults live
in params.yaml and the schema only: every field here is required.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Mapping

# ---- shared by every training stage -------------------------------------------


@dataclass(frozen=True)
class Runtime:
    """Where and how a training stage computes (results depend on all of it)."""

    device: str
    threads: int
    nproc: int  # processes per node
    nnodes: int
    amp: str | bool  # YAML reads a bare `off` as false


def capped_epochs(epochs: int, max_epochs: int) -> int:
    """A recipe's epochs under the top-level `max_epochs` cap (0 = no cap)."""
    return min(epochs, max_epochs) if max_epochs > 0 else epochs


# ---- paper B: learnable delays ------------------------------------------------


@dataclass(frozen=True)
class SynthParams:
    """Generator of the embedded timing-coded dataset (SHD layout)."""

    seed: int
    n_units: int
    n_classes: int
    n_groups: int
    n_train: int
    n_test: int
    lag_step_ms: float
    onset_max_ms: float
    burst_jitter_ms: float
    spike_jitter_ms: float
    spikes_per_unit: float
    noise_rate_hz: float
    tail_ms: float


@dataclass(frozen=True)
class DelaysData:
    """What delays_prepare reads of one set: changing these re-prepares it."""

    format: Literal["shd", "ssc", "gsc"]
    root: str
    valid_fraction: float
    valid_seed: int
    time_step_ms: float
    n_channels: int
    pool: int


@dataclass(frozen=True)
class DelaysNet:
    """Model and training length of one set (the prepared data bring the time step)."""

    max_delay_ms: float
    hidden: list[int]
    tau_ms: float
    dropout: float
    epochs: int
    batch_size: int


@dataclass(frozen=True)
class DelaysRecipe:
    """Optimiser recipe of weights and BN, shared by every set and variant (the reference's)."""

    lr: float  # OneCycleLR peaks at PEAK_LR_FACTOR x lr (pipeline/delays/train.py)
    weight_decay: float
    eval_batch_size: int


@dataclass(frozen=True)
class LearnedDelays:
    """What only learned-delay runs read: the positions' optimiser and the kernels' SIG schedule."""

    lr_positions: float
    sigma_final: float


# ---- paper A: pretraining as a bridge -----------------------------------------


@dataclass(frozen=True)
class DigitsParams:
    val_fraction: float
    seed: int


@dataclass(frozen=True)
class EsConvertParams:
    long_side: int
    canvas: int
    margin: int
    threshold: float
    min_events: int


@dataclass(frozen=True)
class MotionParams:
    """Generator of the embedded ES-UCF101 stand-in: digits moving north-east or south-west."""

    seed: int
    n_classes: int
    clips_per_class_train: int
    clips_per_class_val: int
    n_frames: int
    height: int
    width: int


@dataclass(frozen=True)
class UcfConvertParams:
    """ES-UCF101's conversion: frames sampled, frame size, share of pixels giving events per polarity."""

    n_frames: int
    height: int
    width: int
    rate: float


@dataclass(frozen=True)
class PretrainDataset:
    """One dataset of paper A; format-specific keys are None for other formats."""

    format: Literal["imagefolder", "es_imagenet", "es_ucf101", "ucf101_frames"]
    root: str
    num_classes: int
    in_memory: bool
    image_size: int | None = None  # imagefolder
    augment: bool | None = None  # imagefolder
    normalize: bool | None = None  # imagefolder
    long_side: int | None = None  # es_imagenet
    canvas: int | None = None  # es_imagenet
    margin: int | None = None  # es_imagenet
    n_frames: int | None = None  # ucf101_frames
    sampling: Literal["even", "first"] | None = None  # ucf101_frames; None = even
    height: int | None = None  # ucf101_frames
    width: int | None = None  # ucf101_frames


@dataclass(frozen=True)
class ModelParams:
    arch: Literal["tiny", "resnet18", "resnet34", "crnn"]
    width: int
    stem: Literal["imagenet", "small"]  # ResNet archs
    decoder_hidden: int
    input_size: list[int] | None = None  # crnn: [height, width] of its inputs
    steps: int | None = None  # crnn: first steps of every clip used (0 = all)
    flatten: Literal["reference", "per_step"] | None = None  # crnn: the encoder's feature layout per step


@dataclass(frozen=True)
class SnnParams:
    neuron: Literal["lif", "liaf"]
    learnable_decay: bool
    decay: float
    threshold: float
    time_steps: int


@dataclass(frozen=True)
class Recipe:
    """Optimiser and schedule of one training stage of paper A."""

    epochs: int
    batch_size: int
    optimizer: Literal["sgd", "adam"]
    lr: float
    lr_reference_batch: int
    momentum: float
    weight_decay: float
    schedule: Literal["cosine", "multistep", "constant"]
    milestones: list[int]
    gamma: float


@dataclass(frozen=True)
class AnnRecipe(Recipe):
    sharpen_epochs: int


@dataclass(frozen=True)
class FinetuneRecipe(Recipe):
    frozen_warmup_epochs: int


@dataclass(frozen=True)
class AnnRun:
    """An ANN pretraining run: its dataset, with optional overrides of the shared blocks. `weights`: a
    file (torchvision ResNet state dict or pretrain_ann checkpoint) the ANN starts from; `ann: {epochs: 0}`
    imports it without training (pipeline/pretrain/weights.py)."""

    dataset: str
    model: dict[str, Any] | None = None
    ann: dict[str, Any] | None = None
    weights: str | None = None


@dataclass(frozen=True)
class PipelineRun:
    """ANN -> transfer -> SNN fine-tuning on `target`, compared with the scratch run `baseline`."""

    ann: str
    target: str
    stem: Literal["adapt", "reinit"]
    baseline: str | None = None
    decoder: Literal["transfer", "reinit"] | None = None  # video models; None = transfer
    snn: dict[str, Any] | None = None
    finetune: dict[str, Any] | None = None


@dataclass(frozen=True)
class BaselineRun:
    """An SNN trained from scratch on `dataset`, with optional overrides of the shared blocks."""

    dataset: str
    model: dict[str, Any] | None = None
    snn: dict[str, Any] | None = None
    scratch: dict[str, Any] | None = None


# ---- building instances -------------------------------------------------------


class ConfigError(ValueError):
    """Parameters that do not fit a config class (the schema should have caught it first)."""


def build(cls: Any, value: Any, where: str) -> Any:
    """`value` (plain YAML data) as an instance of the type `cls`, recursively."""
    origin = typing.get_origin(cls)
    if dataclasses.is_dataclass(cls):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, found {value!r}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(names))})"
            )
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in value:
                kwargs[f.name] = build(hints[f.name], value[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing key '{f.name}'")
        return cls(**kwargs)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(cls) if a is not type(None)]
        if value is None:
            return None
        return build(options[0], value, where) if len(options) == 1 else value
    if origin is list:
        (inner,) = typing.get_args(cls)
        return [build(inner, v, f"{where}.{i}") for i, v in enumerate(value)]
    return value


def to_dict(obj: Any) -> Any:
    """A config instance as plain data (for config.json files and fingerprints)."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
