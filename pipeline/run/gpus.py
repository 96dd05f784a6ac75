"""One GPU per job on a machine with several: each training job claims its own, for all its processes.

Concurrent Snakemake jobs and `dvc queue` workers all start with `device: auto`,
and CUDA's default device is GPU 0 for every one of them. So before CUDA starts,
a training stage claims as many GPUs as it runs processes (`nproc`) and sets
CUDA_VISIBLE_DEVICES to them. When every GPU is held, the stage says so once and
waits for one to free up; when it needs more GPUs than there are, it stops.

A claim is a lock (flock) on a file per GPU in one folder per machine (LOCK_DIR,
mode 1777, files 0666, so every user's jobs see each other's). A claimer takes
the lock exclusively, writes its claim id into the file, then turns the lock
shared: processes it starts (torchrun's ranks, which inherit the claim through
CLAIM_ENV) take shared locks of their own on the same files, after checking the
claim id is still theirs. So the GPUs stay claimed until the last process of the
job has exited, whichever exits first and however (a killed CLI leaves its ranks
holding them), and a new claim (an exclusive lock) waits for all of them.

Devices are listed without starting CUDA (NVML, `nvidia-smi -L`, or
/proc/driver/nvidia/gpus): once CUDA has started in a process, setting
CUDA_VISIBLE_DEVICES no longer changes what it sees. A GPU's lock is named by its
UUID when the listing gives one, so the same GPU has one lock under any numbering.
Inside an allocation (a scheduler set CUDA_VISIBLE_DEVICES, e.g. `salloc --gpus=4`)
a job claims among the devices listed there and narrows the list to its claim.
An explicit `device: cuda:N` is taken as given.

PIPELINE_FAKE_GPUS=N is a test hook: it makes the machine look like it has N GPUs
(numbered 0..N-1, no UUIDs), so the claims can be exercised on a machine without any.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import re
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

# /tmp rather than $TMPDIR: TMPDIR is often set per user or per job, and the folder must be one per machine.
LOCK_DIR = Path("/tmp/pipeline-gpu-claims")
LOCK_DIR_ENV = "PIPELINE_GPU_LOCK_DIR"
FAKE_ENV = "PIPELINE_FAKE_GPUS"  # test hook, see the module docstring
CLAIM_ENV = "PIPELINE_GPU_CLAIM"  # the claim a process inherits from the one that started it
PROC_GPUS = Path("/proc/driver/nvidia/gpus")
WAIT_POLL_S = 2.0
PERMISSION_RETRY_S = 2.0  # another user's process may be between creating a file and opening it to all


class NotEnoughGpus(ValueError):
    """The job needs more GPUs than the machine (or the allocation) has."""


class GpuLockError(ValueError):
    """The lock folder or a lock file cannot be used by this user."""


class ClaimLost(ValueError):
    """A process joins the claim of the process that started it, but another job claimed the GPUs since."""


@dataclass(frozen=True)
class Gpu:
    """One device a job may claim."""

    label: str  # how people name it: nvidia-smi's index, or the entry of the allocation's list
    visible: str  # what CUDA_VISIBLE_DEVICES gets for it
    key: str  # what is locked: the UUID when known, the same GPU under any numbering


def nvml_uuids() -> list[str | None] | None:
    """UUIDs of the machine's GPUs from NVML (pynvml), in nvidia-smi's order; None without NVML."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        found = [pynvml.nvmlDeviceGetUUID(h) for h in handles]
        return [u.decode() if isinstance(u, bytes) else u for u in found]
    except pynvml.NVMLError:
        return None
    finally:
        pynvml.nvmlShutdown()


def nvidia_smi_uuids() -> list[str | None] | None:
    """UUIDs of the machine's GPUs from `nvidia-smi -L`; None when it is missing or fails."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    found = [re.match(r"GPU \d+:.*\(UUID: (GPU-[^)\s]+)\)", line) for line in out.stdout.splitlines()]
    return [m.group(1) for m in found if m]  # MIG slices are indented lines: not listed


def proc_uuids() -> list[str | None] | None:
    """UUIDs of the machine's GPUs from the driver's /proc files (PCI order, as nvidia-smi); None without."""
    if not PROC_GPUS.is_dir():
        return None
    found: list[str | None] = []
    for bus in sorted(PROC_GPUS.iterdir()):
        info = bus / "information"
        m = re.search(r"^GPU UUID:\s*(GPU-\S+)", info.read_text() if info.is_file() else "", re.M)
        found.append(m.group(1) if m else None)
    return found


SOURCES: tuple[Callable[[], list[str | None] | None], ...] = (nvml_uuids, nvidia_smi_uuids, proc_uuids)


def machine_gpus() -> list[Gpu]:
    """The machine's GPUs, from the first source that answers; none of them starts CUDA."""
    fake = os.environ.get(FAKE_ENV)
    if fake is not None:
        if not fake.isdigit():
            raise ValueError(f"{FAKE_ENV}={fake!r}: expected a whole number of pretended GPUs")
        return [Gpu(str(i), str(i), str(i)) for i in range(int(fake))]
    for source in SOURCES:
        uuids = source()
        if uuids is not None:
            break
    else:
        return []
    if any(u is None for u in uuids):  # numbered only: CUDA_VISIBLE_DEVICES by index
        return [Gpu(str(i), str(i), str(i)) for i in range(len(uuids))]
    return [Gpu(str(i), str(u), str(u)) for i, u in enumerate(uuids)]


