"""Data-parallel stages as the drivers and a cluster run them: 2 CPU processes (gloo), tiny delays_train.

One project copy with `nproc: 2` serves every test: DVC trains the reference run (uninterrupted), and
every other run must end with exactly its metrics. A preemption notice is delivered at a reproducible
batch: the ranks stop themselves there (SIGSTOP through $PIPELINE_KILL_AFTER_BATCHES), the test sends
the notice as a cluster would, waits until the ranks hold it pending, and lets them go on (SIGCONT).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.io import load_torch, read_json
from pipeline.run.errors import PREEMPTED_EXIT
from pipeline.run.resume import KILL_ENV, KILL_SIGNAL_ENV, state_path
from tests.conftest import REPO, VENV_BIN, copy_project, run

pytestmark = pytest.mark.e2e

JOB = "delays_train@synth-learned_delay-0"
CKPT, LIVE = "models/delays/synth/learned_delay/s0", "results/delays/train/synth/learned_delay/s0"
TIMING = {"elapsed_s", "wall_s"}
STAGE = [
    "delays_train",
    "--dataset",
    "synth",
    "--variant",
    "learned_delay",
    "--seed",
    "0",
    "--data",
    "data/prepared/delays/synth",
]


def _params() -> dict:
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p.update(device="cpu", nproc=2)
    d = p["delays"]
    d.update(seeds=[0], variants=["learned_delay"])
    d["synth"].update(n_units=40, n_classes=4, n_groups=3, n_train=48, n_test=16, onset_max_ms=30.0)
    d["sets"]["synth"]["data"].update(pool=4, n_channels=40, valid_fraction=0.25)
    # 36 training samples in batches of 12: 3 batches per epoch
    d["sets"]["synth"]["train"].update(hidden=[4], epochs=2, batch_size=12, max_delay_ms=50, dropout=0.0)
    return p


def _history(path: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in read_json(path / "history.json")]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The project with `nproc: 2`, and the reference run trained by `dvc repro` as DVC runs it."""
    work = copy_project(tmp_path_factory.mktemp("ddp_launch"), _params(), commit=True)
    run(["dvc", "repro", JOB], cwd=work)
    shutil.copytree(work / LIVE, work / "reference")  # kept: the Snakemake test rewrites the job's outputs
    return work


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (KILL_ENV, KILL_SIGNAL_ENV)}
    return {**env, "PATH": f"{VENV_BIN}:{env['PATH']}", **extra}


def _stopping_after(batches: int) -> dict[str, str]:
    """Each rank stops itself (SIGSTOP) after this many training batches of its run."""
    return {KILL_ENV: str(batches), KILL_SIGNAL_ENV: "STOP"}


def _proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _descendants(pid: int) -> list[int]:
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    parent = {p: int(s[1]) for p in pids if (s := _proc_stat(p)) is not None}
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier]
        found += kids
        frontier = kids
    return found


def _alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def _ranks(root: int) -> list[int]:
    """The training ranks under `root`: processes running `-m pipeline` with a RANK in their environment."""
    ranks = []
    for pid in _descendants(root):
        try:
            if b"\0RANK=" in b"\0" + Path(f"/proc/{pid}/environ").read_bytes():
                ranks.append(pid)
        except OSError:
            pass
    return ranks


def _wait_for(what: str, check, timeout: float = 300):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _stopped_ranks(root: int) -> list[int]:
    ranks = _ranks(root)
    return ranks if len(ranks) == 2 and all(_proc_stat(r)[0] == "T" for r in ranks) else []


def _pending(pid: int, sig: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16) >> (sig - 1) & 1:
            return True
    return False


def _preempt(
    root: int, sig: int, targets: list[int], groups: list[int] = (), ranks_too: bool = False
) -> list[int]:
    """Once both ranks under `root` have stopped: send `sig` to `targets`, process `groups` (and the ranks),
    wait until both ranks hold it pending (the stage's launcher passes it on), let them go on; returns the
    processes seen."""
    ranks = _wait_for("both ranks to stop", lambda: _stopped_ranks(root))
    seen = [root, *_descendants(root)]
    for pid in targets + (ranks if ranks_too else []):
        os.kill(pid, sig)
    for group in groups:
        os.killpg(group, sig)
    _wait_for("the notice to reach the ranks", lambda: all(_pending(r, sig) for r in ranks), timeout=30)
    for r in ranks:
        os.kill(r, signal.SIGCONT)
    return seen


