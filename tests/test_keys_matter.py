"""Every parameter key a training stage declares changes its result, or the test says why it cannot.

The stage table (pipeline/drivers/stage_table.py) makes each declared key a dependency of the stage's
jobs: edit it and both drivers rerun the job. A key that changes nothing reruns jobs for nothing (as
`delays.recipe.lr` did while OneCycleLR overwrote it, and the SNN's decay did for the ANN). For
delays_train, train_snn_scratch and pretrain_ann, every leaf under the stage's dependency keys
(pipeline/drivers/stage_spec.py dependency_keys) is set to another valid value, a tiny job runs
in-process, and its history or checkpoint must differ from the unperturbed run's. A key declared
`param(..., rerun=False)` is not a dependency and is not perturbed; the keys that cannot change a tiny CPU
run are listed below, each with the reason.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest
import torch

from pipeline.drivers.stage_spec import dependency_keys, expand, lookup
from pipeline.drivers.stage_table import stage
from pipeline.params.load import load_params, raise_problems, structure_problems
from tests.conftest import REPO, call_stage

CUDA = torch.cuda.is_available()
RUNTIME_CHANGES = {"amp": "bf16", **({"device": "cuda"} if CUDA else {})}  # the tiny runs use device: cpu
RUNTIME_UNCHANGED = {
    "device": None if CUDA else "the only other device, cuda, is missing on this machine",
    "threads": "the CLI sets torch's threads before it calls the stage (pipeline/drivers/cli.py)",
    "nproc": "2 needs torchrun and two processes (tests/test_distributed.py runs data-parallel training)",
    "nnodes": "above 1 needs a SLURM allocation of several nodes",
}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the CLI sets for `threads: 1`: the same results, and fast on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def leaves(params: Mapping[str, Any], key: str) -> list[str]:
    """Dotted paths of the scalars and lists under `key` (a list is one value: `hidden: [64, 64]`)."""
    value = lookup(params, key)
    if isinstance(value, Mapping):
        return [leaf for k in value for leaf in leaves(params, f"{key}.{k}")]
    return [key]


def declared_leaves(name: str, params: Mapping[str, Any], wildcards: Mapping[str, Any]) -> list[str]:
    st = stage(name)
    keys = [expand(st, key, params, wildcards) for key in dependency_keys(st)]
    return [leaf for key in keys for leaf in leaves(params, key)]


def changed(params: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(params)
    *parents, last = key.split(".")
    node = out
    for part in parents:
        node = node[part]
    assert node[last] != value, f"{key}: the perturbed value must differ"
    node[last] = value
    raise_problems(structure_problems(out))  # another *valid* value
    return out


def outcome(live: Path, ckpt: Path) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    """The run's history (timings left out) and its last model weights."""
    rows = json.loads((live / "history.json").read_text())
    history = [{k: v for k, v in row.items() if k != "elapsed_s"} for row in rows]
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    return history, state["state_dict"] if "state_dict" in state else state["model"]  # paper B's, paper A's


def same(a: tuple[list, dict], b: tuple[list, dict]) -> bool:
    return a[0] == b[0] and a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


def check_every_key(
    params: dict[str, Any],
    stage_name: str,
    wildcards: dict[str, Any],
    changes: dict[str, Any],
    unchanged: dict[str, str | None],
    train: Callable[[dict[str, Any], Path], tuple],
) -> None:
    """Each declared leaf is either perturbed (`changes`) or listed with its reason (`unchanged`), and each
    perturbation changes what `train(params, out_dir)` returns."""
    declared = declared_leaves(stage_name, params, wildcards)
    listed = {k for k, why in unchanged.items() if why}
    assert sorted(set(declared) - listed) == sorted(changes), "every declared key is perturbed or explained"
    base = train(params, Path("base"))
    assert same(base, train(params, Path("base_again"))), "the tiny run must be deterministic"
    inert = [
        key for key, value in changes.items() if same(base, train(changed(params, key, value), Path(key)))
    ]
    assert inert == [], f"declared keys that did not change the run: {inert}"


# ---- paper B: delays_train ------------------------------------------------------------------------------

SET = "delays.sets.synth.train"
DELAYS_CHANGES = {
    f"{SET}.max_delay_ms": 30,  # K 5 -> 3
    f"{SET}.hidden": [9],
    f"{SET}.tau_ms": 20.0,
    f"{SET}.dropout": 0.2,
    f"{SET}.epochs": 3,
    f"{SET}.batch_size": 12,
    "delays.recipe.lr": 2e-3,
    "delays.recipe.weight_decay": 1e-2,
    "delays.variant_recipe.learned_delay.lr_positions": 0.05,
    "delays.variant_recipe.learned_delay.sigma_final": 0.5,
    "delays.recipe.eval_batch_size": 5,  # the valid loss is summed over other batches
    "max_epochs": 1,
    **RUNTIME_CHANGES,
}


