"""Runs cannot collide and leave no debris: one run of a job at a time whichever driver starts it, Ctrl-C
is one line and keeps the resume state, a kill -9 of Snakemake is followed by the README's commands, and a
failed DVC stage keeps the last good run's git-tracked metrics."""

from __future__ import annotations

import copy
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.io import read_json
from pipeline.params.load import load_params
from pipeline.run.output_lock import BUSY_EXIT, lock_path
from pipeline.run.resume import KILL_ENV, KILL_SIGNAL_ENV, state_path
from tests.conftest import REPO, VENV_BIN, call_stage, copy_project, run


def _delays_params(tmp: Path) -> dict:
    """A tiny synth set: 3 training batches per epoch, 2 epochs."""
    p = copy.deepcopy(load_params(REPO / "params.yaml"))
    p["device"] = "cpu"
    d = p["delays"]
    d["seeds"] = [0]
    d["synth"].update(n_units=40, n_classes=4, n_groups=3, n_train=48, n_test=16, onset_max_ms=30.0)
    d["sets"]["synth"]["data"].update(root=str(tmp / "raw"), pool=4, n_channels=40, valid_fraction=0.25)
    d["sets"]["synth"]["train"].update(hidden=[8], epochs=2, batch_size=12, max_delay_ms=50)
    return p


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("collisions")
    p = _delays_params(tmp)
    (tmp / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    call_stage("delays_synth", p, out=tmp / "raw")
    call_stage("delays_prepare", p, dataset="synth", out=tmp / "prep")
    return tmp


TRAIN = ["delays_train", "--dataset", "synth", "--variant", "learned_delay", "--seed", "0", "--data", "prep"]


def _train(
    work: Path, name: str, kill_after: int | None = None, kill_signal: str = "KILL"
) -> subprocess.Popen:
    """`python -m pipeline delays_train ...` writing ck/<name> and live/<name>, optionally signalling itself
    after `kill_after` training batches (pipeline/run/resume.py's fault injection)."""
    env = {k: v for k, v in os.environ.items() if k not in (KILL_ENV, KILL_SIGNAL_ENV)}
    if kill_after is not None:
        env[KILL_ENV], env[KILL_SIGNAL_ENV] = str(kill_after), kill_signal
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *TRAIN, "--ckpt", f"ck/{name}", "--live", f"live/{name}"],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _debris(root: Path) -> list[str]:
    """Temporaries and lock files left anywhere under `root` (Snakemake's and DVC's own folders aside)."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob(".*")
        if p.name.endswith((".tmp", ".lock"))
        and p.relative_to(root).parts[0] not in (".snakemake", ".dvc", ".git")
    )


def test_a_second_run_of_the_same_job_says_who_runs_it_and_stops(work: Path) -> None:
    """The first run stops itself (SIGSTOP) in epoch 2 holding the job: a second run of the same job exits 75
    with one line naming the first (pid, host, command), and leaves its resume state and outputs alone."""
    first = _train(work, "a", kill_after=4, kill_signal="STOP")
    try:
        deadline = time.monotonic() + 300
        while not state_path(work / "ck/a").exists():  # epoch 1 is done: its resume state is saved
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.2)
        while Path(f"/proc/{first.pid}/stat").read_text().split()[2] != "T":  # stopped in epoch 2
            assert time.monotonic() < deadline
            time.sleep(0.1)
        state = state_path(work / "ck/a").read_bytes()
        second = _train(work, "a")
        out, err = second.communicate(timeout=300)
        assert second.returncode == BUSY_EXIT
        command = f"python -m pipeline {' '.join(TRAIN)} --ckpt ck/a --live live/a"
        assert re.fullmatch(
            re.escape(
                f"error: delays_train synth/learned_delay/0 is already running: pid {first.pid} "
                f"on {socket.gethostname()} since "
            )
            + r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ "
            + re.escape(
                f"({command}); lock {lock_path('ck/a')}; not starting it twice "
                f"(exit {BUSY_EXIT}: run it again once that run ends)"
            ),
            err.strip(),
        )
        assert state_path(work / "ck/a").read_bytes() == state and "resume:" not in out
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert len(read_json(work / "live/a/history.json")) == 2
    assert _debris(work) == []  # the lock file and every temporary are gone


def test_ctrl_c_prints_one_line_exits_130_and_keeps_the_resume_state(work: Path) -> None:
    """SIGINT in epoch 2 (what Ctrl-C sends): one line, exit 130, the epoch-1 state stays and a rerun
    continues."""
    proc = _train(work, "c", kill_after=4, kill_signal="INT")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130
    assert [line for line in err.splitlines() if "epoch" not in line] == [
        "interrupted: delays_train synth/learned_delay/0; rerun to continue"
    ]
    assert (work / "ck/c/last.pt").exists() and state_path(work / "ck/c").exists()
    assert (
        not (work / "live/c").exists() and _debris(work) == []
    )  # the DVCLive folder appears whole, on success
    again = _train(work, "c")
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-2000:]
    assert "resume: continuing after epoch 1" in out
    assert len(read_json(work / "live/c/history.json")) == 2 and not state_path(work / "ck/c").exists()


def _tiny_project(dst: Path) -> Path:
    """A project copy with tests/test_pipeline_e2e.py's sizes and one run of each kind: 12 jobs."""
    from tests.conftest import tiny

    params = tiny(yaml.safe_load((REPO / "params.yaml").read_text()))
    params["delays"]["variants"] = ["learned_delay"]
    pre = params["pretrain"]
    for runs, name in (
        ("anns", "digits"),
        ("baselines", "digits"),
        ("pipelines", "pipeS"),
        ("datasets", "digits"),
    ):
        pre[runs] = {name: pre[runs][name]}
    return copy_project(dst, params, commit=True)


