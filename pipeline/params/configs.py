"""Typed views of params.yaml: one small frozen dataclass per parameter block, each key written once.

Stages never index the raw parameter dict. The CLI validates the whole file
against workflow/schemas/params.schema.yaml, then hands each stage an instance
of its config class (declared in pipeline/drivers/stage_table.py) holding exactly the
keys the stage declares, so code reads `cfg.recipe.lr_positions`.

Every key's description and bounds live here, in its field's metadata (`key`), and a block's description is
its class docstring: the schema is generated from these classes (`python -m pipeline schema`,
pipeline/params/schema.py) and params.yaml's trailing comments from the descriptions. Defaults live in
params.yaml only: every field is required, except the keys a block may leave out (`key(optional=True)`,
None when absent, never a null value).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping, NewType

# A name that becomes part of paths, job ids and commands (the keys of every mapping of runs or datasets).
Name = NewType("Name", str)
NAME_DESCRIPTION = (
    "A name that becomes part of paths, job ids and commands: letters, digits, _, - and ., "
    "not starting with . or -."
)
NAME_PATTERN = "^[A-Za-z0-9_][A-Za-z0-9_.-]*$"


def key(
    description: str = "",
    *,
    optional: bool = False,
    partial: Any = None,
    only: str | None = None,
    needed: bool = True,
    items: Mapping[str, Any] | None = None,
    **bounds: Any,
) -> Any:
    """A parameter key: its description and JSON-schema bounds (minimum, pattern, minItems...).
    `optional`: the block may leave it out (None then). `partial`: a mapping of overrides, any keys of that
    dataclass. `only`: allowed only when the block's VARIANT_KEY has this value (required then if
    `needed`). `items`: bounds of each item of a list."""
    metadata = {
        "description": description,
        "bounds": bounds,
        "items": dict(items or {}),
        "partial": partial,
        "only": only,
        "needed": needed,
    }
    if optional:
        return dataclasses.field(default=None, metadata=metadata)
    return dataclasses.field(metadata=metadata)


# ---- shared by every training stage -------------------------------------------


@dataclass(frozen=True)
class Runtime:
    """Where and how a training stage computes (results depend on all of it)."""

    device: str = key(
        "Torch device: auto (CUDA when present, else CPU), cpu, cuda or cuda:N.",
        pattern="^(auto|cpu|cuda(:[0-9]+)?)$",
    )
    threads: int = key(
        "Torch CPU threads of every training stage (0 = torch's default); "
        "runs are bit-identical only for equal values.",
        minimum=0,
    )
    nproc: int = key(
        "Processes per training stage and node; above 1 it runs under torchrun with DistributedDataParallel.",
        minimum=1,
    )
    nnodes: int = key(
        "Nodes per training stage, each running nproc processes; above 1 only in a SLURM job (one launcher "
        "per node through srun, c10d rendezvous on the first node).",
        minimum=1,
    )
    amp: Literal["auto", "off", False, "bf16", "fp16"] = key(  # YAML reads a bare `off` as false
        "Mixed precision: auto (bf16, or fp16 without bf16 support, on GPU; off on CPU), off, bf16, fp16."
    )


def capped_epochs(epochs: int, max_epochs: int) -> int:
    """A recipe's epochs under the top-level `max_epochs` cap (0 = no cap)."""
    return min(epochs, max_epochs) if max_epochs > 0 else epochs


# ---- cluster resources (no stage reads them: pipeline/drivers/snakemake.py) ---------


@dataclass(frozen=True)
class JobResources:
    """Resources of one job."""

    mem_mb: int = key("Memory in MB.", minimum=1)
    runtime: int = key("Time limit in minutes.", minimum=1)
    cpus_per_task: int = key("CPU cores (data-loader workers and the main process).", minimum=1)


@dataclass(frozen=True)
class StageResources:
    """Resources of the stage's jobs: `default` (every resource), and overrides by dataset or run name."""

    OTHER_KEYS: ClassVar[Any] = JobResources  # any other key: a dataset or run name, some resources
    default: JobResources = key("Resources of every job of the stage that has no entry of its own.")


ResourceStage = Literal[
    "delays_prepare",
    "delays_train",
    "delays_evaluate",
    "pretrain_index",
    "pretrain_ann",
    "transfer",
    "finetune_snn",
    "train_snn_scratch",
]


