"""Feeding a training loop without stalling the device.

`prefetch_batches` yields exactly the batches of `iterate_batches` (same
sampler, order and values) but assembles the next ones in a background thread
while the caller computes: the copies out of the memory map release the GIL.
For a CUDA device the batches are built in page-locked memory and copied with
`non_blocking=True`, so the host-to-device transfer overlaps too.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator

import torch

from pipeline.data.prepared import Split
from pipeline.data.sampling import Dist, ShardedBatchSampler

PREFETCH_DEPTH = 3  # batches assembled ahead: enough to hide an uneven batch, little memory


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def prefetch_batches(
    split: Split,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    d: Dist = Dist(),
    skip: int = 0,
    depth: int = PREFETCH_DEPTH,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x (T, B, C), y (B,)) on `device` as `iterate_batches` does (same arguments), up to `depth`
    batches assembled ahead."""
    device = torch.device(device)
    pin = device.type == "cuda"
    # The permutation is drawn here, in the caller's thread, when iteration starts (as iterate_batches does),
    # so `generator` is used at the same point and a resumed run sees the same state.
    batches = list(ShardedBatchSampler(len(split), batch_size, shuffle, generator, d, skip))
    ready: queue.Queue = queue.Queue(maxsize=max(depth, 1))
    stop = threading.Event()

    def offer(item: object) -> bool:
        """Put `item` unless the consumer has gone; False then."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            if pin and device.index is not None:
                torch.cuda.set_device(device)  # else pinning would create a context on GPU 0 in this thread
            for idx in batches:
                if not offer(split.gather(idx, pin_memory=pin)):
                    return
            offer(_END)
        except BaseException as err:  # handed to the consumer, raised there
            offer(_Failed(err))

    worker = threading.Thread(target=produce, name="batch-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            x, y = item
            yield x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)
    finally:  # also when the consumer stops early: the thread ends at its next put
        stop.set()
        worker.join()
