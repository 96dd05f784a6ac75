"""Snakemake's start-up checks ask only for the data the runs use, and say how to fetch what is missing
with a command that carries the preset defining it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import run
from tests.project_copy import copy_project
from tests.tiny_data import write_random_h5

PRESET = "workflow/presets/paper-delays.yaml"
TARGET = "results/delays/eval/shd/learned_delay/s0.json"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    work = copy_project(tmp_path_factory.mktemp("preflight"), commit=True)
    (work / "small.yaml").write_text(yaml.safe_dump({"delays": {"datasets": ["shd"]}}))
    return work


def test_a_missing_root_names_the_fetch_command_with_its_preset(project: Path) -> None:
    proc = run(
        ["snakemake", "-n", "--cores", "1", TARGET, "--configfile", PRESET, "small.yaml"],
        project,
        check=False,
        timeout=300,
    )
    assert proc.returncode != 0
    assert f"python -m pipeline fetch_data shd --preset {PRESET} small.yaml" in proc.stderr
    assert "data/raw/ssc" not in proc.stderr and "data/raw/gsc" not in proc.stderr  # not used by the run


def test_fetching_only_shd_is_enough_to_run_shd(project: Path) -> None:
    root = project / "data/raw/shd"
    root.mkdir(parents=True, exist_ok=True)
    write_random_h5(root / "shd_train.h5", 20, seed=0)
    write_random_h5(root / "shd_test.h5", 8, seed=1)
    proc = run(
        ["snakemake", "-n", "--cores", "1", TARGET, "--configfile", PRESET, "small.yaml"],
        project,
        timeout=300,
    )
    assert "delays_prepare" in proc.stdout and "ssc" not in proc.stdout
    # the default target too: every job the runs need, and no other set's preparation
    plan = run(
        ["snakemake", "-n", "--cores", "1", "--configfile", PRESET, "small.yaml"], project, timeout=300
    )
    assert "data/prepared/delays/shd" in plan.stdout and "data/prepared/delays/ssc" not in plan.stdout


def test_the_readmes_config_commands_as_typed(project: Path) -> None:
    """Every `python -m pipeline config` line of the README prints the job's resolved config."""
    from tests.conftest import REPO

    lines = [
        line.split("  #", 1)[0].strip()
        for line in (REPO / "README.md").read_text().splitlines()
        if line.startswith("python -m pipeline config ")
    ]
    assert lines
    for command in lines:
        job = command.split()[4]
        shown = yaml.safe_load(run(["bash", "-c", command], project, timeout=300).stdout)[job]
        assert shown["recipe"]["lr"] > 0 and shown["net"]["epochs"] >= 100, shown  # the preset's paper scale
