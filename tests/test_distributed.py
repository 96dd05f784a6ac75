"""Data-parallel training: 2 CPU processes (torchrun + DDP over gloo) against 1.

What may differ: each process normalises with BatchNorm statistics of its own
half of the batch (SyncBatchNorm needs CUDA), and a trailing batch smaller than
the world size is dropped. So the first epoch's training loss must agree within
2 % (dropout off, same global batches, averaged gradients), and both runs must
score every validation/test sample exactly once.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.io import read_json
from tests.conftest import call_stage
from tests.test_resume import _cli, _delays_params

LOSS_RTOL = 0.02


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ddp")
    p = _delays_params(tmp)
    p["delays"]["sets"]["synth"]["train"].update(dropout=0.0, epochs=2)
    call_stage("delays_synth", p, out=tmp / "raw")
    call_stage("delays_prepare", p, dataset="synth", out=tmp / "prep")
    for n in (1, 2):
        q = copy.deepcopy(p)
        q["nproc"] = n
        (tmp / f"p{n}.yaml").write_text(yaml.safe_dump(q, sort_keys=False))
    return tmp


def test_two_processes_match_one(project: Path) -> None:
    hist = {}
    for n in (1, 2):
        proc = _cli(
            [
                "delays_train",
                "--params",
                f"p{n}.yaml",
                "--dataset",
                "synth",
                "--variant",
                "learned_delay",
                "--seed",
                "0",
                "--data",
                "prep",
                "--ckpt",
                f"ck{n}",
                "--live",
                f"live{n}",
            ],
            project,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        hist[n] = read_json(project / f"live{n}/history.json")
        assert {f.name for f in (project / f"ck{n}").iterdir()} == {"init.pt", "best.pt", "last.pt"}
    assert "on 2 processes" in proc.stderr
    assert read_json(project / "live2/config.json")["world_size"] == 2
    one, two = hist[1][0]["train_loss"], hist[2][0]["train_loss"]
    assert two == pytest.approx(one, rel=LOSS_RTOL)
    assert (
        two != one
    )  # really two processes with their own BatchNorm statistics, not a copy of the single run
    n_valid = read_json(project / "live1/config.json")["n_valid"]
    for h in hist.values():  # accuracies over the whole split: multiples of 1/n_valid
        for row in h:
            assert round(row["valid_acc"] * n_valid / 100, 6).is_integer()


def test_two_processes_train_the_pretrain_stage(tmp_path: Path) -> None:
    from tests.test_resume import _pretrain_params

    p = _pretrain_params(tmp_path)
    p["pretrain"]["ann"].update(epochs=1, batch_size=256)
    call_stage("images_embedded", p, out=tmp_path / "img")
    loss = {}
    for n in (1, 2):
        p["nproc"] = n
        (tmp_path / f"p{n}.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
        proc = _cli(
            [
                "pretrain_ann",
                "--params",
                f"p{n}.yaml",
                "--ann",
                "digits",
                "--data",
                "img",
                "--ckpt",
                f"ann{n}.pt",
                "--live",
                f"live{n}",
            ],
            tmp_path,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        loss[n] = read_json(tmp_path / f"live{n}/history.json")[0]["train_loss"]
    assert (tmp_path / "ann2.pt").is_file() and loss[2] == pytest.approx(loss[1], rel=LOSS_RTOL)


def _gloo_threads() -> list[str]:
    tasks = Path("/proc/self/task")
    return [n for n in ((t / "comm").read_text().strip() for t in tasks.iterdir()) if "gloo" in n]


def _train_one_step_in_group(rank: int, port: int, out: Path) -> None:
    import os

    import torch
    from torch import nn

    from pipeline.run import distributed

    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    model = nn.Linear(3, 2)  # outlives the group, as a caller's model does

    @distributed.leaves_process_group
    def stage() -> int:  # as a training stage does it
        d, device = distributed.setup(torch.device("cpu"))
        net = distributed.wrap(model, d, device)
        net(torch.ones(4, 3)).sum().backward()
        return d.world

    world = stage()
    (out / f"rank{rank}.txt").write_text(f"{world} {len(_gloo_threads())}")


def test_the_process_group_is_gone_when_training_returns(tmp_path: Path) -> None:
    """DDP keeps gloo's threads alive; left to the interpreter's exit they abort the process (exit -6) after a
    successful run, now and then. A training function decorated with `leaves_process_group` must end with
    none left, though the model lives on."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_train_one_step_in_group, args=(port, tmp_path), nprocs=2, start_method="spawn")
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)] == ["2 0", "2 0"]
