"""`python -m pipeline config <stage>@<job>`: the config a job computes with, as YAML.

The values come from the function the CLI runs a stage with (pipeline/drivers/resolve.py
build_config), on params.yaml with any `--preset` files deep-merged over it as Snakemake merges
`--configfile` presets (and as `apply_preset` writes them for DVC). Job ids are DVC's, as
`dvc stage list` prints them: `<stage>@<name>` for a stage that fans out over a mapping
(`finetune_snn@pipeS`), `<stage>@<v1>-<v2>-...` for a matrix (`delays_train@synth-learned_delay-0`),
the bare name for a stage without fan-out. As with `dvc repro`, the bare name of a stage that fans
out stands for all its jobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml

from pipeline.params.load import ParamsError
from pipeline.params.presets import merged_params


class _FlowListDumper(yaml.SafeDumper):
    """Lists of scalars on one line ([2, 4, 6, 8]), mappings as blocks."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(not isinstance(v, (list, dict)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_FlowListDumper.add_representer(list, _represent_list)


def resolve_jobs(params: Mapping[str, Any], selector: str) -> dict[str, dict[str, Any]]:
    """The jobs a selector names (`stage@job`, or a stage: its one job, or all its jobs), by id, as
    their config (plain data); an unknown stage or job is one error line listing what exists."""
    from pipeline.drivers.stage_spec import job_id, job_wildcards, jobs
    from pipeline.drivers.stage_table import BY_NAME
    from pipeline.params.configs import to_dict
    from pipeline.drivers.resolve import build_config

    name, at, _ = selector.partition("@")
    if name not in BY_NAME:
        raise ParamsError(f"unknown stage '{name}' (stages: {', '.join(BY_NAME)})")
    st = BY_NAME[name]
    chosen = (
        {selector: job_wildcards(st, params, selector)}
        if at
        else {job_id(name, w): w for w in jobs(st, params)}
    )
    return {job: to_dict(build_config(st, params, w)) for job, w in chosen.items()}


def config(job: str, *, params_path: Path = Path("params.yaml"), preset: list[Path] = []) -> None:  # noqa: B006 (never mutated; a list gives the CLI its nargs)
    """Print the config a job computes with (the values its stage resolves), as YAML.
    JOB as `dvc stage list` prints it (finetune_snn@pipeS, delays_train@synth-learned_delay-0); a stage's
    name gives all its jobs. --preset FILE... merges presets over the params file, as Snakemake's
    --configfile does."""
    configs = resolve_jobs(merged_params(params_path, list(preset)), job)
    print(yaml.dump(configs, Dumper=_FlowListDumper, sort_keys=False, default_flow_style=False), end="")
