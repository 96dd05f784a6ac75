"""Device choice and seeding shared by every training stage."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def pick_device(name: str = "auto") -> torch.device:
    """`auto` means CUDA when present, else CPU; `cpu`/`cuda`/`cuda:N` are taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' requested but CUDA is not available on this machine")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a generator for seeded data order."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def set_threads(n: int) -> None:
    """Pin torch's CPU threads (0 keeps torch's default). Snakemake sets
    OMP_NUM_THREADS per job and DVC does not, so the stage sets it itself to make
    both drivers compute the same floats."""
    if n > 0:
        torch.set_num_threads(n)


def under_torchrun() -> bool:
    """True in a process started by torchrun (it sets these for every worker)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ
