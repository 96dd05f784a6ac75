"""`python -m pipeline fetch_data <dataset>`: download a configured dataset into its root.

The dataset is looked up by name in params.yaml (with `--preset` files merged
over it, as Snakemake merges `--configfile` presets): paper B's
delays.sets.<name>.data or paper A's pretrain.datasets.<name> give its format
and root. SHD, SSC and GSC are downloaded (resumably, checksums verified);
for the others the manual steps are printed on stdout (exit code 0).

A network failure, a timeout or another fetch of the same dataset holding its
lock is one `error:` line on stderr and exit code 1 (a rerun may succeed); bad
input (an unknown dataset, a checksum mismatch) is exit code 2, as for every
command.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence

from pipeline.data.fetch import TIMEOUT_S
from pipeline.params.load import ParamsError, raise_problems, read_yaml, structure_problems

PRESETS_DIR = Path("workflow/presets")  # relative to the folder of the params file


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


def presets_defining(dataset: str, params_path: Path, skip: Sequence[Path] = ()) -> list[Path]:
    """The preset files beside the params file (workflow/presets/*.yaml) that define `dataset`,
    as a path the user can type from here (relative when under the current folder)."""
    folder = Path(params_path).parent / PRESETS_DIR
    skipped = {p.resolve() for p in skip}
    found = []
    for path in sorted(folder.glob("*.yaml")):
        if path.resolve() in skipped:
            continue
        try:
            preset = read_yaml(path, "preset file")
        except ValueError:  # a broken preset is reported when it is used, not here
            continue
        delays = ((preset.get("delays") or {}).get("sets") or {})
        pretrain = ((preset.get("pretrain") or {}).get("datasets") or {})
        if dataset in delays or dataset in pretrain:
            found.append(_typable(path))
    return found


def fetch_data(dataset: str, *, params_path: Path = Path("params.yaml"),
               preset: list[Path] = [],  # noqa: B006 (never mutated; a list type gives the CLI its nargs)
               mirror: str | None = None, checksums: Path | None = None, timeout: float = TIMEOUT_S,
               progress: bool = True) -> None:
    """Download a dataset (SHD, SSC, GSC) into its configured root; print the manual steps for the others.
    --mirror URL reads the files from URL/<file name>; --checksums FILE (md5sum/sha256sum output) replaces
    the pinned and published checksums; --timeout SECONDS bounds each connection attempt and read."""
    from pipeline.data.fetch import SOURCES, DatasetBusy, describe, fetch
    from pipeline.params.presets import merged_params

    params = merged_params(params_path, preset)
    try:
        fmt, root = dataset_entry(params, dataset)
    except ParamsError:
        defining = presets_defining(dataset, params_path, preset)
        if not defining:
            raise
        options = " ".join(f"--preset {p}" for p in defining[:1])
        also = f" (or {', '.join(map(str, defining[1:]))})" if defining[1:] else ""
        raise ParamsError(f"{dataset} is defined in {defining[0]}{also}: add {options}") from None
    if fmt in SOURCES and not SOURCES[fmt].files:  # instructions, not an error: there is nothing to fix
        print(f"{dataset} cannot be downloaded automatically: follow these steps to put it at {root}.")
        print(describe(fmt, dataset))
        return
    if timeout <= 0:
        raise ValueError(f"--timeout {timeout:g}: expected a number of seconds above 0")
    try:
        files = fetch(fmt, root, mirror=mirror, progress=progress, timeout=timeout, checksums=checksums)
    except (ConnectionError, DatasetBusy) as err:
        if os.environ.get("PIPELINE_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"{dataset}: {len(files)} file(s) in {root}")


def _typable(path: Path) -> Path:
    """`path` relative to the current folder when it lies under it, else absolute."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path.resolve()
