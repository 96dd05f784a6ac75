"""What the Snakefile needs to turn the stage table into rules.

Snakemake resolves the parameters (params.yaml, then `--configfile` presets,
then `--config` values, each merged over the previous), so the stages must
compute with exactly that merged config: `checked_config()` validates it once and
writes it to RESOLVED_PARAMS, which every rule's command passes with `--params`
(one path: a path that changed with the values would change every command, and
Snakemake would rerun every job). A copy named by the content's hash is written
beside it and never rewritten; each job's log names it in the command to rerun
the job exactly (pipeline/run/logs.py). Each rule also lists the values of the keys its stage reads as
`params:`, so Snakemake reruns exactly the jobs whose values changed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from pipeline.drivers.codedeps import code_deps
from pipeline.params.load import ParamsError, deep_merge, dump_yaml, load_schema, read_yaml, typed_strings
from pipeline.drivers.preflight import run_problems
from pipeline.drivers.stage_table import STAGES, stage
from pipeline.drivers.stage_spec import (
    TEMPLATE,
    Gather,
    In,
    Stage,
    command,
    dependency_keys,
    expand,
    expand_optional,
    lookup,
    needed_jobs,
    output_paths,
)

# The schema's `name` pattern, unanchored (Snakemake anchors wildcard constraints itself).
NAME_PATTERN = load_schema()["$defs"]["name"]["pattern"].strip("^$")
RESOLVED_PARAMS = Path(".snakemake/pipeline/params.yaml")
SNAKEMAKE_OPTIONS = f"--params {RESOLVED_PARAMS} --progress lines"  # the only difference from DVC's commands


def fail(message: str) -> None:
    """Stop Snakemake with `message` (no traceback) and exit code 2, as the CLI does for bad input."""
    print(message if message.startswith("error:") else f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def checked_config(
    cli_config: Mapping[str, Any], presets: Sequence[str] = (), params_file: str = "params.yaml"
) -> dict[str, Any]:
    """params.yaml with the command line's config (presets, --config) merged over it, fully checked
    (schema, names, the data roots the runs use) and written to RESOLVED_PARAMS for the stages.
    `presets`: the --configfile files, repeated in the fetch command a missing root's message gives."""
    try:
        # Snakemake read the presets as YAML 1.1 and --config mappings as strings: numbers become numbers
        merged = typed_strings(deep_merge(read_yaml(params_file), dict(cli_config)))
    except ParamsError as err:
        fail(str(err))
    source = f"{params_file} + command-line config" if cli_config else params_file
    problems = run_problems(merged, source=source, presets=[_relative(p) for p in presets], needed_only=True)
    if problems:
        fail("\n".join(f"error: {p}" for p in problems))
    text = dump_yaml(merged)
    from pipeline.io import write_text
    from pipeline.run.logs import snapshot_of

    if not snapshot_of(RESOLVED_PARAMS, text).is_file():  # never rewritten: logs name it
        write_text(snapshot_of(RESOLVED_PARAMS, text), text)
    if not RESOLVED_PARAMS.is_file() or RESOLVED_PARAMS.read_text() != text:  # jobs on other nodes re-read it
        write_text(RESOLVED_PARAMS, text)
    return merged


