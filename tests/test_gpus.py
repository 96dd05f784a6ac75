"""GPU claims across processes, on a machine without GPUs.

Jobs are real processes that call `claim_for_job` as the CLI does, on GPUs pretended by the test hook
PIPELINE_FAKE_GPUS (or on an allocation's CUDA_VISIBLE_DEVICES); their "ranks" are child processes
started as torchrun starts them (LOCAL_RANK, WORLD_SIZE, the parent's environment). Device listing
is tested on a fake `nvidia-smi`, a fake NVML and fake /proc files.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import pytest
import yaml

from pipeline.run import gpus
from pipeline.run.gpus import ClaimLost, Gpu, claim, claim_for_job, join, visible_gpus
from tests.conftest import call_stage

# A training job as the CLI runs it: claim, then start `ranks` child processes that inherit the environment
# (as torchrun does) and run this same script; every process prints its CUDA_VISIBLE_DEVICES and holds until
# the file `release` exists.
JOB = r"""
import os, subprocess, sys, time
from pathlib import Path
from pipeline.run.gpus import claim_for_job
nproc, ranks, release = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
held = claim_for_job("auto", nproc)
line = f"{os.environ.get('LOCAL_RANK', 'job')} {os.environ.get('CUDA_VISIBLE_DEVICES')} {os.getpid()}\n"
os.write(1, line.encode())  # one write: the ranks share the pipe
rank_env = [dict(os.environ, LOCAL_RANK=str(r), WORLD_SIZE=str(ranks)) for r in range(ranks)]
argv = [sys.executable, sys.argv[0], str(nproc), "0", str(release)]
children = [subprocess.Popen(argv, env=e) for e in rank_env]
while not release.exists():
    time.sleep(0.05)
for c in children:
    c.wait()
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process and the jobs it starts: locks under tmp_path, no inherited claim or device list."""
    monkeypatch.setenv(gpus.LOCK_DIR_ENV, str(tmp_path / "locks"))
    monkeypatch.setattr(gpus, "WAIT_POLL_S", 0.1)
    for name in ("CUDA_VISIBLE_DEVICES", gpus.CLAIM_ENV, gpus.FAKE_ENV, "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.setenv(name, "")  # recorded, so what claim_for_job sets here is undone after the test
        monkeypatch.delenv(name)
    (tmp_path / "job.py").write_text(JOB)
    return dict(os.environ)


def _job(
    tmp_path: Path,
    env: dict[str, str],
    nproc: int = 1,
    ranks: int = 0,
    release: str = "release",
    **extra: str,
) -> subprocess.Popen:
    args = [str(nproc), str(ranks), str(tmp_path / release)]
    return subprocess.Popen(
        [sys.executable, str(tmp_path / "job.py"), *args],
        env={**env, **extra},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )


def _line(stream, timeout: float = 60) -> str:
    """One line of a process's output, or fail after `timeout` (a hanging process must not hang the test)."""
    out, deadline = b"", time.monotonic() + timeout
    while not out.endswith(b"\n"):
        left = deadline - time.monotonic()
        assert left > 0 and select.select([stream], [], [], left)[0], f"no line within {timeout} s: {out!r}"
        byte = stream.read(1)
        assert byte, f"the stream ended: {out!r}"
        out += byte
    return out.decode().strip()


def _finish(tmp_path: Path, *procs: subprocess.Popen, release: str = "release") -> None:
    (tmp_path / release).touch()
    for p in procs:
        p.wait(timeout=60)


def _fake(n: int) -> list[Gpu]:
    return [Gpu(str(i), str(i), str(i)) for i in range(n)]


