"""Reliability of the training stages: determinism, resume after SIGKILL, NaN handling.

Training runs go through the CLI in subprocesses (as Snakemake and DVC run
them, with params' `threads`), so float results are comparable bit for bit.
A kill is a real SIGKILL, injected at a reproducible batch through
$PIPELINE_KILL_AFTER_BATCHES (pipeline/run/resume.py).
"""

from __future__ import annotations

import copy
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from pipeline.io import load_torch, read_json
from pipeline.params.load import load_params, raise_problems, structure_problems
from pipeline.run.resume import KILL_ENV, KILL_SIGNAL_ENV, state_path
from pipeline.run.errors import PREEMPTED_EXIT

from tests.conftest import REPO, call_stage

TIMING = {"elapsed_s", "wall_s"}  # the only keys allowed to differ between runs


def _cli(
    args: list[str], cwd: Path, kill_after: int | None = None, kill_signal: str = "KILL"
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (KILL_ENV, KILL_SIGNAL_ENV)}
    if kill_after is not None:
        env[KILL_ENV], env[KILL_SIGNAL_ENV] = str(kill_after), kill_signal
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _strip(obj):
    """Metrics or history without wall-clock fields."""
    if isinstance(obj, list):
        return [_strip(o) for o in obj]
    return {k: v for k, v in obj.items() if k not in TIMING}


def _delays_params(tmp: Path) -> dict:
    p = copy.deepcopy(load_params(REPO / "params.yaml"))
    p["device"] = "cpu"
    d = p["delays"]
    d["synth"].update(n_units=40, n_classes=4, n_groups=3, n_train=48, n_test=16, onset_max_ms=30.0)
    d["sets"]["synth"]["data"].update(root=str(tmp / "raw"), pool=4, n_channels=40, valid_fraction=0.25)
    d["sets"]["synth"]["train"].update(hidden=[8], epochs=3, batch_size=12, max_delay_ms=50)
    raise_problems(structure_problems(p))
    return p


