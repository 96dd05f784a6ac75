# Helpers shared by the rule files: output paths and the source files each
# stage runs (listed as inputs so a code change reruns exactly its stages;
# dvc.yaml lists the same files as deps).

# The report stage finds its inputs through the same functions.
from pipeline import paths

DELAYS = config.get("delays", {})
PRETRAIN = config.get("pretrain", {})

# The entry point every stage runs through.
SHARED_CODE = [
    "pipeline/__init__.py",
    "pipeline/__main__.py",
    "pipeline/cli.py",
    "pipeline/io.py",
    "pipeline/params.py",
    "pipeline/runtime.py",
]
# Per stage family: the modules its stage functions import (tests/test_code_deps.py
# checks these lists against the real import graph).
DELAYS_DATA_CODE = [
    "pipeline/data/__init__.py",
    "pipeline/data/gsc.py",
    "pipeline/data/prepared.py",
    "pipeline/data/shd.py",
    "pipeline/data/synth_shd.py",
    "pipeline/delays/__init__.py",
    "pipeline/delays/data_stages.py",
    "pipeline/distributed.py",
]
DELAYS_TRAIN_CODE = DELAYS_DATA_CODE + [
    "pipeline/delays/stages.py",
    "pipeline/delays/train.py",
    "pipeline/models/__init__.py",
    "pipeline/models/delay_snn.py",
    "pipeline/models/fast_lif.py",
    "pipeline/models/gauss_kernel.py",
    "pipeline/models/spectral_conv.py",
    "pipeline/tracking.py",
    "pipeline/checks.py",
    "pipeline/precision.py",
    "pipeline/resume.py",
]
PRETRAIN_CODE = [
    "pipeline/data/__init__.py",
    "pipeline/data/batching.py",
    "pipeline/data/digits.py",
    "pipeline/data/es_imagenet.py",
    "pipeline/data/es_ucf101.py",
    "pipeline/data/images.py",
    "pipeline/models/__init__.py",
    "pipeline/models/resnet_twins.py",
    "pipeline/models/spiking.py",
    "pipeline/pretrain/__init__.py",
    "pipeline/pretrain/stages.py",
    "pipeline/pretrain/train.py",
    "pipeline/pretrain/transfer.py",
    "pipeline/tracking.py",
    "pipeline/checks.py",
    "pipeline/distributed.py",
    "pipeline/precision.py",
    "pipeline/resume.py",
]
PRETRAIN_INDEX_CODE = PRETRAIN_CODE + ["pipeline/pretrain/index.py"]
REPORT_CODE = [
    "pipeline/delays/__init__.py",
    "pipeline/delays/plots.py",
    "pipeline/delays/table.py",
    "pipeline/models/__init__.py",
    "pipeline/models/delay_snn.py",
    "pipeline/models/fast_lif.py",
    "pipeline/models/gauss_kernel.py",
    "pipeline/models/spectral_conv.py",
    "pipeline/paths.py",
    "pipeline/pretrain/__init__.py",
    "pipeline/pretrain/plots.py",
    "pipeline/pretrain/table.py",
    "pipeline/report/__init__.py",
    "pipeline/report/compare.py",
    "pipeline/report/stages.py",
]


def code(*files):
    """The shared entry-point modules plus the given stage modules."""
    return SHARED_CODE + list(files)


wildcard_constraints:
    seed=r"\d+",
    variant="no_delay|fixed_delay|learned_delay",
    dataset=r"[A-Za-z0-9_]+",
    pipe=r"[A-Za-z0-9_]+",


# ---- paper B: learnable delays -------------------------------------------
def delays_eval_files():
    return [str(paths.delays_eval(*run)) for run in paths.delays_runs(config)]


def delays_live_dirs():
    return [str(paths.delays_live(*run)) for run in paths.delays_runs(config)]


# ---- paper A: pretraining bridge -----------------------------------------
def pretrain_pipelines():
    return list(PRETRAIN.get("pipelines", {}))


def pretrain_live_dirs():
    return [str(d) for d in paths.pretrain_live_dirs(config)]


def prepared_data():
    """Every defined dataset is prepared (as dvc.yaml's foreach does)."""
    return [f"data/prepared/delays/{d}" for d in DELAYS.get("sets", {})] + [
        f"data/prepared/pretrain/{d}.json" for d in PRETRAIN.get("datasets", {})
    ]
