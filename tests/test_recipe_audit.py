"""The recipe audit (docs/papers.md, "Recipe audit") holds both papers' presets to the authors' code.

The audit's tables are the one statement of the authors' values; this test reads them. For every table it
compares, row by row, the preset column with what `python -m pipeline config` shows for each job the table
names, and the authors column with the preset column, which must be equal unless the row gives the reason
for a deviation (and then must differ). The configs are those of each preset merged over a params.yaml
whose runs of the same names differ in every key the preset states: a preset run computes with its own
recipe whatever params.yaml's entry of that name holds.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import re
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal

import pytest
import yaml

from pipeline.params import configs
from tests.conftest import REPO, run

AUDIT_DOC = REPO / "docs" / "papers.md"
SECTION = "## Recipe audit"
PRESETS = ("workflow/presets/paper-pretrain.yaml", "workflow/presets/paper-delays.yaml")
# every table has these rows (the settings the audit is about); a table may have more
REQUIRED_ROWS = [
    "optimizer",
    "lr @ batch",
    "momentum",
    "weight decay",
    "schedule",
    "epochs",
    "batch",
    "time steps",
    "input",
    "model",
]
# paper A's runs by kind: (the stage training them, {block of the run: (stage showing it, config section)})
PRETRAIN_RUNS = {
    "anns": ("pretrain_ann", {"model": ("pretrain_ann", "model"), "ann": ("pretrain_ann", "recipe")}),
    "baselines": (
        "train_snn_scratch",
        {
            "model": ("train_snn_scratch", "model"),
            "snn": ("train_snn_scratch", "snn"),
            "scratch": ("train_snn_scratch", "recipe"),
        },
    ),
    "pipelines": ("finetune_snn", {"snn": ("transfer", "snn"), "finetune": ("finetune_snn", "recipe")}),
}
BLOCK_CLASSES = {
    "model": configs.ModelParams,
    "snn": configs.SnnParams,
    "ann": configs.AnnRecipe,
    "scratch": configs.Recipe,
    "finetune": configs.FinetuneRecipe,
    "data": configs.DelaysData,
    "train": configs.DelaysNet,
}
# the stages whose jobs a preset's top-level section defines
STAGES = {
    "pretrain": ["pretrain_ann", "transfer", "finetune_snn", "train_snn_scratch"],
    "delays": ["delays_prepare", "delays_train"],
}


@dataclasses.dataclass
class Table:
    preset: str
    jobs: list[str]  # job ids or fnmatch patterns
    rows: dict[str, tuple[str, str, str]]  # setting -> (authors, preset, deviation)


def audit_tables(text: str) -> list[Table]:
    """The audit's tables: `### ... `<preset file>`` names the preset of the tables below it, `#### `<job>``
    the jobs of the next table (columns: setting | authors | source | preset | deviation)."""
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    tables: list[Table] = []
    preset = ""
    for line in section.splitlines():
        if line.startswith("### "):
            preset = (re.findall(r"`(workflow/presets/[\w.-]+\.yaml)`", line) or [""])[0]
        elif line.startswith("#### "):
            tables.append(Table(preset, re.findall(r"`([^`]+)`", line), {}))
        elif line.startswith("| ") and tables and not re.match(r"\|\s*(setting|-+)\s*\|", line):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            assert len(cells) == 5, f"audit row with {len(cells)} cells: {line}"
            setting, authors, _source, preset_value, deviation = cells
            tables[-1].rows[setting] = (authors, preset_value, deviation)
    return tables


# ---- what a job computes with, in the audit's words -----------------------------------------------------


def _g(x: float) -> str:
    return f"{x:g}"


def _schedule(r: dict[str, Any]) -> str:
    if r["schedule"] == "multistep":
        return f"multistep {r['milestones']} x {_g(r['gamma'])}"
    if r["schedule"] == "cosine":
        return f"cosine to 0 over {r['epochs']} epochs"
    return r["schedule"]


def recipe_cells(r: dict[str, Any]) -> dict[str, str]:
    cells = {
        "optimizer": r["optimizer"],
        "lr @ batch": f"{_g(r['lr'])} @ {r['lr_reference_batch']}",
        "momentum": _g(r["momentum"]) if r["optimizer"] == "sgd" else "adam betas 0.9, 0.999",
        "weight decay": _g(r["weight_decay"]),
        "schedule": _schedule(r),
        "epochs": str(r["epochs"]),
        "batch": str(r["batch_size"]),
    }
    if "frozen_warmup_epochs" in r:
        cells["frozen warm-up"] = f"{r['frozen_warmup_epochs']} epochs"
    return cells


STEMS = {"imagenet": "7x7/2 conv + 3x3/2 max pool", "small": "3x3/1 conv"}
AUGMENT = {True: "random-resized crop + flip", False: "none"}  # the event and frame formats have none


def _steps_and_size(
    dataset: dict[str, Any], model: dict[str, Any], snn: dict[str, Any] | None
) -> tuple[Any, str]:
    from pipeline.data.es_imagenet import N_STEPS

    fmt = dataset["format"]
    if model["arch"] == "crnn":  # the crnn takes the first `steps` of every clip, resized to input_size
        return model["steps"] or "all of the clip", "x".join(map(str, model["input_size"]))
    if fmt == "imagefolder":
        return (1 if snn is None else snn["time_steps"]), f"{dataset['image_size']}x{dataset['image_size']}"
    if fmt == "es_imagenet":
        crop = dataset["canvas"] - 2 * dataset["margin"]
        return N_STEPS, f"{crop}x{crop}"
    return dataset.get("n_frames", "all of the clip"), f"{dataset.get('height')}x{dataset.get('width')}"


def data_cells(dataset: dict[str, Any], model: dict[str, Any], snn: dict[str, Any] | None) -> dict[str, str]:
    """Time steps, input, augmentation, model and neuron of a paper-A job (snn None: the ANN)."""
    crnn = model["arch"] == "crnn"
    steps, size = _steps_and_size(dataset, model, snn)
    channels = 3 if dataset["format"] in ("imagefolder", "ucf101_frames") else 2
    arch = (
        f"crnn, width {model['width']}, lstm {model['decoder_hidden']}"
        if crnn
        else f"{model['arch']}, width {model['width']}, {STEMS[model['stem']]}"
    )
    cells = {
        "time steps": str(steps),
        "input": f"{channels}x{size}",
        "model": arch,
        "augmentation": AUGMENT[bool(dataset.get("augment"))],
    }
    if snn is not None:
        kind = "learnable" if snn["learnable_decay"] else "fixed"
        out = "" if snn["neuron"] == "lif" else (" (relu out)" if crnn else " (leaky relu 0.2 out)")
        cells["neuron"] = (
            f"{snn['neuron']}{out}, decay {snn['decay']:.4g} {kind}, threshold {_g(snn['threshold'])}"
        )
    return cells


def pretrain_cells(job: str, cfgs: dict[str, dict[str, Any]]) -> dict[str, str]:
    cfg = cfgs[job]
    stage, name = job.split("@")
    if stage == "pretrain_ann":  # the crnn ANN is a ReLU network (pipeline/pretrain/models.py): no sharpening
        act = (
            "relu"
            if cfg["model"]["arch"] == "crnn"
            else f"sharpened relu, S {cfg['recipe']['sharpen_epochs']}"
        )
        return {
            **recipe_cells(cfg["recipe"]),
            **data_cells(cfg["dataset"], cfg["model"], None),
            "activation": act,
        }
    if stage == "train_snn_scratch":
        return {**recipe_cells(cfg["recipe"]), **data_cells(cfg["dataset"], cfg["model"], cfg["snn"])}
    ann = cfgs[f"pretrain_ann@{cfg['pipeline']['ann']}"]  # the SNN has its ANN's topology
    snn = cfgs[f"transfer@{name}"]["snn"]
    return {**recipe_cells(cfg["recipe"]), **data_cells(cfg["target"], ann["model"], snn)}


def delays_cells(job: str, cfgs: dict[str, dict[str, Any]], seeds: list[str]) -> dict[str, str]:
    from pipeline.delays.train import PEAK_LR_FACTOR
    from pipeline.models.delay_snn import kernel_size

    dataset, _, seed = job.split("@")[1].split("-")
    # the delay positions' keys are the learned-delay job's (the other variants have none)
    learned = cfgs[f"delays_train@{dataset}-learned_delay-{seed}"]["positions"]
    net, r = cfgs[job]["net"], {**cfgs[job]["recipe"], **learned}
    data = cfgs[f"delays_prepare@{job.split('@')[1].split('-')[0]}"]["data"]
    k = kernel_size(net["max_delay_ms"], data["time_step_ms"])
    hidden = (
        f"{len(net['hidden'])} x {net['hidden'][0]}" if len(set(net["hidden"])) == 1 else str(net["hidden"])
    )
    epochs = net["epochs"]
    return {
        "optimizer": "adam",  # pipeline/delays/train.py: Adam for weights and BN, Adam for positions
        "lr @ batch": f"weights {_g(r['lr'])}, positions {_g(r['lr_positions'])} @ {net['batch_size']}",
        "momentum": "adam betas 0.9, 0.999, beta1 cycled 0.95-0.85 by onecycle",
        "weight decay": f"{_g(r['weight_decay'])} weights, 0 bn and positions",
        "schedule": (
            f"onecycle peak {_g(PEAK_LR_FACTOR * r['lr'])} per epoch, positions cosine to 0 over "
            f"{epochs} epochs"
        ),
        "delay width": f"{k // 2} to {_g(r['sigma_final'])} by epoch {epochs // 4}",
        "epochs": str(epochs),
        "batch": str(net["batch_size"]),
        "time steps": f"{_g(data['time_step_ms'])} ms bins",
        "input": f"{data['n_channels'] // data['pool']} channels",
        "model": f"{hidden}, K {k}, tau {_g(net['tau_ms'])} ms, dropout {_g(net['dropout'])}",
        "seeds": ", ".join(seeds),
        "model selection": (
            f"{_g(data['valid_fraction'])} of train held out"
            if data["valid_fraction"] > 0
            else "the dataset's validation split"
        ),
    }


# ---- params.yaml with hostile runs of the presets' names ------------------------------------------------


def _options(hint: Any) -> list[Any]:
    """The allowed values of a Literal field (Optional unwrapped), else []."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return list(typing.get_args(hint)) if typing.get_origin(hint) is Literal else []