# ---- paper B: learnable delays ------------------------------------------------


@dataclass(frozen=True)
class SynthParams:
    """Generator of the embedded timing-coded dataset (SHD layout)."""

    seed: int = key("Generator seed; the files are a deterministic function of these knobs.", minimum=0)
    n_units: int = key("Raw input channels in the files.", minimum=1)
    n_classes: int = key(
        "Number of classes; even (each group ordering comes with its reverse).", minimum=2, multipleOf=2
    )
    n_groups: int = key("Channel groups; a class is the order in which the groups burst.", minimum=2)
    n_train: int = key("Samples in shd_train.h5.", minimum=1)
    n_test: int = key("Samples in shd_test.h5.", minimum=1)
    lag_step_ms: float = key("Spacing of consecutive group bursts in ms.", exclusiveMinimum=0)
    onset_max_ms: float = key("Onset of the first burst is uniform in [0, this] ms.", minimum=0)
    burst_jitter_ms: float = key("Std of each group's burst time around its class lag in ms.", minimum=0)
    spike_jitter_ms: float = key("Std of each spike around its group's burst time in ms.", minimum=0)
    spikes_per_unit: float = key("Mean spikes per unit per burst (Poisson).", exclusiveMinimum=0)
    noise_rate_hz: float = key("Background Poisson rate on every unit in Hz.", minimum=0)
    tail_ms: float = key("Recording length after the last nominal burst in ms.", minimum=0)


@dataclass(frozen=True)
class DelaysData:
    """What delays_prepare reads; changing it re-prepares the set."""

    format: Literal["shd", "ssc", "gsc"] = key(
        "shd (shd_train/test.h5), ssc (ssc_train/valid/test.h5), gsc (GSC v0.02 wav folders)."
    )
    root: str = key("Folder holding the dataset files.", minLength=1)
    valid_fraction: float = key(
        "Share of train held out (stratified) for model selection; shd only (ssc, gsc have a valid split).",
        minimum=0,
        exclusiveMaximum=1,
    )
    valid_seed: int = key("Seed of the validation hold-out.", minimum=0)
    time_step_ms: float = key("Frame length in ms (gsc features require 10).", exclusiveMinimum=0)
    n_channels: int = key("Raw channels in the files (shd/ssc 700; gsc 140 mel bands).", minimum=1)
    pool: int = key("Channels summed per input (700 / 5 -> 140); gsc requires 1.", minimum=1)


@dataclass(frozen=True)
class DelaysNet:
    """What delays_train reads; changing it retrains, never re-prepares."""

    max_delay_ms: float = key(
        "Largest delay; K = max_delay_ms // time_step_ms, made odd.", exclusiveMinimum=0
    )
    hidden: list[int] = key(
        "Hidden layer sizes (one delay -> BN -> LIF -> dropout block each).", minItems=1, items={"minimum": 1}
    )
    tau_ms: float = key(
        "LIF membrane time constant in ms (tau = tau_ms / time_step_ms steps).", exclusiveMinimum=0
    )
    dropout: float = key(
        "Dropout after each hidden LIF (mask shared over time).", minimum=0, exclusiveMaximum=1
    )
    epochs: int = key("Training epochs.", minimum=1)
    batch_size: int = key("Training batch size.", minimum=1)


@dataclass(frozen=True)
class DelaysSet:
    """One dataset of paper B."""

    data: DelaysData = key()
    train: DelaysNet = key()


@dataclass(frozen=True)
class DelaysRecipe:
    """Optimiser recipe shared by all delay sets (the reference's)."""

    lr: float = key(  # OneCycleLR peaks at PEAK_LR_FACTOR x lr (pipeline/delays/train.py)
        "Adam lr of weights and BN; OneCycleLR, stepped per epoch, peaks at 5 x lr. As the reference: "
        "max_lr_w = 5 * lr_w.",
        exclusiveMinimum=0,
    )
    weight_decay: float = key("Adam weight decay on delay/linear weights (BN has none).", minimum=0)
    eval_batch_size: int = key("Batch size of the rounded-delay evaluation.", minimum=1)


