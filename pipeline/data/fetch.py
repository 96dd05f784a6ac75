"""Download the public datasets whose licences allow it; say where every other one comes from.

`SOURCES` maps each dataset format to its files (URL, checksum, size) and two
texts: where the data comes from and what the dataset root must hold.
`fetch` downloads a format's files into a root; `describe` is the text shown
when a configured root is missing (docs/data.md says the same at length).

A download is kept in `<root>.download/<file>.part` and continued with an HTTP
Range request after an interruption. Its checksum is verified before anything
is written to the root, then it is unpacked into a temporary folder beside the
root and renamed into place, so the root only ever holds complete files.
`<root>/.fetched.json` records what was fetched, so a rerun downloads nothing.
`<root>.lock` is held while a fetch runs, so two fetches never share a .part file.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import gzip
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Iterator, Sequence

from tqdm import tqdm

TIMEOUT_S = 30.0  # per connection attempt and per read: a stalled server fails instead of hanging forever
CHUNK = 1 << 20
MARKER = ".fetched.json"
DIGEST_LENGTHS = {32: "md5", 64: "sha256"}  # hex digits -> algorithm, for md5sum/sha256sum lists


class DatasetBusy(RuntimeError):
    """Another process holds the dataset's lock (it is fetching the same dataset)."""


@dataclass(frozen=True)
class Remote:
    """One file to download; `checksum` None means the publisher's list (`Source.checksum_list`) gives it."""

    url: str
    algorithm: str  # hashlib name: md5 or sha256
    checksum: str | None
    unpack: str  # "gunzip" (x.h5.gz -> x.h5) or "untar" (members extracted into the root)
    size: int | None = None  # bytes; the progress bar's total when the server sends no Content-Length

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[1]


@dataclass(frozen=True)
class Source:
    """A dataset format: where it comes from, the layout its root must have and, if downloadable,
    its files."""

    title: str
    where: str  # one paragraph: origin and licence; for manual formats also the steps to get the data
    layout: str  # one line per entry of the root
    files: tuple[Remote, ...] = ()
    checksum_list: str | None = None  # the publisher's "<md5>  <file>" list, next to the files


ZENKELAB = "https://zenkelab.org/datasets"
HSD_WHERE = ("published by the Zenke lab and the Electronic Vision(s) group of Heidelberg University "
             "(https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/) under the Creative Commons "
             "Attribution 4.0 licence; files at https://zenkelab.org/datasets/, mirrored at "
             "https://compneuro.net/datasets/.")
HSD_CONTENT = "(spikes/times, spikes/units, labels; see pipeline/data/shd.py)"

