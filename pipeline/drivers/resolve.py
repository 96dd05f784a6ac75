"""A job's config: the values of the keys its stage declares, per-run overrides merged in.

Code every stage runs (through pipeline/drivers/cli.py), so unlike the declarations in
pipeline/drivers/stage_table.py it is among every stage's code dependencies: a change
here may change what any stage computes.
"""

from __future__ import annotations

import typing
from typing import Any, Mapping

from pipeline.params.configs import build
from pipeline.params.load import deep_merge
from pipeline.drivers.stage_spec import Each, Stage, expand, lookup


class UnknownName(ValueError):
    """A job names a dataset, run or pipeline its parameters do not define."""


def _defined(params: Mapping[str, Any], path: str) -> str:
    """What is defined at the deepest existing parent of `path`, for error messages."""
    parent = path
    while parent:
        parent = parent.rpartition(".")[0]
        node = lookup(params, parent, None) if parent else params
        if isinstance(node, Mapping):
            return f"{parent or '<top level>'} defines: {', '.join(map(str, node)) or 'nothing'}"
    return ""


def _lookup_key(st: Stage, params: Mapping[str, Any], template: str, wildcards: Mapping[str, Any]) -> Any:
    try:
        path = expand(st, template, params, wildcards)
        return lookup(params, path)
    except KeyError as err:
        missing = str(err.args[0]) if err.args else template
        raise UnknownName(f"{st.name}: {missing} is not defined ({_defined(params, missing)})") from None


def check_wildcards(st: Stage, params: Mapping[str, Any], wildcards: Mapping[str, Any]) -> None:
    """A fan-out over a mapping takes only names the mapping defines."""
    if isinstance(st.fanout, Each):
        name = wildcards[st.fanout.wildcard]
        defined = lookup(params, st.fanout.source, {})
        if name not in defined:
            raise UnknownName(
                f"unknown {st.fanout.wildcard} '{name}' (defined under {st.fanout.source}: "
                f"{', '.join(defined) or 'nothing'})"
            )


def resolve_keys(st: Stage, params: Mapping[str, Any], wildcards: Mapping[str, Any]) -> dict[str, Any]:
    """The raw value of every declared parameter of one job (overrides merged in), by config field."""
    check_wildcards(st, params, wildcards)
    values: dict[str, Any] = {}
    for name, key, top in st.keys():
        if top:
            values[name] = {k: params[k] for k in top}
            continue
        value = _lookup_key(st, params, key.path, wildcards)
        if key.override:
            over = lookup(params, expand(st, key.override, params, wildcards), None)
            if over is not None:
                value = deep_merge(value, over)
        values[name] = value
    return values


def build_config(st: Stage, params: Mapping[str, Any], wildcards: Mapping[str, Any]) -> Any:
    """The stage's config instance for one job."""
    values = resolve_keys(st, params, wildcards)
    hints = typing.get_type_hints(st.config)
    where = {name: expand(st, key.path, params, wildcards) or "<top level>" for name, key, _ in st.keys()}
    return st.config(**{name: build(hints[name], value, where[name]) for name, value in values.items()})