@dataclass(frozen=True)
class LearnedDelays:
    """The delay positions' optimiser and the Gaussian kernels' schedule."""

    lr_positions: float = key(
        "Adam learning rate of delay positions, cosine-annealed to 0.", exclusiveMinimum=0
    )
    sigma_final: float = key("Final SIG of the Gaussian delay kernels, reached at epochs // 4.", minimum=0)


@dataclass(frozen=True)
class DelaysVariantRecipe:
    """What one variant alone reads; editing it retrains only that variant's runs."""

    no_delay: None = key("Plain synapses have nothing of their own.")
    fixed_delay: None = key("Integer delays drawn once and frozen have nothing of their own.")
    learned_delay: LearnedDelays = key()


@dataclass(frozen=True)
class DelaysParams:
    """Paper B, learning synaptic delays with DCLS."""

    datasets: list[Name] = key(
        "Sets (keys of delays.sets) that are trained and evaluated.", minItems=1, uniqueItems=True
    )
    variants: list[Literal["no_delay", "fixed_delay", "learned_delay"]] = key(
        "Variants of the ablation to run.", minItems=1, uniqueItems=True
    )
    seeds: list[int] = key(
        "Training seeds; one run per seed and variant.", minItems=1, uniqueItems=True, items={"minimum": 0}
    )
    synth: SynthParams = key()
    recipe: DelaysRecipe = key()
    variant_recipe: DelaysVariantRecipe = key()
    sets: dict[Name, DelaysSet] = key("Datasets by name; every one defined is prepared.", minProperties=1)


# ---- paper A: pretraining as a bridge -----------------------------------------


@dataclass(frozen=True)
class DigitsParams:
    """images_embedded, scikit-learn digits written as an ImageFolder of PNG files."""

    val_fraction: float = key(
        "Share of each class held out for validation.", exclusiveMinimum=0, exclusiveMaximum=1
    )
    seed: int = key("Seed of the train/val split.", minimum=0)


@dataclass(frozen=True)
class EsConvertParams:
    """es_imagenet_convert, ES-ImageNet's image-to-event conversion (real dataset 254/256/16/0.18/1000)."""

    long_side: int = key(
        "Nearest resize so that the longer image side has this many pixels (real 254).",
        minimum=4,
        maximum=254,
    )
    canvas: int = key(
        "Side of the square canvas samples are centred on; at least long_side + 2, at most 256 (real 256).",
        minimum=6,
        maximum=256,
    )
    margin: int = key("Events kept for margin < row, col < canvas - margin (real 16).", minimum=0)
    threshold: float = key(
        "Intensity difference (images in [0, 1]) that makes an event (real 0.18).", exclusiveMinimum=0
    )
    min_events: int = key("Samples with fewer events are dropped (real 1000).", minimum=0)


@dataclass(frozen=True)
class MotionParams:
    """motion_embedded, the ES-UCF101 stand-in's clips (digits moving north-east or south-west; class = digit
    and direction)."""

    seed: int = key("Generator seed.", minimum=0)
    n_classes: int = key(
        "Actions: digit k // 2 moving north-east (k even) or south-west (k odd).", minimum=2, maximum=8
    )
    clips_per_class_train: int = key("Training clips per class.", minimum=1)
    clips_per_class_val: int = key("Validation clips per class.", minimum=1)
    n_frames: int = key("Frames per clip.", minimum=2)
    height: int = key("Frame height in pixels.", minimum=12)
    width: int = key("Frame width in pixels.", minimum=12)


@dataclass(frozen=True)
class UcfConvertParams:
    """es_ucf101_convert, ES-UCF101's conversion (real dataset 31 frames, 256 x 342, rate 0.075)."""

    n_frames: int = key("Frames sampled evenly per clip; the events have n_frames - 1 steps.", minimum=2)
    height: int = key("Frame height the events are made at.", minimum=1)
    width: int = key("Frame width the events are made at.", minimum=1)
    rate: float = key(
        "Share of pixels giving a positive event per step (as many give negative ones).",
        exclusiveMinimum=0,
        exclusiveMaximum=0.5,
    )


