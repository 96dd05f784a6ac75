"""Load and check parameter files: YAML syntax, the schema and the names runs refer to.

Every CLI stage runs these checks on the file it is given; both drivers run
them, plus the data-root check of pipeline/drivers/preflight.py, before any stage does
work. A problem is one line naming the key (or file, line and column) and what
is allowed.

Every YAML file the project reads goes through `load_yaml`: PyYAML follows YAML 1.1, where `1e-3` is the
string '1e-3', while DVC (`-S x=1e-3`, ruamel) reads YAML 1.2, where it is a number; here it is a number
under every driver.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any, Iterator, Mapping

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "params.schema.yaml"


class ParamsError(ValueError):
    """A parameter file that cannot be used; the message says where and why."""


# The YAML 1.2 floats YAML 1.1 leaves as strings: an exponent without a dot or without a sign (1e-3, 5E+2,
# 1.5e3). Every scalar YAML 1.1 already resolves keeps its meaning.
EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$")
FLOAT_TAG = "tag:yaml.org,2002:float"


class ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with YAML 1.2's exponent floats."""


class ParamsDumper(yaml.SafeDumper):
    """PyYAML's safe dumper that quotes a string such as '1e3': ParamsLoader reads it back as a string."""


ParamsLoader.add_implicit_resolver(FLOAT_TAG, EXPONENT_FLOAT, list("-+0123456789."))
ParamsDumper.add_implicit_resolver(FLOAT_TAG, EXPONENT_FLOAT, list("-+0123456789."))


def load_yaml(stream: Any) -> Any:
    """YAML text or an open file as data, with the loader every parameter file is read with."""
    return yaml.load(stream, Loader=ParamsLoader)


def dump_yaml(data: Any) -> str:
    """Data as YAML text that `load_yaml` reads back unchanged (key order kept)."""
    return yaml.dump(data, Dumper=ParamsDumper, sort_keys=False)


def yaml_error_line(path: str | Path, err: yaml.YAMLError) -> str:
    """`file:line:column: problem` for a YAML syntax error (lines and columns 1-based)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{where}: invalid YAML ({problem})"


def read_yaml(path: str | Path, what: str = "parameter file") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: {what} not found")
    try:
        with open(path) as f:
            data = load_yaml(f)
    except yaml.YAMLError as err:
        raise ParamsError(yaml_error_line(path, err)) from None
    if data is None:  # an empty preset changes nothing; an empty parameter file lacks every key
        if what == "parameter file":
            raise ParamsError(f"{path}: the parameter file is empty; expected a mapping of parameters")
        return {}
    if not isinstance(data, dict):
        raise ParamsError(
            f"{path}: expected a mapping of parameters at the top level, found {type(data).__name__}"
        )
    return data


def load_schema() -> dict[str, Any]:
    with open(SCHEMA_PATH) as f:
        return load_yaml(f)


def _key(path: Any) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _describe(err: jsonschema.ValidationError) -> str:
    """One line: the key, what is wrong, what is allowed (never the whole schema)."""
    schema = err.schema if isinstance(err.schema, dict) else {}
    if err.validator == "additionalProperties":
        unexpected = (
            sorted(set(err.instance) - set(schema.get("properties", {})))
            if isinstance(err.instance, dict)
            else []
        )
        msg = f"{_key(err.absolute_path)}: unknown key(s) {', '.join(map(repr, unexpected))}"
        if isinstance(schema.get("properties"), dict):
            msg += f" (allowed: {', '.join(schema['properties'])})"
        return msg
    if err.validator == "enum":
        return (
            f"{_key(err.absolute_path)}: {err.instance!r} is not allowed "
            f"(allowed: {', '.join(map(str, schema['enum']))})"
        )
    if err.validator == "pattern" and "name" in str(schema.get("description", "")):
        return f"{_key(err.absolute_path)}: name {err.instance!r} is not allowed ({schema['description']})"
    if err.validator == "not":
        return f"{_key(err.absolute_path)}: not allowed here"
    message = err.message if len(err.message) < 160 else err.message[:157] + "..."
    msg = f"{_key(err.absolute_path)}: {message}"
    if schema.get("description"):
        msg += f" ({schema['description']})"
    return msg


def _floats(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], float]]:
    """(key path, value) of every float in parsed parameters, mappings and lists included."""
    if isinstance(node, float):
        yield path, node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _floats(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _floats(value, (*path, i))


def schema_problems(params: Mapping[str, Any]) -> list[str]:
    """The schema's problems, and every float that is NaN or infinite (JSON schema cannot refuse those:
    NaN passes every bound), one line per key."""
    nonfinite = {path: value for path, value in _floats(params) if not math.isfinite(value)}
    validator = jsonschema.Draft202012Validator(load_schema())
    found = [
        (list(map(str, path)), f"{_key(path)}: {value} is not a finite number")
        for path, value in nonfinite.items()
    ]
    found += [
        (list(map(str, e.absolute_path)), _describe(e))
        for e in validator.iter_errors(params)
        if tuple(e.absolute_path) not in nonfinite
    ]  # one line for the key, not also "inf > maximum"
    # an `allOf`/`if` failure repeats its sub-errors: report the most specific ones
    return list(dict.fromkeys(line for _, line in sorted(found, key=lambda f: f[0])))


def typed_strings(params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `params` in which each string where the schema wants another type (a number, an integer, a
    boolean) is read as the YAML scalar it spells: Snakemake reads `--configfile` files as YAML 1.1 ('1e-3'
    stays a string) and the values of a `--config` mapping all as strings. Other strings are left as they are,
    for the schema to report."""
    params = copy.deepcopy(dict(params))
    validator = jsonschema.Draft202012Validator(load_schema())
    for err in list(validator.iter_errors(params)):
        if err.validator != "type" or not isinstance(err.instance, str) or not err.absolute_path:
            continue
        try:
            value = load_yaml(err.instance)
        except yaml.YAMLError:
            continue
        wanted = jsonschema.Draft202012Validator({"type": err.validator_value})
        if isinstance(value, (int, float)) and wanted.is_valid(value):
            *parents, last = err.absolute_path
            node: Any = params
            for part in parents:
                node = node[part]
            node[last] = value
    return params