def other_value(value: Any, hint: Any) -> Any:
    """A value of the field's type that differs from `value` (and stays valid for the schema)."""
    if options := [o for o in _options(hint) if o != value]:
        return options[0]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if 0 < value < 1 else value + 1
    if isinstance(value, list):
        return [x + 1 for x in value] if value else [1]
    return f"{value}_other"


def required_keys(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}


def hostile_block(block: dict[str, Any], cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {key: other_value(value, hints[key]) for key, value in block.items()}


def hostile_params(params: dict[str, Any], preset: dict[str, Any]) -> dict[str, Any]:
    """params.yaml plus, for every run the preset defines, an entry of the same name that differs from the
    preset's in every key the preset states."""
    hostile = copy.deepcopy(params)
    pre = preset.get("pretrain") or {}
    for kind, (_, blocks) in PRETRAIN_RUNS.items():
        for name, run_ in (pre.get(kind) or {}).items():
            entry = {k: (hostile_block(v, BLOCK_CLASSES[k]) if k in blocks else v) for k, v in run_.items()}
            entry.update({"dataset": "digits"} if "dataset" in run_ else {})
            if kind == "pipelines":
                entry.update(
                    ann=next(iter(params["pretrain"]["anns"])),
                    target="digits",
                    baseline=next(iter(params["pretrain"]["baselines"])),
                    stem="reinit" if run_["stem"] == "adapt" else "adapt",
                )
            hostile["pretrain"][kind][name] = entry
    for name, entry in ((preset.get("delays") or {}).get("sets") or {}).items():
        hostile["delays"]["sets"][name] = {k: hostile_block(v, BLOCK_CLASSES[k]) for k, v in entry.items()}
    return hostile


# ---- the configs, as the command shows them -------------------------------------------------------------


def job_configs(params_file: Path, preset: str, sections: list[str]) -> dict[str, dict[str, Any]]:
    """Every job of the stages of the preset's sections under params_file + preset, from
    `python -m pipeline --params FILE config <stage> --preset PRESET`."""
    out: dict[str, dict[str, Any]] = {}
    for stage in (s for section in sections for s in STAGES.get(section, [])):
        proc = run(
            ["python", "-m", "pipeline", "--params", str(params_file), "config", stage, "--preset", preset],
            cwd=REPO,
        )
        out.update(yaml.safe_load(proc.stdout))
    return out


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> dict[str, tuple[dict[str, Any], dict[str, dict[str, Any]]]]:
    """preset -> (its file's data, every job's config with the preset over hostile params)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    result = {}
    for preset in PRESETS:
        data = yaml.safe_load((REPO / preset).read_text())
        path = tmp_path_factory.mktemp("params") / "params.yaml"
        path.write_text(yaml.safe_dump(hostile_params(params, data), sort_keys=False))
        result[preset] = (data, job_configs(path, preset, list(data)))
    return result


def preset_jobs(preset: dict[str, Any], cfgs: dict[str, dict[str, Any]]) -> list[str]:
    """The jobs of the runs the preset defines (paper A's training runs, paper B's training jobs)."""
    pre = preset.get("pretrain") or {}
    jobs = [f"{stage}@{name}" for kind, (stage, _) in PRETRAIN_RUNS.items() for name in pre.get(kind) or {}]
    for name in (preset.get("delays") or {}).get("datasets") or []:
        jobs += [j for j in cfgs if j.startswith(f"delays_train@{name}-")]
    return jobs


def _matching(patterns: list[str], jobs: typing.Iterable[str]) -> list[str]:
    return [j for j in jobs if any(fnmatch.fnmatchcase(j, p) for p in patterns)]


# ---- the tests ------------------------------------------------------------------------------------------


def test_every_preset_run_computes_with_its_own_full_recipe(audited) -> None:
    """Every key of each run's model, neuron and recipe is stated in the preset, and is what the job computes
    with, although params.yaml holds runs of the same names that differ in every key."""
    for preset, (data, cfgs) in audited.items():
        pre = data.get("pretrain") or {}
        for kind, (_, blocks) in PRETRAIN_RUNS.items():
            for name, run_ in (pre.get(kind) or {}).items():
                for block, (stage, section) in blocks.items():
                    stated = run_.get(block) or {}
                    missing = required_keys(BLOCK_CLASSES[block]) - set(stated)
                    assert not missing, f"{preset}: {kind}.{name}.{block} does not state {sorted(missing)}"
                    shown = cfgs[f"{stage}@{name}"][section]
                    assert {k: shown[k] for k in stated} == stated, f"{preset}: {stage}@{name} {section}"
        for name, entry in ((data.get("delays") or {}).get("sets") or {}).items():
            train_job = _matching([f"delays_train@{name}-*"], cfgs)[0]
            for block, job, section in (
                ("data", f"delays_prepare@{name}", "data"),
                ("train", train_job, "net"),
            ):
                assert required_keys(BLOCK_CLASSES[block]) <= set(entry[block]), f"{preset}: {name}.{block}"
                assert {k: cfgs[job][section][k] for k in entry[block]} == entry[block], f"{preset}: {job}"


def _same(a: str, b: str) -> bool:
    """Cells equal up to spacing and the spelling of numbers (3e-2 = 0.03)."""

    def tokens(s: str) -> list[Any]:
        return [
            float(t) if re.fullmatch(r"-?\d+(\.\d+)?(e-?\d+)?", t) else t
            for t in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?|[^\s\d,]+|,", s.lower())
        ]

    return tokens(a) == tokens(b)


def check_table(table: Table, jobs: list[str], cells: Callable[[str], dict[str, str]]) -> list[str]:
    """What is wrong with one table, for the jobs it names."""
    if not jobs:
        return [f"{table.jobs}: no job of {table.preset} matches"]
    problems = [f"{table.jobs}: no row for {r}" for r in REQUIRED_ROWS if r not in table.rows]
    for job in jobs:
        shown = cells(job)
        for setting, (authors, preset, deviation) in table.rows.items():
            if setting not in shown:
                problems.append(f"{job}: the audit has a row '{setting}' the config cannot show")
            elif not _same(preset, shown[setting]):
                problems.append(
                    f"{job}: {setting}: the audit says '{preset}', the job computes with '{shown[setting]}'"
                )
            if not deviation and not _same(authors, preset):
                problems.append(f"{job}: {setting}: '{authors}' (authors) != '{preset}' (preset), no reason")
            if deviation and _same(authors, preset):
                problems.append(f"{job}: {setting}: a deviation is given, but the values are equal")
    return problems


def test_each_preset_follows_its_audit_table(audited) -> None:
    """Every run of both presets has a table; every table's preset cells are what its jobs compute with, and
    its authors cells equal them unless the row says why they cannot."""
    tables = audit_tables(AUDIT_DOC.read_text())
    assert {t.preset for t in tables} == set(audited), "one audit part per preset"
    problems: list[str] = []
    for preset, (data, cfgs) in audited.items():
        mine = [t for t in tables if t.preset == preset]
        covered = {j for t in mine for j in _matching(t.jobs, cfgs)}
        problems += [
            f"{preset}: {job} has no audit table" for job in preset_jobs(data, cfgs) if job not in covered
        ]
        for table in mine:
            jobs = _matching(table.jobs, cfgs)
            seeds = sorted({j.rsplit("-", 1)[1] for j in jobs if j.startswith("delays_train@")}, key=int)
            problems += check_table(
                table,
                jobs,
                lambda job: (
                    delays_cells(job, cfgs, seeds) if job.startswith("delays_") else pretrain_cells(job, cfgs)
                ),
            )
    assert not problems, "\n".join(problems)