@dataclass(frozen=True)
class PretrainDataset:
    """One dataset of paper A; the keys allowed depend on its format."""

    VARIANT_KEY: ClassVar[str] = "format"  # each format requires its own keys and refuses the others'
    format: Literal["imagefolder", "es_imagenet", "ucf101_frames", "es_ucf101"] = key(
        "Loader: imagefolder, es_imagenet, ucf101_frames or es_ucf101. imagefolder: ImageNet layout; "
        "es_imagenet: label files + npz event lists; ucf101_frames: RGB frame folders per video; es_ucf101: "
        "one npz of events per video."
    )
    root: str = key("Dataset directory; train/ and val/ inside.", minLength=1)
    num_classes: int = key("Number of classes (size of the classifier).", minimum=2)
    in_memory: bool = key("Decode every sample once and keep it in RAM (only for small datasets).")
    image_size: int | None = key(
        "imagefolder, side of the square input images.", optional=True, only="imagefolder", minimum=4
    )
    augment: bool | None = key(
        "imagefolder, ImageNet random-resized crop + flip (train) / resize + centre crop (val); "
        "off = plain resize.",
        optional=True,
        only="imagefolder",
    )
    normalize: bool | None = key(
        "imagefolder, normalise with the ImageNet mean and std.", optional=True, only="imagefolder"
    )
    long_side: int | None = key(
        "es_imagenet, long_side the data were converted with; real 254.",
        optional=True,
        only="es_imagenet",
        minimum=4,
        maximum=254,
    )
    canvas: int | None = key(
        "es_imagenet, canvas the loader centres samples on; real 256.",
        optional=True,
        only="es_imagenet",
        minimum=6,
        maximum=256,
    )
    margin: int | None = key(
        "es_imagenet, crop margin on each side; real 16, giving 224 x 224.",
        optional=True,
        only="es_imagenet",
        minimum=0,
    )
    n_frames: int | None = key(
        "ucf101_frames, frames per clip, spread over the video or the first ones (sampling).",
        optional=True,
        only="ucf101_frames",
        minimum=2,
    )
    sampling: Literal["even", "first"] | None = key(  # None = even
        "ucf101_frames, which frames: even (spread over the video, first and last included, as the ES-UCF101 "
        "conversion samples them; the default) or first (the first n_frames, as the ES-UCF101 reference's "
        "ANN reads frame000001 to frame000015).",
        optional=True,
        only="ucf101_frames",
        needed=False,
    )
    height: int | None = key(
        "ucf101_frames, frame height the clips are resized to.",
        optional=True,
        only="ucf101_frames",
        minimum=4,
    )
    width: int | None = key(
        "ucf101_frames, frame width the clips are resized to.", optional=True, only="ucf101_frames", minimum=4
    )


@dataclass(frozen=True)
class ModelParams:
    """Keys of a model block."""

    arch: Literal["tiny", "resnet18", "resnet34", "crnn"] = key(
        "Block layout: tiny [1,1,1,1], resnet18 [2,2,2,2], resnet34 [3,4,6,3]; crnn: the reference's "
        "ES-UCF101 CNN encoder + LSTM decoder (UCF101 formats only; docs/papers.md)."
    )
    width: int = key(
        "Channels of the first stage (stages w, 2w, 4w, 8w); 64 for ResNet-18/34, 8 for crnn "
        "(conv cells 8/16/32/64).",
        minimum=1,
    )
    stem: Literal["imagenet", "small"] = key(
        "ResNet archs: imagenet: 7x7/2 conv + 3x3/2 maxpool; small: 3x3/1 conv, no maxpool (tiny images). "
        "crnn ignores it (its first conv is 5x5/2)."
    )
    decoder_hidden: int = key(
        "Units of the recurrent decoder (UCF101 formats); the video twin's recurrent layer, crnn's LSTM "
        "(reference 256).",
        minimum=1,
    )
    input_size: list[int] | None = key(
        "crnn only (required there): [height, width] of its input clips (reference [256, 342]); it sizes "
        "the first fully connected layer.",
        optional=True,
        minItems=2,
        maxItems=2,
        items={"minimum": 33},
    )
    steps: int | None = key(
        "crnn only (required there): the first steps (frames, event steps) of every clip it uses, 0 = all "
        "(reference 15).",
        optional=True,
        minimum=0,
    )
    flatten: Literal["reference", "per_step"] | None = key(
        "crnn only (required there): how the SNN's last conv map becomes per-step features; reference: the "
        "authors' view of the (B, C, T, H, W) map as (B, T, C*H*W) (a step holds a block of channels at "
        "every time step); per_step: step t's own map.",
        optional=True,
    )


