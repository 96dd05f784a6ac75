"""A temporary copy of the project to run the drivers in (the tests' and the benchmarks')."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def copy_project(dst: Path, params: dict[str, Any] | None = None, commit: bool = True) -> Path:
    """The project's tracked layout (code, rules, params) in dst, as a git work tree (DVC needs one).

    `params` replaces params.yaml; `commit` commits the copy (what the project's .gitignore ignores left out).
    The benchmarks' copies (benchmarks/project.py) come from here too."""
    names = [
        "Makefile",
        "Snakefile",
        "dvc.yaml",
        "pyproject.toml",
        "requirements.lock",
        ".dvcignore",
        ".gitignore",
    ] + (["params.yaml"] if params is None else [])
    for name in names:
        if (REPO / name).exists():
            shutil.copy2(REPO / name, dst / name)
    for name in ["pipeline", "workflow", "profiles", ".dvc"]:
        shutil.copytree(REPO / name, dst / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
    if params is not None:
        (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True, capture_output=True)
    if commit:
        commit_all(dst, "project copy")
    return dst


def commit_all(work: Path, message: str) -> None:
    """`git add -A` and commit, with an identity for machines without a git config."""
    git = ["git", "-c", "user.email=bench@localhost", "-c", "user.name=bench"]
    for cmd in (["add", "-A"], ["commit", "-qm", message]):
        subprocess.run(git + cmd, cwd=work, check=True, capture_output=True)
