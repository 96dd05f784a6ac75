"""Data-parallel training with torch.distributed (DDP), one process per device.

`params['nproc'] > 1` makes the CLI relaunch a training stage under torchrun
(see pipeline/drivers/cli.py), so Snakemake and DVC keep running the same command.
Each process then trains in a function that calls `setup()` (gloo on CPU,
nccl on CUDA, one GPU per local rank) and is decorated with
`leaves_process_group`. The global batch size stays what params say: every global batch
of the seeded permutation is split across ranks (pipeline/data/sampling.py), DDP
averages the gradients, and evaluation sums counts over ranks. Only rank 0
writes outputs.
"""
from __future__ import annotations

import functools
import gc
import os
import traceback
import typing
from typing import Any, Callable, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from pipeline.data.sampling import Dist
from pipeline.run.runtime import under_torchrun


def setup(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group when launched by torchrun; returns (Dist, this process's device)."""
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Dist(), device
    d = Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # DDP imports torch._dynamo on first use, and that import takes lasting references to
        # every process group alive at that moment: destroy_process_group could then never free
        # ours. Imported first, it holds none.
        import torch._dynamo  # noqa: F401
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return d, device


F = TypeVar("F", bound=Callable[..., Any])


def leaves_process_group(stage_fn: F) -> F:
    """Decorates a training function that joins the group (`setup()`): once it has returned, destroy the group.

    Only then: its objects (a DDP module holds the group) are gone with its frame; on an error
    the traceback's frames are cleared first. Gloo threads that outlive the interpreter make
    the process abort at exit ("terminate called without an active exception", exit -6)
    after a successful run.
    """

    @functools.wraps(stage_fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return stage_fn(*args, **kwargs)
        except BaseException as err:
            traceback.clear_frames(err.__traceback__)
            raise
        finally:
            if dist.is_initialized():
                gc.collect()
                dist.destroy_process_group()

    return typing.cast(F, run)


def wrap(model: nn.Module, d: Dist, device: torch.device) -> nn.Module:
    """DDP-wrap `model` when there is more than one process (else return it unchanged)."""
    if not d.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_sum(values: Sequence[float], d: Dist, device: torch.device) -> list[float]:
    """Sum a few numbers over ranks (identity with one process); float64 so counts stay exact."""
    if not d.enabled:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool, d: Dist, device: torch.device) -> bool:
    """True when `flag` is true on any rank, so every rank takes the same branch."""
    return all_sum([float(flag)], d, device)[0] > 0 if d.enabled else flag


def seed_rank(seed: int, d: Dist) -> None:
    """After the model is built: same initial weights everywhere, own dropout masks per rank."""
    if d.enabled:
        torch.manual_seed(seed + 1_000_003 * d.rank)


def all_gather_object(obj: object, d: Dist) -> list[object]:
    if not d.enabled:
        return [obj]
    out: list[object] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out