@dataclass(frozen=True)
class SnnParams:
    """Keys of a neuron block."""

    neuron: Literal["lif", "liaf"] = key(
        "lif (spikes out) or liaf (LeakyReLU(0.2) of the membrane out, same membrane and reset)."
    )
    learnable_decay: bool = key("One trained decay per neuron layer, starting at decay.")
    decay: float = key(
        "Membrane decay per step: u_t = decay * u_{t-1} * (1 - s_{t-1}) + I_t (paper 0.25).",
        exclusiveMinimum=0,
        exclusiveMaximum=1,
    )
    threshold: float = key("Firing threshold (paper 0.5); also the initial BN weight.", exclusiveMinimum=0)
    time_steps: int = key(
        "Time steps T for static (direct) input; event data bring their own T (paper 6).", minimum=1
    )


@dataclass(frozen=True)
class Recipe:
    """Keys of a training recipe."""

    epochs: int = key("Training epochs.", minimum=1)
    batch_size: int = key("Samples per optimisation step.", minimum=1)
    optimizer: Literal["sgd", "adam"] = key("sgd (with momentum) or adam.")
    lr: float = key(
        "Learning rate at lr_reference_batch, scaled linearly to batch_size (paper 0.1 at 256).",
        exclusiveMinimum=0,
    )
    lr_reference_batch: int = key("Batch size at which lr applies.", minimum=1)
    momentum: float = key("SGD momentum (paper 0.9); unused by adam.", minimum=0, maximum=1)
    weight_decay: float = key("L2 penalty.", minimum=0)
    schedule: Literal["cosine", "multistep", "constant"] = key(
        "Per-epoch lr schedule: cosine, multistep (milestones x gamma) or constant."
    )
    milestones: list[int] = key(
        "Epochs after which multistep multiplies the lr by gamma.", items={"minimum": 1}
    )
    gamma: float = key("Multistep factor (paper fine-tuning 0.3).", exclusiveMinimum=0)


@dataclass(frozen=True)
class AnnRecipe(Recipe):
    """Keys of the ANN pretraining recipe."""

    epochs: int = key(
        "Training epochs; 0 (a run with `weights`) imports the weights without training.", minimum=0
    )
    sharpen_epochs: int = key(
        "S of the sharpening schedule lo = min(e/S, 0.49), hi = 1 - e/S (paper 200).", minimum=1
    )


@dataclass(frozen=True)
class FinetuneRecipe(Recipe):
    """Keys of the fine-tuning recipe."""

    frozen_warmup_epochs: int = key(
        "First epochs that train only the adapted stem and the classifier, body frozen.", minimum=0
    )


@dataclass(frozen=True)
class AnnRun:
    """One ANN run."""

    # `weights` with `ann: {epochs: 0}` imports a file without training (pipeline/pretrain/weights.py)
    RULE: ClassVar[dict[str, Any]] = {
        "if": {
            "required": ["ann"],
            "properties": {"ann": {"required": ["epochs"], "properties": {"epochs": {"const": 0}}}},
        },
        "then": {
            "description": "ann.epochs 0 imports a `weights` file without training: name one.",
            "required": ["weights"],
        },
    }
    dataset: Name = key(
        "Dataset (under pretrain.datasets) the ANN is pretrained on; imagefolder or ucf101_frames."
    )
    model: dict[str, Any] | None = key(
        "Overrides of pretrain.model for this run.", optional=True, partial=ModelParams
    )
    ann: dict[str, Any] | None = key(
        "Overrides of pretrain.ann for this run.", optional=True, partial=AnnRecipe
    )
    weights: str | None = key(
        "File the ANN starts from: a torchvision ResNet-18/34 state dict or a pretrain_ann checkpoint "
        "(docs/papers.md, External ANN weights); with ann.epochs 0 it is imported without training.",
        optional=True,
        minLength=1,
    )


