"""Snakemake and DVC describe the same DAG: same commands, inputs, outputs."""
from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.conftest import REPO, copy_project
from tests.dag import compare_dags, dvc_stages, snakemake_jobs


def test_snakemake_and_dvc_agree() -> None:
    smk, dvc = snakemake_jobs(REPO), dvc_stages(REPO)
    assert len(smk) == len(dvc) > 10
    assert compare_dags(smk, dvc) == []


def test_agreement_holds_for_other_params(tmp_path: Path) -> None:
    """Lists in params drive both drivers' fan-out the same way."""
    work = copy_project(tmp_path)
    p = yaml.safe_load((work / "params.yaml").read_text())
    p["delays"]["seeds"] = [3]
    p["delays"]["variants"] = ["learned_delay"]
    (work / "params.yaml").write_text(yaml.safe_dump(p))
    smk, dvc = snakemake_jobs(work), dvc_stages(work)
    assert compare_dags(smk, dvc) == []
    assert {j.cmd for j in smk if j.name == "delays_train"} == {
        "python -m pipeline delays-train --dataset synth --variant learned_delay --seed 3 --data data/prepared/delays/synth"
        " --ckpt models/delays/synth/learned_delay/s3 --live results/delays/train/synth/learned_delay/s3"
    }


def test_editing_one_driver_only_is_caught(tmp_path: Path) -> None:
    work = copy_project(tmp_path)
    text = (work / "dvc.yaml").read_text()
    (work / "dvc.yaml").write_text(text.replace("--report results/pretrain/transfer", "--report results/pretrain/transfer_v2", 1))
    problems = compare_dags(snakemake_jobs(work), dvc_stages(work))
    assert any("transfer" in p for p in problems)

    (work / "dvc.yaml").write_text(text)
    rules = work / "workflow" / "rules" / "delays.smk"
    rules.write_text(rules.read_text().replace('data="data/prepared/delays/{dataset}",\n        code', 'data="data/prepared/delays/{dataset}",\n        extra="params.yaml",\n        code', 1))
    problems = compare_dags(snakemake_jobs(work), dvc_stages(work))
    assert any("delays_train: inputs differ" in p and "params.yaml" in p for p in problems)
