"""End to end: both drivers run the real DAG with tiny parameters in one project copy, a copy of the
session's finished `make run`. A second run does nothing; a changed parameter reruns exactly the stages
that read it (a training key never re-prepares data); the command line's config reaches the stages; bad
parameters stop both drivers before anything is deleted; a killed stage is rerun and resumes."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

from pipeline.io import read_json
from tests.conftest import REPO, copy_ran_project, run
from tests.project_copy import commit_all

pytestmark = pytest.mark.e2e

DELAY_JOBS = {
    f"delays_{s}@synth-{v}-0"
    for s in ("train", "evaluate")
    for v in ("no_delay", "fixed_delay", "learned_delay")
}


@pytest.fixture(scope="module")
def project(ran_tiny_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_ran_project(ran_tiny_project, tmp_path_factory.mktemp("e2e"))


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


def _planned(work: Path, *extra: str) -> list[str]:
    proc = run(["snakemake", "-n", "--cores", "1", *extra], cwd=work)
    return sorted(r for r in re.findall(r"^rule (\w+):$", proc.stdout, flags=re.M) if r != "all")


def test_snakemake_runs_caches_and_reruns_only_what_a_param_touches(project: Path) -> None:
    """Snakemake ran everything (in `make run`, the project's fixture): its results, logs, a no-op second run,
    and the jobs a changed key plans."""
    for table in ("delays", "pretrain"):
        assert (project / "results" / "tables" / f"{table}.md").stat().st_size > 0
    metrics = json.loads((project / "results" / "metrics.json").read_text())
    assert {"synth/learned_delay", "synth/no_delay"} <= set(metrics["delays"])
    assert "test_acc_mean" in metrics["delays"]["synth/learned_delay"]
    assert set(metrics["pretrain"]) == {
        "digits/digits",
        "digits_events/digits_events",
        "motion_events/motion_events",
        "digits/pipeS",
        "digits_events/pipeD",
        "motion_events/pipeU",
    }

    logs = sorted((project / "logs").rglob("*.log"))
    dvc_only = project / "logs/check_params.log"  # DVC's own stage: make run's `dvc repro check_params`
    assert dvc_only in logs
    logs.remove(dvc_only)
    lines = dvc_only.read_text().splitlines()  # it prints nothing: the log says what ran and when it ended
    assert "python -m pipeline check_params" in lines[0] and "ended after" in lines[-1], lines
    assert len(logs) >= 20
    for log in logs:  # every stage's log says what ran and holds what the stage printed
        lines = log.read_text().splitlines()
        assert "python -m pipeline" in lines[0] and "ended after" in lines[-1] and len(lines) >= 3, log
    out, seconds = _timed(["snakemake", "--cores", "2"], project)
    print(f"no-op snakemake: {seconds:.2f} s")
    assert "Nothing to be done" in out

    _set(project, "pretrain.finetune.epochs", 2)
    assert _planned(project) == ["finetune_snn"] * 3 + ["report"]
    _set(project, "pretrain.finetune.epochs", 1)
    _set(
        project, "delays.sets.synth.train.dropout", 0.3
    )  # a training key: retrain and evaluate, never re-prepare
    assert _planned(project) == ["delays_evaluate"] * 3 + ["delays_train"] * 3 + ["report"]
    _set(project, "delays.sets.synth.train.dropout", 0.4)
    assert _planned(project) == []


def test_the_command_lines_config_reaches_the_stages(project: Path) -> None:
    """A --config value overriding a params.yaml key is what the stage computes with (not params.yaml's)."""
    target = "results/delays/train/synth/learned_delay/s0"
    run(
        ["snakemake", "--cores", "1", target, "--config", "max_epochs=1"], cwd=project
    )  # targets before --config
    assert len(read_json(project / target / "history.json")) == 1  # params.yaml trains 2 epochs
    assert read_json(project / target / "config.json")["net"]["epochs"] == 2
    assert "delays_train" in _planned(project)  # back to params.yaml's value: rerun


def test_the_report_shows_tables_and_plots(project: Path) -> None:
    run(["snakemake", "--cores", "2"], cwd=project)
    run(["snakemake", "--report", "results/report.html"], cwd=project)  # as the README types it
    report = (project / "results/report.html").read_text()
    assert "delays.html" in report and "pretrain_time_accuracy.png" in report
    assert (
        "results/report.html" not in run(["git", "status", "--porcelain"], cwd=project).stdout
    )  # git-ignored


def test_snakemakes_directory_markers_are_invisible_to_git_and_dvc(project: Path) -> None:
    """Snakemake leaves a .snakemake_timestamp in every directory output it writes: these must not
    show up as new files in git or as changed outputs in DVC (which hashes directories whole)."""
    run(["snakemake", "--cores", "2"], cwd=project)
    markers = [str(p.relative_to(project)) for p in project.rglob(".snakemake_timestamp")]
    assert any(m.startswith("results/") for m in markers)  # git-tracked directory outputs get them too
    assert (
        ".snakemake_timestamp"
        not in run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=project).stdout
    )
    ignored = run(["dvc", "check-ignore", *markers], cwd=project).stdout.split()
    assert sorted(ignored) == sorted(markers)


def _messages(stderr: str) -> list[str]:
    """Snakemake's stderr without its note that it uses the project's profile."""
    return [
        line for line in stderr.strip().splitlines() if not line.startswith("Using workflow specific profile")
    ]


def test_bad_params_stop_snakemake_with_one_line(project: Path) -> None:
    params = (project / "params.yaml").read_text()
    try:
        _set(project, "delays.datasets", ["synth", "shd_typo"])
        proc = run(["snakemake", "-n", "--cores", "1"], cwd=project, check=False)
        assert proc.returncode == 2 and _messages(proc.stderr) == [
            "error: params.yaml: delays.datasets: 'shd_typo' is not defined in delays.sets (defined: synth)"
        ]
        (project / "params.yaml").write_text(params.replace("device: auto", "device: auto\n\tthreads: 2", 1))
        proc = run(["snakemake", "-n", "--cores", "1"], cwd=project, check=False)
        lines = _messages(proc.stderr)
        assert (
            proc.returncode == 2
            and len(lines) == 1
            and re.match(r"error: params.yaml:\d+:\d+: invalid YAML", lines[0])
        )
    finally:
        (project / "params.yaml").write_text(params)


def test_dvc_commit_adopts_a_snakemake_run(project: Path) -> None:
    """After a Snakemake run with params.yaml as it is, the two commands of docs/pipeline.md record its
    outputs, so DVC does not rerun every stage to learn what Snakemake already computed. `make run` left
    DVC up to date: a changed learned-delay key makes Snakemake rerun jobs that DVC has not seen."""
    run(["snakemake", "--cores", "2"], cwd=project)  # whatever an earlier test left out of date
    _set(project, "delays.variant_recipe.learned_delay.lr_positions", 0.02)  # not the README's 0.05
    assert _planned(project) == ["delays_evaluate", "delays_train", "report"]
    run(["snakemake", "--cores", "2"], cwd=project)
    status = run(["dvc", "status"], cwd=project).stdout
    assert "Data and pipelines are up to date" not in status
    assert "delays_train@synth-learned_delay-0" in status
    ckpt = project / "models/delays/synth/learned_delay/s0/best.pt"
    before = ckpt.read_bytes()
    ran = run(
        ["dvc", "repro", "check_params"], cwd=project
    ).stdout  # DVC's own stage: Snakemake checks as it parses
    assert set(re.findall(r"Running stage '([^']+)'", ran)) == {"check_params"}
    run(["dvc", "commit", "-f"], cwd=project)
    assert "Data and pipelines are up to date" in run(["dvc", "status"], cwd=project).stdout
    assert "Running stage" not in run(["dvc", "repro"], cwd=project).stdout
    assert ckpt.read_bytes() == before  # Snakemake's checkpoint, now DVC's


def test_dvc_repro_caches_and_reruns_only_what_a_param_touches(project: Path) -> None:
    run(["dvc", "repro"], cwd=project)
    out, seconds = _timed(["dvc", "repro"], project)
    print(f"no-op dvc repro: {seconds:.2f} s")
    assert "Data and pipelines are up to date" in out

    _set(project, "delays.sets.synth.train.dropout", 0.3)
    out = run(["dvc", "repro"], cwd=project).stdout
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    assert ran == DELAY_JOBS | {
        "check_params",
        "report",
    }  # check_params reads params.yaml; its output is unchanged
    # the metrics of the two commits-to-be compare through DVC, and so do the per-epoch curves
    diff = run(["dvc", "metrics", "diff", "--json"], cwd=project).stdout
    assert "results/metrics.json" in diff
    plots = json.loads(run(["dvc", "plots", "show", "--json"], cwd=project).stdout)
    assert not plots.get("errors")
    assert "results/curves/delays_train/synth-learned_delay-s0/valid_acc.tsv" in plots["data"]
    assert "results/curves/finetune_snn/pipeU/val_acc.tsv" in plots["data"]


def readme_commands(heading: str) -> list[str]:
    """The commands of the first bash block after a README heading, comments removed."""
    text = (REPO / "README.md").read_text().split(heading + "\n", 1)[1]
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readmes_running_section_as_typed(project: Path) -> None:
    """Every command of the README's "Running" section, in order, as typed (the test's PATH has the venv
    first, which is what `source .venv/bin/activate` does); the experiment is committed so that HEAD~1
    exists."""
    commands = readme_commands("## Running")
    assert commands[0] == "source .venv/bin/activate" and len(commands) >= 10
    commit_all(project, "baseline results")
    committed = False
    for command in commands[1:]:
        if "HEAD~1" in command and not committed:  # the experiment's results, committed to compare
            commit_all(project, "lr_positions 0.05")
            committed = True
        out = run(["bash", "-c", command], cwd=project)
        text = out.stdout + out.stderr
        if command.startswith("dvc exp run"):  # a learned-delay key: the other variants stay cached
            assert set(re.findall(r"Running stage '([^']+)'", text)) == {
                "delays_train@synth-learned_delay-0",
                "delays_evaluate@synth-learned_delay-0",
                "check_params",
                "report",
            }
        elif command.startswith("snakemake --report"):
            assert (project / "results/report.html").stat().st_size > 100_000
            assert "Missing metadata" not in text  # every output's provenance is known after the run
        elif command == "python -m pipeline experiments":
            assert "lr_positions=0.05" in text and max(map(len, text.splitlines())) <= 100, text
        elif command.startswith("dvc metrics diff"):
            assert "results/metrics.json" in text
        elif command.startswith("dvc params diff"):
            assert "delays.variant_recipe.learned_delay.lr_positions" in text
        elif command.startswith("dvc plots diff"):
            assert "dvc_plots/index.html" in text
        elif command.startswith("python -m pipeline compare"):
            assert (
                "## delays:" in text and "## pretrain:" in text and "learned" in text
            )  # both papers' tables
        elif command == "python -m pipeline --help":
            assert "experiments" in text and "delays_train" in text


def test_a_typo_key_stops_dvc_before_anything_is_deleted(project: Path) -> None:
    params = (project / "params.yaml").read_text()
    ckpt = project / "models/delays/synth/learned_delay/s0/best.pt"
    before = ckpt.stat().st_mtime_ns
    try:
        _set(project, "delays.trian", 1)
        _set(
            project, "delays.sets.synth.train.dropout", 0.2
        )  # would rerun training if the typo went unnoticed
        proc = run(["dvc", "repro"], cwd=project, check=False)
        ours = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error:")]
        assert proc.returncode != 0 and ours == [
            "error: params.yaml: delays: unknown key(s) 'trian' (allowed: "
            "datasets, variants, seeds, synth, recipe, variant_recipe, sets)"
        ]
        assert "Running stage 'delays_train" not in proc.stdout
        assert ckpt.stat().st_mtime_ns == before
        (project / "params.yaml").write_text(params.replace("device: auto", "device: auto\n\tthreads: 2", 1))
        proc = run(
            ["dvc", "repro"], cwd=project, check=False
        )  # a YAML error: DVC's own message, file, line, column
        assert proc.returncode != 0 and "params.yaml" in proc.stderr and "line 2, column 1" in proc.stderr
        assert ckpt.stat().st_mtime_ns == before
    finally:
        (project / "params.yaml").write_text(params)


def test_a_killed_training_stage_is_rerun_by_both_drivers_and_resumes(project: Path) -> None:
    """SIGKILL mid-epoch 2: neither driver takes the partial outputs as done, and the rerun continues."""
    stage, ckpt = "delays_train@synth-learned_delay-0", "models/delays/synth/learned_delay/s0"
    kill = {"PIPELINE_KILL_AFTER_BATCHES": "5"}  # 4 training batches per epoch here
    run(["dvc", "repro"], cwd=project)
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
