"""`python -m pipeline job STAGE[@JOB]`: how DVC runs a job of a stage that fans out.

DVC pastes the names of runs, sets and variants into its shell commands as they are, and `dvc repro -s`
skips check_params, so dvc.yaml's commands hold no name: DVC sets DVC_STAGE (the job's id) for every
command, and this module turns it into the stage's own command line, as list items that no shell reads.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
from pathlib import Path

from pipeline.drivers.stage_spec import Stage, command, expand, job_wildcards

JOB_COMMAND = "job"


def form(st: Stage) -> str:
    """A short hash of the stage's command template (options, path templates, constant values): part of
    dvc.yaml's command, so that DVC reruns the jobs when the command they run changes."""
    return hashlib.sha256(command(st, lambda kind, n, template: template).encode()).hexdigest()[:12]


def _without_file(address: str) -> str:
    return address.rpartition("dvc.yaml:")[2]


def job_argv(argv: list[str]) -> list[str]:
    """Run one job as DVC does: STAGE@JOB (as `dvc stage list` prints it), or STAGE with the job in DVC_STAGE.

    Returns the job's stage command line (after `python -m pipeline`): its names and paths resolved from the
    params file, as list items that never pass through a shell."""
    from pipeline.drivers.stage_table import BY_NAME
    from pipeline.params.load import ParamsError, load_params  # jsonschema: not for every CLI start

    parser = argparse.ArgumentParser(prog=f"python -m pipeline {JOB_COMMAND}", description=job_argv.__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="parameter file")
    parser.add_argument("job", help="STAGE@JOB, or STAGE under DVC (the job from DVC_STAGE)")
    parser.add_argument("--form", help="the command template's hash dvc.yaml was generated with")
    args = parser.parse_args(argv)
    # DVC's address of a stage in a dvc.yaml other than the current folder's is `path/dvc.yaml:STAGE@JOB`
    selector = _without_file(args.job)
    name = selector.partition("@")[0]
    if name not in BY_NAME or BY_NAME[name].fanout is None:
        fanned = ", ".join(n for n, s in BY_NAME.items() if s.fanout is not None)
        raise ParamsError(f"job '{selector}': '{name}' is not a stage with jobs ({fanned})")
    if "@" not in selector:
        from_dvc = _without_file(os.environ.get("DVC_STAGE", ""))
        if from_dvc.partition("@")[0] != name:
            raise ParamsError(
                f"job '{selector}': name one job as STAGE@JOB (`dvc stage list` prints them); under DVC it "
                f"comes from DVC_STAGE, which holds '{from_dvc}'"
            )
        selector = from_dvc
    st = BY_NAME[name]
    if args.form is not None and args.form != form(st):
        raise ParamsError(f"dvc.yaml is older than stage {name}'s command: run `python -m pipeline dvc_yaml`")
    params = load_params(args.params)  # refuses unsafe names, in one line, before anything runs
    wildcards = job_wildcards(st, params, selector)
    line = command(st, lambda kind, n, template: shlex.quote(expand(st, template, params, wildcards)))
    stage_argv = shlex.split(line)[3:]  # after `python -m pipeline`
    return [stage_argv[0], "--params", str(args.params), *stage_argv[1:]]
