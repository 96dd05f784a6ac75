"""Names from params never reach a shell: both drivers refuse unsafe names before running anything, and
quoted paths keep a data root with spaces and `;` one argument."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run
from tests.project_copy import copy_project
from tests.tiny_data import write_random_h5

INJECTIONS = ["d$(touch PWNED)", "d;touch PWNED;echo", "d`touch PWNED`", ".hidden", "-flag", "a b"]


def _params() -> dict:
    with open(REPO / "params.yaml") as f:
        return yaml.safe_load(f)


def _with_ann(name: str) -> dict:
    """Default params with the pipelines' ANN run renamed to `name`."""
    p = _params()
    pre = p["pretrain"]
    pre["anns"][name] = pre["anns"].pop("digits")
    for pipe in pre["pipelines"].values():
        if pipe["ann"] == "digits":
            pipe["ann"] = name
    return p


@pytest.mark.parametrize("name", INJECTIONS)
def test_the_schema_refuses_unsafe_names_in_one_line(name: str) -> None:
    from pipeline.params.load import structure_problems

    for where in ("anns", "baselines", "datasets", "pipelines"):
        p = _params()
        block = p["pretrain"][where]
        block[name] = copy.deepcopy(next(iter(block.values())))
        problems = structure_problems(p)
        assert any(
            f"name {name!r} is not allowed" in line and f"pretrain.{where}" in line for line in problems
        ), problems
    p = _params()
    p["delays"]["datasets"] = [name]
    assert any(f"name {name!r} is not allowed" in line for line in structure_problems(p))
    p = _params()
    sets = p["delays"]["sets"]
    sets[name] = copy.deepcopy(next(iter(sets.values())))
    problems = structure_problems(p)
    assert any(f"name {name!r} is not allowed" in line and "delays.sets" in line for line in problems)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("names"), commit=True)


def _set_params(work: Path, params: dict) -> None:
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _no_pwned(work: Path) -> None:
    assert not list(work.rglob("PWNED")) and not (work.parent / "PWNED").exists(), "a name ran in a shell"


def test_snakemake_refuses_an_injected_run_name_and_runs_nothing(project: Path) -> None:
    name = "d$(touch PWNED)"
    _set_params(project, _with_ann(name))
    proc = run(
        ["snakemake", f"models/pretrain/ann/{name}.pt", "--cores", "1", "--config", "max_epochs=1"],
        project,
        check=False,
        timeout=300,
    )
    assert proc.returncode != 0
    assert f"name {name!r} is not allowed" in proc.stderr
    _no_pwned(project)


def test_a_target_path_with_an_unsafe_name_matches_no_rule(project: Path) -> None:
    _set_params(project, _params())
    proc = run(
        ["snakemake", "models/pretrain/ann/d$(touch PWNED).pt", "--cores", "1", "-n"],
        project,
        check=False,
        timeout=300,
    )
    assert proc.returncode != 0 and "MissingRuleException" in proc.stdout + proc.stderr
    _no_pwned(project)


def test_dvc_refuses_an_injected_run_name_and_runs_nothing(project: Path) -> None:
    name = "d;touch PWNED;echo"
    _set_params(project, _with_ann(name))
    proc = run(["dvc", "repro", f"pretrain_ann@{name}"], project, check=False, timeout=300)
    assert proc.returncode != 0
    assert f"name {name!r} is not allowed" in proc.stdout + proc.stderr
    _no_pwned(project)


def test_dvc_repro_single_stage_skips_check_params_and_still_runs_no_name(project: Path) -> None:
    """`dvc repro -s` runs one job without check_params: its command holds no name for a shell to read
    (a quote in the name would close any quoting), and `job` refuses the name in one line."""
    name = "x';touch PWNED;'"
    _set_params(project, _params())
    run(["dvc", "repro", "delays_synth"], project, timeout=300)  # its inputs exist, as after any run
    p = _params()
    p["delays"]["sets"][name] = p["delays"]["sets"]["synth"]
    _set_params(project, p)
    proc = run(["dvc", "repro", "-s", f"delays_prepare@{name}"], project, check=False, timeout=300)
    assert proc.returncode != 0
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error:")]
    assert len(ours) == 1 and f"name {name!r} is not allowed" in ours[0], proc.stdout + proc.stderr
    _no_pwned(project)


def test_a_data_root_with_spaces_and_a_semicolon_works_under_both_drivers(project: Path) -> None:
    root = project / "raw data" / "shd; x"
    root.mkdir(parents=True)
    write_random_h5(root / "shd_train.h5", 24, seed=0)
    write_random_h5(root / "shd_test.h5", 9, seed=1)
    p = _params()
    p["delays"]["sets"]["odd"] = {
        "data": {**p["delays"]["sets"]["synth"]["data"], "root": "raw data/shd; x"},
        "train": p["delays"]["sets"]["synth"]["train"],
    }
    _set_params(project, p)
    run(["snakemake", "--cores", "1", "data/prepared/delays/odd"], project, timeout=300)
    assert (project / "data/prepared/delays/odd").is_dir()
    run(["dvc", "repro", "delays_prepare@odd"], project, timeout=300)
    assert (project / "logs/delays_prepare/odd.log").is_file()
    _no_pwned(project)