def _relative(path: str | Path) -> str:
    """A path as the user would type it from the working directory."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _needs_lookup(template: str) -> bool:
    return any(m.group(2) for m in TEMPLATE.finditer(template))


@dataclass
class RuleSpec:
    input: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    log: str = ""
    shell: str = ""
    wildcard_constraints: dict[str, str] = field(default_factory=dict)
    threads: int = 1


def _input(st: Stage, inp: In | Gather, config: Mapping[str, Any]) -> Any:
    if isinstance(inp, Gather):
        return output_paths(stage(inp.stage), inp.output, config)
    if inp.optional:  # e.g. an ANN run's weights file: an input of the jobs whose entry names one
        return lambda wc: expand_optional(st, inp.path, config, dict(wc.items()))
    if _needs_lookup(inp.path):
        return lambda wc: expand(st, inp.path, config, dict(wc.items()))
    return inp.path


def _key_value(st: Stage, key: str, config: Mapping[str, Any]) -> Callable[[Any], Any]:
    return lambda wc: lookup(config, expand(st, key, config, dict(wc.items())))


def rule_spec(
    st: Stage, config: Mapping[str, Any], directory: Callable, report: Callable, cores: int
) -> RuleSpec:
    """Inputs, outputs, params, threads, log and command of the rule of `st` (Snakemake's `directory` and
    `report` passed in; `cores`: what `threads: 0`, torch's default of every core, stands for)."""
    spec = RuleSpec()
    for name, inp in st.inputs.items():
        spec.input[name] = _input(st, inp, config)
    spec.input["code"] = code_deps(st.module)
    for name, out in st.outputs.items():
        path = directory(out.path) if out.dir else out.path
        spec.output[name] = (
            report(path, caption=f"../report/{out.caption}", category="Results") if out.caption else path
        )
    for i, key in enumerate(dependency_keys(st)):
        spec.params[
            f"p{i}_" + "".join(c if c.isalnum() else "_" for c in key.replace("{", "").replace("}", ""))
        ] = _key_value(st, key, config)
    if any(f == "runtime" for f, _, _ in st.keys()):  # computes on the device: one GPU per process
        processes = int(config["nproc"]) if st.gpus else 1
        nodes = int(config.get("nnodes", 1)) if st.gpus else 1
        if nodes > 1:  # a launcher per node (pipeline/run/distributed.py); SLURM's --gres counts per node
            spec.resources.update(nodes=nodes, gres=f"gpu:{processes}")
        else:
            spec.resources["gpu"] = processes
        # The CLI sets torch's threads to `threads` in each process: Snakemake schedules that many cores.
        spec.threads = processes * (int(config["threads"]) or cores)
    spec.resources.update(_cluster_resources(st, config))
    spec.log = st.log
    # A target path can only name a job whose wildcards are valid names (seeds: digits).
    spec.wildcard_constraints = {w: (r"\d+" if w == "seed" else NAME_PATTERN) for w in st.wildcards}

    def render(kind: str, name: str, template: str) -> str:
        # `:q` makes Snakemake shell-quote each value when it formats the command.
        return {
            "wildcard": f"{{wildcards.{name}:q}}",
            "input": f"{{input.{name}:q}}",
            "output": f"{{output.{name}:q}}",
            "log": "{log:q}",
        }[kind]

    # Several jobs share the console: plain progress lines, not live bars.
    spec.shell = command(st, render).replace(
        "python -m pipeline ", f"python -m pipeline {SNAKEMAKE_OPTIONS} ", 1
    )
    return spec


def _cluster_resources(st: Stage, config: Mapping[str, Any]) -> dict[str, Any]:
    """params' `resources` of this stage: the `default` entry, overridden key by key by the entry of the job's
    dataset or run (its first wildcard). A stage without entries gets the profile's default-resources.
    delays_prepare of a gsc-format set whose own entry has no mem_mb requests what its feature workers need:
    they are one per CPU, so the measured model of the CPUs (cpus_per_task) sizes it, not the default's
    mem_mb (sized for SHD/SSC, whose prepare is one process)."""
    table = config.get("resources", {}).get(st.name, {})
    default = table.get("default", {})
    if not st.wildcards:
        return dict(default)

    def of_job(key: str) -> Callable[[Any], Any]:
        def value(wc: Any) -> Any:
            name = getattr(wc, st.wildcards[0])
            own = table.get(name, {})
            job = {**default, **own}  # the schema requires mem_mb and cpus_per_task in default
            fmt = config.get("delays", {}).get("sets", {}).get(name, {}).get("data", {}).get("format")
            if key == "mem_mb" and st.name == "delays_prepare" and fmt == "gsc" and key not in own:
                from pipeline.data.gsc import prepare_memory_mb  # imports torch: only for the jobs it sizes

                return prepare_memory_mb(int(job["cpus_per_task"]))
            return job[key]

        return value

    return {key: of_job(key) for key in default}


def snakemake_stages() -> list[Stage]:
    return [st for st in STAGES if "snakemake" in st.drivers]


def all_targets(config: Mapping[str, Any]) -> list[str]:
    """The default target: every output of every job the report needs (the runs and what they read), so a
    dataset defined but used by no run is neither prepared nor required."""
    needed = needed_jobs(snakemake_stages(), config, final="report")
    return sorted({expand(st, o.path, config, w) for st, w in needed for o in st.outputs.values()})