@pytest.fixture(scope="module")
def delays_data(tmp_path_factory) -> tuple[dict[str, Any], Path]:
    """Tiny params (2 epochs, so that max_epochs can cut one) and the synth set written and prepared once."""
    tmp = tmp_path_factory.mktemp("keys_delays")
    p = copy.deepcopy(load_params(REPO / "params.yaml"))
    p["device"] = "cpu"
    d = p["delays"]
    d["synth"].update(n_units=40, n_classes=4, n_groups=3, n_train=48, n_test=16, onset_max_ms=30.0)
    d["sets"]["synth"]["data"].update(root=str(tmp / "raw"), pool=4, n_channels=40, valid_fraction=0.25)
    d["sets"]["synth"]["train"].update(hidden=[8], epochs=2, batch_size=16, max_delay_ms=50)
    d["recipe"]["eval_batch_size"] = 32
    raise_problems(structure_problems(p))
    call_stage("delays_synth", p, out=tmp / "raw")
    call_stage("delays_prepare", p, dataset="synth", out=tmp / "prep")
    return p, tmp


def test_every_delays_train_key_changes_the_run(delays_data) -> None:
    params, tmp = delays_data
    jobs = {"dataset": "synth", "variant": "learned_delay", "seed": 0}  # the variant that reads every key

    def train(p: dict[str, Any], name: Path) -> tuple:
        out = tmp / "runs" / name
        call_stage("delays_train", p, **jobs, data=tmp / "prep", ckpt=out / "ckpt", live=out / "live")
        return outcome(out / "live", out / "ckpt" / "last.pt")

    check_every_key(params, "delays_train", jobs, DELAYS_CHANGES, RUNTIME_UNCHANGED, train)


# ---- paper A: train_snn_scratch ---------------------------------------------------------------------

SCRATCH_CHANGES = {
    "pretrain.seed": 1,
    "max_epochs": 1,
    **RUNTIME_CHANGES,
    "pretrain.datasets.digits.image_size": 10,
    "pretrain.datasets.digits.augment": True,
    "pretrain.datasets.digits.normalize": True,
    "pretrain.model.arch": "resnet18",
    "pretrain.model.width": 3,
    "pretrain.model.stem": "imagenet",
    "pretrain.snn.neuron": "liaf",
    "pretrain.snn.learnable_decay": True,
    "pretrain.snn.decay": 0.5,
    "pretrain.snn.threshold": 0.6,
    "pretrain.snn.time_steps": 3,
    "pretrain.scratch.epochs": 3,
    "pretrain.scratch.batch_size": 128,
    "pretrain.scratch.optimizer": "adam",
    "pretrain.scratch.lr": 0.05,
    "pretrain.scratch.lr_reference_batch": 128,
    "pretrain.scratch.momentum": 0.5,
    "pretrain.scratch.weight_decay": 0.01,
    "pretrain.scratch.schedule": "constant",
}
SCRATCH_UNCHANGED = {
    **RUNTIME_UNCHANGED,
    "pretrain.baselines.digits.dataset": "names another dataset, whose data come as another --data input",
    "pretrain.datasets.digits.format": "another format needs other data and its own keys",
    "pretrain.datasets.digits.num_classes": "must equal the classes of the data: another value is refused",
    "pretrain.datasets.digits.root": "the job reads its data from --data (pretrain_index's output)",
    "pretrain.datasets.digits.in_memory": "where decoded samples are kept (RAM or disk), not what",
    "pretrain.num_workers": "processes that load samples; which samples in which order: the seeded sampler",
    "max_skipped_fraction": "a limit on unreadable files; the tiny data have none",
    "pretrain.model.decoder_hidden": "only the video twin (ucf101 formats) has the recurrent decoder",
    "pretrain.scratch.milestones": "read by the multistep schedule only; the recipe's schedule is cosine",
    "pretrain.scratch.gamma": "read by the multistep schedule only; the recipe's schedule is cosine",
}


@pytest.fixture(scope="module")
def digits_data(tmp_path_factory) -> tuple[dict[str, Any], Path]:
    """Tiny paper-A params (the digits baseline, 2 epochs) and the digits images written once."""
    tmp = tmp_path_factory.mktemp("keys_scratch")
    p = copy.deepcopy(load_params(REPO / "params.yaml"))
    p["device"] = "cpu"
    pre = p["pretrain"]
    pre["model"].update(width=2, decoder_hidden=8)
    pre["snn"]["time_steps"] = 2
    pre["datasets"]["digits"].update(image_size=8, root=str(tmp / "img"))
    pre["scratch"].update(epochs=2, batch_size=256)
    pre["ann"].update(epochs=2, batch_size=256, sharpen_epochs=4)
    raise_problems(structure_problems(p))
    call_stage("images_embedded", p, out=tmp / "img")
    return p, tmp


def test_every_train_snn_scratch_key_changes_the_run(digits_data) -> None:
    params, tmp = digits_data

    def train(p: dict[str, Any], name: Path) -> tuple:
        out = tmp / "runs" / name
        call_stage(
            "train_snn_scratch", p, run="digits", data=tmp / "img", ckpt=out / "ckpt.pt", live=out / "live"
        )
        return outcome(out / "live", out / "ckpt.pt")

    check_every_key(params, "train_snn_scratch", {"run": "digits"}, SCRATCH_CHANGES, SCRATCH_UNCHANGED, train)


