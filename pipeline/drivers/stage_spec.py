"""The vocabulary stages are declared in, and how their templates expand against parameters.

A stage (Stage) names the function that runs it, its fan-out over datasets or
runs (Each, Matrix), its inputs (In, Gather), outputs (Out) and the parameter
keys its config class reads (`param`, Key). Path and key templates use `{w}`
for a fan-out wildcard and `{w.field}` for a field of the params entry the
wildcard names (`{pipe.target}` is pretrain.pipelines[pipe].target).

Code every stage runs (pipeline/drivers/resolve.py expands a job's keys with
it), so it is among every stage's code dependencies; the declarations
themselves live in pipeline/drivers/stage_table.py.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

# ---- declarations -------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """A parameter a stage reads. `override`: a per-run block deep-merged over it when present.
    `rerun` False: read but not a dependency, because it cannot change the outputs."""

    path: str
    override: str | None = None
    rerun: bool = True


def param(path: str, *, override: str | None = None, rerun: bool = True) -> Any:
    """A config-class field read from `path` in params.yaml."""
    return field(metadata={"key": Key(path, override, rerun)})


RUNTIME_KEYS = ("device", "threads", "nproc", "nnodes", "amp")


def runtime() -> Any:
    """The Runtime block: top-level keys."""
    return field(metadata={"key": Key("", None, True), "keys": RUNTIME_KEYS})


@dataclass(frozen=True)
class Each:
    """One job per key of a mapping (or item of a list) at `source`."""

    wildcard: str
    source: str


@dataclass(frozen=True)
class Matrix:
    """One job per combination of the lists at the given paths."""

    axes: tuple[tuple[str, str], ...]  # (wildcard, dotted path of a list)


@dataclass(frozen=True)
class In:
    """An input path. `arg`: passed to the stage as --<name>. `root`: a dataset root the user provides
    (unless a stage writes it), checked and explained before anything runs. `optional`: a path a run's entry
    may leave out (`{ann.weights}`): an input of the jobs whose entry sets it, under Snakemake only (a DVC
    stage's deps are the same for every item of its foreach)."""

    path: str
    arg: bool = True
    root: bool = False
    optional: bool = False


@dataclass(frozen=True)
class Gather:
    """Every `output` of every job of `stage` (the report reads all runs)."""

    stage: str
    output: str


@dataclass(frozen=True)
class Out:
    """An output. `cache` False: small, tracked by git (metrics, tables) instead of the DVC cache."""

    path: str
    dir: bool = False
    cache: bool = True
    metric: bool = False
    arg: bool = True
    caption: str | None = None  # Snakemake report: caption file under workflow/report/, category "Results"


@dataclass(frozen=True)
class Stage:
    name: str
    run: str  # "module:function"
    config: type
    doc: str
    fanout: Each | Matrix | None = None
    inputs: Mapping[str, In | Gather] = field(default_factory=dict)
    outputs: Mapping[str, Out] = field(default_factory=dict)
    args: Mapping[str, str] = field(default_factory=dict)  # constant options
    gpus: bool = False  # trains: one GPU per data-parallel process
    drivers: tuple[str, ...] = ("snakemake", "dvc")

    @property
    def module(self) -> str:
        return self.run.split(":")[0]

    @property
    def wildcards(self) -> list[str]:
        if isinstance(self.fanout, Each):
            return [self.fanout.wildcard]
        if isinstance(self.fanout, Matrix):
            return [w for w, _ in self.fanout.axes]
        return []

    @property
    def log(self) -> str:
        """Path template of the job's log (every stage writes one, under both drivers)."""
        return (
            f"logs/{self.name}/" + "_".join("{" + w + "}" for w in self.wildcards) + ".log"
            if self.wildcards
            else f"logs/{self.name}.log"
        )

    def keys(self) -> list[tuple[str, Key, tuple[str, ...]]]:
        """(config field, key, top-level keys for the runtime block) of every declared parameter."""
        return [
            (f.name, f.metadata["key"], f.metadata.get("keys", ())) for f in dataclasses.fields(self.config)
        ]


# ---- resolving templates against parameters ---------------------------------------

TEMPLATE = re.compile(r"\{([A-Za-z_]\w*)((?:\.\w+)*)\}")
MISSING = object()


def lookup(params: Mapping[str, Any], path: str, default: Any = MISSING) -> Any:
    """The value at a dotted path ("delays.sets.synth.data"); `default` if absent (else KeyError)."""
    node: Any = params
    for part in path.split(".") if path else []:
        if not isinstance(node, Mapping) or part not in node:
            if default is MISSING:
                raise KeyError(path)
            return default
        node = node[part]
    return node


def _field_of(st: Stage, params: Mapping[str, Any], wildcard: str, value: str, fields: list[str]) -> Any:
    """Field `fields` of the params entry the wildcard names (`{pipe.target}`:
    pretrain.pipelines[pipe].target)."""
    if not (isinstance(st.fanout, Each) and st.fanout.wildcard == wildcard):
        raise KeyError(
            f"{st.name}: {{{wildcard}.{'.'.join(fields)}}} needs a fan-out Each('{wildcard}', ...)"
        )
    return lookup(lookup(params, st.fanout.source)[value], ".".join(fields))


def expand(st: Stage, template: str, params: Mapping[str, Any], wildcards: Mapping[str, Any]) -> str:
    """A path or key template with the job's wildcards (and the entries they name) filled in."""

    def sub(m: re.Match) -> str:
        name, rest = m.group(1), m.group(2)
        if name not in wildcards:
            raise KeyError(f"{st.name}: template {template!r} uses unknown wildcard '{name}'")
        if not rest:
            return str(wildcards[name])
        return str(_field_of(st, params, name, str(wildcards[name]), rest.strip(".").split(".")))

    return TEMPLATE.sub(sub, template)


def expand_optional(
    st: Stage, template: str, params: Mapping[str, Any], wildcards: Mapping[str, Any]
) -> list[str]:
    """An optional input's path for one job: [] when the entry leaves a field the template names unset."""
    try:
        path = expand(st, template, params, wildcards)
    except KeyError:
        return []
    return [] if path in ("", "None") else [path]


def jobs(st: Stage, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Wildcard values of every job of the stage under `params` (one empty dict without fan-out)."""
    if isinstance(st.fanout, Each):
        source = lookup(params, st.fanout.source)
        return [{st.fanout.wildcard: k} for k in source]
    if isinstance(st.fanout, Matrix):
        names = [w for w, _ in st.fanout.axes]
        lists = [lookup(params, path) for _, path in st.fanout.axes]
        return [dict(zip(names, combo)) for combo in itertools.product(*lists)]
    return [{}]


def job_id(stage_name: str, wildcards: Mapping[str, Any]) -> str:
    """DVC's name of a job: the stage, then `@` and the wildcard values joined by `-` when it fans out."""
    return f"{stage_name}@{'-'.join(str(v) for v in wildcards.values())}" if wildcards else stage_name


def job_wildcards(st: Stage, params: Mapping[str, Any], selector: str) -> dict[str, Any]:
    """The wildcard values of the job DVC names `selector` (`delays_train@synth-learned_delay-0`); an unknown
    job is one error line listing the stage's jobs."""
    found = {job_id(st.name, w): w for w in jobs(st, params)}
    if selector not in found:
        raise ValueError(f"unknown job '{selector}' (jobs of {st.name}: {', '.join(found) or 'none'})")
    return found[selector]


def output_paths(st: Stage, name: str, params: Mapping[str, Any]) -> list[str]:
    """The path of output `name` for every job of the stage."""
    return [expand(st, st.outputs[name].path, params, w) for w in jobs(st, params)]


def command(st: Stage, render: Callable[[str, str, str], str]) -> str:
    """`python -m pipeline <stage> --option value ...`, the same for both drivers: wildcards, then the
    inputs and outputs passed as arguments, then constant options. `render(kind, name, template)` gives a
    driver's spelling of each value (kind: wildcard, input, output, log), which must quote it for the shell:
    names are checked against a safe pattern first, and quoting keeps a path with spaces one argument."""
    parts = ["python -m pipeline", st.name]
    parts += [f"--{w} {render('wildcard', w, '{' + w + '}')}" for w in st.wildcards]
    parts += [
        f"--{n} {render('input', n, i.path)}" for n, i in st.inputs.items() if isinstance(i, In) and i.arg
    ]
    parts += [f"--{n} {render('output', n, o.path)}" for n, o in st.outputs.items() if o.arg]
    parts += [f"--{n} {shlex.quote(v)}" for n, v in st.args.items()]
    parts.append(f"--log {render('log', 'log', st.log)}")
    return " ".join(parts)


def dependency_keys(st: Stage) -> list[str]:
    """Key templates the stage's outputs depend on: declared keys, and the run entries holding overrides."""
    out: list[str] = []
    for _, key, top in st.keys():
        if not key.rerun:
            continue
        for path in top or (key.path,):
            if path not in out:
                out.append(path)
        if key.override:
            entry = key.override.rsplit(".", 1)[0]
            if entry not in out:
                out.append(entry)
    return out


def job_inputs(
    st: Stage, params: Mapping[str, Any], wildcards: Mapping[str, Any], by_name: Mapping[str, Stage]
) -> list[tuple[str, In | Gather]]:
    """(path, declaration) of every input of one job; a Gather gives every job's output of its stage."""
    out: list[tuple[str, In | Gather]] = []
    for inp in st.inputs.values():
        if isinstance(inp, Gather):
            out += [(p, inp) for p in output_paths(by_name[inp.stage], inp.output, params)]
        elif inp.optional:
            out += [(p, inp) for p in expand_optional(st, inp.path, params, wildcards)]
        else:
            out.append((expand(st, inp.path, params, wildcards), inp))
    return out


def needed_jobs(
    stages: list[Stage], params: Mapping[str, Any], final: str
) -> list[tuple[Stage, dict[str, Any]]]:
    """The jobs the `final` stage's jobs need, directly or through other jobs, themselves included: a dataset
    defined but used by no run is neither prepared nor required."""
    by_name = {st.name: st for st in stages}
    producer: dict[str, tuple[Stage, dict[str, Any]]] = {}
    for st in stages:
        for w in jobs(st, params):
            for o in st.outputs.values():
                producer[expand(st, o.path, params, w)] = (st, w)
    todo = [(by_name[final], w) for w in jobs(by_name[final], params)]
    seen: dict[tuple[str, tuple], tuple[Stage, dict[str, Any]]] = {}
    while todo:
        st, w = todo.pop()
        key = (st.name, tuple(sorted(w.items())))
        if key in seen:
            continue
        seen[key] = (st, w)
        todo += [producer[p] for p, _ in job_inputs(st, params, w, by_name) if p in producer]
    return list(seen.values())
