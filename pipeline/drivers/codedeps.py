"""The source files a stage runs: the static import closure of its module.

Both drivers list these as the stage's code dependencies, so editing a module
reruns exactly the stages that import it (directly or not, at module level or
inside a function). Computed from the code itself, never typed by hand.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = "pipeline"
REPO = Path(__file__).resolve().parents[2]
# Every stage starts through these (`python -m pipeline <stage>`).
ENTRY_MODULES = ("pipeline.__main__", "pipeline.drivers.cli")
# Data both drivers read directly; its effect on a stage is the stage's command, inputs, outputs and
# params, which the drivers track themselves (see the module docstring of pipeline/drivers/stage_table.py).
NOT_CODE_DEPS = ("pipeline/drivers/stage_table.py",)


def module_file(module: str, repo: Path = REPO) -> Path:
    base = repo / Path(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


@functools.lru_cache(maxsize=None)
def _imports(path: Path) -> tuple[str, ...]:
    """Project modules imported anywhere in one file (`from pkg import name` may name a module)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            found.append(node.module)
            found += [f"{node.module}.{a.name}" for a in node.names]
    return tuple(found)


def import_closure(module: str, repo: Path = REPO) -> set[str]:
    """Repo-relative files `module` runs: its file, its packages' __init__.py and everything it imports."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        mod = todo.pop()
        parts = mod.split(".")
        todo += [
            ".".join(parts[:i]) for i in range(1, len(parts))
        ]  # importing a.b.c runs a/ and a/b/ __init__
        path = module_file(mod, repo)
        if not path.is_file():
            continue  # `from pkg import function`: not a module
        rel = path.relative_to(repo).as_posix()
        if rel in seen:
            continue
        seen.add(rel)
        todo += _imports(path)
    return seen


def code_deps(module: str, repo: Path = REPO) -> list[str]:
    """Sorted code dependencies of a stage whose function lives in `module`."""
    files: set[str] = set()
    for mod in (*ENTRY_MODULES, module):
        files |= import_closure(mod, repo)
    return sorted(files - set(NOT_CODE_DEPS))