# Checksums of SHD and SSC are read at fetch time from the publisher's md5sums.txt beside the files, as the
# publisher's own tutorial does (github.com/fzenke/spytorch, notebooks/utils.py, get_shd_dataset). No copy
# of that list could be traced, so none is pinned: the md5s other projects hard-code for SHD
# (e.g. norse, norse/dataset/spiking_heidelberg.py) are not the publisher's listing.
SOURCES: dict[str, Source] = {
    "shd": Source(
        title="Spiking Heidelberg Digits (SHD)",
        where="SHD is " + HSD_WHERE,
        layout=f"shd_train.h5, shd_test.h5: the official HDF5 files, gunzipped {HSD_CONTENT}",
        files=(
            Remote(f"{ZENKELAB}/shd_train.h5.gz", "md5", None, "gunzip"),
            Remote(f"{ZENKELAB}/shd_test.h5.gz", "md5", None, "gunzip"),
        ),
        checksum_list="md5sums.txt",
    ),
    "ssc": Source(
        title="Spiking Speech Commands (SSC)",
        where="SSC is " + HSD_WHERE,
        layout=f"ssc_train.h5, ssc_valid.h5, ssc_test.h5: the official HDF5 files, gunzipped {HSD_CONTENT}",
        files=(
            Remote(f"{ZENKELAB}/ssc_train.h5.gz", "md5", None, "gunzip"),
            Remote(f"{ZENKELAB}/ssc_valid.h5.gz", "md5", None, "gunzip"),
            Remote(f"{ZENKELAB}/ssc_test.h5.gz", "md5", None, "gunzip"),
        ),
        checksum_list="md5sums.txt",
    ),
    "gsc": Source(
        title="Google Speech Commands v0.02 (GSC)",
        where=("GSC is published by Google (Warden 2018, https://arxiv.org/abs/1804.03209) under the "
               "Creative Commons Attribution 4.0 licence as "
               "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz (2.4 GB)."),
        layout=("<word>/*.wav: one folder per word (35 words) of 16 kHz mono wav files\n"
                "_background_noise_/: noise recordings (not a class)\n"
                "validation_list.txt, testing_list.txt: the word/file.wav paths of those splits; every "
                "other wav is training\n"
                "(the extracted speech_commands_v0.02.tar.gz)"),
        # sha256 and size as listed by TensorFlow Datasets, the TensorFlow project that also hosts the
        # archive: tensorflow/datasets, tensorflow_datasets/url_checksums/speech_commands.txt. torchaudio
        # (torchaudio/datasets/speechcommands.py, _CHECKSUMS) lists the same sha256.
        files=(
            Remote("http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz", "sha256",
                   "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58", "untar",
                   size=2_428_923_189),
        ),
    ),
    "imagefolder": Source(
        title="ImageNet-1K (ILSVRC 2012)",
        where=("ImageNet is distributed by https://image-net.org only to registered users who accept its "
               "terms of access (non-commercial research and education), so it cannot be downloaded "
               "automatically. Log in at https://image-net.org/challenges/LSVRC/2012/2012-downloads.php, "
               "download ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz "
               "(about 150 GB) into the root, then run python -c \"from torchvision.datasets import "
               "ImageNet; ImageNet('<root>', split='train'); ImageNet('<root>', split='val')\" which "
               "checks the archives and unpacks them into train/ and val/, sorting the validation images "
               "into class folders; the archives can be deleted afterwards."),
        layout=("train/<wnid>/*.JPEG: the training images, one folder per WordNet id (n01440764, ...)\n"
                "val/<wnid>/*.JPEG: the 50,000 validation images, sorted into the same class folders"),
    ),
    "es_imagenet": Source(
        title="ES-ImageNet",
        where=("ES-ImageNet (Lin et al. 2021, https://github.com/lyh983012/ES-imagenet-master) is shared "
               "by its authors on Tsinghua Cloud (https://cloud.tsinghua.edu.cn/d/94873ab4ec2a4eb497b3/) "
               "and OpenI (https://git.openi.org.cn/xjtu_ym/ES-ImageNet/datasets), about 100 GB behind "
               "pages that need a browser, so it cannot be downloaded automatically. Download the "
               "event-list release (not the 40 GB event-frame version) and unpack it into the root."),
        layout=("trainlabel.txt, vallabel.txt: lines '<npz path relative to train/ or val/> "
                "<label> <a> <b>'\n"
                "train/class<K>/class<K>_<n>.npz: the training samples (keys pos, neg)\n"
                "val/ILSVRC2012_val_XXXXXXXX.npz: the validation samples"),
    ),
    "es_ucf101": Source(
        title="ES-UCF101",
        where=("ES-UCF101 (Lin et al., 'Rethinking Pretraining as a Bridge from ANNs to SNNs', "
               "https://github.com/lyh983012/SNN-ANN-Pretrain) is shared by its authors in a Google Drive "
               "folder (https://drive.google.com/drive/folders/1_dNYxXKOaFlE4DJdL7ERBvBh4YLd8EQh) that "
               "needs a browser, so it cannot be downloaded automatically. Download it and place its npz "
               "files under train/ and val/ in the root."),
        layout=("train/.../v_<Action>_gXX_cYY.npz, val/.../v_<Action>_gXX_cYY.npz: one file per video "
                "(sub-folders allowed), key arr_0, uint8 (2, 30, 256, 342) = (polarity, step, height, "
                "width); the label is the action in the name"),
    ),
    "ucf101_frames": Source(
        title="UCF101 RGB frames",
        where=("UCF101 (Soomro et al. 2012) is published by the UCF Center for Research in Computer Vision "
               "at https://www.crcv.ucf.edu/data/UCF101.php (see that page for its terms of use) as one "
               "RAR archive of 13,320 AVI videos (about 7 GB); unpacking RAR and decoding video need tools "
               "outside Python, so it is not downloaded automatically. Download UCF101.rar and the "
               "train/test split lists (UCF101TrainTestSplits-RecognitionTask.zip), unpack them (unrar x "
               "UCF101.rar), then extract the frames of every video of a training list (e.g. "
               "trainlist01.txt) into <root>/train/<video>/ and of the matching test list into "
               "<root>/val/<video>/, e.g. ffmpeg -i UCF-101/<Action>/<video>.avi "
               "<root>/train/<video>/%05d.jpg"),
        layout=("train/.../v_<Action>_gXX_cYY/, val/.../v_<Action>_gXX_cYY/: one folder per video "
                "(sub-folders allowed) holding its frames as .jpg, .jpeg or .png files named in time order"),
    ),
}


