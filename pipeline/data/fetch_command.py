"""`python -m pipeline fetch_data <dataset>`: download a configured dataset into its root.

The dataset is looked up by name in params.yaml (with `--preset` files merged
over it, as Snakemake merges `--configfile` presets): paper B's
delays.sets.<name>.data or paper A's pretrain.datasets.<name> give its format
and root. SHD, SSC and GSC are downloaded (resumably, checksums verified);
for the others the manual steps are printed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.params.load import ParamsError, raise_problems, read_yaml, structure_problems


def dataset_entry(params: dict[str, Any], dataset: str) -> tuple[str, Path]:
    """(format, root) of a dataset defined under delays.sets or pretrain.datasets."""
    delays = params["delays"]["sets"]
    pretrain = params["pretrain"]["datasets"]
    if dataset in delays:
        return delays[dataset]["data"]["format"], Path(delays[dataset]["data"]["root"])
    if dataset in pretrain:
        return pretrain[dataset]["format"], Path(pretrain[dataset]["root"])
    raise ParamsError(f"unknown dataset '{dataset}' (defined: {', '.join([*delays, *pretrain])}); "
                      "a preset defines the papers' datasets: add --preset workflow/presets/<paper>.yaml")


def fetch_data(dataset: str, *, params_path: Path = Path("params.yaml"), preset: list[Path] = [],  # noqa: B006
               mirror: str | None = None, progress: bool = True) -> None:
    """Download a dataset (SHD, SSC, GSC) into its configured root; print the manual steps for the others."""
    from pipeline.data.fetch import fetch
    from pipeline.params.resolve import deep_merge

    params = read_yaml(params_path)
    for path in preset:
        params = deep_merge(params, read_yaml(path, "preset file"))
    raise_problems(structure_problems(params, source=" + ".join(map(str, [params_path, *preset]))))
    fmt, root = dataset_entry(params, dataset)
    files = fetch(fmt, root, mirror=mirror, progress=progress)
    print(f"{dataset}: {len(files)} file(s) in {root}")
