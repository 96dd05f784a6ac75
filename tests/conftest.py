from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def run(
    cmd: list[str], cwd: Path, check: bool = True, timeout: float = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run a command with the venv's executables first on PATH (as `make` does), plus `env`."""
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}", **(env or {}))
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


@pytest.fixture
def params() -> dict:
    with open(REPO / "params.yaml") as f:
        return yaml.safe_load(f)


def copy_project(dst: Path, params: dict | None = None, commit: bool = False) -> Path:
    """A copy of the project's tracked layout (code, rules, params), without data or results; git-initialised.
    `params` replaces params.yaml; `commit` commits the copy."""
    from tests.project_copy import copy_project as copy_layout

    return copy_layout(dst, params, commit)


def tiny(params: dict) -> dict:
    """params.yaml's default pipeline at test sizes: one seed, small sets and models, 1-2 epochs."""
    d = params["delays"]
    d["seeds"] = [0]
    d["synth"].update(n_train=150, n_test=60)
    d["sets"]["synth"]["train"].update(epochs=2, hidden=[16, 16], batch_size=32)
    p = params["pretrain"]
    p["model"].update(width=4, decoder_hidden=16)
    p["motion"].update(clips_per_class_train=4, clips_per_class_val=2)
    for block in ("ann", "finetune", "scratch"):
        p[block]["epochs"] = 1
    p["finetune"]["milestones"] = [1]
    return params


@pytest.fixture(scope="session")
def ran_tiny_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny copy of the project after the README's main job, `make run` (Snakemake, then its outputs
    recorded in DVC), run once per session. Never changed by tests: each takes its own copy_ran_project."""
    params = tiny(yaml.safe_load((REPO / "params.yaml").read_text()))
    work = copy_project(tmp_path_factory.mktemp("ran_tiny"), params, commit=True).resolve()
    # -o venv: the test's own venv, never a new one
    run(["make", "-o", "venv", "run", f"VENV={VENV_BIN.parent}", "CORES=2"], cwd=work)
    return work


def copy_ran_project(src: Path, dst: Path) -> Path:
    """A copy of a project copy that has run (results, DVC's cache, Snakemake's metadata) in dst, checked to
    be up to date for both drivers at its new path. copytree keeps mtimes, which Snakemake compares; DVC's
    tmp (locks, queue state of the original) stays behind."""

    def dvc_tmp(directory: str, names: list[str]) -> list[str]:
        return ["tmp"] if Path(directory) == src / ".dvc" else []

    shutil.copytree(src, dst, symlinks=True, ignore=dvc_tmp, dirs_exist_ok=True)
    proc = run(["snakemake", "-n", "--cores", "1"], cwd=dst)
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-4000:]
    assert "Data and pipelines are up to date" in run(["dvc", "status"], cwd=dst).stdout
    return dst


def call_stage(name: str, params: dict, **args):
    """Run a pipeline stage in-process as the CLI would: its config built from `params` for the job's
    wildcards."""
    from pipeline.drivers.cli import import_target
    from pipeline.drivers.resolve import build_config
    from pipeline.drivers.stage_table import stage

    st = stage(name)
    return import_target(st.run)(build_config(st, params, {w: args[w] for w in st.wildcards}), **args)
