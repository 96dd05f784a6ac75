"""End to end: both drivers run the real DAG with tiny parameters, a second run
does nothing, and a changed parameter reruns exactly the stages that read it."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, copy_project, run

pytestmark = pytest.mark.e2e


def tiny(params: dict) -> dict:
    d = params["delays"]
    d["seeds"] = [0]
    d["synth"].update(n_train=150, n_test=60)
    d["sets"]["synth"].update(epochs=2, hidden=[16, 16], batch_size=32)
    p = params["pretrain"]
    p["model"]["width"] = 4
    for block in ("ann", "finetune", "scratch"):
        p[block]["epochs"] = 1
    p["finetune"]["milestones"] = [1]
    return params


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    params = tiny(yaml.safe_load((REPO / "params.yaml").read_text()))
    return copy_project(tmp_path_factory.mktemp("e2e"), params, commit=True)


def _set(work: Path, dotted: str, value) -> None:
    params = yaml.safe_load((work / "params.yaml").read_text())
    node = params
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _timed(cmd: list[str], cwd: Path) -> tuple[str, float]:
    t0 = time.perf_counter()
    proc = run(cmd, cwd=cwd)
    return proc.stdout + proc.stderr, time.perf_counter() - t0


def test_snakemake_runs_caches_and_reruns_only_what_a_param_touches(project: Path) -> None:
    run(["snakemake", "--cores", "2"], cwd=project)
    for table in ("delays", "pretrain"):
        assert (project / "results" / "tables" / f"{table}.md").stat().st_size > 0
    metrics = json.loads((project / "results" / "metrics.json").read_text())
    assert set(metrics["delays"]["synth"]) >= {"learned_delay test_acc mean", "no_delay test_acc mean"}
    assert set(metrics["pretrain"]) == {"digits/pipeS", "digits_events/pipeD"}

    out, seconds = _timed(["snakemake", "--cores", "2"], project)
    print(f"no-op snakemake: {seconds:.2f} s")
    assert "Nothing to be done" in out

    _set(project, "pretrain.finetune.epochs", 2)
    proc = run(["snakemake", "-n", "--cores", "1"], cwd=project)
    planned = [r for r in re.findall(r"^rule (\w+):$", proc.stdout, flags=re.M) if r != "all"]
    assert sorted(planned) == ["finetune_snn", "finetune_snn", "report"]


def test_snakemakes_directory_markers_are_invisible_to_git_and_dvc(project: Path) -> None:
    """Snakemake leaves a .snakemake_timestamp in every directory output it writes: these must not
    show up as new files in git or as changed outputs in DVC (which hashes directories whole)."""
    _set(project, "pretrain.finetune.epochs", 1)
    run(["snakemake", "--cores", "2"], cwd=project)
    markers = [str(p.relative_to(project)) for p in project.rglob(".snakemake_timestamp")]
    assert any(m.startswith("results/") for m in markers)  # git-tracked directory outputs get them too
    assert ".snakemake_timestamp" not in run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=project).stdout
    ignored = run(["dvc", "check-ignore", *markers], cwd=project).stdout.split()
    assert sorted(ignored) == sorted(markers)


def test_dvc_repro_caches_and_reruns_only_what_a_param_touches(project: Path) -> None:
    _set(project, "pretrain.finetune.epochs", 1)
    run(["dvc", "repro"], cwd=project)
    out, seconds = _timed(["dvc", "repro"], project)
    print(f"no-op dvc repro: {seconds:.2f} s")
    assert "Data and pipelines are up to date" in out

    _set(project, "delays.train.lr_positions", 0.05)
    out = run(["dvc", "repro"], cwd=project).stdout
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    learned_or_fixed = {f"delays_{s}@synth-{v}-0" for s in ("train", "evaluate") for v in ("no_delay", "fixed_delay", "learned_delay")}
    assert ran == learned_or_fixed | {"report"}
    # the metrics of the two commits-to-be compare through DVC
    diff = run(["dvc", "metrics", "diff", "--json"], cwd=project).stdout
    assert "results/metrics.json" in diff


def test_a_killed_training_stage_is_rerun_by_both_drivers_and_resumes(project: Path) -> None:
    """SIGKILL mid-epoch 2: neither driver takes the partial outputs as done, and the rerun continues."""
    stage, ckpt = "delays_train@synth-learned_delay-0", "models/delays/synth/learned_delay/s0"
    kill = {"PIPELINE_KILL_AFTER_BATCHES": "5"}  # 4 training batches per epoch here
    assert run(["dvc", "repro", "-f", "-s", stage], cwd=project, check=False, env=kill).returncode != 0
    assert stage in run(["dvc", "status", stage], cwd=project).stdout  # not up to date
    out = run(["dvc", "repro"], cwd=project).stdout
    assert f"Running stage '{stage}'" in out and "resume: continuing after epoch 1" in out
    assert "up to date" in run(["dvc", "status"], cwd=project).stdout

    assert run(["snakemake", "--cores", "1", "-f", ckpt], cwd=project, check=False, env=kill).returncode != 0
    proc = run(["snakemake", "--cores", "2", "-n"], cwd=project)
    assert "delays_train" in proc.stdout  # the killed job's outputs are not taken as done
    out = run(["snakemake", "--cores", "2"], cwd=project)
    assert "resume: continuing after epoch 1" in out.stdout + out.stderr
    last = run(["snakemake", "--cores", "2"], cwd=project)
    assert "Nothing to be done" in last.stdout + last.stderr