@pytest.fixture(scope="module")
def delays_project(tmp_path_factory) -> Path:
    """A working dir with a tiny prepared synth set and its params file (3 train batches per epoch)."""
    tmp = tmp_path_factory.mktemp("delays_resume")
    p = _delays_params(tmp)
    (tmp / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    call_stage("delays_synth", p, out=tmp / "raw")
    call_stage("delays_prepare", p, dataset="synth", out=tmp / "prep")
    return tmp


def _train_delays(
    work: Path,
    name: str,
    kill_after: int | None = None,
    variant: str = "learned_delay",
    params: str = "params.yaml",
    kill_signal: str = "KILL",
) -> subprocess.CompletedProcess:
    return _cli(
        [
            "delays_train",
            "--params",
            params,
            "--dataset",
            "synth",
            "--variant",
            variant,
            "--seed",
            "0",
            "--data",
            "prep",
            "--ckpt",
            f"ck/{name}",
            "--live",
            f"live/{name}",
            "--log",
            f"logs/{name}.log",
        ],
        work,
        kill_after,
        kill_signal,
    )


def test_same_seed_same_metrics_and_killed_run_resumes_to_the_same_result(delays_project: Path) -> None:
    work = delays_project
    for name in ("a", "b"):
        proc = _train_delays(work, name)
        assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = (read_json(work / f"live/{n}/history.json") for n in ("a", "b"))
    assert len(a) == 3 and _strip(a) == _strip(b)  # determinism: bit-identical floats on CPU
    assert not state_path(work / "ck/a").exists()  # removed once the stage finished

    # SIGKILL in the middle of epoch 2 (batch 5 of 3 per epoch): the epoch-1 state survives
    killed = _train_delays(work, "c", kill_after=5)
    assert killed.returncode == -signal.SIGKILL
    state = load_torch(state_path(work / "ck/c"))
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert not (work / "live/c").exists()  # the DVCLive folder appears whole, once the stage succeeds

    resumed = _train_delays(work, "c")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resume: continuing after epoch 1" in resumed.stdout
    assert _strip(read_json(work / "live/c/history.json")) == _strip(a)
    assert _strip(read_json(work / "live/c/metrics.json")) == _strip(read_json(work / "live/a/metrics.json"))
    for ck in ("best.pt", "last.pt", "init.pt"):  # the checkpoints too, tensor for tensor
        sa, sc = load_torch(work / "ck/a" / ck)["state_dict"], load_torch(work / "ck/c" / ck)["state_dict"]
        assert sa.keys() == sc.keys() and all(torch.equal(sa[k], sc[k]) for k in sa)
    assert not state_path(work / "ck/c").exists()
    tsv = (work / "live/c/plots/metrics/valid_acc.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in tsv[1:]] == ["0", "1", "2"]  # DVCLive's steps continue, no gap


def test_a_preemption_notice_saves_the_batch_and_the_rerun_continues_it(delays_project: Path) -> None:
    """SIGUSR1 (a cluster's notice before its time limit) after batch 5 = epoch 2, batch 2 of 3: the state of
    that batch is saved, the exit code asks for a retry, and the rerun ends exactly where an uninterrupted run
    does."""
    work = delays_project
    if not (work / "live/a/history.json").exists():
        assert _train_delays(work, "a").returncode == 0
    preempted = _train_delays(work, "p", kill_after=5, kill_signal="USR1")
    assert preempted.returncode == PREEMPTED_EXIT, preempted.stderr[-2000:]
    assert "preempted by SIGUSR1: state saved after epoch 2 batch 2" in preempted.stderr
    state = load_torch(state_path(work / "ck/p"))
    assert (state["epoch"], state["batch"]) == (1, 2)
    resumed = _train_delays(work, "p")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resume: continuing epoch 2 at batch 3" in resumed.stdout
    assert _strip(read_json(work / "live/p/history.json")) == _strip(read_json(work / "live/a/history.json"))
    for ck in ("best.pt", "last.pt"):
        sa, sp = load_torch(work / "ck/a" / ck)["state_dict"], load_torch(work / "ck/p" / ck)["state_dict"]
        assert all(torch.equal(sa[k], sp[k]) for k in sa)


def test_the_log_holds_plain_lines(delays_project: Path) -> None:
    """--log copies the stage's output: epoch lines and the resume note, no carriage-return frames."""
    log = (delays_project / "logs/p.log").read_text() if (delays_project / "logs/p.log").exists() else ""
    if not log:
        assert _train_delays(delays_project, "l").returncode == 0
        log = (delays_project / "logs/l.log").read_text()
    assert "\r" not in log
    assert re.search(r"^\[delays_train synth/learned_delay/s0\] epoch 3/3: train_loss ", log, flags=re.M)


def test_state_from_other_params_is_not_resumed(delays_project: Path) -> None:
    work = delays_project
    assert _train_delays(work, "d", kill_after=4).returncode == -signal.SIGKILL
    p = yaml.safe_load((work / "params.yaml").read_text())
    p["delays"]["variant_recipe"]["learned_delay"]["lr_positions"] *= 2
    (work / "other.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    proc = _train_delays(work, "d", params="other.yaml")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "starting fresh" in proc.stdout and "continuing" not in proc.stdout
    assert len(read_json(work / "live/d/history.json")) == 3


def test_seed_changes_the_run(delays_project: Path) -> None:
    work = delays_project
    proc = _cli(
        [
            "delays_train",
            "--dataset",
            "synth",
            "--variant",
            "learned_delay",
            "--seed",
            "1",
            "--data",
            "prep",
            "--ckpt",
            "ck/s1",
            "--live",
            "live/s1",
        ],
        work,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    if not (work / "live/a/history.json").exists():
        pytest.skip("needs the run of the determinism test")
    assert _strip(read_json(work / "live/s1/history.json")) != _strip(read_json(work / "live/a/history.json"))


def _nan_on_call(monkeypatch, owner, attr: str, call: int) -> None:
    """Make owner.attr return NaN on its `call`-th use with gradients enabled (training, not evaluation)."""
    original = getattr(owner, attr)
    count = {"n": 0}

    def patched(*args, **kwargs):
        out = original(*args, **kwargs)
        if torch.is_grad_enabled():
            count["n"] += 1
            if count["n"] == call:
                return out * float("nan")
        return out

    monkeypatch.setattr(owner, attr, patched)


def test_nan_loss_stops_with_epoch_and_batch_and_keeps_the_last_good_state(
    delays_project, tmp_path, monkeypatch, capsys
) -> None:
    from pipeline.drivers import cli
    from pipeline.delays import train as delays_train

    _nan_on_call(monkeypatch, delays_train, "loss_fn", call=5)  # epoch 2, batch 2
    monkeypatch.chdir(delays_project)
    threads = torch.get_num_threads()
    try:
        code = cli.main(
            [
                "delays_train",
                "--dataset",
                "synth",
                "--variant",
                "learned_delay",
                "--seed",
                "0",
                "--data",
                "prep",
                "--ckpt",
                str(tmp_path / "ck"),
                "--live",
                str(tmp_path / "live"),
            ]
        )
    finally:
        torch.set_num_threads(threads)  # the CLI pins params' threads for the whole process
    lines = capsys.readouterr().err.strip().splitlines()  # progress bars, then the error
    errors = [line for line in lines if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and errors[0] == lines[-1]
    err = errors[0]
    assert "non-finite training loss (nan) at epoch 2 batch 2" in err
    state = load_torch(state_path(tmp_path / "ck"))
    assert state["epoch"] == 1 and str(state_path(tmp_path / "ck")) in err
    assert all(torch.isfinite(v).all() for v in state["task"]["model"].values() if v.is_floating_point())


def _pretrain_params(tmp: Path) -> dict:
    p = copy.deepcopy(load_params(REPO / "params.yaml"))
    p["device"] = "cpu"
    pre = p["pretrain"]
    pre["model"].update(width=2)
    pre["snn"]["time_steps"] = 2
    pre["datasets"]["digits"]["image_size"] = 8
    pre["ann"].update(epochs=3, batch_size=512, sharpen_epochs=2)
    pre["datasets"]["digits"]["root"] = str(tmp / "img")
    raise_problems(structure_problems(p))
    return p


def test_pretrain_stage_resumes_to_the_same_result(tmp_path: Path) -> None:
    p = _pretrain_params(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    call_stage("images_embedded", p, out=tmp_path / "img")
    args = ["pretrain_ann", "--ann", "digits", "--data", "img"]
    full = _cli([*args, "--ckpt", "a.pt", "--live", "live_a"], tmp_path)
    assert full.returncode == 0, full.stderr[-2000:]
    batches = -(-len(list((tmp_path / "img" / "train").rglob("*.png"))) // 512)  # per epoch
    killed = _cli([*args, "--ckpt", "b.pt", "--live", "live_b"], tmp_path, kill_after=batches + 1)
    assert killed.returncode == -signal.SIGKILL and load_torch(state_path(tmp_path / "b.pt"))["epoch"] == 1
    resumed = _cli([*args, "--ckpt", "b.pt", "--live", "live_b"], tmp_path)
    assert resumed.returncode == 0 and "continuing after epoch 1" in resumed.stdout, resumed.stderr[-2000:]
    assert _strip(read_json(tmp_path / "live_b/history.json")) == _strip(
        read_json(tmp_path / "live_a/history.json")
    )
    a, b = load_torch(tmp_path / "a.pt"), load_torch(tmp_path / "b.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert (a["epoch"], a["best_epoch"], a["best_val_acc"]) == (
        b["epoch"],
        b["best_epoch"],
        b["best_val_acc"],
    )


def test_pretrain_nan_loss_names_epoch_and_batch(tmp_path: Path, monkeypatch) -> None:
    p = _pretrain_params(tmp_path)
    p["pretrain"]["ann"].update(epochs=2, batch_size=256)
    call_stage("images_embedded", p, out=tmp_path / "img")
    per_epoch = -(-len(list((tmp_path / "img" / "train").rglob("*.png"))) // 256)
    _nan_on_call(monkeypatch, nn.CrossEntropyLoss, "forward", call=per_epoch + 3)
    with pytest.raises(FloatingPointError, match="at epoch 2 batch 3; the last good state \\(epoch 1\\)"):
        call_stage(
            "pretrain_ann",
            p,
            ann="digits",
            data=tmp_path / "img",
            ckpt=tmp_path / "ann.pt",
            live=tmp_path / "live",
        )
    assert load_torch(state_path(tmp_path / "ann.pt"))["epoch"] == 1
    assert load_torch(tmp_path / "ann.pt")["epoch"] == 1  # the checkpoint of the last good epoch stays too
