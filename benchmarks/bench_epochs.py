"""Benchmark 5: one training epoch of each default stage, as a regression marker.

Every default training stage (delays-train for each variant on the embedded
set, pretrain-ann, finetune-snn for pipeS and pipeD, train-snn-scratch for
digits and digits_events) runs with the default params except epochs = 1 and
one seed, through the CLI, in a temporary copy of the project
(benchmarks/project.py: `snakemake --cores 2`, two jobs at a time as
`make run` does). Each stage's first-epoch time comes from its DVCLive
history.json (`elapsed_s`: data loading, training and validation of the epoch,
without process start-up).

Absolute seconds drift with the machine's load, so each is also divided by a
fixed reference workload (a loop of 256 x 256 matmuls on one thread) timed
every 2 s during the same build, its median: compare those "reference units"
across runs.
"""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.common import save
from benchmarks.project import REFERENCE_ITERS, REFERENCE_SIZE, one_epoch_project

NAME = "epochs"


def main(quick: bool = False) -> dict[str, Any]:
    project = one_epoch_project(quick)
    reference = statistics.median(project.reference_s)
    stages = {
        stage: {"epoch_s": round(seconds, 3), "epoch_in_reference_units": round(seconds / reference, 2)}
        for stage, seconds in project.epoch_s.items()
    }
    return {
        "name": NAME,
        "what": (
            "first training epoch of each default stage (default params, epochs = 1), "
            "seconds and reference units"
        ),
        "reference_workload": (
            f"{REFERENCE_ITERS} matmuls {REFERENCE_SIZE}x{REFERENCE_SIZE} float32, 1 thread"
        ),
        "reference_s": round(reference, 4),
        "reference_samples": len(project.reference_s),
        "reference_spread_s": [round(min(project.reference_s), 4), round(max(project.reference_s), 4)],
        "stages": stages,
        "one_epoch_pipeline_s": round(project.build_s, 1),
        "measured_with": "snakemake --cores 2 in a temporary copy (two jobs at a time)",
        "quick": quick,
        # Not speed-ups: epoch time over the reference workload's time (lower is faster), for run-to-run
        # comparison.
        "ratios": {
            f"epoch / reference: {stage}": v["epoch_in_reference_units"] for stage, v in stages.items()
        },
    }


if __name__ == "__main__":
    print(save(NAME, main()))
