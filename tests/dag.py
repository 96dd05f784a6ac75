"""Read the DAG each driver would run: Snakemake's jobs from a forced dry run,
DVC's stages from dvc.yaml as DVC itself resolves it (foreach/matrix, ${})."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.drivers.job import JOB_COMMAND, job_argv
from pipeline.drivers.stage_table import PARAMS_OK
from tests.conftest import run


@dataclass
class Job:
    name: str  # Snakemake rule / DVC stage name without its @variant
    cmd: str
    inputs: set[str] = field(default_factory=set)
    outputs: set[str] = field(default_factory=set)


def _argv(cmd: str) -> str:
    """A command as the shell splits it: Snakemake quotes values only where needed, DVC's commands always."""
    return " ".join(shlex.split(cmd))


def snakemake_jobs(workdir: Path, *extra: str) -> list[Job]:
    """Jobs of `snakemake -n -p --forceall`, commands without Snakemake's own options (the resolved parameters
    and plain progress lines: the one difference from DVC's commands)."""
    out = run(["snakemake", "-n", "-p", "--forceall", "--cores", "1", *extra], cwd=workdir).stdout
    jobs: list[Job] = []
    current: Job | None = None
    for line in out.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):$", line):
            current = Job(m.group(1), "")
            jobs.append(current)
        elif current and (m := re.match(r"^\s+(input|output): (.*)$", line)):
            files = {p.strip() for p in m.group(2).split(",") if p.strip()}
            (current.inputs if m.group(1) == "input" else current.outputs).update(files)
        elif current and line.startswith("Shell command: "):
            command = re.sub(r" --params \S+ --progress lines", "", line[len("Shell command: ") :], count=1)
            current.cmd = _argv(command)
    return [j for j in jobs if j.name != "all"]


def _dvc_command(stage, workdir: Path) -> str:
    """What a DVC stage runs: its cmd, or for `python -m pipeline job STAGE` the command `job` resolves
    from the job's id (DVC_STAGE) and the copy's params, without the `--params` it adds."""
    argv = shlex.split(stage.cmd)
    if argv[3:4] != [JOB_COMMAND]:
        return _argv(stage.cmd)
    resolved = job_argv(["--params", str(workdir / "params.yaml"), stage.addressing])
    assert resolved[1] == "--params"
    return " ".join(["python", "-m", "pipeline", resolved[0], *resolved[3:]])


def dvc_stages(workdir: Path) -> list[Job]:
    from dvc.repo import Repo

    with Repo(str(workdir)) as repo:
        stages = []
        for stage in repo.index.stages:
            rel = lambda o: str(Path(o.fs_path).relative_to(workdir.resolve()))  # noqa: E731
            stages.append(
                Job(
                    stage.name.split("@")[0],
                    _dvc_command(stage, workdir),
                    {rel(d) for d in stage.deps if not d.__class__.__name__.startswith("Param")},
                    {rel(o) for o in stage.outs},
                )
            )
        return stages


def _covered(path: str, dirs: set[str]) -> bool:
    return path in dirs or any(path.startswith(d.rstrip("/") + "/") for d in dirs)


def compare_dags(smk: list[Job], dvc: list[Job]) -> list[str]:
    """Every difference between the two DAGs, as readable lines (empty = equal).

    Jobs are matched by command. Inputs must be equal, except that a DVC dep may be a directory holding
    several Snakemake inputs (the report reads results folders) and that DVC's stages also depend on
    check_params (Snakemake makes the same checks when it reads the Snakefile); outputs must be equal.
    """
    problems = []
    by_cmd = {j.cmd: j for j in dvc}
    seen = set()
    for job in smk:
        other = by_cmd.get(job.cmd)
        if other is None:
            problems.append(f"snakemake rule {job.name} runs a command no DVC stage runs: {job.cmd}")
            continue
        seen.add(job.cmd)
        if other.name != job.name:
            problems.append(f"{job.cmd}: snakemake rule {job.name} vs DVC stage {other.name}")
        if job.outputs != other.outputs:
            problems.append(
                f"{job.name}: outputs differ: snakemake only {sorted(job.outputs - other.outputs)}, "
                f"dvc only {sorted(other.outputs - job.outputs)}"
            )
        deps = other.inputs - {PARAMS_OK}
        missing = sorted(p for p in job.inputs if not _covered(p, deps))
        extra = sorted(d for d in deps if not any(_covered(p, {d}) for p in job.inputs))
        if missing or extra:
            problems.append(f"{job.name}: inputs differ: snakemake only {missing}, dvc only {extra}")
    for job in dvc:
        if job.cmd not in seen and job.name != "check_params":
            problems.append(f"DVC stage {job.name} runs a command no snakemake rule runs: {job.cmd}")
    return problems
