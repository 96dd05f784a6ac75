"""A small sweep through DVC's experiment queue, as the README documents it, on a tiny copy of the project
after `make run` (Snakemake, then its outputs recorded in DVC's cache; a copy of the session's run): the
README's commit step, `dvc exp run --queue -S ...` twice, `dvc queue start -j 2`, `dvc queue status`,
`dvc exp show`.

Each queued experiment must rerun only the jobs that declare the swept key: the learned-delay runs'
training and evaluation and the report (and DVC's own parameter check), never the data stages, the other two
variants or paper A, because `make run` left DVC's cache complete.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, VENV_BIN, copy_ran_project, run

pytestmark = pytest.mark.e2e

SWEEP = {"lrpos-005": 0.05, "lrpos-02": 0.2}  # name -> delays.variant_recipe.learned_delay.lr_positions
EVAL = "results/delays/eval/synth/learned_delay/s0.json"
QUEUE_TIMEOUT_S = 600


def readme_sweep() -> list[str]:
    """The commands of the README's sweep section, comments removed."""
    text = (REPO / "README.md").read_text().split("### A sweep through the DVC experiment queue", 1)[1]
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


# the workers commit each experiment: an identity for machines without a git config
GIT_ID = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}


def start_workers(work: Path, jobs: int) -> None:
    """`dvc queue start -j jobs`, its output to a file: the detached workers inherit the command's
    stdout, and a pipe (conftest.run) would keep this call waiting until the whole queue is done."""
    log = work / ".dvc" / "tmp" / "queue-start.log"  # git-ignored, so not part of any experiment
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        code = subprocess.call(
            ["dvc", "queue", "start", "-j", str(jobs)],
            cwd=work,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}", **GIT_ID),
            timeout=120,
        )
    assert code == 0, log.read_text()


def queue_status(work: Path) -> dict[str, str]:
    """Experiment name -> Queued / Running / Success / Failed, parsed from `dvc queue status`."""
    out = run(["dvc", "queue", "status"], cwd=work).stdout
    rows = re.findall(r"^\w+\s+(\S+)\s+.*?\s(Queued|Running|Success|Failed)\s*$", out, flags=re.M)
    return dict(rows)


def processes_in(work: Path) -> list[int]:
    """Live processes working in the project copy (queue workers and the experiments they run)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(proc / "cwd"))
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone, or not ours to inspect
            continue
        if state != "Z" and (cwd == work or work in cwd.parents):
            pids.append(int(proc.name))
    return pids


def experiments(show: list[dict]) -> dict[str, dict]:
    """Experiment name -> its entry (`rev`, `data`: params, metrics) from `dvc exp show --json`."""
    found: dict[str, dict] = {}

    def walk(node: dict) -> None:
        if node.get("name") in SWEEP and node.get("data"):
            found[node["name"]] = node
        for exp in node.get("experiments") or []:
            for rev in exp.get("revs") or []:
                walk(rev)

    for node in show:
        walk(node)
    return found


def test_queued_sweep_runs_two_experiments_side_by_side(ran_tiny_project: Path, tmp_path: Path) -> None:
    t0 = time.perf_counter()
    work = copy_ran_project(ran_tiny_project, tmp_path.resolve())  # the README's main job, done
    assert "Data and pipelines are up to date" in run(["dvc", "status"], cwd=work).stdout
    commit, *queue, start, status, view = readme_sweep()
    assert start == "dvc queue start -j 2" and status == "dvc queue status"
    assert [c.split()[:5] for c in queue] == [["dvc", "exp", "run", "--queue", "-n"]] * len(SWEEP)
    run(["bash", "-c", commit], cwd=work, env=GIT_ID)  # as the README types it
    t_repro = time.perf_counter() - t0

    for command in queue:
        run(["bash", "-c", command], cwd=work)
    assert queue_status(work) == {name: "Queued" for name in SWEEP}
    most_running = 0
    try:
        start_workers(work, 2)
        deadline = time.monotonic() + QUEUE_TIMEOUT_S
        while True:
            status = queue_status(work)
            most_running = max(most_running, sum(s == "Running" for s in status.values()))
            if all(s in ("Success", "Failed") for s in status.values()):
                break
            assert time.monotonic() < deadline, f"queue not done after {QUEUE_TIMEOUT_S} s: {status}"
            time.sleep(2)
        failed = [name for name, s in status.items() if s == "Failed"]
        assert not failed, "\n".join(
            run(["dvc", "queue", "logs", n], cwd=work, check=False).stdout[-4000:] for n in failed
        )
        for name in SWEEP:  # each experiment reran what the key touches, nothing else
            logs = run(["dvc", "queue", "logs", name], cwd=work).stdout
            assert set(re.findall(r"Running stage '([^']+)'", logs)) == {
                "check_params",
                "report",
                "delays_train@synth-learned_delay-0",
                "delays_evaluate@synth-learned_delay-0",
            }, logs[-4000:]
    finally:
        run(["dvc", "queue", "stop", "--kill"], cwd=work, check=False)
        deadline = time.monotonic() + 60
        while processes_in(work) and time.monotonic() < deadline:
            time.sleep(1)
        survivors = processes_in(work)
        for pid in survivors:  # started by this test; do not leave them running after a failure
            os.kill(pid, signal.SIGKILL)
    t_queue = time.perf_counter() - t0 - t_repro
    assert survivors == [], f"queue processes still running after `dvc queue stop --kill`: {survivors}"
    assert most_running == 2, "the two experiments never ran at the same time"

    table = run(["bash", "-c", view], cwd=work).stdout  # the README's view
    assert all(name in table for name in SWEEP)
    assert max(map(len, table.splitlines())) <= 100, table
    exps = experiments(json.loads(run(["dvc", "exp", "show", "--json"], cwd=work).stdout))
    assert set(exps) == set(SWEEP)
    results = {}
    for name, exp in exps.items():
        delays = exp["data"]["params"]["params.yaml"]["data"]["delays"]
        assert delays["variant_recipe"]["learned_delay"]["lr_positions"] == SWEEP[name]
        # the evaluation JSON as the experiment committed it (only results/metrics.json is a DVC metrics file)
        results[name] = json.loads(run(["git", "show", f"{exp['rev']}:{EVAL}"], cwd=work).stdout)
        assert {"test_acc", "test_loss", "valid_acc", "best_test_acc"} <= set(results[name])
    a, b = results.values()
    assert a["test_loss"] != b["test_loss"]  # the swept parameter changed the trained model
    print(f"baseline copy + commits {t_repro:.1f} s, queue of 2 with -j 2 {t_queue:.1f} s")
