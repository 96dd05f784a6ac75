"""Where each stage's outputs live. The Snakefile rules and dvc.yaml spell the
same paths in their commands; the report stage uses these to find exactly the
runs params.yaml asks for."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

RESULTS = Path("results")


def delays_runs(params: dict[str, Any]) -> Iterator[tuple[str, str, int]]:
    delays = params.get("delays") or {}
    for dataset in delays.get("datasets", []):
        for variant in delays.get("variants", []):
            for seed in delays.get("seeds", []):
                yield dataset, variant, seed


def delays_eval(dataset: str, variant: str, seed: int) -> Path:
    return RESULTS / "delays" / "eval" / dataset / variant / f"s{seed}.json"


def delays_live(dataset: str, variant: str, seed: int) -> Path:
    return RESULTS / "delays" / "train" / dataset / variant / f"s{seed}"


def pretrain_live_dirs(params: dict[str, Any]) -> list[Path]:
    pre = params.get("pretrain") or {}
    base = RESULTS / "pretrain"
    return (
        [base / "ann" / d for d in pre.get("ann_datasets", [])]
        + [base / "finetune" / p for p in pre.get("pipelines", {})]
        + [base / "scratch" / d for d in pre.get("scratch_datasets", [])]
    )
