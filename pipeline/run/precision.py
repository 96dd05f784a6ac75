"""Mixed precision as a parameter: `amp: auto | off | bf16 | fp16`.

`auto` is bf16 autocast on GPUs that support it (fp16 otherwise) and off on
the CPU, where autocast is slower than float32 for these models. fp16 needs
loss scaling, so it comes with a GradScaler; bf16 does not.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager, Sequence

import torch

AMP_MODES = ("auto", "off", "bf16", "fp16")


def autocast_dtype(mode: str | bool, device: torch.device) -> torch.dtype | None:
    if mode is False:  # YAML reads a bare `off` as false
        mode = "off"
    if mode not in AMP_MODES:
        raise ValueError(f"unknown amp mode '{mode}' (allowed: {', '.join(AMP_MODES)})")
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


class Precision:
    """Autocast context plus the matching backward/step (scaled for fp16)."""

    def __init__(self, mode: str | bool, device: torch.device) -> None:
        self.device, self.dtype = device, autocast_dtype(mode, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype is torch.float16)

    @property
    def name(self) -> str:
        return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self) -> ContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward_and_step(self, loss: torch.Tensor, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        self.scaler.scale(loss).backward()
        for opt in optimizers:
            self.scaler.step(opt)
        self.scaler.update()
