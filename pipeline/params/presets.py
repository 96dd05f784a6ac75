"""`python -m pipeline apply_preset --preset FILE`: merge a preset into params.yaml, for DVC.

Snakemake takes presets as `--configfile` and merges them itself; DVC reads
params.yaml only, so a preset is written into it (validated first, comments
kept, atomically).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.params.load import deep_merge, raise_problems, read_yaml, structure_problems


def merged_params(params_path: Path, presets: list[Path]) -> dict[str, Any]:
    """params.yaml with the presets deep-merged over it in order, checked as every stage checks it."""
    params = read_yaml(params_path)
    for path in presets:
        params = deep_merge(params, read_yaml(path, "preset file"))
    raise_problems(structure_problems(params, source=" + ".join(map(str, [params_path, *presets]))))
    return params


def apply_preset(*, preset: Path, params_path: Path = Path("params.yaml")) -> None:
    """Merge a preset (workflow/presets/*.yaml) into the params file, for DVC.
    The result is checked before anything is written; comments are kept."""
    from ruamel.yaml import YAML

    from pipeline.io import atomic_path

    over = read_yaml(preset, "preset file")
    merged = deep_merge(read_yaml(params_path), over)
    raise_problems(structure_problems(merged, source=f"{params_path} + {preset}"))
    rt = YAML()  # round-trip: keeps the comments of params.yaml
    with open(params_path) as f:
        doc = rt.load(f)

    def merge_into(node: Any, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(node.get(key), dict):
                merge_into(node[key], value)
            else:
                node[key] = value

    merge_into(doc, over)
    with atomic_path(params_path) as tmp, open(tmp, "w") as f:
        rt.dump(doc, f)
    print(f"applied {preset} to {params_path}")