@dataclass(frozen=True)
class PipelineRun:
    """One pipeline."""

    ann: Name = key("ANN run (under pretrain.anns) whose parameters are transferred; it fixes the topology.")
    target: Name = key("Dataset (under pretrain.datasets) the SNN is fine-tuned on.")
    stem: Literal["adapt", "reinit"] = key(
        "First conv when input channels differ: adapt (mean over RGB copied to each polarity) or reinit "
        "(new, as on ES-UCF101; for crnn the whole first conv cell: conv, bias, BN)."
    )
    baseline: Name | None = key(
        "Scratch run (under pretrain.baselines) the pipeline is compared with in the table.", optional=True
    )
    decoder: Literal["transfer", "reinit"] | None = key(  # None = transfer
        "Video models: the ANN's recurrent decoder and classifier are transferred (transfer, the default; "
        "the reference's train_*_from_CRNN.py) or left newly initialised (reinit; train_*_from_CNN.py).",
        optional=True,
    )
    snn: dict[str, Any] | None = key(
        "Overrides of pretrain.snn for this pipeline.", optional=True, partial=SnnParams
    )
    finetune: dict[str, Any] | None = key(
        "Overrides of pretrain.finetune for this pipeline.", optional=True, partial=FinetuneRecipe
    )


@dataclass(frozen=True)
class BaselineRun:
    """One scratch SNN."""

    dataset: Name = key("Dataset (under pretrain.datasets) the SNN is trained on.")
    model: dict[str, Any] | None = key(
        "Overrides of pretrain.model for this run.", optional=True, partial=ModelParams
    )
    snn: dict[str, Any] | None = key(
        "Overrides of pretrain.snn for this run.", optional=True, partial=SnnParams
    )
    scratch: dict[str, Any] | None = key(
        "Overrides of pretrain.scratch for this run.", optional=True, partial=Recipe
    )


@dataclass(frozen=True)
class PretrainParams:
    """Paper A, ANN pretraining -> transfer -> SNN fine-tuning, against SNNs trained from scratch."""

    seed: int = key("Seed of python/numpy/torch and of the data order in every paper-A stage.", minimum=0)
    num_workers: int = key(
        "DataLoader worker processes for datasets read from disk (in_memory false).", minimum=0
    )
    digits: DigitsParams = key()
    es_convert: EsConvertParams = key()
    motion: MotionParams = key()
    ucf_convert: UcfConvertParams = key()
    datasets: dict[Name, PretrainDataset] = key(
        "Datasets by name; every one defined is indexed, so its root must exist or be written by a stage.",
        minProperties=1,
    )
    model: ModelParams = key(
        "Model settings shared by every run (a run may override keys under its own `model`)."
    )
    snn: SnnParams = key(
        "The SNN's neuron, shared (a pipeline or baseline may override keys under its own `snn`)."
    )
    ann: AnnRecipe = key("pretrain_ann recipe (an ANN run may override keys under its own `ann`).")
    finetune: FinetuneRecipe = key(
        "finetune_snn recipe shared by the pipelines (a pipeline may override keys under its own `finetune`)."
    )
    scratch: Recipe = key("train_snn_scratch recipe (a baseline may override keys under its own `scratch`).")
    anns: dict[Name, AnnRun] = key("ANN pretraining runs by name.")
    baselines: dict[Name, BaselineRun] = key("SNNs trained from scratch, by name.")
    pipelines: dict[Name, PipelineRun] = key(
        "Transfer pipelines by name, ANN run -> SNN fine-tuned on a target dataset."
    )


# ---- the whole file -------------------------------------------------------------


@dataclass(frozen=True)
class Params(Runtime):
    """Parameters of the SNN reproduction pipeline."""

    resources: dict[ResourceStage, StageResources] = key(
        "Cluster resources by stage, then by the job's dataset or run (`default` for the rest). For "
        "Snakemake's executors (SLURM), keyed by the job's first wildcard. No stage reads them; locally they "
        "only limit what runs at once."
    )
    max_skipped_fraction: float = key(
        "Largest share of a dataset that may be unreadable; more stops the stage. Unreadable samples (a "
        "damaged image or event file) are skipped, counted in the run's metrics and the table, and reported "
        "in a warning line.",
        minimum=0,
        maximum=1,
    )
    max_epochs: int = key(
        "Above 0: every training stage's epochs, schedules sized for them; 0 = the recipes' epochs. A quick "
        "check of a whole configuration, e.g. --config max_epochs=1.",
        minimum=0,
    )
    resume: bool = key(
        "A killed training stage continues from its last complete epoch. It cannot change results, so no "
        "stage reruns when it changes."
    )
    delays: DelaysParams = key()
    pretrain: PretrainParams = key()


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
