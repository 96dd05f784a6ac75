"""GPU claims across processes, tested with lock files and a pretended GPU count (no GPU here)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.run.gpus import NotEnoughGpus, claim

HOLD = """
import sys, time
from pathlib import Path
from pipeline.run.gpus import claim
held = claim(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
print(",".join(map(str, held.gpus)), flush=True)
time.sleep(float(sys.argv[4]))
"""


def _holder(n: int, count: int, lock_dir: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(n), str(count), str(lock_dir), str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc


def test_concurrent_jobs_get_different_gpus_and_a_third_waits(tmp_path: Path) -> None:
    first = _holder(1, 2, tmp_path, 30)
    second = _holder(1, 2, tmp_path, 30)
    try:
        got = {first.stdout.readline().strip(), second.stdout.readline().strip()}
        assert got == {"0", "1"}  # each process its own GPU
        with pytest.raises(TimeoutError, match=r"no 1 free GPU\(s\) after 1 s \(GPU 0: pid \d+, GPU 1: pid \d+\)"):
            claim(1, 2, tmp_path, timeout_s=1)
    finally:
        first.kill()
        second.kill()
        first.wait()
        second.wait()
    assert claim(2, 2, tmp_path, timeout_s=1).gpus == [0, 1]  # a killed job's locks are gone with it


def test_a_waiting_job_says_why_once_and_starts_when_a_gpu_frees(tmp_path: Path) -> None:
    holder = _holder(1, 1, tmp_path, 3)
    assert holder.stdout.readline().strip() == "0"
    waiter = _holder(1, 1, tmp_path, 0)
    out, err = waiter.communicate(timeout=60)
    holder.wait()
    assert out.strip() == "0"
    assert err.count("waiting for 1 free GPU(s): all 1 are held by other pipeline jobs") == 1


def test_more_processes_than_gpus_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(NotEnoughGpus, match="this job needs 4 GPUs \\(nproc 4\\), the machine has 2"):
        claim(4, 2, tmp_path)


def test_a_partial_claim_is_given_back(tmp_path: Path) -> None:
    """A job needing 2 GPUs while 1 of 2 is held takes none (two such jobs would otherwise deadlock)."""
    holder = _holder(1, 2, tmp_path, 30)
    try:
        assert holder.stdout.readline().strip() == "0"
        with pytest.raises(TimeoutError):
            claim(2, 2, tmp_path, timeout_s=0.5)
        assert claim(1, 2, tmp_path, timeout_s=1).gpus == [1]  # GPU 1 was released by the failed claim
    finally:
        holder.kill()
        holder.wait()