def describe(fmt: str, dataset: str | None = None, *, presets: Sequence[str | os.PathLike] = ()) -> str:
    """Expected layout, origin and (if downloadable) the download command; reads as the rest of a
    'root not found' error. `presets`: the preset files that define the dataset, repeated in the command
    (all after one --preset: the command line keeps only the last of repeated --preset options)."""
    source = _source(fmt)
    layout = "\n".join(f"  {line}" for line in source.layout.splitlines())
    text = f"{source.title} (format '{fmt}') is expected as a dataset root holding:\n{layout}\n{source.where}"
    if source.files:
        command = ["python", "-m", "pipeline", "fetch_data", dataset or "<dataset name>"]
        if presets:
            command += ["--preset", *map(str, presets)]
        text += "\nTo download it: " + " ".join(c if c.startswith("<") else shlex.quote(c) for c in command)
    return text


def read_checksums(path: Path) -> dict[str, tuple[str, str]]:
    """{file name: (algorithm, hex digest)} from md5sum or sha256sum output ("<digest>  <file>" lines;
    `*<file>` for binary mode; a path counts by its last part). The algorithm follows from the length."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: checksum file not found")
    found: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"\s*([0-9a-fA-F]+)\s+\*?(.+?)\s*", line)
        if not match or len(match[1]) not in DIGEST_LENGTHS:
            raise ValueError(f"{path}:{number}: expected '<md5 or sha256>  <file name>' "
                             f"as md5sum/sha256sum write it, found {line.strip()!r}")
        found[match[2].rsplit("/", 1)[-1]] = (DIGEST_LENGTHS[len(match[1])], match[1].lower())
    return found


def fetch(fmt: str, root: Path, *, mirror: str | None = None, progress: bool = True,
          timeout: float = TIMEOUT_S, checksums: Path | None = None) -> list[Path]:
    """Download and unpack every file of `fmt` into `root`; return what is then at the root.

    `mirror` replaces the directory part of every URL (files are read from f"{mirror}/{name}").
    `timeout` (seconds) bounds each connection attempt and each read. `checksums` is an md5sum/sha256sum
    file whose entries replace the pinned and the published checksums (a mirror's own copies).
    Raises ValueError for a format that cannot be downloaded (with the manual steps), a bad checksum
    file or a checksum mismatch; ConnectionError when the network fails (one line: URL and reason);
    DatasetBusy when another process is fetching the same root.
    """
    source = _source(fmt)
    if not source.files:
        raise ValueError(f"format '{fmt}' cannot be downloaded automatically. {describe(fmt)}")
    given = read_checksums(checksums) if checksums is not None else None
    missing = [r.name for r in source.files if given is not None and r.name not in given]
    if missing:
        raise ValueError(f"{checksums} lists no checksum for {', '.join(missing)}")
    root = Path(root)
    staging = root.with_name(root.name + ".download")
    published: dict[str, dict[str, str]] = {}  # checksum list URL -> {file: checksum}
    with _dataset_lock(root):
        marker = _read_marker(root)
        try:
            for remote in source.files:
                pinned = (remote.algorithm, remote.checksum) if remote.checksum is not None else None
                if _is_fetched(remote, root, marker, given[remote.name] if given is not None else pinned):
                    continue
                base = mirror.rstrip("/") if mirror else remote.url.rsplit("/", 1)[0]
                if given is not None:
                    (algorithm, expected), origin = given[remote.name], str(checksums)
                elif pinned is not None:
                    (algorithm, expected), origin = pinned, "pinned"
                else:
                    algorithm, origin = remote.algorithm, f"{base}/{source.checksum_list}"
                    expected = _published_checksum(remote, origin, published, timeout)
                staging.mkdir(parents=True, exist_ok=True)
                part = staging / f"{remote.name}.part"
                _download(f"{base}/{remote.name}", part, remote.size, progress, timeout)
                found = _digest(part, algorithm)
                if found != expected:
                    part.unlink()
                    raise ValueError(f"{remote.name}: {algorithm} mismatch, expected {expected} ({origin}), "
                                     f"found {found}; the download was deleted")
                outputs = _unpack(part, remote, root, staging)
                part.unlink()
                marker[remote.name] = {"algorithm": algorithm, "checksum": found, "outputs": outputs}
                _write_marker(root, marker)
        finally:
            if staging.is_dir() and not any(staging.iterdir()):
                staging.rmdir()
    return sorted(p for p in root.iterdir() if p.name != MARKER)


def _source(fmt: str) -> Source:
    if fmt not in SOURCES:
        raise ValueError(f"unknown dataset format '{fmt}' (known: {', '.join(SOURCES)})")
    return SOURCES[fmt]


@contextlib.contextmanager
def _dataset_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive flock on `<root>.lock` or raise DatasetBusy naming the holder (pid and host).

    The file is removed on release while still locked; a process that opened it just before then holds a
    lock on a removed file, so it checks the path still names the file it locked and otherwise retries."""
    path = root.with_name(root.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 256).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DatasetBusy(f"{root}: another fetch of this dataset is running ({holder}; "
                              f"lock file {path}); rerun when it has finished") from None
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):  # removed by hand meanwhile
            os.unlink(path)
        os.close(fd)


