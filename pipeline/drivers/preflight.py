"""Checks before a run: parameters and data roots, for both drivers.

Snakemake runs them when it reads the Snakefile (pipeline/drivers/snakemake.py);
DVC through the check_params stage, which every other stage depends on, so a
bad parameter file stops `dvc repro` before DVC deletes any output. A missing
data root is explained with what to put there and where it comes from, every
missing root at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from pipeline.params.load import raise_problems, read_yaml, structure_problems


def missing_roots(
    params: Mapping[str, Any], presets: Sequence[str] = (), needed_only: bool = False
) -> list[str]:
    """One message per dataset root that does not exist and that no stage writes: what to put there, where it
    comes from and the command that fetches it (with `presets`, the preset files that define it).
    `needed_only`: only the roots the runs use (Snakemake prepares only what its targets need); otherwise
    every dataset defined, as DVC's foreach over the definitions prepares them all."""
    from pipeline.data.fetch import describe
    from pipeline.drivers.stage_spec import In, expand, jobs, needed_jobs, output_paths
    from pipeline.drivers.stage_table import STAGES

    written = {p for st in STAGES for name in st.outputs for p in output_paths(st, name, params)}
    todo = [(st, w) for st in STAGES for w in jobs(st, params)]  # in the table's order: stable messages
    if needed_only:
        needed = {
            (st.name, tuple(sorted(w.items()))) for st, w in needed_jobs(STAGES, params, final="report")
        }
        todo = [(st, w) for st, w in todo if (st.name, tuple(sorted(w.items()))) in needed]
    out: list[str] = []
    for st, wildcards in todo:
        for inp in st.inputs.values():
            if not (isinstance(inp, In) and inp.root):
                continue
            root = expand(st, inp.path, params, wildcards)
            if root in written or Path(root).exists():
                continue
            fmt = expand(st, inp.path.replace(".root}", ".format}"), params, wildcards)
            name = next(iter(wildcards.values()))
            hint = describe(fmt, name, presets=presets)
            out.append(f"{root}: data root of dataset '{name}' ({fmt}) does not exist. {hint}")
    return out


def run_problems(
    params: Mapping[str, Any], source: str = "params", presets: Sequence[str] = (), needed_only: bool = False
) -> list[str]:
    """Every problem that stops a run: structure and names first, then the data roots."""
    return structure_problems(params, source) or missing_roots(params, presets, needed_only)


def check_params(*, params_path: Path = Path("params.yaml"), out: Path) -> None:
    """Check params.yaml completely (schema, names, data roots); write `out`, whose content never changes,
    so the stages depending on it rerun only for their own keys."""
    from pipeline.io import write_text

    raise_problems(run_problems(read_yaml(params_path), source=str(params_path)))
    write_text(out, "params.yaml checked: schema, names and data roots\n")
