"""`python -m pipeline <stage> [--params FILE] --arg value ...`: the one entry point.

Each stage is a plain function `fn(params, *, arg: type, ...)`. Its keyword-only
arguments become `--arg` options (types from the annotations), required
positional ones become positional arguments; `params` is the
validated content of params.yaml (or --params FILE). Stage modules are imported
only when their stage runs, so `--help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

# stage name -> "module:function"
STAGES: dict[str, str] = {
    # paper B: learnable delays
    "delays-synth": "pipeline.delays.data_stages:synth",
    "delays-prepare": "pipeline.delays.data_stages:prepare",
    "delays-train": "pipeline.delays.stages:train",
    "delays-evaluate": "pipeline.delays.stages:evaluate",
    # paper A: ANN pretraining as a bridge to SNNs
    "images-embedded": "pipeline.pretrain.stages:images_embedded",
    "es-imagenet-convert": "pipeline.pretrain.stages:es_imagenet_convert",
    "pretrain-ann": "pipeline.pretrain.stages:pretrain_ann",
    "transfer": "pipeline.pretrain.stages:transfer",
    "finetune-snn": "pipeline.pretrain.stages:finetune_snn",
    "train-snn-scratch": "pipeline.pretrain.stages:train_snn_scratch",
    # reporting
    "report": "pipeline.report.stages:report",
    "compare": "pipeline.report.compare:compare",
    "pretrain-index": "pipeline.pretrain.index:index",
    "apply-preset": "pipeline.params:apply_preset_stage",
}


def resolve(name: str) -> Callable[..., Any]:
    module, func = STAGES[name].split(":")
    return getattr(importlib.import_module(module), func)


def _add_option(parser: argparse.ArgumentParser, name: str, hint: Any, default: Any) -> None:
    flag = "--" + name.replace("_", "-")
    required = default is inspect.Parameter.empty
    kwargs: dict[str, Any] = {"dest": name, "required": required}
    if not required:
        kwargs["default"] = default
    origin = typing.get_origin(hint)
    if hint is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        return
    if origin in (list, Sequence, tuple):
        (inner,) = typing.get_args(hint)[:1]
        parser.add_argument(flag, nargs="*", type=inner, **kwargs)
        return
    if origin is typing.Union or str(origin) == "types.UnionType":  # Optional[X]
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    parser.add_argument(flag, type=hint, **kwargs)


def build_parser(name: str, fn: Callable[..., Any]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m pipeline {name}", description=inspect.getdoc(fn))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="parameter file (default params.yaml)")
    hints = typing.get_type_hints(fn)
    for pname, p in inspect.signature(fn).parameters.items():
        if pname in ("params", "params_path"):
            continue
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.default is inspect.Parameter.empty:
            parser.add_argument(pname, type=hints.get(pname, str))  # positional
        else:
            _add_option(parser, pname, hints.get(pname, str), p.default)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in STAGES:
        print("usage: python -m pipeline <stage> [--params FILE] [options]\n\nstages:")
        for name in STAGES:
            print(f"  {name}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown stage '{argv[0]}'", file=sys.stderr)
            return 2
        return 0
    name, rest = argv[0], argv[1:]
    fn = resolve(name)
    args = vars(build_parser(name, fn).parse_args(rest))
    params_path = args.pop("params")
    signature = inspect.signature(fn).parameters
    from pipeline.params import ParamsError, load_params

    try:
        if "params" in signature:
            args["params"] = load_params(params_path)
            from pipeline.runtime import set_threads, under_torchrun

            set_threads(args["params"]["threads"])
            if getattr(fn, "distributed", False) and args["params"]["nproc"] > 1 and not under_torchrun():
                return _torchrun(args["params"]["nproc"], argv)
        if "params_path" in signature:
            args["params_path"] = params_path
        fn(**args)
    except (ParamsError, ValueError, FileNotFoundError) as err:
        # Bad input is a one-line message naming what was expected, not a traceback.
        if os.environ.get("PIPELINE_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:  # diverged training: say where, keep the last good state
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _torchrun(nproc: int, argv: list[str]) -> int:
    """Rerun this same command as `nproc` data-parallel processes (torchrun, one machine)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "pipeline", *argv]
    print(f"running {argv[0]} on {nproc} processes: {' '.join(cmd)}", file=sys.stderr)
    return subprocess.call(cmd)