def _is_fetched(remote: Remote, root: Path, marker: dict, expected: tuple[str, str] | None) -> bool:
    """Recorded with the expected (algorithm, checksum), if one is known without the network, and its
    outputs still there; or, for a gzipped file, already unpacked at the root (e.g. by hand)."""
    entry = marker.get(remote.name)
    if entry and all((root / o).exists() for o in entry["outputs"]):
        if expected is None or (entry.get("algorithm", remote.algorithm), entry["checksum"]) == expected:
            return True
    return remote.unpack == "gunzip" and (root / remote.name.removesuffix(".gz")).is_file()


def _published_checksum(remote: Remote, list_url: str, published: dict[str, dict[str, str]],
                        timeout: float) -> str:
    """The checksum of `remote` in the publisher's list (read once per fetch)."""
    if list_url not in published:
        published[list_url] = _read_checksum_list(list_url, timeout)
    if remote.name not in published[list_url]:
        raise ValueError(f"{list_url} lists no checksum for {remote.name}")
    return published[list_url][remote.name]


def _read_marker(root: Path) -> dict:
    try:
        return json.loads((root / MARKER).read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # nothing recorded: files are checked again
        return {}


def _write_marker(root: Path, marker: dict) -> None:
    from pipeline.io import write_text  # imported here: pipeline.io loads torch, which preflight need not

    write_text(root / MARKER, json.dumps(marker, indent=1, sort_keys=True) + "\n")


def _read_checksum_list(url: str, timeout: float) -> dict[str, str]:
    """{file name: checksum} from a "<checksum>  <file>" list such as md5sums.txt."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode()
    except (OSError, HTTPException) as err:
        reason = _reason(err, timeout)
        raise ConnectionError(f"{url}: cannot read the published checksums ({reason})") from err
    rows = (line.split() for line in text.splitlines())
    return {fields[1].lstrip("*"): fields[0] for fields in rows if len(fields) == 2}


def _download(url: str, part: Path, size: int | None, progress: bool, timeout: float) -> None:
    """Append the rest of `url` to `part`, or restart it when the server ignores the Range request.
    Only the network side is caught: a local write error (a full disk) is not a network failure."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416:  # nothing left after `have` bytes: the partial is complete, its checksum decides
            return
        raise _failed(url, part, err, timeout) from err
    except (OSError, HTTPException) as err:
        raise _failed(url, part, err, timeout) from err
    with response:
        if response.status != 206:  # 200: the whole file again
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else size
        with open(part, "ab" if have else "wb") as out, tqdm(
            total=total, initial=have, desc=part.name.removesuffix(".part"), unit="B", unit_scale=True,
            unit_divisor=1024, file=sys.stderr, disable=not progress,
        ) as bar:
            while True:
                try:  # read1: what has arrived, so a reset loses nothing already received
                    chunk = response.read1(CHUNK)
                except (OSError, HTTPException) as err:
                    out.close()
                    raise _failed(url, part, err, timeout) from err
                if not chunk:
                    break
                out.write(chunk)
                bar.update(len(chunk))
    if total is not None and part.stat().st_size < total:  # http.client ends a cut response without an error
        raise _failed(url, part, f"connection closed after {part.stat().st_size} of {total} bytes", timeout)


def _failed(url: str, part: Path, err: BaseException | str, timeout: float) -> ConnectionError:
    """One line: the URL, the reason and, only if a partial file holds data, that a rerun resumes it."""
    kept = part.stat().st_size if part.exists() else 0
    if part.exists() and not kept:
        part.unlink()  # nothing to resume from
    resume = f"; {kept} bytes kept in {part}, rerun to resume" if kept else ""
    return ConnectionError(f"{url}: download failed ({_reason(err, timeout)}){resume}")


def _reason(err: BaseException | str, timeout: float) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}".strip()
    if isinstance(err, urllib.error.URLError):  # raised while connecting or sending the request
        if isinstance(err.reason, TimeoutError):
            return f"no connection within the {timeout:g} s timeout"
        err = err.reason
    if isinstance(err, TimeoutError):  # while waiting for the answer or the next bytes
        return f"the server sent nothing for {timeout:g} s (timeout)"
    return " ".join(str(err).split()) or type(err).__name__


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _unpack(archive: Path, remote: Remote, root: Path, staging: Path) -> list[str]:
    """Gunzip or untar into a temporary folder beside the root, then rename each top-level entry into
    the root."""
    tmp = Path(tempfile.mkdtemp(prefix="unpack-", dir=staging))
    try:
        if remote.unpack == "gunzip":
            with gzip.open(archive, "rb") as src, open(tmp / remote.name.removesuffix(".gz"), "xb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
        else:
            with tarfile.open(archive) as tar:
                from pipeline.io import umask

                try:
                    tar.extractall(tmp, filter=functools.partial(_safe_member, umask=umask()))
                except tarfile.FilterError as err:
                    raise ValueError(f"{remote.name}: unsafe archive member refused ({err})") from err
        names = sorted(p.name for p in tmp.iterdir())
        root.mkdir(parents=True, exist_ok=True)
        for entry in names:
            target = root / entry
            if target.is_dir() and not target.is_symlink():
                # os.replace cannot replace a non-empty folder (e.g. left by an interrupted run)
                shutil.rmtree(target)
            os.replace(tmp / entry, target)
        return names
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _safe_member(member: tarfile.TarInfo, dest: str, umask: int) -> tarfile.TarInfo:
    """tarfile's "data" filter (refuses `..` escapes, links out, devices), also refusing absolute
    names (which it would make relative) and applying the umask to file modes taken from the archive."""
    if member.name.startswith("/"):
        raise tarfile.AbsolutePathError(member)
    member = tarfile.data_filter(member, dest)
    return member if member.mode is None else member.replace(mode=member.mode & ~umask, deep=False)