# ---- paper A: pretrain_ann ----------------------------------------------------------------------------

ANN_CHANGES = {  # the scratch run's changes, with the ANN's recipe block and the one neuron key it reads
    **{k: v for k, v in SCRATCH_CHANGES.items() if not k.startswith(("pretrain.snn.", "pretrain.scratch."))},
    **{
        k.replace("pretrain.scratch.", "pretrain.ann."): v
        for k, v in SCRATCH_CHANGES.items()
        if k.startswith("pretrain.scratch.")
    },
    "pretrain.ann.sharpen_epochs": 1,
    "pretrain.snn.threshold": 0.6,  # the sharpened ReLU's ceiling and the BN init
}
ANN_UNCHANGED = {
    **{
        k: why
        for k, why in SCRATCH_UNCHANGED.items()
        if not k.startswith(("pretrain.baselines.", "pretrain.scratch."))
    },
    "pretrain.anns.digits.dataset": "names another dataset, whose data come as another --data input",
    "pretrain.ann.milestones": "read by the multistep schedule only; the recipe's schedule is cosine",
    "pretrain.ann.gamma": "read by the multistep schedule only; the recipe's schedule is cosine",
}


def test_every_pretrain_ann_key_changes_the_run(digits_data) -> None:
    """The ANN declares only the neuron key it reads (threshold): a change of decay, neuron or time steps
    retrains no ANN."""
    params, tmp = digits_data

    def train(p: dict[str, Any], name: Path) -> tuple:
        out = tmp / "ann_runs" / name
        call_stage("pretrain_ann", p, ann="digits", data=tmp / "img", ckpt=out / "ckpt.pt", live=out / "live")
        return outcome(out / "live", out / "ckpt.pt")

    check_every_key(params, "pretrain_ann", {"ann": "digits"}, ANN_CHANGES, ANN_UNCHANGED, train)


# ---- paper A: finetune_snn ----------------------------------------------------------------------------

FINETUNE_CHANGES = {
    "pretrain.seed": 1,
    "max_epochs": 1,
    **RUNTIME_CHANGES,
    "pretrain.datasets.digits.image_size": 10,
    "pretrain.datasets.digits.augment": True,
    "pretrain.datasets.digits.normalize": True,
    "pretrain.finetune.epochs": 3,
    "pretrain.finetune.batch_size": 128,
    "pretrain.finetune.optimizer": "adam",
    "pretrain.finetune.lr": 0.05,
    "pretrain.finetune.lr_reference_batch": 128,
    "pretrain.finetune.momentum": 0.5,
    "pretrain.finetune.weight_decay": 0.01,
    "pretrain.finetune.schedule": "cosine",
    "pretrain.finetune.milestones": [],
    "pretrain.finetune.gamma": 0.5,
    "pretrain.finetune.frozen_warmup_epochs": 1,
}
FINETUNE_UNCHANGED = {
    **{
        k: why
        for k, why in SCRATCH_UNCHANGED.items()
        if k.startswith("pretrain.datasets.") or k in RUNTIME_UNCHANGED
    },
    "pretrain.num_workers": SCRATCH_UNCHANGED["pretrain.num_workers"],
    "max_skipped_fraction": SCRATCH_UNCHANGED["max_skipped_fraction"],
    "pretrain.pipelines.pipeS.ann": "names the ANN, whose transfer comes as the --init input",
    "pretrain.pipelines.pipeS.stem": "read by the transfer, whose output comes as the --init input",
    "pretrain.pipelines.pipeS.target": "names another dataset, whose data come as another --data input",
    "pretrain.pipelines.pipeS.baseline": (
        "recorded in the run's config.json, where the report reads which scratch run the pipeline is "
        "compared with: that output changes, the training does not"
    ),
}


def test_every_finetune_snn_key_changes_the_run(digits_data) -> None:
    params, tmp = digits_data
    p = copy.deepcopy(params)
    p["pretrain"]["finetune"].update(epochs=2, milestones=[1], batch_size=256)
    init = tmp / "pipeS_init.pt"
    ann = tmp / "pipeS_ann"
    call_stage("pretrain_ann", p, ann="digits", data=tmp / "img", ckpt=ann / "ckpt.pt", live=ann / "live")
    call_stage("transfer", p, pipe="pipeS", ann=ann / "ckpt.pt", out=init, report=tmp / "pipeS_transfer.json")

    def train(q: dict[str, Any], name: Path) -> tuple:
        out = tmp / "finetune_runs" / name
        call_stage(
            "finetune_snn",
            q,
            pipe="pipeS",
            init=init,
            data=tmp / "img",
            ckpt=out / "ckpt.pt",
            live=out / "live",
        )
        return outcome(out / "live", out / "ckpt.pt")

    check_every_key(p, "finetune_snn", {"pipe": "pipeS"}, FINETUNE_CHANGES, FINETUNE_UNCHANGED, train)
