"""GSC preparation asks SLURM for the memory its CPUs need.

delays_prepare on a GSC set runs one feature worker process per CPU, and each worker adds its own memory
(docs/cluster.md, measured by benchmarks/bench_scale.py). The SLURM dry run of the paper-delays preset, as
docs/cluster.md gives it, must plan the GSC prepare job with the measured model's memory for its CPUs
(8 in the preset), less with 4 CPUs, and a mem_mb that the set's own entry gives as given.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.data.gsc import prepare_memory_mb
from tests.conftest import copy_project, run

PRESET = "workflow/presets/paper-delays.yaml"


def _work(tmp_path: Path) -> Path:
    """A project copy with the preset's data roots (a dry run only checks that they exist)."""
    work = copy_project(tmp_path)
    for name in ("shd", "ssc", "gsc"):
        (work / "data" / "raw" / name).mkdir(parents=True)
    return work


def _prepare_resources(work: Path, *configfiles: str) -> dict[str, dict[str, str]]:
    """dataset -> resources of its delays_prepare job in the SLURM profile's dry run."""
    plan = run(
        ["snakemake", "-n", "--workflow-profile", "profiles/slurm", "--configfile", PRESET, *configfiles],
        cwd=work,
    ).stdout
    jobs = {}
    for block in plan.split("\nrule delays_prepare:")[1:]:
        dataset = block.split("wildcards: dataset=", 1)[1].split()[0].rstrip(",")
        resources = block.split("resources: ", 1)[1].splitlines()[0]
        jobs[dataset] = dict(kv.split("=", 1) for kv in resources.split(", "))
    return jobs


def test_gsc_prepare_requests_the_memory_of_its_workers(tmp_path: Path) -> None:
    work = _work(tmp_path)
    jobs = _prepare_resources(work)
    assert jobs["gsc"]["cpus_per_task"] == "8"
    assert int(jobs["gsc"]["mem_mb"]) == prepare_memory_mb(8)
    assert jobs["shd"]["mem_mb"] == jobs["ssc"]["mem_mb"] == "4000"  # the default entry's, one process

    four_cpus = {"resources": {"delays_prepare": {"gsc": {"cpus_per_task": 4}}}}
    (work / "four.yaml").write_text(yaml.safe_dump(four_cpus))
    four = _prepare_resources(work, "four.yaml")["gsc"]
    assert four["cpus_per_task"] == "4"
    assert int(four["mem_mb"]) == prepare_memory_mb(4) < prepare_memory_mb(8)

    given = {"resources": {"delays_prepare": {"gsc": {"mem_mb": 12345}}}}
    (work / "given.yaml").write_text(yaml.safe_dump(given))
    assert _prepare_resources(work, "given.yaml")["gsc"]["mem_mb"] == "12345"