def reference_problems(params: Mapping[str, Any]) -> list[str]:
    """Cross-key checks a JSON schema cannot express: every name a run list mentions is defined."""
    problems: list[str] = []
    delays = params.get("delays") or {}
    sets = delays.get("sets") or {}
    for name in delays.get("datasets", []):
        if name not in sets:
            problems.append(
                f"delays.datasets: '{name}' is not defined in delays.sets (defined: {', '.join(sets)})"
            )
    pre = params.get("pretrain") or {}
    datasets, anns, baselines = (pre.get(k) or {} for k in ("datasets", "anns", "baselines"))

    def need(where: str, name: Any, pool: Mapping[str, Any], pool_name: str) -> None:
        if name not in pool:
            problems.append(
                f"{where}: '{name}' is not defined in {pool_name} (defined: {', '.join(pool) or 'none'})"
            )

    for run, spec in anns.items():
        need(f"pretrain.anns.{run}.dataset", spec.get("dataset"), datasets, "pretrain.datasets")
    for run, spec in baselines.items():
        need(f"pretrain.baselines.{run}.dataset", spec.get("dataset"), datasets, "pretrain.datasets")
    for pipe, spec in (pre.get("pipelines") or {}).items():
        need(f"pretrain.pipelines.{pipe}.ann", spec.get("ann"), anns, "pretrain.anns")
        need(f"pretrain.pipelines.{pipe}.target", spec.get("target"), datasets, "pretrain.datasets")
        if spec.get("baseline") is not None:
            need(f"pretrain.pipelines.{pipe}.baseline", spec.get("baseline"), baselines, "pretrain.baselines")
    return problems


def structure_problems(params: Mapping[str, Any], source: str = "params") -> list[str]:
    """Schema and name problems of a parameter mapping, one line each (empty when it can be used)."""
    problems = schema_problems(params)
    if not problems:  # names are only meaningful once the structure is right
        problems = reference_problems(params)
    return [f"{source}: {p}" for p in problems]


def raise_problems(problems: list[str]) -> None:
    if problems:
        raise ParamsError("\n".join(problems))


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """A parameter file, checked against the schema and for undefined names (not for data roots)."""
    params = read_yaml(path)
    raise_problems(structure_problems(params, source=str(path)))
    return params


def deep_merge(base: Any, override: Any) -> Any:
    """Recursively merge mappings (override wins); lists and scalars are replaced.
    Snakemake merges `--configfile` presets over params.yaml the same way."""
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return override
