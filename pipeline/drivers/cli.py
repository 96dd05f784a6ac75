"""`python -m pipeline [--params FILE] [--progress MODE] <stage|command> [options]`: the one entry point.

A pipeline stage takes its options from the stage table (its wildcards, the
input and output paths passed to it, constant options), typed by the stage
function's annotations, and receives as its first argument a config instance
holding exactly the parameter keys the table declares for it (resolved for the
job's wildcards, per-run overrides merged in). Commands that are not pipeline
stages (compare, apply_preset, fetch_data, dvc_yaml, schema...) take their options from
their signatures. Modules are imported only when their stage runs, so `--help`
stays fast.

Every stage takes `--log FILE` (both drivers pass it): the stage's stdout and
stderr are copied there as plain lines (pipeline/run/logs.py). Bad input is one
`error:` line per problem and exit code 2; a diverged training run exits 1; a
preempted one (SIGUSR1/SIGTERM) saves its state and exits 75, and so does a job
that another process is already running (pipeline/run/output_lock.py); Ctrl-C
prints one line and exits 130; nothing else is caught.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

from pipeline.drivers.job import JOB_COMMAND, job_argv
from pipeline.drivers.stage_table import BY_NAME, COMMANDS
from pipeline.drivers.stage_spec import Stage


def import_target(target: str) -> Callable[..., Any]:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def _option(
    parser: argparse.ArgumentParser, name: str, hint: Any, default: Any, positional: bool = False
) -> None:
    if positional:
        parser.add_argument(name, type=hint if isinstance(hint, type) else str)
        return
    flag = "--" + name.replace("_", "-")
    kwargs: dict[str, Any] = {"dest": name, "required": default is inspect.Parameter.empty}
    if default is not inspect.Parameter.empty:
        kwargs["default"] = default
    origin = typing.get_origin(hint)
    if hint is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        return
    if origin in (list, Sequence, tuple):
        # extend: `--preset A --preset B` and `--preset A B` both give [A, B]
        parser.add_argument(flag, nargs="*", action="extend", type=typing.get_args(hint)[0], **kwargs)
        return
    if origin in (typing.Union, types.UnionType):  # Optional[X]
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    parser.add_argument(flag, type=hint, **kwargs)


def stage_options(st: Stage) -> list[str]:
    """The --options of a stage function, in command order: wildcards, path arguments, constant options
    (then --log, which the CLI handles)."""
    from pipeline.drivers.stage_spec import In

    return (
        st.wildcards
        + [n for n, i in st.inputs.items() if isinstance(i, In) and i.arg]
        + [n for n, o in st.outputs.items() if o.arg]
        + list(st.args)
    )


def build_parser(name: str, fn: Callable[..., Any], st: Stage | None) -> argparse.ArgumentParser:
    doc = st.doc if st is not None else inspect.getdoc(fn)
    parser = argparse.ArgumentParser(prog=f"python -m pipeline {name}", description=doc)
    parser.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="parameter file (default params.yaml)"
    )
    hints = typing.get_type_hints(fn)
    signature = inspect.signature(fn).parameters
    names = stage_options(st) if st is not None else [p for p in signature if p not in ("params_path",)]
    for pname in names:
        p = signature[pname]
        positional = (
            st is None
            and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
            and p.default is inspect.Parameter.empty
        )
        _option(parser, pname, hints.get(pname, str), p.default, positional)
    if st is not None:
        parser.add_argument("--log", type=Path, default=None, help="copy the stage's output to this file")
    return parser


GLOBAL_OPTIONS = ("--params", "--progress")


def _global_options(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Options before the stage name: `--params FILE`, `--progress auto|bar|lines`."""
    found: dict[str, str] = {}
    while len(argv) >= 2 and argv[0] in GLOBAL_OPTIONS:
        found[argv[0]] = argv[1]
        argv = argv[2:]
    return found, argv


def usage() -> str:
    width = max(map(len, [*BY_NAME, *COMMANDS]))
    lines = [
        "usage: python -m pipeline [--params FILE] [--progress auto|bar|lines] <stage|command> [options]",
        "",
        "pipeline stages:",
    ]
    lines += [f"  {s.name:<{width}}  {s.doc}" for s in BY_NAME.values()]
    lines += ["", "commands:"]
    lines.append(f"  {JOB_COMMAND:<{width}}  {(job_argv.__doc__ or '').splitlines()[0]}")
    lines += [
        f"  {n:<{width}}  {(inspect.getdoc(import_target(t)) or '').splitlines()[0]}"
        for n, t in COMMANDS.items()
    ]
    return "\n".join(lines)


