"""Checks of a stage's inputs, run before the stage writes anything.

Each failure is one line naming the file and what was expected (pipeline/drivers/cli.py
prints it as `error: ...`), so bad input never leaves a half-written output:
- checkpoints: a stage names the kind it needs; a file of another kind (the
  other paper's model, another stage's output, a resume state, not a torch
  file at all) is reported as what it is;
- datasets: a split must hold samples and its labels must fit the classifier;
- dataset indexes (pretrain_index output) must belong to the dataset named.
"""

from __future__ import annotations

import sys

from pathlib import Path
from typing import Any, Callable, Sequence

from pipeline.io import load_torch, read_json


def _delay_model(c: dict) -> bool:
    return isinstance(c.get("config"), dict) and "variant" in c["config"] and "state_dict" in c


def _role(role: str, *keys: str) -> Callable[[dict], bool]:
    return lambda c: c.get("role") == role and all(k in c for k in keys)


# kind (the stage that writes it) -> (description, test on the loaded dict); also says what a wrong file is
CHECKPOINT_KINDS: dict[str, tuple[str, Callable[[dict], bool]]] = {
    "delays_train": ("a paper-B delay-model checkpoint (delays_train)", _delay_model),
    "pretrain_ann": (
        "an ANN pretraining checkpoint (pretrain_ann)",
        _role("pretrain_ann", "model", "model_config"),
    ),
    "transfer": (
        "a transfer output (transfer)",
        _role("transfer", "model", "model_config", "transfer", "pipeline"),
    ),
    "finetune_snn": (
        "a fine-tuned SNN checkpoint (finetune_snn)",
        _role("finetune_snn", "model", "model_config"),
    ),
    "train_snn_scratch": (
        "a scratch SNN checkpoint (train_snn_scratch)",
        _role("train_snn_scratch", "model", "model_config"),
    ),
    "resume_state": ("a training resume state", lambda c: "fingerprint" in c),
}


def describe_checkpoint(obj: Any) -> str:
    """What a loaded torch file holds, in words (for error messages)."""
    if isinstance(obj, dict):
        for description, test in CHECKPOINT_KINDS.values():
            if test(obj):
                return description
        keys = ", ".join(map(str, list(obj)[:6]))
        return f"a dict with keys {keys}" if keys else "an empty dict"
    return f"a {type(obj).__module__}.{type(obj).__name__}".replace("builtins.", "")


def load_checkpoint(path: str | Path, kind: str) -> dict[str, Any]:
    """Load a torch file that must be a checkpoint of `kind` (a key of CHECKPOINT_KINDS)."""
    description, test = CHECKPOINT_KINDS[kind]
    try:
        obj = load_torch(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found; expected {description}") from None
    except ValueError as err:
        cause = str(err.__cause__ or err).strip().splitlines()
        raise ValueError(
            f"{path}: not a readable torch file ({cause[0] if cause else 'unknown error'}); "
            f"expected {description}"
        ) from None
    if not (isinstance(obj, dict) and test(obj)):
        raise ValueError(f"{path}: expected {description}, found {describe_checkpoint(obj)}")
    return obj


def check_classes(found: int, expected: int, found_what: str, expected_what: str) -> None:
    """Raise when a model's or a dataset's class count differs from the one it must match."""
    if int(found) != int(expected):
        raise ValueError(f"{found_what} has {found} classes, expected {expected} ({expected_what})")


def check_split(ds: Any, where: str, num_classes: int) -> None:
    """A paper-A dataset split (ImageFolder, ESImageNet, ESUCF101) must hold samples whose
    labels fit `num_classes`; its class folders, when it has them, must number `num_classes`.
    Uses only the split's index (`targets`, `classes`), not its samples."""
    if len(ds) == 0:
        raise ValueError(f"{where} is empty (expected at least one sample)")
    classes: Sequence[str] | None = getattr(ds, "classes", None)
    if classes is not None and len(classes) != num_classes:
        shown = ", ".join(map(str, classes[:5])) + (", ..." if len(classes) > 5 else "")
        raise ValueError(f"{where} has {len(classes)} classes ({shown}) but num_classes is {num_classes}")
    targets = getattr(ds, "targets", None)
    if targets is not None and len(targets):
        lo, hi = min(targets), max(targets)
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"{where} has label {lo if lo < 0 else hi}, outside 0..{num_classes - 1} "
                f"(num_classes {num_classes})"
            )


def check_index(data: str | Path, dataset: str) -> None:
    """When `data` is a dataset index (data/prepared/pretrain/<name>.json), it must index `dataset`."""
    data = Path(data)
    if data.suffix != ".json":
        return  # a dataset root: its splits are checked when they are opened
    if not data.is_file():
        raise FileNotFoundError(
            f"{data}: dataset index not found (pretrain_index --dataset {dataset} writes it)"
        )
    try:
        index = read_json(data)
    except ValueError as err:
        raise ValueError(f"{data}: not a JSON dataset index ({err})") from None
    indexed = index.get("dataset") if isinstance(index, dict) else None
    if indexed != dataset:
        raise ValueError(f"{data}: index of dataset '{indexed}', expected the index of '{dataset}'")


class TooManyUnreadable(ValueError):
    """More of a dataset's samples are unreadable than max_skipped_fraction allows."""


def check_unreadable(skipped: list[str], total: int, max_fraction: float, where: str) -> None:
    """The one rule for unreadable samples: each is skipped and counted; a warning line says how many (and the
    first); more than `max_fraction` of `total` stops the stage (a corrupt copy of a dataset, not a few bad
    files)."""
    if not skipped:
        return
    share = len(skipped) / max(total, 1)
    message = (
        f"{len(skipped)} of {total} samples of {where} are unreadable ({100 * share:.2f} %), "
        f"first: {skipped[0]}"
    )
    if share > max_fraction:
        raise TooManyUnreadable(f"{message}; more than max_skipped_fraction {max_fraction} allows")
    print(f"warning: {message}; skipped (max_skipped_fraction {max_fraction})", file=sys.stderr, flush=True)