def _cli(work: Path, name: str, env: dict[str, str]) -> subprocess.Popen:
    log = open(work / f"{name}.out", "w")
    cmd = [
        sys.executable,
        "-m",
        "pipeline",
        *STAGE,
        "--ckpt",
        f"ck/{name}",
        "--live",
        f"live/{name}",
        "--log",
        f"logs/{name}.log",
    ]
    return subprocess.Popen(
        cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def _ended_within(proc: subprocess.Popen, seen: list[int], seconds: float = 60) -> int:
    code = proc.wait(timeout=seconds)
    _wait_for("every process of the stage to end", lambda: not any(_alive(p) for p in seen), timeout=10)
    return code


def test_dvc_trains_two_processes_as_its_stage_command_runs_them(project: Path) -> None:
    log = (project / "logs/delays_train/synth_learned_delay_0.log").read_text()
    assert "running delays_train on 2 processes" in log
    assert "[rank0] [delays_train synth/learned_delay/s0] epoch 2/2" in log
    assert read_json(project / LIVE / "config.json")["world_size"] == 2
    assert {f.name for f in (project / CKPT).iterdir()} >= {"init.pt", "best.pt", "last.pt"}
    assert len(_history(project / LIVE)) == 2 and not state_path(project / CKPT).exists()


def test_a_notice_to_the_launcher_alone_then_to_every_process_saves_and_resumes(project: Path) -> None:
    """SIGUSR1 to the stage's process only (its ranks run in sessions of their own): passed on, saved at the
    batch, exit 75, no rank left. The rerun resumes; SIGTERM to every process of it (as slurmstepd signals a
    step) does the same. A third run's launcher is killed: its ranks die too. The last run ends with exactly
    the reference's metrics."""
    name = "cli"
    runs = [
        (signal.SIGUSR1, False, (1, 2)),  # after batch 2 of epoch 1
        (signal.SIGTERM, True, (2, 1)),
    ]  # resumed at batch 3: after 2 more batches, epoch 2 batch 1
    for sig, everyone, (epoch, batch) in runs:
        proc = _cli(project, name, _env(**_stopping_after(2)))
        if everyone:  # the stage's process group, and its ranks (in sessions of their own)
            seen = _preempt(proc.pid, sig, targets=[], groups=[proc.pid], ranks_too=True)
        else:
            seen = _preempt(proc.pid, sig, targets=[proc.pid])
        assert _ended_within(proc, seen) == PREEMPTED_EXIT, (project / f"{name}.out").read_text()[-3000:]
        out = (project / f"{name}.out").read_text()
        assert f"preempted by {sig.name}: state saved after epoch {epoch} batch {batch}" in out
        state = load_torch(state_path(project / "ck" / name))
        assert (state["epoch"], state["batch"]) == (epoch - 1, batch)
    # A launcher killed outright (SIGKILL: nothing to pass on): its ranks die with it, mid-batch, and leave
    # the saved state alone
    proc = _cli(project, name, _env(**_stopping_after(1)))
    ranks = _wait_for("both ranks to stop", lambda: _stopped_ranks(proc.pid))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    _wait_for("the ranks to die with their launcher", lambda: not any(_alive(r) for r in ranks), timeout=30)
    proc = _cli(project, name, _env())
    assert proc.wait(timeout=600) == 0, (project / f"{name}.out").read_text()[-3000:]
    assert "resume: continuing epoch 2 at batch 2" in (project / f"logs/{name}.log").read_text()
    assert _history(project / "live" / name) == _reference(project)
    assert not state_path(project / "ck" / name).exists()


def test_snakemake_in_a_slurm_step_survives_the_notice_and_the_retry_resumes(project: Path) -> None:
    """slurmstepd's `--signal` reaches every process of the job step the slurm executor runs the inner
    Snakemake in; the profile sends SIGTERM, which Snakemake answers by waiting for its running job (SIGUSR1
    would kill it and so end the step at once). Simulated: SIGTERM to the process group of a Snakemake running
    the job, then SIGKILL to all that is left after a grace period. The state is saved; the retried run
    resumes to the reference's metrics."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    extra = profile["set-resources"]["delays_train"]["slurm_extra"]
    notice = signal.Signals["SIG" + extra.split("--signal=")[1].split("@")[0].removeprefix("B:")]
    assert notice == signal.SIGTERM
    cmd = ["snakemake", "--cores", "2", "--force", CKPT]
    smk = subprocess.Popen(
        cmd,
        cwd=project,
        env=_env(**_stopping_after(4)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen = _preempt(smk.pid, notice, [], groups=[smk.pid])
    try:
        out, _ = smk.communicate(timeout=60)  # the grace period (SLURM's KillWait)
        left = [p for p in seen if _alive(p)]
    finally:  # slurmstepd kills whatever is left of the step
        for pid in [p for p in seen if _alive(p)]:
            os.kill(pid, signal.SIGKILL)
    assert smk.returncode == 1, out[-3000:]  # Snakemake's own exit after the job failed, not a signal
    assert f"non-zero exit status {PREEMPTED_EXIT}" in out and left == []
    state = load_torch(state_path(project / CKPT))
    assert (state["epoch"], state["batch"]) == (1, 1)
    retry = run(["snakemake", "--cores", "2", CKPT], cwd=project)
    log = (project / "logs/delays_train/synth_learned_delay_0.log").read_text()
    assert "resume: continuing epoch 2 at batch 2" in log
    assert _history(project / LIVE) == _reference(project), retry.stdout[-2000:]


def _reference(project: Path) -> list[dict]:
    return _history(project / "reference")


def _free_rdzv_job_id() -> int:
    """A fake SLURM job id whose rendezvous port (RDZV_PORT_BASE + id % 1000) is free here."""
    from pipeline.run.distributed import RDZV_PORT_BASE

    for job in range(4242, 5242):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", RDZV_PORT_BASE + job % 1000))
            except OSError:
                continue
            return job
    raise AssertionError("no free rendezvous port")


FAKE_SRUN = """#!{python}
# srun stand-in: its command once per task here (SLURM_PROCID, SLURM_NODEID set); exits with the worst code
import os, subprocess, sys
args, tasks = sys.argv[1:], 1
while args[0].startswith("--"):
    opt = args.pop(0)
    if opt.startswith("--ntasks="):
        tasks = int(opt.split("=")[1])
with open(os.environ["FAKE_SRUN_LOG"], "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
procs = [subprocess.Popen(args, env={{**os.environ, "SLURM_PROCID": str(i), "SLURM_NODEID": str(i)}})
         for i in range(tasks)]
sys.exit(max(p.wait() for p in procs))
"""
SCONTROL = """#!/bin/sh
# scontrol stand-in: `show hostnames LIST` names two nodes, both this machine
[ "$1 $2" = "show hostnames" ] && printf '127.0.0.1\\n127.0.0.1\\n'
"""


def test_two_nodes_through_srun_rendezvous_and_match_one_node(project: Path, tmp_path: Path) -> None:
    """`nnodes: 2` with `nproc: 1` in a SLURM job: the stage starts a launcher per node through srun, and they
    meet on the job's first node (c10d). Here the nodes are two launchers on 127.0.0.1 (srun and scontrol are
    stand-ins); the run ends with exactly the metrics of one node with 2 processes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN.format(python=sys.executable))
    (bin_dir / "scontrol").write_text(SCONTROL)
    for tool in ("srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)
    p = yaml.safe_load((project / "params.yaml").read_text())
    p.update(nproc=1, nnodes=2)
    (project / "nodes.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    env = _env(
        SLURM_JOB_ID=str(_free_rdzv_job_id()),
        SLURM_JOB_NODELIST="node[1-2]",
        FAKE_SRUN_LOG=str(tmp_path / "srun.log"),
    )
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    cmd = [
        sys.executable,
        "-m",
        "pipeline",
        "--params",
        "nodes.yaml",
        *STAGE,
        "--ckpt",
        "ck/nodes",
        "--live",
        "live/nodes",
        "--log",
        "logs/nodes.log",
    ]
    proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    srun = (tmp_path / "srun.log").read_text()
    assert srun.startswith("--overlap --nodes=2 --ntasks=2 --ntasks-per-node=1 --kill-on-bad-exit=1 ")
    assert "--log" not in srun and "--progress" in srun
    log = (project / "logs/nodes.log").read_text()
    assert "on 2 processes (2 node(s) x 1)" in log and "rendezvous 127.0.0.1:" in log
    assert read_json(project / "live/nodes/config.json")["world_size"] == 2
    assert _history(project / "live/nodes") == _reference(project)


def test_the_slurm_profile_requests_the_nodes_and_their_gpus(project: Path) -> None:
    """`nnodes: 2`: the job asks SLURM for 2 nodes with `nproc` GPUs each (the plugin turns `nodes` into
    `--nodes` and `gres` into `--gres`, a per-node count; its `gpu` would be a total). Dry run: no cluster
    here."""
    plan = run(
        ["snakemake", "-n", "--workflow-profile", "profiles/slurm", "--config", "nnodes=2", "--force", CKPT],
        cwd=project,
    ).stdout
    block = plan.split("rule delays_train:")[1]
    resources = dict(kv.split("=", 1) for kv in re.search(r"resources: (.*)", block).group(1).split(", "))
    assert (resources["nodes"], resources["gres"]) == ("2", "gpu:2") and "gpu" not in resources
    assert resources["slurm_extra"] == "--signal=TERM@300"