def listed_devices(value: str) -> list[str]:
    """The entries of a CUDA_VISIBLE_DEVICES value that CUDA uses: it stops at the first invalid one."""
    entries: list[str] = []
    for entry in (e.strip() for e in value.split(",")):
        if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
            break
        if entry in entries:  # CUDA sees no device at all then
            return []
        entries.append(entry)
    return entries


def _allocation_key(entry: str, machine: list[Gpu]) -> str:
    """The lock key of an allocation's entry: the machine's UUID for it when the listing resolves it."""
    if entry.isdigit():
        return machine[int(entry)].key if int(entry) < len(machine) else entry
    matches = [g.key for g in machine if g.key.startswith(entry)]  # CUDA takes unique UUID prefixes
    return matches[0] if len(matches) == 1 else entry


def visible_gpus() -> tuple[list[Gpu], str]:
    """The GPUs a job here may claim, and where they are (for messages): the allocation's or the machine's."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return machine_gpus(), "the machine"
    entries = listed_devices(value)
    machine = machine_gpus() if entries else []
    where = f"the allocation (CUDA_VISIBLE_DEVICES={value})"
    return [Gpu(e, e, _allocation_key(e, machine)) for e in entries], where


def lock_dir() -> Path:
    """The folder of the claims: one per machine, or PIPELINE_GPU_LOCK_DIR."""
    return Path(os.environ.get(LOCK_DIR_ENV, LOCK_DIR))


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _unusable(path: Path, err: OSError) -> GpuLockError:
    """The error for a lock file this user cannot open: the file's owner and mode, or its folder's."""
    culprit = path if os.path.lexists(path) else path.parent
    try:
        st = os.lstat(culprit)
        owner = f"uid {st.st_uid}, mode {st.st_mode & 0o7777:o}"
    except OSError:
        owner = "missing"
    return GpuLockError(
        f"GPU lock {path} cannot be used by {_user()} ({culprit}: {owner}; {err.strerror}): its owner can "
        f"run `chmod 1777` on the folder and `chmod 666` on its files, or set {LOCK_DIR_ENV} to a folder "
        "every user of this machine can write"
    )


def _retrying(path: Path, action: Callable[[], int]) -> int:
    """`action`, again for a moment on a permission error (another user's process may be about to chmod)."""
    deadline = time.monotonic() + PERMISSION_RETRY_S
    while True:
        try:
            return action()
        except PermissionError as err:
            if time.monotonic() >= deadline:
                raise _unusable(path, err) from None
            time.sleep(0.05)


def _prepare_folder(folder: Path) -> Path:
    """Create the lock folder for every user (1777, whatever the umask); an existing one is used as it is."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(folder, 0o1777)
        os.chmod(folder, 0o1777)
    except FileExistsError:
        pass
    if folder.is_symlink() or not folder.is_dir():  # a link in a shared folder may point anywhere
        raise GpuLockError(f"GPU lock folder {folder} is not a folder; remove it or set {LOCK_DIR_ENV}")
    return folder


def _open_lock(path: Path) -> int:
    """Open (creating if needed, 0666 whatever the umask) a lock file, also when another user created it."""
    flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC

    def attempt() -> int:
        while True:
            try:  # without O_CREAT: a sticky folder refuses O_CREAT on others' files (fs.protected_regular)
                return os.open(path, flags)
            except FileNotFoundError:
                pass
            try:
                fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue  # created meanwhile by another process: open it as it is
            os.fchmod(fd, 0o666)
            return fd

    try:
        return _retrying(path, attempt)
    except OSError as err:  # e.g. a symbolic link in its place (O_NOFOLLOW)
        raise _unusable(path, err) from None


def _lock_file(folder: Path, key: str) -> Path:
    return folder / f"gpu-{re.sub(r'[^A-Za-z0-9._-]', '_', key)}.lock"


def _claim_id(fd: int) -> str:
    first = os.pread(fd, 4096, 0).decode(errors="replace").split("\n", 1)[0].split()
    return first[1] if len(first) > 1 and first[0] == "claim" else ""


def _take(path: Path, claim_id: str) -> int | None:
    """Take a free GPU's lock for `claim_id`: exclusive to test and mark it, then shared for the job."""
    fd = _open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"claim {claim_id} user {_user()} pid {os.getpid()}\n".encode())
    fcntl.flock(fd, fcntl.LOCK_SH)  # not atomic: another claimer may slip in, and then its id is there
    if _claim_id(fd) != claim_id:
        os.close(fd)
        return None
    return fd


