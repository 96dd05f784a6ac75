"""Which samples each process reads: the batch sampler of both papers' loaders, sharded over processes.

Kept in the data layer (no torch.distributed here): a process's rank and the
world size are all it needs, so the data modules do not depend on the DDP code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch


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
