# Helpers shared by the rule files: output paths and the source files each
# stage runs (listed as inputs so a code change reruns exactly its stages;
# dvc.yaml lists the same files as deps).

DELAYS = config.get("delays", {})
PRETRAIN = config.get("pretrain", {})

SHARED_CODE = [
    "pipeline/__init__.py",
    "pipeline/__main__.py",
    "pipeline/cli.py",
    "pipeline/io.py",
    "pipeline/params.py",
    "pipeline/runtime.py",
    "pipeline/tracking.py",
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
def delays_runs():
    """(dataset, variant, seed) triples the configuration asks for."""
    return [
        (d, v, s)
        for d in DELAYS.get("datasets", [])
        for v in DELAYS.get("variants", [])
        for s in DELAYS.get("seeds", [])
    ]


def delays_eval_files():
    return [f"results/delays/eval/{d}/{v}/s{s}.json" for d, v, s in delays_runs()]


def delays_live_dirs():
    return [f"results/delays/train/{d}/{v}/s{s}" for d, v, s in delays_runs()]


def delays_root(wildcards):
    return DELAYS["sets"][wildcards.dataset]["root"]


# ---- paper A: pretraining bridge -----------------------------------------
def pretrain_pipelines():
    return list(PRETRAIN.get("pipelines", {}))


def pretrain_root(name):
    return PRETRAIN["datasets"][name]["root"]


def pretrain_live_dirs():
    return (
        [f"results/pretrain/ann/{d}" for d in PRETRAIN.get("ann_datasets", [])]
        + [f"results/pretrain/finetune/{p}" for p in pretrain_pipelines()]
        + [f"results/pretrain/scratch/{d}" for d in PRETRAIN.get("scratch_datasets", [])]
    )
