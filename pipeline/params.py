"""Load and validate params.yaml against workflow/schemas/params.schema.yaml.

Both drivers go through the same schema: Snakemake at start-up
(snakemake.utils.validate) and every CLI stage here, so `dvc repro` gets the
same checks before any work starts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "params.schema.yaml"


class ParamsError(ValueError):
    """A parameter file that does not match the schema."""


def load_schema() -> dict[str, Any]:
    with open(SCHEMA_PATH) as f:
        return yaml.safe_load(f)


def _key(path: Any) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _describe(err: jsonschema.ValidationError) -> str:
    msg = f"{_key(err.absolute_path)}: {err.message}"
    schema = err.schema if isinstance(err.schema, dict) else {}
    if "enum" in schema:
        msg += f" (allowed: {', '.join(map(str, schema['enum']))})"
    if err.validator == "additionalProperties" and isinstance(schema.get("properties"), dict):
        msg += f" (allowed keys: {', '.join(schema['properties'])})"
    if schema.get("description"):
        msg += f" -- {schema['description']}"
    return msg


def validate(params: dict[str, Any], source: str = "params") -> None:
    """Raise ParamsError listing every violation, each naming its key."""
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = "\n  ".join(_describe(e) for e in errors)
        raise ParamsError(f"{source} does not match {SCHEMA_PATH.relative_to(REPO_ROOT)}:\n  {lines}")


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: parameter file not found")
    with open(path) as f:
        params = yaml.safe_load(f) or {}
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping of parameters at the top level")
    validate(params, source=str(path))
    check_references(params, source=str(path))
    return params


def check_references(params: dict[str, Any], source: str = "params") -> None:
    """Cross-key checks a JSON schema cannot express: every name a run list
    mentions must be defined, so a typo fails before any stage starts."""
    problems: list[str] = []
    delays = params.get("delays") or {}
    sets = delays.get("sets") or {}
    for name in delays.get("datasets", []):
        if name not in sets:
            problems.append(f"delays.datasets: '{name}' is not defined in delays.sets (defined: {', '.join(sets)})")
    pre = params.get("pretrain") or {}
    datasets = pre.get("datasets") or {}
    for key in ("ann_datasets", "scratch_datasets"):
        for name in pre.get(key, []):
            if name not in datasets:
                problems.append(f"pretrain.{key}: '{name}' is not defined in pretrain.datasets (defined: {', '.join(datasets)})")
    for pipe, spec in (pre.get("pipelines") or {}).items():
        if spec.get("source") not in pre.get("ann_datasets", []):
            problems.append(f"pretrain.pipelines.{pipe}.source: '{spec.get('source')}' must be listed in pretrain.ann_datasets")
        if spec.get("target") not in datasets:
            problems.append(f"pretrain.pipelines.{pipe}.target: '{spec.get('target')}' is not defined in pretrain.datasets")
    if problems:
        raise ParamsError(f"{source}:\n  " + "\n  ".join(problems))


def deep_merge(base: Any, override: Any) -> Any:
    """Recursively merge mappings (override wins); lists and scalars are replaced.
    Snakemake merges `--configfile` presets over params.yaml the same way."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base.get(key), value) if key in base else value
        return merged
    return override


def apply_preset_stage(*, preset: Path, params_path: Path = Path("params.yaml")) -> None:
    """Merge a preset (workflow/presets/*.yaml) into the params file, for DVC.
    The result is validated before anything is written; comments are kept."""
    from ruamel.yaml import YAML

    if not Path(preset).is_file():
        raise ParamsError(f"{preset}: preset file not found")
    rt = YAML()  # round-trip: keeps the comments of params.yaml
    with open(params_path) as f:
        doc = rt.load(f)
    with open(preset) as f:
        over = yaml.safe_load(f) or {}
    merged_plain = deep_merge(yaml.safe_load(open(params_path)) or {}, over)
    validate(merged_plain, source=f"{params_path} + {preset}")
    check_references(merged_plain, source=f"{params_path} + {preset}")

    def merge_into(node: Any, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(node.get(key), dict):
                merge_into(node[key], value)
            else:
                node[key] = value

    merge_into(doc, over)
    from pipeline.io import atomic_path

    with atomic_path(params_path) as tmp, open(tmp, "w") as f:
        rt.dump(doc, f)
    print(f"applied {preset} to {params_path}")
