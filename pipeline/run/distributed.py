"""Data-parallel training with torch.distributed (DDP), one process per device.

`nproc > 1` (or `nnodes > 1`) makes the CLI run a training stage as ranks (pipeline/drivers/cli.py), so
Snakemake and DVC keep running the same command. `launch` starts them with torch.distributed's elastic
launcher (what torchrun runs) in the stage's own process, the stage's argv passed to each rank untouched;
with `nnodes > 1` under SLURM, `launch_nodes` starts one such launcher per node through srun, and they
meet in a c10d rendezvous on the job's first node. The launching process keeps the stage's log (the
ranks' lines reach it prefixed `[rankN]`), passes a preemption notice (SIGUSR1, SIGTERM) on to its
ranks and exits 75 once they have saved; a rank dies with its launcher (PR_SET_PDEATHSIG).

Each rank trains in a function that calls `setup()` (gloo on CPU, nccl on CUDA, one GPU per local rank)
and is decorated with `leaves_process_group`. The global batch size stays what params say: every global
batch of the seeded permutation is split across ranks (pipeline/data/sampling.py), DDP averages the
gradients, and evaluation sums counts over ranks. Only rank 0 writes outputs.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import gc
import logging
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import traceback
import typing
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from pipeline.data.sampling import Dist
from pipeline.run.errors import PREEMPT_SIGNALS, PREEMPTED_EXIT
from pipeline.run.runtime import under_torchrun

LAUNCHER_ENV = "PIPELINE_LAUNCHER_PID"  # set for the ranks: the process they must not outlive
RDZV_ENV = "PIPELINE_RDZV_ENDPOINT"  # host:port of a multi-node run's rendezvous, for each node's launcher
RDZV_ID_ENV = "PIPELINE_RDZV_ID"  # the run's rendezvous id, the same on every node
RDZV_PORT_BASE = 29400  # torchrun's default c10d port; a SLURM job adds its id % 1000 (jobs may share a node)
PR_SET_PDEATHSIG = 1  # linux/prctl.h
AGENT_LOGGERS = (
    "torch.distributed.elastic.agent.server.api",  # their lines about the workers
    "torch.distributed.elastic.multiprocessing.api",
)
# SLURM variables a nested srun keeps: the allocation's identity. The rest describe the step the stage runs in
# (one task, one node) and would become the new step's defaults; the slurm executor plugin drops them too.
SLURM_KEEP = {
    "SLURM_JOB_ID",
    "SLURM_JOBID",
    "SLURM_CLUSTER_NAME",
    "SLURM_SUBMIT_DIR",
    "SLURM_SUBMIT_HOST",
    "SLURM_CONF",
}


def setup(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group when launched by torchrun; returns (Dist, this process's device)."""
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Dist(), device
    _die_with_launcher()
    d = Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # DDP imports torch._dynamo on first use, and that import takes lasting references to
        # every process group alive at that moment: destroy_process_group could then never free
        # ours. Imported first, it holds none.
        importlib.import_module("torch._dynamo")  # not `import torch._dynamo`: that makes `torch` a local

        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return d, device


F = TypeVar("F", bound=Callable[..., Any])


def leaves_process_group(stage_fn: F) -> F:
    """Decorates a training function that joins the group (`setup()`): once it has returned, destroy the
    group.

    Only then: its objects (a DDP module holds the group) are gone with its frame; on an error
    the traceback's frames are cleared first. Gloo threads that outlive the interpreter make
    the process abort at exit ("terminate called without an active exception", exit -6)
    after a successful run.
    """

    @functools.wraps(stage_fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return stage_fn(*args, **kwargs)
        except BaseException as err:
            traceback.clear_frames(err.__traceback__)
            raise
        finally:
            if dist.is_initialized():
                gc.collect()
                dist.destroy_process_group()

    return typing.cast(F, run)


def wrap(model: nn.Module, d: Dist, device: torch.device) -> nn.Module:
    """DDP-wrap `model` when there is more than one process (else return it unchanged)."""
    if not d.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_sum(values: Sequence[float], d: Dist, device: torch.device) -> list[float]:
    """Sum a few numbers over ranks (identity with one process); float64 so counts stay exact."""
    if not d.enabled:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool, d: Dist, device: torch.device) -> bool:
    """True when `flag` is true on any rank, so every rank takes the same branch."""
    return all_sum([float(flag)], d, device)[0] > 0 if d.enabled else flag


def seed_rank(seed: int, d: Dist) -> None:
    """After the model is built: same initial weights everywhere, own dropout masks per rank."""
    if d.enabled:
        torch.manual_seed(seed + 1_000_003 * d.rank)


def all_gather_object(obj: object, d: Dist) -> list[object]:
    if not d.enabled:
        return [obj]
    out: list[object] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


# ---- launching the ranks --------------------------------------------------------------------------------


def _die_with_launcher() -> None:
    """In a rank: be killed when the launcher that started it dies (the kernel's parent-death signal), so no
    rank trains on as an orphan and deletes the resume state of a job that already failed."""
    launcher = os.environ.get(LAUNCHER_ENV)
    if launcher is None or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != int(launcher):  # it died before the request: nobody would send the signal
        os.kill(os.getpid(), signal.SIGKILL)


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc: the launcher's children are its ranks, or srun)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