def test_concurrent_jobs_spread_over_the_gpus_and_a_third_waits(tmp_path: Path, env: dict[str, str]) -> None:
    two = _job(tmp_path, env, nproc=2, PIPELINE_FAKE_GPUS="3")
    one = _job(tmp_path, env, nproc=1, PIPELINE_FAKE_GPUS="3")
    try:
        got = [_line(two.stdout).split()[1], _line(one.stdout).split()[1]]
        assert len(got[0].split(",")) == 2 and len(got[1].split(",")) == 1
        assert sorted(",".join(got).split(",")) == ["0", "1", "2"]  # each job its own GPUs
        assert "using GPU(s)" in _line(two.stderr)
        held = r"no 1 free GPU\(s\) after 1 s \(GPU 0: pid \d+ \(\w+\), GPU 1"
        with pytest.raises(TimeoutError, match=held):
            claim(1, _fake(3), timeout_s=1)
    finally:
        _finish(tmp_path, two, one)
    again = claim(3, _fake(3), timeout_s=1)
    assert [g.label for g in again.gpus] == ["0", "1", "2"]  # all free again
    again.release()


def test_a_waiting_job_says_why_once_and_starts_when_a_gpu_frees(tmp_path: Path, env: dict[str, str]) -> None:
    holder = _job(tmp_path, env, release="first", PIPELINE_FAKE_GPUS="1")
    assert _line(holder.stdout).split()[1] == "0"
    waiter = _job(tmp_path, env, release="second", PIPELINE_FAKE_GPUS="1")
    try:
        told = _line(waiter.stderr)
        assert told.startswith(
            "waiting for 1 free GPU(s): all 1 of the machine are held by other pipeline "
            f"jobs (GPU 0: pid {holder.pid}"
        )
        _finish(tmp_path, holder, release="first")
        assert _line(waiter.stdout).split()[1] == "0"
    finally:
        _finish(tmp_path, holder, waiter, release="second")
    assert waiter.stderr.read().decode().count("waiting for") == 0  # said once


def test_a_partial_claim_is_given_back(tmp_path: Path, env: dict[str, str]) -> None:
    """A job needing 2 GPUs while 1 of 2 is held takes none (two such jobs would otherwise deadlock)."""
    holder = _job(tmp_path, env, PIPELINE_FAKE_GPUS="2")
    try:
        assert _line(holder.stdout).split()[1] == "0"
        with pytest.raises(TimeoutError):
            claim(2, _fake(2), timeout_s=0.5)
        rest = claim(1, _fake(2), timeout_s=1)
        assert [g.label for g in rest.gpus] == ["1"]  # given back by the failed claim
        rest.release()
    finally:
        _finish(tmp_path, holder)


def test_ranks_hold_the_claim_after_their_parent_is_killed(tmp_path: Path, env: dict[str, str]) -> None:
    parent = _job(tmp_path, env, nproc=2, ranks=2, PIPELINE_FAKE_GPUS="2")
    try:
        assert _line(parent.stdout).split()[:2] == ["job", "0,1"]
        ranks = sorted(_line(parent.stdout).split() for _ in range(2))  # printed once each has joined
        assert [r[:2] for r in ranks] == [["0", "0,1"], ["1", "0,1"]]  # the parent's GPUs: no claim of theirs
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=60)
        with pytest.raises(TimeoutError) as held:
            claim(1, _fake(2), timeout_s=1)
        for _, _, pid in ranks:  # the message names the ranks, the processes that still hold the GPUs
            assert f"{pid}" in str(held.value)
        assert f"{parent.pid}" not in str(held.value)
    finally:
        (tmp_path / "release").touch()
    after = claim(2, _fake(2), timeout_s=30)
    assert [g.label for g in after.gpus] == ["0", "1"]  # free once the ranks exit
    after.release()


def test_a_rank_started_after_its_claim_was_taken_over_stops(tmp_path: Path, env: dict[str, str]) -> None:
    """The parent died before its rank joined, and another job claimed the GPU meanwhile: no sharing."""
    first = claim(1, _fake(1))
    inherited = first.inherited()
    first.release()
    second = claim(1, _fake(1))
    with pytest.raises(ClaimLost, match="GPU 0 was claimed by another job before this process could join"):
        join(inherited)
    late = second.inherited()
    second.release()
    join(late).release()  # with no other claim in between, a late rank still joins its parent's