def _env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}")


@pytest.mark.e2e
def test_after_kill_9_of_snakemake_the_readmes_commands_finish_the_run(tmp_path: Path) -> None:
    """kill -9 of Snakemake's process group mid-run leaves Snakemake's lock: a plain rerun refuses, the
    README's `snakemake --unlock` then `snakemake --cores 2` finishes the run, with no temporary or lock file
    left."""
    work = _tiny_project(tmp_path)
    smk = subprocess.Popen(
        ["snakemake", "--cores", "2"],
        cwd=work,
        env=_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    train_logs = work / "logs" / "delays_train"
    while not (train_logs.is_dir() and any(train_logs.iterdir())):  # training has started: mid-run
        assert smk.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(smk.pid, signal.SIGKILL)
    smk.wait()
    refused = run(["snakemake", "--cores", "2"], cwd=work, check=False)
    assert refused.returncode != 0 and "--unlock" in refused.stdout + refused.stderr
    readme = (REPO / "README.md").read_text()
    assert "snakemake --unlock" in readme
    run(["snakemake", "--unlock"], cwd=work)
    run(["snakemake", "--cores", "2"], cwd=work)
    last = run(["snakemake", "--cores", "2"], cwd=work)
    assert "Nothing to be done" in last.stdout + last.stderr
    assert (work / "results/metrics.json").is_file()
    assert _debris(work) == []


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.e2e
def test_a_failed_dvc_stage_keeps_the_last_good_metrics(tmp_path: Path) -> None:
    """DVC deletes a stage's outputs before rerunning it; the git-tracked ones (persist) must survive a run
    that dies mid-training, and a successful rerun replaces them whole (no stale file)."""
    work = _tiny_project(tmp_path)
    stage = "delays_train@synth-learned_delay-0"
    live = work / "results/delays/train/synth/learned_delay/s0"
    run(["dvc", "repro", stage], cwd=work)
    good = _tree(live)
    assert "metrics.json" in good and "plots/metrics/valid_acc.tsv" in good
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["delays"]["sets"]["synth"]["train"]["dropout"] = 0.3
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    killed = run(
        ["dvc", "repro", stage], cwd=work, check=False, env={KILL_ENV: "5"}
    )  # SIGKILL in epoch 2 (4 batches each)
    assert killed.returncode != 0 and f"Running stage '{stage}'" in killed.stdout
    assert _tree(live) == good
    (live / "stale.txt").write_text("from no run")
    out = run(["dvc", "repro", stage], cwd=work).stdout
    assert "resume: continuing after epoch 1" in out
    now = _tree(live)
    assert set(now) == set(good) and now["metrics.json"] != good["metrics.json"]
    assert read_json(live / "config.json")["net"]["dropout"] == 0.3
    assert _debris(work) == []
