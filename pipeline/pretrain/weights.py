"""External ANN weights (`pretrain.anns.<run>.weights: <file>`): a state dict in torchvision's ResNet
layout (resnet18 / resnet34, `fc.*` of any class count) or this project's own pretrain_ann checkpoint, loaded
into the run's ANN twin before pretrain_ann imports it (`ann: {epochs: 0}`) or fine-tunes it.

The twins carry torchvision's parameter names (pipeline/models/resnet_twins.py), so a torchvision file maps
name for name. Exceptions, each reported: the classifier (`fc.*`) is newly initialised when its class count
differs from the run's dataset (transfer gives the SNN its own classifier in that case anyway); a video twin
takes a torchvision ResNet as its per-step encoder (`encoder.*`), its decoder and classifier new;
`num_batches_tracked` counters a file lacks keep the model's. Anything else missing, unknown or of another
shape is one error line naming the tensors and their shapes, raised before the stage writes anything.

The file is read with `weights_only=True`: tensors and plain containers, never arbitrary pickled code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.checks import CHECKPOINT_KINDS, describe_checkpoint
from pipeline.pretrain.models import ModelConfig

CLASSIFIER = ("fc.weight", "fc.bias")
ENCODER = "encoder."  # the video twin's per-step ResNet
SHOWN = 4  # tensors named per kind of problem in the error line; the rest are counted


@dataclass
class Imported:
    """What a weights file gave the ANN: its state (the model's names), where it came from, what is new."""

    state: dict[str, torch.Tensor]
    record: dict[str, Any] = field(default_factory=dict)  # JSON-able: file, sha256, layout, copied, new, note

    def summary(self, run: str) -> str:
        rec = self.record
        return f"{run}: {rec['copied']} tensors loaded from {rec['file']} ({rec['layout']})" + (
            f"; new: {', '.join(rec['new'])} ({rec['note']})" if rec["new"] else ""
        )


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _shape(t: torch.Tensor) -> str:
    return str(list(t.shape))


def _layout_of(state: dict[str, torch.Tensor]) -> str:
    """'resnet18 (blocks [2, 2, 2, 2], width 64)' when the names look like torchvision's ResNet, else ''."""
    blocks = [len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5)]
    conv1 = state.get("conv1.weight")
    if not all(blocks) or conv1 is None:
        return ""
    names = {(2, 2, 2, 2): "resnet18", (3, 4, 6, 3): "resnet34", (1, 1, 1, 1): "tiny"}
    return f"{names.get(tuple(blocks), 'a ResNet')} (blocks {blocks}, width {conv1.shape[0]})"


def read_state(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The file's tensors by name and a description of its layout; one-line errors for anything else."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: not found (expected ANN weights: a torchvision ResNet state dict "
            "or a pretrain_ann checkpoint)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for damaged or non-torch files
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"{path}: not a readable torch file of tensors ({first[:200]})") from None
    if isinstance(obj, dict) and CHECKPOINT_KINDS["pretrain_ann"][1](obj):
        return dict(obj["model"]), f"pretrain_ann checkpoint of run '{obj.get('run')}' ({obj.get('dataset')})"
    if (
        isinstance(obj, dict)
        and obj
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        layout = _layout_of(obj)
        return dict(obj), f"state dict, {layout}" if layout else "state dict"
    raise ValueError(
        f"{path}: expected a state dict (name -> tensor) in torchvision's ResNet layout or a "
        f"pretrain_ann checkpoint, found {describe_checkpoint(obj)}"
    )


def _as_model_names(state: dict[str, torch.Tensor], target: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A torchvision ResNet's names as the video twin's encoder names (its classifier dropped); else as is."""
    if any(k.startswith(ENCODER) for k in target) and not any(k.startswith(ENCODER) for k in state):
        return {ENCODER + k: v for k, v in state.items() if k not in CLASSIFIER}
    return state


def _may_be_new(name: str, video: bool) -> bool:
    """Tensors a file may lack or size differently: the classifier, a video twin's decoder, BN counters."""
    return (
        name in CLASSIFIER or (video and name.startswith("decoder.")) or name.endswith("num_batches_tracked")
    )


def _problems(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor], video: bool) -> list[str]:
    """One phrase per kind of problem: shape mismatches, missing and unexpected tensors (with shapes)."""

    def listed(names: list[str], tensors: dict[str, torch.Tensor]) -> str:
        shown = ", ".join(f"{n} {_shape(tensors[n])}" for n in names[:SHOWN])
        return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")

    shapes = [
        n
        for n in target
        if n in state
        and state[n].shape != target[n].shape
        and not (n in CLASSIFIER and state[n].shape[1:] == target[n].shape[1:])
    ]
    missing = [n for n in target if n not in state and not _may_be_new(n, video)]
    unexpected = [n for n in state if n not in target]
    out = [f"{n} has shape {_shape(state[n])}, the ANN expects {_shape(target[n])}" for n in shapes[:SHOWN]]
    if len(shapes) > SHOWN:
        out.append(f"{len(shapes) - SHOWN} more tensors of another shape")
    if missing:
        out.append(f"missing: {listed(missing, target)}")
    if unexpected:
        out.append(f"unexpected: {listed(unexpected, state)}")
    return out


def import_weights(path: Path, model: nn.Module, config: ModelConfig, run: str, dataset: str) -> Imported:
    """Check the file at `path` against `model` (the ANN twin of `run`, built from `config`) and return
    the state to load into it, the model's own initialisation kept where the file has nothing that fits."""
    state, layout = read_state(path)
    target = model.state_dict()
    video = any(k.startswith(ENCODER) for k in target)
    state = _as_model_names(state, target)
    problems = _problems(state, target, video)
    if problems:
        arch = ", ".join(f"{k} {getattr(config, k)}" for k in ("width", "stem") if getattr(config, k, None))
        found = [f"the file holds a {_layout_of(state)}"] if _layout_of(state) else []
        raise ValueError(
            f"{path}: does not fit the {config.arch} ANN of run '{run}' ({arch}): "
            + "; ".join(problems + found)
        )
    merged, new, copied = {}, [], 0
    for name, dst in target.items():
        src = state.get(name)
        if src is None or src.shape != dst.shape:
            merged[name] = dst  # the twin's fresh initialisation (seeded)
            if not name.endswith("num_batches_tracked"):
                new.append(name)
        else:
            merged[name] = src.detach().clone().to(dst.dtype)
            copied += 1
    fc = state.get("fc.weight")
    note = (
        f"the file's classifier has {fc.shape[0]} classes, dataset '{dataset}' has {config.num_classes}"
        if fc is not None and set(CLASSIFIER) & set(new)
        else "not in the file"
    )
    record = {
        "file": str(path),
        "sha256": sha256_of(path),
        "bytes": path.stat().st_size,
        "layout": layout,
        "copied": copied,
        "new": new,
        "note": note if new else "",
    }
    return Imported(merged, record)