def test_a_claim_inherited_from_another_node_is_not_joined(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node's launcher (started through srun) inherits the first node's claim: it claims its own GPUs."""
    monkeypatch.setenv(gpus.FAKE_ENV, "1")
    first = claim(1, _fake(1))
    elsewhere = json.loads(first.inherited()) | {"host": "another-node"}
    monkeypatch.setenv(gpus.CLAIM_ENV, json.dumps(elsewhere))
    first.release()
    here = claim_for_job("auto", 1)
    assert here is not None and here.claim_id != first.claim_id and os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    assert json.loads(os.environ[gpus.CLAIM_ENV])["id"] == here.claim_id  # what its own ranks join
    here.release()


def test_a_job_in_an_allocation_claims_among_its_devices(tmp_path: Path, env: dict[str, str]) -> None:
    """`salloc --gpus=3` then `snakemake --resources gpu=3`: every job gets its own of the 3, by its UUID."""
    allocation = "GPU-aaaa1111,GPU-bbbb2222,GPU-cccc3333"
    jobs = [_job(tmp_path, env, nproc=n, CUDA_VISIBLE_DEVICES=allocation) for n in (2, 1)]
    try:
        got = [_line(j.stdout).split()[1] for j in jobs]
        assert sorted(",".join(got).split(",")) == allocation.split(",")
        assert len(got[0].split(",")) == 2
        assert _line(jobs[1].stderr).startswith(
            f"using GPU(s) {got[1]} of the allocation (CUDA_VISIBLE_DEVICES={allocation})"
        )
    finally:
        _finish(tmp_path, *jobs)


def test_an_allocation_by_index_locks_the_gpus_a_job_outside_it_locks(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries "0,1" and the machine's UUIDs name the same GPUs: one lock each, whatever the numbering."""
    _fake_nvidia_smi(tmp_path, monkeypatch)
    outside = claim_for_job("auto", 1)
    assert outside is not None and os.environ["CUDA_VISIBLE_DEVICES"] == "GPU-0a0a"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    inside, where = visible_gpus()
    assert [(g.label, g.key) for g in inside] == [("1", "GPU-1b1b"), ("0", "GPU-0a0a")]
    free = claim(1, inside, where=where)
    assert [g.label for g in free.gpus] == ["1"]
    with pytest.raises(TimeoutError, match=r"GPU 0: pid"):  # held by the claim outside the allocation
        claim(1, inside, timeout_s=0.5, where=where)
    free.release()
    outside.release()


NVIDIA_SMI_L = """GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-0a0a)
  MIG 3g.20gb     Device  0: (UUID: MIG-9e9e)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-1b1b)
"""


def _fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "bin" / "nvidia-smi"
    tool.parent.mkdir()
    tool.write_text(f"#!/bin/sh\n[ \"$1\" = -L ] || exit 9\ncat <<'EOF'\n{NVIDIA_SMI_L}EOF\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tool.parent}:{os.environ['PATH']}")
    monkeypatch.setattr(gpus, "SOURCES", (gpus.nvidia_smi_uuids,))


def _fake_nvml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.SimpleNamespace(
        NVMLError=RuntimeError,
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetUUID=lambda h: ["GPU-0a0a", "GPU-1b1b"][h].encode(),
    )  # bytes, as older pynvml
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(gpus, "SOURCES", (gpus.nvml_uuids,))


def _fake_proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for bus, uuid in (("0000:3b:00.0", "GPU-0a0a"), ("0000:86:00.0", "GPU-1b1b")):
        (tmp_path / "proc" / bus).mkdir(parents=True)
        info = f"Model: \t\t NVIDIA A100\nGPU UUID: \t {uuid}\nBus Location: \t {bus}\n"
        (tmp_path / "proc" / bus / "information").write_text(info)
    monkeypatch.setattr(gpus, "PROC_GPUS", tmp_path / "proc")
    monkeypatch.setattr(gpus, "SOURCES", (gpus.proc_uuids,))


@pytest.mark.parametrize("source", [_fake_nvidia_smi, _fake_nvml, _fake_proc])
def test_the_claim_lists_gpus_without_starting_cuda(
    source, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once CUDA has started, CUDA_VISIBLE_DEVICES changes nothing: the claim must not touch torch.cuda."""
    import torch

    def starts_cuda(*_a, **_k):
        raise AssertionError("claim_for_job called into torch.cuda")

    for name in ("device_count", "is_available", "init", "_lazy_init"):
        monkeypatch.setattr(torch.cuda, name, starts_cuda)
    monkeypatch.setattr(torch._C, "_cuda_getDeviceCount", starts_cuda, raising=False)
    source(tmp_path, monkeypatch)
    held = claim_for_job("auto", 2)
    assert held is not None and [g.label for g in held.gpus] == ["0", "1"]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "GPU-0a0a,GPU-1b1b"  # by UUID: CUDA's own order may differ
    assert not torch.cuda.is_initialized()
    held.release()


def test_users_share_one_lock_folder(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root's job creates the folder under umask 077; user `nobody` claims beside it, and root after it."""
    if os.getuid() != 0:
        pytest.skip("needs root to become another user")
    nobody = pwd.getpwnam("nobody")
    shared = Path(tempfile.mkdtemp(prefix="pipeline-gpu-users-"))  # pytest's own folders are private to root
    shared.chmod(0o755)
    folder = shared / "locks"
    monkeypatch.setenv(gpus.LOCK_DIR_ENV, str(folder))
    umask = os.umask(0o077)
    try:
        root_job = _job(tmp_path, {**env, gpus.LOCK_DIR_ENV: str(folder)}, PIPELINE_FAKE_GPUS="2")
    finally:
        os.umask(umask)
    try:
        assert _line(root_job.stdout).split()[1] == "0"
        assert oct(folder.stat().st_mode & 0o7777) == "0o1777"
        assert oct((folder / "gpu-0.lock").stat().st_mode & 0o777) == "0o666"
        got = _as_user(nobody, _claim_one_then_another)
        assert got.startswith("['1'] then TimeoutError: no 1 free GPU(s)"), got
        assert re.search(r"GPU 0: pid \d+ \(root\), GPU 1: pid \d+ \(nobody\)", got)  # each sees the other's
        assert (folder / "gpu-1.lock").stat().st_uid == nobody.pw_uid
        _finish(tmp_path, root_job)
        both = claim(2, _fake(2), timeout_s=1)  # root opens nobody's file
        assert [g.label for g in both.gpus] == ["0", "1"]
        both.release()
    finally:
        _finish(tmp_path, root_job)
        shutil.rmtree(shared)


def test_a_folder_other_users_cannot_write_is_one_clear_error(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder made by hand (or by an older version) with mode 755: the other users are told what to do."""
    if os.getuid() != 0:
        pytest.skip("needs root to become another user")
    shared = Path(tempfile.mkdtemp(prefix="pipeline-gpu-users-"))
    (shared / "locks").mkdir(mode=0o755)
    shared.chmod(0o755)
    monkeypatch.setenv(gpus.LOCK_DIR_ENV, str(shared / "locks"))
    monkeypatch.setattr(gpus, "PERMISSION_RETRY_S", 0.2)
    try:
        got = _as_user(pwd.getpwnam("nobody"), lambda: claim(1, _fake(1), timeout_s=1))
    finally:
        shutil.rmtree(shared)
    assert got == (
        f"GpuLockError: GPU lock {shared}/locks/gpu-0.lock cannot be used by nobody "
        f"({shared}/locks: uid 0, mode 755; Permission denied): its owner can run `chmod 1777` on "
        f"the folder and `chmod 666` on its files, or set {gpus.LOCK_DIR_ENV} to a folder every "
        "user of this machine can write"
    )


def _claim_one_then_another() -> str:
    mine = claim(1, _fake(2), timeout_s=5)
    try:
        claim(1, _fake(2), timeout_s=0.5)
    except TimeoutError as err:
        return f"{[g.label for g in mine.gpus]} then TimeoutError: {err}"
    return "a second GPU was claimed"


def _as_user(user, action) -> str:
    """Run `action` in a forked child switched to `user` (umask 077); its result or error, as text."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        try:
            os.close(read)
            os.setgid(user.pw_gid)
            os.setgroups([])
            os.setuid(user.pw_uid)
            os.umask(0o077)
            try:
                text = str(action())
            except Exception as err:  # reported to the parent, which asserts on it
                text = f"{type(err).__name__}: {err}"
            os.write(write, text.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        text = f.read().decode()
    os.waitpid(pid, 0)
    return text


def _cli_params(tmp_path: Path, nproc: int) -> dict:
    """A tiny learned-delays job on `device: auto` (the CPU here: the GPUs are pretended)."""
    from tests.test_resume import _delays_params

    p = _delays_params(tmp_path)
    p.update(device="auto", nproc=nproc)
    p["delays"]["sets"]["synth"]["train"]["epochs"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    return p


def _train(tmp_path: Path, env: dict[str, str], **extra: str) -> subprocess.CompletedProcess:
    args = [
        "delays_train",
        "--params",
        "params.yaml",
        "--dataset",
        "synth",
        "--variant",
        "learned_delay",
        "--seed",
        "0",
        "--data",
        "prep",
        "--ckpt",
        "ck",
        "--live",
        "live",
    ]
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=tmp_path,
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_cli_stops_when_a_job_needs_more_gpus_than_there_are(tmp_path: Path, env: dict[str, str]) -> None:
    _cli_params(tmp_path, nproc=4)
    proc = _train(tmp_path, env, PIPELINE_FAKE_GPUS="2")
    assert proc.returncode == 2
    assert proc.stderr == "error: this job needs 4 GPUs (nproc 4), the machine has 2\n"


def test_a_job_needing_more_gpus_than_its_allocation_stops(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(
        ValueError,
        match=r"^this job needs 4 GPUs \(nproc 4\), the allocation "
        r"\(CUDA_VISIBLE_DEVICES=0,1\) has 2$",
    ):
        claim_for_job("auto", 4)


def test_the_cli_ranks_hold_their_parents_claim(tmp_path: Path, env: dict[str, str]) -> None:
    """`python -m pipeline delays_train` with nproc 2: the CLI claims 2 of 3 GPUs, and both torchrun ranks
    hold locks of their own on them (so a killed CLI leaves them claimed while the ranks run)."""
    p = _cli_params(tmp_path, nproc=2)
    call_stage("delays_synth", p, out=tmp_path / "raw")
    call_stage("delays_prepare", p, dataset="synth", out=tmp_path / "prep")
    proc = _train(tmp_path, env, PIPELINE_FAKE_GPUS="3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "using GPU(s) 0,1\n" in proc.stderr and "on 2 processes" in proc.stderr
    folder = Path(env[gpus.LOCK_DIR_ENV])
    for gpu in ("0", "1"):
        lines = (folder / f"gpu-{gpu}.lock").read_text().splitlines()
        assert re.fullmatch(r"claim \w+ user \S+ pid \d+", lines[0])
        ranks = [re.fullmatch(r"pid (\d+)", line) for line in lines[1:]]
        assert len(ranks) == 2 and all(ranks), lines  # one line per rank that joined
    assert not (folder / "gpu-2.lock").exists() or "claim" not in (folder / "gpu-2.lock").read_text()
