"""Data-parallel training with torch.distributed (DDP), one process per device.

`params['nproc'] > 1` makes the CLI relaunch a training stage under torchrun
(see pipeline/cli.py), so Snakemake and DVC keep running the same command.
Each process then calls `setup()`: gloo on CPU, nccl on CUDA (one GPU per
local rank). The global batch size stays what params say: every global batch
of the seeded permutation is split across ranks (`shard_batches`), DDP
averages the gradients, and evaluation sums counts over ranks. Only rank 0
writes outputs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn

from pipeline.runtime import under_torchrun


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group when launched by torchrun; returns (Dist, this process's device)."""
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Dist(), device
    d = Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return d, device


def cleanup(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, d: Dist, device: torch.device) -> nn.Module:
    """DDP-wrap `model` when there is more than one process (else return it unchanged)."""
    if not d.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def shard_batches(order: torch.Tensor, batch_size: int, d: Dist) -> Iterator[torch.Tensor]:
    """This rank's part of each global batch of `order`.

    With several processes a trailing batch smaller than the world size is
    dropped: a rank with no samples would leave DDP's gradient all-reduce waiting.
    """
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        if d.enabled and len(batch) < d.world:
            break
        yield batch[d.rank :: d.world]


def shard_eval(n: int, d: Dist) -> torch.Tensor:
    """Indices of an evaluation split this rank scores (every sample exactly once over ranks)."""
    return torch.arange(n)[d.rank :: d.world]


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


class ShardedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batch sampler (for DataLoader and pipeline.data.prepared.iterate_batches): a seeded permutation (or the
    natural order) cut into global batches, each split across ranks; the same global batches whatever the world
    size. `skip`: the first batches of the next pass are left out (an epoch resumed after a preemption); the
    permutation is drawn all the same, so the generator advances as in an uninterrupted epoch."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None, d: Dist,
                 skip: int = 0) -> None:
        self.n, self.batch_size, self.shuffle, self.generator, self.d = n, batch_size, shuffle, generator, d
        self.skip = skip

    def _order(self) -> torch.Tensor:
        return torch.randperm(self.n, generator=self.generator) if self.shuffle else torch.arange(self.n)

    def __iter__(self) -> Iterator[list[int]]:
        skip, self.skip = self.skip, 0  # one pass only
        if not self.shuffle and self.d.enabled:  # evaluation: every sample once over ranks
            idx = shard_eval(self.n, self.d)
            for start in range(skip * self.batch_size, len(idx), self.batch_size):
                yield idx[start : start + self.batch_size].tolist()
            return
        for i, batch in enumerate(shard_batches(self._order(), self.batch_size, self.d)):
            if i >= skip:
                yield batch.tolist()

    def __len__(self) -> int:
        if not self.shuffle and self.d.enabled:
            return -(-len(shard_eval(self.n, self.d)) // self.batch_size)
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and (not self.d.enabled or rest >= self.d.world) else 0)