class _Forwarding:
    """While the ranks run: a preemption notice to this process goes on to its children, which the elastic
    launcher starts in sessions of their own (a signal to the stage's process group misses them)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_Forwarding":
        for sig in PREEMPT_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._forward)
        return self

    def _forward(self, signum: int, frame: Any) -> None:
        self.received = signum
        for child in _children(os.getpid()):
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _exit_code(codes: Sequence[int], first: int, forwarded: int | None) -> int:
    """The stage's exit code from its ranks' (`first`: the earliest failure). After a preemption notice any
    failure is the notice's doing (a rank that had not started its loop dies of it): the retry resumes."""
    if not codes:
        return 0
    if forwarded is not None or PREEMPTED_EXIT in codes:
        return PREEMPTED_EXIT
    return first if first > 0 else 1


def rank_argv(argv: Sequence[str], progress_mode: str) -> list[str]:
    """The stage's command for its ranks: the same, without `--log FILE` (the launcher keeps the log and
    copies the ranks' lines into it) and with the launcher's progress mode."""
    out, skip = ["--progress", progress_mode], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--log":
            skip = True
        elif not arg.startswith("--log="):
            out.append(arg)
    return out


@contextlib.contextmanager
def _quiet_agent() -> Iterator[None]:
    """Hush the elastic agent's lines about its workers ("closing signal SIGTERM", "failed (exitcode: 75)"):
    the ranks say what happened themselves, and a preempted stage is no error. Rendezvous messages stay."""
    loggers = [logging.getLogger(name) for name in AGENT_LOGGERS]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def launch(argv: Sequence[str], nproc: int, nnodes: int = 1) -> int:
    """Run `python -m pipeline ARGV` as `nproc` ranks on this node and return the stage's exit code.

    The elastic agent runs in this process; with `nnodes > 1` this is one node's launcher and meets the
    others at $PIPELINE_RDZV_ENDPOINT (c10d rendezvous). Ranks' output is copied line by line to this
    process's stdout and stderr (so to the stage's log), each line prefixed with its rank."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    endpoint = os.environ.get(RDZV_ENV)
    if nnodes > 1 and not endpoint:
        raise ValueError(
            f"nnodes {nnodes} needs one launcher per node: run the stage in a SLURM job "
            f"(profiles/slurm), or set ${RDZV_ENV}=HOST:PORT for a launcher on each node"
        )
    others = (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)  # the agent's handlers, put back afterwards
    saved = {sig: signal.getsignal(sig) for sig in others}
    with (
        tempfile.TemporaryDirectory(prefix="pipeline-ranks-") as logs,
        _Forwarding() as fwd,
        _quiet_agent(),
        _environ(**{LAUNCHER_ENV: str(os.getpid()), "PYTHONUNBUFFERED": "1"}),
    ):
        config = LaunchConfig(
            min_nodes=nnodes,
            max_nodes=nnodes,
            nproc_per_node=nproc,
            rdzv_backend="c10d",
            rdzv_endpoint=endpoint or "localhost:0",
            run_id=os.environ.get(RDZV_ID_ENV) or uuid.uuid4().hex,
            max_restarts=0,
            start_method="spawn",
            logs_specs=DefaultLogsSpecs(log_dir=logs, tee=Std.ALL),
            log_line_prefix_template="[rank${rank}] ",
            # SIGTERM stays ours (a notice to pass on): the agent's handler would stop the ranks at once
            signals_to_handle=",".join(sig.name for sig in others),
        )
        try:
            elastic_launch(config, sys.executable)("-m", "pipeline", *argv)
            codes, first = [], 0
        except ChildFailedError as err:
            codes = [f.exitcode for f in err.failures.values()]
            first = err.get_first_failure()[1].exitcode
        except SignalException as err:  # Ctrl-C, a hangup: the agent has stopped the ranks with that signal
            if err.sigval == signal.SIGINT:
                raise KeyboardInterrupt from None
            codes, first = [128 + err.sigval], 128 + err.sigval
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
    return _exit_code(codes, first, fwd.received)


def _slurm_hosts() -> list[str]:
    nodelist = os.environ["SLURM_JOB_NODELIST"]
    out = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def launch_nodes(argv: Sequence[str], nnodes: int, gpus_per_node: int) -> int:
    """In a SLURM job: this stage's ranks on `nnodes` nodes, one launcher per node (`launch`) started as one
    srun step, rendezvous on the job's first node. Their output comes back through srun into this process's
    stdout (so the stage's log); a preemption notice to this process goes on to srun, which signals them."""
    if "SLURM_JOB_ID" not in os.environ:
        raise ValueError(
            f"nnodes {nnodes}: several nodes are run through SLURM (srun) only; "
            "run the stage in a SLURM job (profiles/slurm) or set nnodes: 1"
        )
    hosts = _slurm_hosts()
    if len(hosts) < nnodes:
        raise ValueError(f"nnodes {nnodes}: the SLURM job has {len(hosts)} node(s) ({', '.join(hosts)})")
    job = os.environ["SLURM_JOB_ID"]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "SRUN_", "SBATCH_")) or k in SLURM_KEEP
    }
    env[RDZV_ENV] = f"{hosts[0]}:{RDZV_PORT_BASE + int(job) % 1000}"
    env[RDZV_ID_ENV] = f"{job}-{uuid.uuid4().hex}"
    # --overlap: the stage itself runs in a step of this job that holds part of its resources
    cmd = [
        "srun",
        "--overlap",
        f"--nodes={nnodes}",
        f"--ntasks={nnodes}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        *([f"--gres=gpu:{gpus_per_node}"] if gpus_per_node else []),
        sys.executable,
        "-m",
        "pipeline",
        *argv,
    ]
    print(f"launchers: {shlex.join(cmd)} (rendezvous {env[RDZV_ENV]})", file=sys.stderr, flush=True)
    with _Forwarding() as fwd:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
        code = proc.wait()
    return _exit_code([code] if code else [], code, fwd.received)