def _job(st: Stage, args: dict[str, Any]) -> tuple[str, list[str]]:
    """A job's name for messages ("delays_train synth/learned_delay/0") and its output paths, first first."""
    from pipeline.drivers.stage_spec import expand

    wildcards = {w: args[w] for w in st.wildcards}
    outputs = [str(args[n]) if o.arg else expand(st, o.path, {}, wildcards) for n, o in st.outputs.items()]
    return " ".join([st.name, "/".join(map(str, wildcards.values()))]).strip(), outputs


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options, argv = _global_options(argv)
    if "--progress" in options:
        from pipeline.run import progress

        if options["--progress"] not in progress.MODES:
            print(
                f"error: --progress {options['--progress']}: allowed {', '.join(progress.MODES)}",
                file=sys.stderr,
            )
            return 2
        progress.mode = options["--progress"]
    if "--params" in options:
        argv = [*argv[:1], "--params", options["--params"], *argv[1:]]
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name == JOB_COMMAND:  # a job DVC runs: its stage command, resolved here rather than in a shell
        try:
            job_args = job_argv(rest)
        except (ValueError, FileNotFoundError) as err:
            return _bad_input(err)
        sys.argv = [sys.argv[0], *job_args]  # what the job's log records as its command
        return main(job_args)
    if name not in BY_NAME and name not in COMMANDS:
        hint = name.replace("-", "_")
        suggestion = f" (did you mean {hint}?)" if hint in BY_NAME or hint in COMMANDS else ""
        print(
            f"error: unknown stage or command '{name}'{suggestion}; `python -m pipeline --help` lists them",
            file=sys.stderr,
        )
        return 2
    st = BY_NAME.get(name)
    fn = import_target(st.run if st is not None else COMMANDS[name])
    args = vars(build_parser(name, fn, st).parse_args(rest))
    params_path = args.pop("params")
    from pipeline.run.errors import Preempted
    from pipeline.run.logs import logging_to
    from pipeline.run.output_lock import Busy, holding

    with logging_to(args.pop("log", None)):
        job = name
        try:
            takes_params_path = "params_path" in inspect.signature(fn).parameters
            if st is None or takes_params_path:
                if takes_params_path:
                    args["params_path"] = params_path
                fn(**args)
                return 0
            job, outputs = _job(st, args)
            with holding(outputs, job, argv):  # one run of a job at a time, whichever driver started it
                return _run_stage(st, fn, params_path, args, argv)
        except KeyboardInterrupt:  # Ctrl-C: a training stage's resume state (last epoch) stays for the rerun
            print(f"interrupted: {job}; rerun to continue", file=sys.stderr)
            return 130
        except (ValueError, FileNotFoundError) as err:  # ParamsError, ConfigError and UnknownName among them
            return _bad_input(err)
        except FloatingPointError as err:  # diverged training: say where, keep the last good state
            print(f"error: {err}", file=sys.stderr)
            return 1
        except (Preempted, Busy) as stop:  # state saved, or the job runs elsewhere: a later rerun continues
            print(stop.message, file=sys.stderr)
            return int(stop.code)


def _bad_input(err: Exception) -> int:
    """Bad input: one `error:` line per line of the message, exit code 2 (PIPELINE_DEBUG=1: the traceback)."""
    if os.environ.get("PIPELINE_DEBUG"):
        raise err
    for line in str(err).strip().splitlines() or [type(err).__name__]:
        print(line if line.startswith("error:") else f"error: {line}", file=sys.stderr)
    return 2


def _run_stage(
    st: Stage, fn: Callable[..., Any], params_path: Path, args: dict[str, Any], argv: list[str]
) -> int:
    from pipeline.params.load import load_params
    from pipeline.run.runtime import set_threads, under_torchrun
    from pipeline.drivers.resolve import build_config

    params = load_params(params_path)
    cfg = build_config(st, params, {w: args[w] for w in st.wildcards})
    runtime = getattr(cfg, "runtime", None)
    # One thread unless the stage's runtime says otherwise: float reductions depend on the thread count,
    # and Snakemake (OMP_NUM_THREADS per job) and DVC (nothing) would otherwise differ.
    set_threads(runtime.threads if runtime is not None else 1)
    held = None
    if runtime is not None:  # a stage that computes on the device: its own GPU(s); a rank joins the claim
        from pipeline.run.gpus import claim_for_job

        nproc = runtime.nproc if st.gpus else 1
        held = claim_for_job(str(runtime.device), nproc)
        nnodes = runtime.nnodes if st.gpus else 1
        if (nproc > 1 or nnodes > 1) and not under_torchrun():
            return _torchrun(nproc, nnodes, str(runtime.device), argv)
    fn(cfg, **args)
    if held is not None:
        held.release()  # also done by the process's end; held until the stage is done
    return 0


def _torchrun(nproc: int, nnodes: int, device: str, argv: list[str]) -> int:
    """Run this same command as `nproc` data-parallel ranks on each of `nnodes` nodes (torch.distributed's
    elastic launcher, what torchrun runs: pipeline/run/distributed.py). The ranks get the stage's options
    untouched (argv after `-m pipeline` never reaches a launcher's parser); this process keeps the log."""
    from pipeline.run import distributed, progress

    ranks = distributed.rank_argv(argv, progress.mode)
    print(
        f"running {argv[0]} on {nproc * nnodes} processes ({nnodes} node(s) x {nproc})",
        file=sys.stderr,
        flush=True,
    )
    if nnodes > 1 and distributed.RDZV_ENV not in os.environ:  # the job's stage process: a launcher per node
        return distributed.launch_nodes(ranks, nnodes, 0 if device == "cpu" else nproc)
    return distributed.launch(ranks, nproc, nnodes)
