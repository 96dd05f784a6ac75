from __future__ import annotations

import os
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


def call_stage(name: str, params: dict, **args):
    """Run a pipeline stage in-process as the CLI would: its config built from `params` for the job's
    wildcards."""
    from pipeline.drivers.cli import import_target
    from pipeline.drivers.resolve import build_config
    from pipeline.drivers.stage_table import stage

    st = stage(name)
    return import_target(st.run)(build_config(st, params, {w: args[w] for w in st.wildcards}), **args)