def _holders(gpus: Sequence[Gpu], folder: Path) -> str:
    """Who holds each GPU (for the waiting message): the user and the processes still alive."""
    parts = []
    for gpu in gpus:
        path = _lock_file(folder, gpu.key)
        text = path.read_text(errors="replace") if path.exists() else ""
        user = re.search(r"^claim \S+ user (\S+)", text)
        pids = [p for p in re.findall(r"pid (\d+)", text) if _alive(int(p))]
        who = f" ({user.group(1)})" if user else ""
        parts.append(f"GPU {gpu.label}: pid {','.join(pids) or '?'}{who}")
    return ", ".join(parts)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@dataclass
class GpuClaim:
    """GPUs held by this process; the claim holds while any process of the job holds its locks."""

    gpus: list[Gpu]
    claim_id: str
    folder: Path
    _fds: list[int] = field(default_factory=list, repr=False)

    def release(self) -> None:
        """Drop this process's share of the claim (the process's end does it too)."""
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        if os.environ.get(CLAIM_ENV) == self.inherited():
            del os.environ[CLAIM_ENV]

    def inherited(self) -> str:
        """The value of CLAIM_ENV by which processes this one starts join the claim."""
        return json.dumps(
            {
                "id": self.claim_id,
                "host": socket.gethostname(),
                "dir": str(self.folder),
                "gpus": [[g.label, g.visible, g.key] for g in self.gpus],
            }
        )


def claim(
    n: int,
    gpus: Sequence[Gpu],
    folder: Path | None = None,
    timeout_s: float | None = None,
    where: str = "the machine",
) -> GpuClaim:
    """Claim `n` of `gpus`, waiting while too few are free (up to `timeout_s`)."""
    if n > len(gpus):
        raise NotEnoughGpus(f"this job needs {n} GPUs (nproc {n}), {where} has {len(gpus)}")
    folder = _prepare_folder(folder or lock_dir())
    claim_id = uuid.uuid4().hex
    start, told = time.monotonic(), False
    while True:
        held: list[tuple[Gpu, int]] = []
        for gpu in gpus:
            fd = _take(_lock_file(folder, gpu.key), claim_id)
            if fd is not None:
                held.append((gpu, fd))
                if len(held) == n:
                    return GpuClaim([g for g, _ in held], claim_id, folder, [f for _, f in held])
        for _, fd in held:  # not enough: give back what we took, so two jobs cannot deadlock on halves
            os.close(fd)
        if timeout_s is not None and time.monotonic() - start >= timeout_s:
            raise TimeoutError(f"no {n} free GPU(s) after {timeout_s:.0f} s ({_holders(gpus, folder)})")
        if not told:
            print(
                f"waiting for {n} free GPU(s): all {len(gpus)} of {where} are held by other pipeline jobs "
                f"({_holders(gpus, folder)}); run at most as many GPU jobs at once as there are GPUs "
                "(snakemake --resources gpu=N, dvc queue start -j N)",
                file=sys.stderr,
                flush=True,
            )
            told = True
        time.sleep(WAIT_POLL_S)


def join(inherited: str) -> GpuClaim:
    """Hold the claim this process inherited (CLAIM_ENV) with locks of its own, so it outlives its starter."""
    spec = json.loads(inherited)
    gpus = [Gpu(*g) for g in spec["gpus"]]
    folder = Path(spec["dir"])
    held = GpuClaim(gpus, spec["id"], folder)
    for gpu in gpus:
        fd = _open_lock(_lock_file(folder, gpu.key))
        held._fds.append(fd)
        fcntl.flock(fd, fcntl.LOCK_SH)
        if _claim_id(fd) != held.claim_id:
            held.release()
            raise ClaimLost(
                f"GPU {gpu.label} was claimed by another job before this process could join its "
                "parent's claim (the process that claimed it has ended): "
                f"{_holders([gpu], folder)}"
            )
        os.write(fd, f"pid {os.getpid()}\n".encode())
    return held


def claim_for_job(device: str, nproc: int) -> GpuClaim | None:
    """Claim GPUs for a training job before CUDA starts, or join the claim of the process that started it."""
    if device not in ("auto", "cuda"):
        return None
    inherited = os.environ.get(CLAIM_ENV)
    # A rank (or other process) started by a job that claimed on this machine holds the claim too; on
    # another node (a multi-node launcher started through srun) this process claims that node's GPUs.
    if inherited and json.loads(inherited).get("host") == socket.gethostname():
        return join(inherited)
    if "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ:  # a torchrun rank that inherited no claim:
        return None  # its launcher chose the devices
    gpus, where = visible_gpus()
    if not gpus:
        return None
    held = claim(nproc, gpus, where=where)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(g.visible for g in held.gpus)
    os.environ[CLAIM_ENV] = held.inherited()
    labels = ",".join(g.label for g in held.gpus)
    shown = "" if labels == os.environ["CUDA_VISIBLE_DEVICES"] else f" ({os.environ['CUDA_VISIBLE_DEVICES']})"
    inside = "" if where == "the machine" else f" of {where}"
    print(f"using GPU(s) {labels}{inside}{shown}", file=sys.stderr, flush=True)
    return held
