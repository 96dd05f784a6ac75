"""One stage table drives both drivers and the CLI: dvc.yaml is generated from it (and current), the
two DAGs agree, code dependencies are the real import closure, every stage names its keys."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path

import yaml

from pipeline.drivers.cli import import_target, stage_options
from pipeline.drivers.codedeps import code_deps, import_closure
from pipeline.drivers.dvc import render
from pipeline.params.load import load_params
from pipeline.drivers.resolve import build_config
from pipeline.drivers.stage_table import STAGES
from pipeline.drivers.stage_spec import jobs
from tests.conftest import REPO, copy_project, run
from tests.dag import compare_dags, dvc_stages, snakemake_jobs


def test_committed_dvc_yaml_is_generated_from_the_table() -> None:
    assert (REPO / "dvc.yaml").read_text() == render(), "dvc.yaml is stale: run `python -m pipeline dvc_yaml`"


def test_a_hand_edit_of_dvc_yaml_is_caught(tmp_path: Path) -> None:
    work = copy_project(tmp_path)
    (work / "dvc.yaml").write_text(
        (work / "dvc.yaml").read_text().replace("--out data/raw/digits_es", "--out x", 1)
    )
    proc = run(["python", "-m", "pipeline", "dvc_yaml", "--check"], cwd=work, check=False)
    assert proc.returncode == 1 and "differs from the stage table" in proc.stderr


def test_snakemake_and_dvc_agree() -> None:
    smk, dvc = snakemake_jobs(REPO), dvc_stages(REPO)
    assert len(smk) + 1 == len(dvc) > 30  # + check_params, DVC's stand-in for Snakemake's start-up checks
    assert compare_dags(smk, dvc) == []


def test_agreement_holds_for_other_params(tmp_path: Path) -> None:
    """The run lists in params drive both drivers' fan-out the same way."""
    work = copy_project(tmp_path)
    p = yaml.safe_load((work / "params.yaml").read_text())
    p["delays"]["seeds"] = [3]
    p["delays"]["variants"] = ["learned_delay"]
    del p["pretrain"]["pipelines"]["pipeU"]
    (work / "params.yaml").write_text(yaml.safe_dump(p))
    smk, dvc = snakemake_jobs(work), dvc_stages(work)
    assert compare_dags(smk, dvc) == []
    assert {j.cmd for j in smk if j.name == "delays_train"} == {
        "python -m pipeline delays_train --dataset synth --variant learned_delay --seed 3"
        " --data data/prepared/delays/synth"
        " --ckpt models/delays/synth/learned_delay/s3 --live results/delays/train/synth/learned_delay/s3"
        " --log logs/delays_train/synth_learned_delay_3.log"
    }
    assert sorted(j.cmd.split("--pipe ")[1].split()[0] for j in smk if j.name == "transfer") == [
        "pipeD",
        "pipeS",
    ]


def test_the_help_lists_every_stage_and_command() -> None:
    out = run(["python", "-m", "pipeline", "--help"], cwd=REPO).stdout
    assert all(f"  {st.name} " in out for st in STAGES)
    assert all(f"  {name} " in out for name in ("compare", "apply_preset", "fetch_data", "dvc_yaml"))


def test_code_dependencies_are_the_import_closure() -> None:
    """A function-level import counts; modules a stage never imports do not."""
    prepare = set(code_deps("pipeline.delays.data_stages"))
    assert (
        "pipeline/data/shd.py" in prepare and "pipeline/data/gsc.py" in prepare
    )  # imported inside prepare()
    assert not any(f.startswith("pipeline/models/") for f in prepare)  # a model edit never re-prepares data
    train = set(code_deps("pipeline.delays.stages"))
    assert {"pipeline/models/delay_snn.py", "pipeline/delays/train.py"} <= train
    assert (
        "pipeline/drivers/stage_table.py" not in train
    )  # data both drivers read directly (see its docstring)
    assert (
        import_closure("pipeline.pretrain.data_stages")
        & {"pipeline/pretrain/train.py", "pipeline/models/resnet_twins.py"}
        == set()
    )


def test_every_stage_function_takes_its_config_and_options() -> None:
    for st in STAGES:
        fn = import_target(st.run)
        names = list(inspect.signature(fn).parameters)
        if st.name == "check_params":
            continue
        hints = typing.get_type_hints(fn)
        assert hints[names[0]] is st.config, f"{st.name}: first parameter must be typed {st.config.__name__}"
        assert names[1:] == stage_options(st), f"{st.name}: options {names[1:]} != table {stage_options(st)}"


def test_every_job_builds_its_config_from_the_default_params() -> None:
    params = load_params(REPO / "params.yaml")
    for st in STAGES:
        for wildcards in jobs(st, params):
            cfg = build_config(st, params, wildcards)
            assert [f.name for f in dataclasses.fields(cfg)] == [name for name, _, _ in st.keys()], st.name


def test_a_stage_sees_only_its_declared_keys() -> None:
    params = load_params(REPO / "params.yaml")
    prepare = next(s for s in STAGES if s.name == "delays_prepare")
    cfg = build_config(prepare, params, {"dataset": "synth"})
    assert [f.name for f in dataclasses.fields(cfg)] == ["data", "max_skipped_fraction"]
    assert not hasattr(cfg.data, "dropout")  # training keys live under delays.sets.<set>.train


def test_what_resolves_a_config_is_a_code_dependency_of_every_stage() -> None:
    """A change to how a job's config is resolved (merging, template expansion) reruns every stage."""
    resolving = import_closure("pipeline.drivers.resolve")
    assert "pipeline/drivers/stage_spec.py" in resolving
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, entry in stages.items():
        if name == "check_params":
            continue
        deps = set((entry.get("do") or entry)["deps"])
        assert resolving <= deps, f"{name} lacks {sorted(resolving - deps)}"


def test_a_changed_command_template_changes_the_dvc_command_and_a_stale_one_is_refused() -> None:
    """DVC's job commands hold no arguments: their --form hash of the stage's command template changes the
    command (so DVC reruns the jobs) when an option or path template does, and `job` refuses a stale one."""
    from pipeline.drivers.job import form, job_argv
    from pipeline.drivers.stage_table import stage
    from pipeline.params.load import ParamsError

    train = stage("delays_train")
    extra = dataclasses.replace(train, args={**train.args, "note": "x"})
    assert form(extra) != form(train)
    job = "delays_train@synth-learned_delay-0"
    argv = job_argv(["--params", str(REPO / "params.yaml"), job, "--form", form(train)])
    assert argv[:3] == ["delays_train", "--params", str(REPO / "params.yaml")] and "--variant" in argv
    try:
        job_argv(["--params", str(REPO / "params.yaml"), job, "--form", form(extra)])
    except ParamsError as err:
        assert "python -m pipeline dvc_yaml" in str(err)
    else:
        raise AssertionError("a stale --form was accepted")
