"""The stage table: every pipeline stage declared once.

For each stage: its name (the same in the CLI, Snakemake and DVC), the
function that runs it, how it fans out over datasets/runs, its input and
output paths, and the parameter keys it reads (the fields of its config class,
each tagged with its key in params.yaml). From this table:
- `python -m pipeline <stage>` builds its options and hands the function a
  config instance holding exactly the declared keys (pipeline/drivers/cli.py);
- the Snakefile defines one rule per stage (pipeline/drivers/snakemake.py);
- dvc.yaml is generated (`python -m pipeline dvc_yaml`, pipeline/drivers/dvc.py);
- both drivers list as code dependencies the import closure of the stage's
  module (pipeline/drivers/codedeps.py).

Path templates use `{w}` for a fan-out wildcard and `{w.field}` for a field of
the params entry the wildcard names (e.g. `{pipe.target}` is
pretrain.pipelines[pipe].target); parameter keys use the same syntax.

This module is data: both drivers read it directly, and what it says about a
stage reaches that stage's command, inputs, outputs and params, which the
drivers compare themselves. So it is not listed among any stage's code
dependencies (editing one stage's entry must not rerun the others). How a
job's parameter values are resolved into its config is code, and lives in
pipeline/drivers/resolve.py, which every stage depends on.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.params.configs import (
    AnnRecipe,
    AnnRun,
    BaselineRun,
    DelaysData,
    DelaysNet,
    DelaysRecipe,
    DigitsParams,
    EsConvertParams,
    FinetuneRecipe,
    LearnedDelays,
    ModelParams,
    MotionParams,
    UcfConvertParams,
    PipelineRun,
    PretrainDataset,
    Recipe,
    Runtime,
    SnnParams,
    SynthParams,
)
from pipeline.drivers.stage_spec import Each, Gather, In, Matrix, Out, Stage, param, runtime

# ---- stage configs: the keys each stage reads ------------------------------------


@dataclass(frozen=True)
class CheckConfig:
    """check_params reads the whole parameter file itself."""


@dataclass(frozen=True)
class DelaysSynthConfig:
    synth: SynthParams = param("delays.synth")


@dataclass(frozen=True)
class DelaysPrepareConfig:
    data: DelaysData = param("delays.sets.{dataset}.data")
    max_skipped_fraction: float = param("max_skipped_fraction")


@dataclass(frozen=True)
class DelaysTrainConfig:
    net: DelaysNet = param("delays.sets.{dataset}.train")
    recipe: DelaysRecipe = param("delays.recipe")
    # Per variant: editing a learned-delay key retrains only the learned-delay runs (None for the others).
    positions: LearnedDelays | None = param("delays.variant_recipe.{variant}")
    runtime: Runtime = runtime()
    max_epochs: int = param("max_epochs")
    resume: bool = param("resume", rerun=False)


@dataclass(frozen=True)
class DelaysEvaluateConfig:
    eval_batch_size: int = param("delays.recipe.eval_batch_size")
    runtime: Runtime = runtime()


@dataclass(frozen=True)
class DigitsConfig:
    digits: DigitsParams = param("pretrain.digits")


@dataclass(frozen=True)
class EsConvertConfig:
    convert: EsConvertParams = param("pretrain.es_convert")


@dataclass(frozen=True)
class MotionConfig:
    motion: MotionParams = param("pretrain.motion")


@dataclass(frozen=True)
class UcfConvertConfig:
    convert: UcfConvertParams = param("pretrain.ucf_convert")


@dataclass(frozen=True)
class IndexConfig:
    dataset: PretrainDataset = param("pretrain.datasets.{dataset}")
    max_skipped_fraction: float = param("max_skipped_fraction")


@dataclass(frozen=True)
class PretrainTraining:
    """Keys every training stage of paper A reads besides its own."""

    seed: int = param("pretrain.seed")
    num_workers: int = param("pretrain.num_workers")
    runtime: Runtime = runtime()
    max_skipped_fraction: float = param("max_skipped_fraction")
    max_epochs: int = param("max_epochs")
    resume: bool = param("resume", rerun=False)


@dataclass(frozen=True)
class AnnConfig(PretrainTraining):
    run: AnnRun = param("pretrain.anns.{ann}")
    dataset: PretrainDataset = param("pretrain.datasets.{ann.dataset}")
    model: ModelParams = param("pretrain.model", override="pretrain.anns.{ann}.model")
    # the sharpened ReLU's ceiling and the BN init; the other neuron keys are the SNN's (transfer, scratch)
    threshold: float = param("pretrain.snn.threshold")
    recipe: AnnRecipe = param("pretrain.ann", override="pretrain.anns.{ann}.ann")


@dataclass(frozen=True)
class TransferConfig:
    pipeline: PipelineRun = param("pretrain.pipelines.{pipe}")
    target: PretrainDataset = param("pretrain.datasets.{pipe.target}")
    snn: SnnParams = param("pretrain.snn", override="pretrain.pipelines.{pipe}.snn")
    seed: int = param("pretrain.seed")


@dataclass(frozen=True)
class FinetuneConfig(PretrainTraining):
    pipeline: PipelineRun = param("pretrain.pipelines.{pipe}")
    target: PretrainDataset = param("pretrain.datasets.{pipe.target}")
    recipe: FinetuneRecipe = param("pretrain.finetune", override="pretrain.pipelines.{pipe}.finetune")


@dataclass(frozen=True)
class ScratchConfig(PretrainTraining):
    run: BaselineRun = param("pretrain.baselines.{run}")
    dataset: PretrainDataset = param("pretrain.datasets.{run.dataset}")
    model: ModelParams = param("pretrain.model", override="pretrain.baselines.{run}.model")
    snn: SnnParams = param("pretrain.snn", override="pretrain.baselines.{run}.snn")
    recipe: Recipe = param("pretrain.scratch", override="pretrain.baselines.{run}.scratch")


@dataclass(frozen=True)
class ReportConfig:
    delays_datasets: list[str] = param("delays.datasets")
    delays_variants: list[str] = param("delays.variants")
    delays_seeds: list[int] = param("delays.seeds")
    anns: dict[str, AnnRun] = param("pretrain.anns")
    pipelines: dict[str, PipelineRun] = param("pretrain.pipelines")
    baselines: dict[str, BaselineRun] = param("pretrain.baselines")


# ---- the table ------------------------------------------------------------------

DELAY_RUNS = Matrix(
    (("dataset", "delays.datasets"), ("variant", "delays.variants"), ("seed", "delays.seeds"))
)
DELAY_RUN_DIR = "{dataset}/{variant}/s{seed}"
PARAMS_OK = "data/params.ok"

STAGES: list[Stage] = [
    Stage(
        "check_params",
        "pipeline.drivers.preflight:check_params",
        CheckConfig,
        "Validate params.yaml (schema, names, data roots) before any stage runs; its output never changes.",
        inputs={
            "params_file": In("params.yaml", arg=False),
            "schema": In("workflow/schemas/params.schema.yaml", arg=False),
        },
        outputs={"out": Out(PARAMS_OK)},
        drivers=("dvc",),
    ),  # Snakemake does these checks when it reads the Snakefile
    # ---- paper B: learnable delays ----
    Stage(
        "delays_synth",
        "pipeline.delays.data_stages:synth",
        DelaysSynthConfig,
        "Embedded spiking dataset in SHD's HDF5 layout; classes differ only in spike timing.",
        outputs={"out": Out("data/raw/delays_synth", dir=True)},
    ),
    Stage(
        "delays_prepare",
        "pipeline.delays.data_stages:prepare",
        DelaysPrepareConfig,
        "SHD/SSC HDF5 or GSC wav -> 10 ms frames, one memory-mappable store per split.",
        fanout=Each("dataset", "delays.sets"),
        inputs={"root": In("{dataset.data.root}", arg=False, root=True)},
        outputs={"out": Out("data/prepared/delays/{dataset}", dir=True)},
    ),
    Stage(
        "delays_train",
        "pipeline.delays.stages:train",
        DelaysTrainConfig,
        "Train one (dataset, variant, seed): no_delay, fixed_delay or learned_delay.",
        fanout=DELAY_RUNS,
        inputs={"data": In("data/prepared/delays/{dataset}")},
        outputs={
            "ckpt": Out(f"models/delays/{DELAY_RUN_DIR}", dir=True),
            "live": Out(f"results/delays/train/{DELAY_RUN_DIR}", dir=True, cache=False),
        },
        gpus=True,
    ),
    Stage(
        "delays_evaluate",
        "pipeline.delays.stages:evaluate",
        DelaysEvaluateConfig,
        "Test accuracy with rounded integer delays, and the delay distributions.",
        fanout=DELAY_RUNS,
        inputs={
            "data": In("data/prepared/delays/{dataset}"),
            "ckpt": In(f"models/delays/{DELAY_RUN_DIR}"),
            "live": In(f"results/delays/train/{DELAY_RUN_DIR}"),
        },
        # not a DVC metrics file: results/metrics.json summarises them (dvc exp show: a column per table cell)
        outputs={"out": Out(f"results/delays/eval/{DELAY_RUN_DIR}.json", cache=False)},
    ),
    # ---- paper A: pretraining as a bridge ----
    Stage(
        "images_embedded",
        "pipeline.pretrain.data_stages:images_embedded",
        DigitsConfig,
        "scikit-learn's digits (real 8x8 scans) as an ImageNet-style ImageFolder.",
        outputs={"out": Out("data/raw/digits_images", dir=True)},
    ),
    Stage(
        "es_imagenet_convert",
        "pipeline.pretrain.data_stages:es_imagenet_convert",
        EsConvertConfig,
        "Images -> ES-ImageNet's event format (9-offset path, threshold 0.18).",
        inputs={"images": In("data/raw/digits_images")},
        outputs={"out": Out("data/raw/digits_es", dir=True)},
    ),
    Stage(
        "motion_embedded",
        "pipeline.pretrain.data_stages:motion_embedded",
        MotionConfig,
        "Moving-digit clips as UCF101-style RGB frame folders; the class is the digit and its direction.",
        outputs={"out": Out("data/raw/motion_frames", dir=True)},
    ),
    Stage(
        "es_ucf101_convert",
        "pipeline.pretrain.data_stages:es_ucf101_convert",
        UcfConvertConfig,
        "Frame folders -> ES-UCF101's event format (per-clip thresholds, 7.5 % of pixels per polarity).",
        inputs={"frames": In("data/raw/motion_frames")},
        outputs={"out": Out("data/raw/motion_events", dir=True)},
    ),
    Stage(
        "pretrain_index",
        "pipeline.pretrain.index:index",
        IndexConfig,
        "Check a dataset's layout; record its root, classes and split sizes.",
        fanout=Each("dataset", "pretrain.datasets"),
        inputs={"root": In("{dataset.root}", arg=False, root=True)},
        outputs={"out": Out("data/prepared/pretrain/{dataset}.json")},
    ),
    Stage(
        "pretrain_ann",
        "pipeline.pretrain.train_stages:pretrain_ann",
        AnnConfig,
        "Pretrain the sharpened-ReLU ANN twin.",
        fanout=Each("ann", "pretrain.anns"),
        # `weights`: the run's file (docs/papers.md, External ANN weights); under DVC a changed file at the
        # same path needs `dvc repro -f -s pretrain_ann@<run>` (In.optional)
        inputs={
            "data": In("data/prepared/pretrain/{ann.dataset}.json"),
            "weights": In("{ann.weights}", arg=False, optional=True),
        },
        outputs={
            "ckpt": Out("models/pretrain/ann/{ann}.pt"),
            "live": Out("results/pretrain/ann/{ann}", dir=True, cache=False),
        },
        gpus=True,
    ),
    Stage(
        "transfer",
        "pipeline.pretrain.transfer:transfer",
        TransferConfig,
        "Load the pretrained ANN into the SNN twin name for name (stem adapted or new for event input).",
        fanout=Each("pipe", "pretrain.pipelines"),
        inputs={"ann": In("models/pretrain/ann/{pipe.ann}.pt")},
        outputs={
            "out": Out("models/pretrain/transfer/{pipe}.pt"),
            "report": Out("results/pretrain/transfer/{pipe}.json", cache=False),
        },
    ),
    Stage(
        "finetune_snn",
        "pipeline.pretrain.train_stages:finetune_snn",
        FinetuneConfig,
        "Fine-tune the transferred SNN on the pipeline's target dataset.",
        fanout=Each("pipe", "pretrain.pipelines"),
        inputs={
            "init": In("models/pretrain/transfer/{pipe}.pt"),
            "data": In("data/prepared/pretrain/{pipe.target}.json"),
        },
        outputs={
            "ckpt": Out("models/pretrain/finetune/{pipe}.pt"),
            "live": Out("results/pretrain/finetune/{pipe}", dir=True, cache=False),
        },
        gpus=True,
    ),
    Stage(
        "train_snn_scratch",
        "pipeline.pretrain.train_stages:train_snn_scratch",
        ScratchConfig,
        "The baseline: the same SNN trained from random initialisation.",
        fanout=Each("run", "pretrain.baselines"),
        inputs={"data": In("data/prepared/pretrain/{run.dataset}.json")},
        outputs={
            "ckpt": Out("models/pretrain/scratch/{run}.pt"),
            "live": Out("results/pretrain/scratch/{run}", dir=True, cache=False),
        },
        gpus=True,
    ),
    # ---- tables and plots ----
    Stage(
        "report",
        "pipeline.report.stages:report",
        ReportConfig,
        "Every run's metrics -> benchmark tables (markdown, HTML, CSV), plots and results/metrics.json.",
        inputs={
            "delays_eval": Gather("delays_evaluate", "out"),
            "delays_live": Gather("delays_train", "live"),
            "ann_live": Gather("pretrain_ann", "live"),
            "finetune_live": Gather("finetune_snn", "live"),
            "scratch_live": Gather("train_snn_scratch", "live"),
            "transfer": Gather("transfer", "report"),
        },
        outputs={
            "delays_md": Out("results/tables/delays.md", cache=False, arg=False),
            "delays_csv": Out("results/tables/delays.csv", cache=False, arg=False),
            "delays_html": Out("results/tables/delays.html", cache=False, arg=False, caption="delays.rst"),
            "pretrain_md": Out("results/tables/pretrain.md", cache=False, arg=False),
            "pretrain_csv": Out("results/tables/pretrain.csv", cache=False, arg=False),
            "pretrain_html": Out(
                "results/tables/pretrain.html", cache=False, arg=False, caption="pretrain.rst"
            ),
            "delays_training": Out(
                "results/plots/delays_training.png", cache=False, arg=False, caption="delays_training.rst"
            ),
            "delays_distribution": Out(
                "results/plots/delays_distribution.png",
                cache=False,
                arg=False,
                caption="delays_distribution.rst",
            ),
            "pretrain_time": Out(
                "results/plots/pretrain_time_accuracy.png",
                cache=False,
                arg=False,
                caption="pretrain_time_accuracy.rst",
            ),
            "metrics": Out("results/metrics.json", cache=False, metric=True),
            "curves": Out("results/curves", dir=True, cache=False),
        },
        args={"tables": "results/tables", "plots": "results/plots"},
    ),
]

# CLI commands that are not pipeline stages: "module:function".
COMMANDS: dict[str, str] = {
    "compare": "pipeline.report.compare:compare",
    "experiments": "pipeline.report.experiments:experiments",
    "apply_preset": "pipeline.params.presets:apply_preset",
    "fetch_data": "pipeline.data.fetch_command:fetch_data",
    "config": "pipeline.drivers.show:config",
    "dvc_yaml": "pipeline.drivers.dvc:write_dvc_yaml",
    "schema": "pipeline.params.schema:write_schema",
    "param_comments": "pipeline.params.schema:write_param_comments",
}

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}


def stage(name: str) -> Stage:
    if name not in BY_NAME:
        raise KeyError(f"unknown stage '{name}' (stages: {', '.join(BY_NAME)})")
    return BY_NAME[name]
