"""Benchmark 4: whole-pipeline overhead, the wall time of runs that do nothing.

Measured in the temporary project copy of benchmarks/project.py after its
one-epoch pipeline has completed under Snakemake (data/ and models/ are
git-ignored, so the committed checkout has nothing to be up to date with):
- `snakemake --cores 2` with nothing to do (first, while its metadata is what
  its own run left);
- then `dvc commit -f` records the Snakemake-built outputs in dvc.lock (DVC
  hashes every output once), and `dvc status` / `dvc repro` with nothing to do.
These are absolute seconds (DAG building, file checks, hashing), not ratios:
they drift with the machine's load.
"""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.common import save
from benchmarks.project import CORES, one_epoch_project, run

NAME = "pipeline_overhead"


def _timed(cmd: list[str], project_root, repeats: int, expect: str) -> list[float]:
    """Wall seconds of `repeats` runs of cmd, each checked to report `expect` (nothing was run)."""
    times = []
    for _ in range(repeats):
        out, seconds = run(cmd, project_root)
        if expect not in out:
            raise AssertionError(
                f"{' '.join(cmd)} did work; expected '{expect}' in its output:\n{out[-2000:]}"
            )
        times.append(round(seconds, 3))
    return times


def main(quick: bool = False) -> dict[str, Any]:
    project = one_epoch_project(quick)
    root, repeats = project.root, 1 if quick else 2
    snakemake = _timed(["snakemake", "--cores", str(CORES)], root, repeats, "Nothing to be done")
    run(["dvc", "repro", "check_params"], root)  # the one DVC-only stage: Snakemake checks parameters itself
    _, commit_s = run(["dvc", "commit", "-f"], root)
    status = _timed(["dvc", "status"], root, repeats, "Data and pipelines are up to date")
    repro = _timed(["dvc", "repro"], root, repeats, "Data and pipelines are up to date")
    seconds = {
        "snakemake_noop": statistics.median(snakemake),
        "dvc_status_noop": statistics.median(status),
        "dvc_repro_noop": statistics.median(repro),
    }
    return {
        "name": NAME,
        "what": (
            "wall seconds of no-op snakemake / dvc status / dvc repro on a completed one-epoch copy "
            "of the project"
        ),
        "absolute": True,
        "seconds": seconds,
        "samples_s": {"snakemake_noop": snakemake, "dvc_status_noop": status, "dvc_repro_noop": repro},
        "dvc_commit_s": round(commit_s, 3),
        "quick": quick,
        "absolutes": {f"{k} (s)": round(v, 2) for k, v in seconds.items()},
    }


if __name__ == "__main__":
    print(save(NAME, main()))
