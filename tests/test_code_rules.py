"""Rules of the code base that a reviewer would otherwise check by hand."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

MAX_FUNCTION_LINES = 80


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(f, ast.parse(f.read_text(), str(f))) for f in sorted((REPO / "pipeline").rglob("*.py"))]


def test_no_function_is_over_80_lines() -> None:
    long = [
        f"{f.relative_to(REPO)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
        for f, tree in _modules()
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_no_module_imports_another_modules_private_names() -> None:
    private = [
        f"{f.relative_to(REPO)}:{n.lineno} from {n.module} import {a.name}"
        for f, tree in _modules()
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("pipeline")
        for a in n.names
        if a.name.startswith("_")
    ]
    assert private == []
