"""pipeline.data.fetch and `fetch_data` against a local HTTP server (127.0.0.1) serving tiny files in the
official formats; network failures are made with closed ports, silent sockets and reset connections."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shlex
import shutil
import socket
import struct
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.data import fetch, gsc, shd
from tests.conftest import REPO, VENV_BIN, run
from tests.tiny_data import write_h5

MANUAL = ("imagefolder", "es_imagenet", "es_ucf101", "ucf101_frames")
DELAYS = REPO / "workflow/presets/paper-delays.yaml"
PRETRAIN = REPO / "workflow/presets/paper-pretrain.yaml"
GSC_ARCHIVE = "speech_commands_v0.02.tar.gz"


@dataclass
class Served:
    """What the test server holds, how it misbehaves and what it was asked."""

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    # One response per file, after this many bytes: stops (orderly close), is reset (RST), or stalls
    # until `release`.
    cut_after: dict[str, int] = field(default_factory=dict)
    reset_after: dict[str, int] = field(default_factory=dict)
    stall_after: dict[str, int] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)  # answer this HTTP error instead of the file
    release: threading.Event = field(default_factory=threading.Event)
    ignore_range: bool = False
    requests: list[tuple[str, str | None, int]] = field(default_factory=list)  # (file, Range header, status)


class Handler(BaseHTTPRequestHandler):
    """Files under /data/, with Range support (bytes=N-), dropped, reset and stalled responses, HTTP errors
    and a Range-ignoring mode."""

    def do_GET(self) -> None:
        served: Served = self.server.served
        name = self.path.removeprefix("/data/")
        data = served.files.get(name)
        requested = self.headers.get("Range")
        ranged = requested and not served.ignore_range
        start = int(requested.removeprefix("bytes=").split("-")[0]) if ranged else 0
        status = served.status.get(name) or (
            404 if data is None else 416 if start and start >= len(data) else 206 if start else 200
        )
        served.requests.append((name, requested, status))
        if name in served.reset_after and served.reset_after[name] == 0:
            self.reset()
            return
        if status >= 400:
            self.send_error(status)
            return
        body = data[start:]
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if name in served.stall_after:
            sent = served.stall_after.pop(name)
            self.wfile.write(body[:sent])
            self.wfile.flush()
            served.release.wait(60)
            self.wfile.write(body[sent:])  # fails if the client gave up (QuietServer)
            return
        if name in served.reset_after:
            self.wfile.write(body[: served.reset_after.pop(name)])
            self.wfile.flush()
            time.sleep(0.3)  # a reset discards what the client has not read yet
            self.reset()
            return
        # HTTP/1.0: the connection closes after the response
        self.wfile.write(body[: served.cut_after.pop(name, len(body))])

    def reset(self) -> None:
        """Close with a TCP reset (SO_LINGER 0) instead of an orderly end."""
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def log_message(self, *args) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # a client that gave up (timeout tests) makes writes fail: expected here


@pytest.fixture
def server():
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    httpd.served = Served(url=f"http://127.0.0.1:{httpd.server_address[1]}/data")
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd.served
    httpd.served.release.set()
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_server():
    """A loopback port that completes TCP connections (the kernel's backlog) but never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def full_backlog():
    """A loopback port whose accept queue is full: new connections are never completed (connect timeout)."""
    with socket.socket() as s, socket.socket() as filler:
        s.bind(("127.0.0.1", 0))
        s.listen(0)
        filler.connect(s.getsockname())
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def serve(monkeypatch, served: Served, fmt: str, archives: dict[str, bytes]) -> None:
    """Serve `archives` under the format's file names and pin their real checksums in SOURCES."""
    source = fetch.SOURCES[fmt]
    remotes = tuple(
        replace(r, checksum=hashlib.new(r.algorithm, archives[r.name]).hexdigest()) for r in source.files
    )
    monkeypatch.setitem(fetch.SOURCES, fmt, replace(source, files=remotes))
    served.files.update(archives)


def md5sums(files: dict[str, bytes]) -> bytes:
    """md5sum's output for these files."""
    return "".join(f"{hashlib.md5(data).hexdigest()}  {name}\n" for name, data in files.items()).encode()


def tiny_h5(path: Path, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    times = [np.sort(rng.uniform(0, 1, n)).astype(np.float32) for n in (5, 0, 12)]
    units = [rng.integers(0, 700, len(t)).astype(np.uint16) for t in times]
    return write_h5(path, times, units, [3, 0, 19]).read_bytes()


@pytest.fixture
def shd_files(tmp_path, server) -> dict[str, bytes]:
    """Tiny SHD files served gzipped, with the publisher-style md5sums.txt beside them (SHD's checksums
    come from that list, as from the publisher's); returns the .h5 contents by name."""
    names = ("shd_train.h5", "shd_test.h5")
    originals = {name: tiny_h5(tmp_path / name, seed) for seed, name in enumerate(names)}
    archives = {f"{name}.gz": gzip.compress(data, mtime=0) for name, data in originals.items()}
    server.files.update(archives)
    server.files["md5sums.txt"] = md5sums(archives)
    return originals


def tar_gz(members: dict[str, bytes]) -> bytes:
    """A tar.gz of files (mode 0644) after a "." folder entry, as `tar -C folder .` writes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        top = tarfile.TarInfo(".")
        top.type, top.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(top)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def wav(seconds: float = 0.1) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(int(16000 * seconds), np.int16), 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def gsc_archive() -> bytes:
    """Two words, the two list files and _background_noise_, named ./... as in the real archive."""
    return tar_gz(
        {
            "./yes/a_nohash_0.wav": wav(),
            "./yes/b_nohash_0.wav": wav(),
            "./no/a_nohash_0.wav": wav(),
            "./no/c_nohash_0.wav": wav(),
            "./_background_noise_/noise.wav": wav(0.5),
            "./validation_list.txt": b"yes/b_nohash_0.wav\n",
            "./testing_list.txt": b"no/c_nohash_0.wav\n",
        }
    )


def fetch_data(*args: str, cwd: Path, params: Path = REPO / "params.yaml") -> subprocess.CompletedProcess:
    """`python -m pipeline fetch_data ARGS` in a fresh process (a traceback would show on its stderr)."""
    command = ["python", "-m", "pipeline", "fetch_data", *args, "--params", str(params)]
    return run(command, cwd=cwd, check=False)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.fixture
def umask_027():
    """Output files must get the user's umask (0o027 here), not a temporary file's 0o600."""
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_shd_fetch_gives_the_official_files(tmp_path, server, shd_files, umask_027, capsys):
    root = tmp_path / "raw" / "shd"
    got = fetch.fetch("shd", root, mirror=server.url)
    assert got == [root / "shd_test.h5", root / "shd_train.h5"]
    for name, data in shd_files.items():
        assert (root / name).read_bytes() == data
        assert (root / name).stat().st_mode & 0o777 == 0o640
    times, units, labels = shd.read_events(root / "shd_train.h5")
    assert labels.tolist() == [3, 0, 19] and len(times[2]) == len(units[2]) == 12
    assert not (tmp_path / "raw" / "shd.download").exists()  # no partials or temporary folders left
    assert not (tmp_path / "raw" / "shd.lock").exists()  # the lock is released and removed
    err = capsys.readouterr().err
    assert "shd_train.h5.gz" in err and "100%" in err  # one progress bar per file, on stderr


def test_shd_checksums_come_from_the_published_list(tmp_path, server, shd_files):
    """SHD pins no md5 (none could be traced to the publisher): the publisher's md5sums.txt decides."""
    assert all(r.checksum is None for r in fetch.SOURCES["shd"].files)
    server.files["md5sums.txt"] = (
        b"0" * 32 + b"  shd_train.h5.gz\n" + md5sums({"shd_test.h5.gz": server.files["shd_test.h5.gz"]})
    )
    with pytest.raises(
        ValueError,
        match=rf"shd_train.h5.gz: md5 mismatch, expected {'0' * 32} "
        rf"\({server.url}/md5sums.txt\), found",
    ):
        fetch.fetch("shd", tmp_path / "shd", mirror=server.url, progress=False)


def test_second_fetch_downloads_nothing(tmp_path, server, shd_files):
    root = tmp_path / "shd"
    first = fetch.fetch("shd", root, mirror=server.url, progress=False)
    asked = len(server.requests)
    assert fetch.fetch("shd", root, mirror=server.url, progress=False) == first
    assert len(server.requests) == asked == 3  # md5sums.txt and the two files, once


def test_dropped_connection_resumes_with_range(tmp_path, server, shd_files):
    root = tmp_path / "shd"
    part = tmp_path / "shd.download" / "shd_train.h5.gz.part"
    server.cut_after["shd_train.h5.gz"] = 300
    with pytest.raises(
        ConnectionError,
        match=r"shd_train\.h5\.gz: download failed .* 300 bytes kept .* rerun to resume$",
    ) as err:
        fetch.fetch("shd", root, mirror=server.url, progress=False)
    assert "\n" not in str(err.value)
    assert part.stat().st_size == 300 and not root.exists()
    fetch.fetch("shd", root, mirror=server.url, progress=False)
    assert ("shd_train.h5.gz", "bytes=300-", 206) in server.requests
    assert (root / "shd_train.h5").read_bytes() == shd_files["shd_train.h5"]
    assert not part.exists()


def test_server_ignoring_range_restarts_the_file(tmp_path, server, shd_files):
    root = tmp_path / "shd"
    server.ignore_range = True
    server.cut_after["shd_train.h5.gz"] = 300
    with pytest.raises(ConnectionError):
        fetch.fetch("shd", root, mirror=server.url, progress=False)
    fetch.fetch("shd", root, mirror=server.url, progress=False)
    assert ("shd_train.h5.gz", "bytes=300-", 200) in server.requests  # answered with the whole file
    assert (root / "shd_train.h5").read_bytes() == shd_files["shd_train.h5"]


def test_wrong_pinned_checksum_leaves_nothing(tmp_path, server, shd_files, monkeypatch):
    source = fetch.SOURCES["shd"]
    wrong = (replace(source.files[0], checksum="0" * 32),) + source.files[1:]
    monkeypatch.setitem(fetch.SOURCES, "shd", replace(source, files=wrong))
    found = hashlib.md5(gzip.compress(shd_files["shd_train.h5"], mtime=0)).hexdigest()
    root = tmp_path / "shd"
    with pytest.raises(
        ValueError,
        match=rf"shd_train.h5.gz: md5 mismatch, expected {'0' * 32} \(pinned\), "
        rf"found {found}; the download was deleted",
    ) as err:
        fetch.fetch("shd", root, mirror=server.url, progress=False)
    assert "\n" not in str(err.value)
    assert not root.exists() and not (tmp_path / "shd.download").exists()


def test_ssc_checksums_come_from_the_published_list(tmp_path, server):
    names = ("ssc_train.h5", "ssc_valid.h5", "ssc_test.h5")
    originals = {name: tiny_h5(tmp_path / name, seed) for seed, name in enumerate(names)}
    archives = {f"{name}.gz": gzip.compress(data, mtime=0) for name, data in originals.items()}
    server.files.update(archives)
    server.files["md5sums.txt"] = md5sums(archives)
    root = tmp_path / "ssc"
    assert [p.name for p in fetch.fetch("ssc", root, mirror=server.url, progress=False)] == sorted(originals)
    assert all((root / name).read_bytes() == data for name, data in originals.items())
    server.files["md5sums.txt"] = b"0" * 32 + b"  ssc_valid.h5.gz\n"  # a changed list no longer matches
    (root / "ssc_valid.h5").unlink()
    with pytest.raises(ValueError, match="ssc_valid.h5.gz: md5 mismatch"):
        fetch.fetch("ssc", root, mirror=server.url, progress=False)


def test_gsc_archive_is_extracted_into_the_root(tmp_path, server, monkeypatch, umask_027):
    serve(monkeypatch, server, "gsc", {GSC_ARCHIVE: gsc_archive()})
    root = tmp_path / "gsc"
    got = fetch.fetch("gsc", root, mirror=server.url, progress=False)
    assert [p.name for p in got] == [
        "_background_noise_",
        "no",
        "testing_list.txt",
        "validation_list.txt",
        "yes",
    ]
    assert gsc.list_classes(root) == ["no", "yes"]
    assert sf.info(str(root / "yes" / "a_nohash_0.wav")).samplerate == 16000
    assert (root / "yes" / "a_nohash_0.wav").stat().st_mode & 0o777 == 0o640  # archive's 0644, umask applied
    assert (root / "yes").stat().st_mode & 0o777 == 0o750
    asked = len(server.requests)
    fetch.fetch("gsc", root, mirror=server.url, progress=False)
    assert len(server.requests) == asked


@pytest.mark.parametrize("member", ["../evil", "/tmp/evil", "./ok/../../evil"])
def test_tar_members_outside_the_root_are_refused(tmp_path, server, monkeypatch, member):
    serve(monkeypatch, server, "gsc", {GSC_ARCHIVE: tar_gz({"./yes/a.wav": wav(), member: b"x"})})
    root = tmp_path / "gsc"
    with pytest.raises(ValueError, match="speech_commands_v0.02.tar.gz: unsafe archive member refused"):
        fetch.fetch("gsc", root, mirror=server.url, progress=False)
    assert not root.exists() and not (tmp_path / "evil").exists()
    assert not list((tmp_path / "gsc.download").glob("unpack-*"))  # the temporary folder is gone


# Network failures: one line naming the URL and the reason; "rerun to resume" only when data was kept.


def test_unreachable_server_is_a_one_line_connection_error(tmp_path):
    port = closed_port()
    with pytest.raises(
        ConnectionError,
        match=rf"^http://127.0.0.1:{port}/{GSC_ARCHIVE}: download failed "
        r"\(.*[Cc]onnection refused\)$",
    ) as err:
        fetch.fetch("gsc", tmp_path / "gsc", mirror=f"http://127.0.0.1:{port}", progress=False)
    assert "rerun to resume" not in str(err.value)
    assert not (tmp_path / "gsc").exists() and not (tmp_path / "gsc.download").exists()


@pytest.mark.parametrize("status", [404, 500])
def test_http_errors_name_the_status(tmp_path, server, status):
    server.status[GSC_ARCHIVE] = status
    url = f"{server.url}/{GSC_ARCHIVE}"
    with pytest.raises(ConnectionError, match=rf"^{url}: download failed \(HTTP {status} [A-Z][a-z A-Z]+\)$"):
        fetch.fetch("gsc", tmp_path / "gsc", mirror=server.url, progress=False)
    assert not (tmp_path / "gsc.download").exists()


def test_reset_before_any_data_says_nothing_about_resuming(tmp_path, server):
    server.files[GSC_ARCHIVE] = b"x" * 1000
    server.reset_after[GSC_ARCHIVE] = 0
    url = f"{server.url}/{GSC_ARCHIVE}"
    with pytest.raises(ConnectionError, match=rf"^{url}: download failed \(.+\)$") as err:
        fetch.fetch("gsc", tmp_path / "gsc", mirror=server.url, progress=False)
    assert "resume" not in str(err.value) and not (tmp_path / "gsc.download").exists()


def test_reset_mid_download_keeps_the_part_and_says_rerun(tmp_path, server):
    server.files[GSC_ARCHIVE] = b"x" * 100_000
    server.reset_after[GSC_ARCHIVE] = 500
    part = tmp_path / "gsc.download" / f"{GSC_ARCHIVE}.part"
    with pytest.raises(
        ConnectionError,
        match=rf"download failed \(.*\); 500 bytes kept in {part}, "
        "rerun to resume$",
    ):
        fetch.fetch("gsc", tmp_path / "gsc", mirror=server.url, progress=False)
    assert part.read_bytes() == b"x" * 500


def test_silent_server_times_out(tmp_path, silent_server):
    """Connected, request sent, no answer: the read timeout ends it."""
    start = time.monotonic()
    url = f"{silent_server}/{GSC_ARCHIVE}"
    with pytest.raises(
        ConnectionError, match=rf"^{url}: download failed \(the server sent nothing for 1 s \(timeout\)\)$"
    ):
        fetch.fetch("gsc", tmp_path / "gsc", mirror=silent_server, progress=False, timeout=1)
    assert 0.9 < time.monotonic() - start < 10


def test_connection_that_never_completes_times_out(tmp_path, full_backlog):
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=r"download failed \(no connection within the 1 s timeout\)$"):
        fetch.fetch("gsc", tmp_path / "gsc", mirror=full_backlog, progress=False, timeout=1)
    assert 0.9 < time.monotonic() - start < 10


def test_stalled_download_times_out_and_keeps_the_part(tmp_path, server):
    server.files[GSC_ARCHIVE] = b"x" * 100_000
    server.stall_after[GSC_ARCHIVE] = 700
    with pytest.raises(ConnectionError, match=r"sent nothing for 1 s \(timeout\)\); 700 bytes kept .* rerun"):
        fetch.fetch("gsc", tmp_path / "gsc", mirror=server.url, progress=False, timeout=1)


def test_timeout_defaults_to_30_seconds():
    import inspect

    from pipeline.data.fetch_command import fetch_data as command

    assert fetch.TIMEOUT_S == 30
    assert inspect.signature(fetch.fetch).parameters["timeout"].default == 30
    assert inspect.signature(command).parameters["timeout"].default == 30


@pytest.mark.parametrize("case", ["closed port", "404", "500", "reset", "silent"])
def test_fetch_data_network_errors_exit_1_with_one_line(tmp_path, server, silent_server, case):
    server.files[GSC_ARCHIVE] = b"x" * 1000
    mirrors = {"closed port": f"http://127.0.0.1:{closed_port()}", "silent": silent_server}
    mirror = mirrors.get(case, server.url)
    if case in ("404", "500"):
        server.status[GSC_ARCHIVE] = int(case)
    if case == "reset":
        server.reset_after[GSC_ARCHIVE] = 0
    proc = fetch_data(
        "gsc", "--preset", str(DELAYS), "--mirror", mirror, "--no-progress", "--timeout", "1", cwd=tmp_path
    )
    line = one_error_line(proc)
    assert proc.returncode == 1 and f"{mirror}/{GSC_ARCHIVE}: download failed (" in line
    assert "rerun to resume" not in line
    reason = {
        "closed port": "onnection refused",
        "404": "HTTP 404",
        "500": "HTTP 500",
        "silent": "1 s (timeout)",
    }
    assert reason.get(case, "") in line


# One fetch per dataset at a time.


def test_second_fetch_of_a_dataset_stops_while_the_first_runs(tmp_path, server, shd_files):
    """Two real processes: the first stalls mid-download holding the lock; the second stops at once with one
    line naming the first's pid and host, and leaves its .part alone; the first then completes."""
    server.stall_after["shd_train.h5.gz"] = 100
    args = [
        "python",
        "-m",
        "pipeline",
        "fetch_data",
        "shd",
        "--params",
        str(REPO / "params.yaml"),
        "--preset",
        str(DELAYS),
        "--mirror",
        server.url,
        "--no-progress",
    ]
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    first = subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not any(r[0] == "shd_train.h5.gz" for r in server.requests):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        asked = len(server.requests)
        second = run(args, cwd=tmp_path, check=False)
        line = one_error_line(second)
        assert second.returncode == 1 and len(server.requests) == asked  # it downloaded nothing
        assert f"another fetch of this dataset is running (pid {first.pid} on {socket.gethostname()}" in line
        assert "data/raw/shd.lock" in line
    finally:
        server.release.set()
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    root = tmp_path / "data/raw/shd"
    assert (root / "shd_train.h5").read_bytes() == shd_files["shd_train.h5"]
    assert not (tmp_path / "data/raw/shd.lock").exists()


def test_lock_is_free_again_after_a_failed_fetch(tmp_path, server, shd_files):
    server.status["shd_train.h5.gz"] = 500
    with pytest.raises(ConnectionError):
        fetch.fetch("shd", tmp_path / "shd", mirror=server.url, progress=False)
    assert not (tmp_path / "shd.lock").exists()
    del server.status["shd_train.h5.gz"]
    fetch.fetch("shd", tmp_path / "shd", mirror=server.url, progress=False)


# A mirror's own checksums.


@pytest.fixture
def different_gsc(server) -> bytes:
    """A mirror holding a GSC archive that is not the one the pinned sha256 describes."""
    archive = gsc_archive()
    server.files[GSC_ARCHIVE] = archive
    return archive


def test_checksums_file_verifies_a_mirrors_copies(tmp_path, server, different_gsc, monkeypatch, capsys):
    from pipeline.drivers.cli import main

    digest = hashlib.sha256(different_gsc).hexdigest()
    base = [
        "fetch_data",
        "gsc",
        "--params",
        str(REPO / "params.yaml"),
        "--preset",
        str(DELAYS),
        "--mirror",
        server.url,
        "--no-progress",
    ]
    monkeypatch.chdir(tmp_path)
    assert main(base) == 2  # the pinned sha256 does not match the mirror's copy
    err = capsys.readouterr().err
    pinned = fetch.SOURCES["gsc"].files[0].checksum
    assert f"sha256 mismatch, expected {pinned} (pinned), found {digest}" in err
    assert not (tmp_path / "data/raw/gsc").exists()

    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"# the mirror's list\n{digest}  mirror/{GSC_ARCHIVE}\n{'1' * 64}  other-file.tar.gz\n")
    assert main([*base, "--checksums", str(sums)]) == 0
    assert gsc.list_classes(tmp_path / "data/raw/gsc") == ["no", "yes"]
    asked = len(server.requests)
    assert main([*base, "--checksums", str(sums)]) == 0
    assert len(server.requests) == asked  # recorded as fetched with these checksums: nothing downloaded

    shutil.rmtree(tmp_path / "data")
    sums.write_text(f"{'2' * 64} *{GSC_ARCHIVE}\n")
    assert main([*base, "--checksums", str(sums)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == (
        f"error: {GSC_ARCHIVE}: sha256 mismatch, expected {'2' * 64} ({sums}), "
        f"found {digest}; the download was deleted"
    )
    assert not (tmp_path / "data/raw/gsc").exists()


def test_checksums_file_replaces_the_published_list(tmp_path, server, shd_files):
    """A mirror without md5sums.txt: SHD fails without --checksums and passes with an md5sum file."""
    del server.files["md5sums.txt"]
    with pytest.raises(ConnectionError, match=r"md5sums.txt: cannot read the published checksums \(HTTP 404"):
        fetch.fetch("shd", tmp_path / "shd", mirror=server.url, progress=False)
    sums = tmp_path / "MD5SUMS"
    sums.write_bytes(md5sums({n: server.files[n] for n in ("shd_train.h5.gz", "shd_test.h5.gz")}))
    fetch.fetch("shd", tmp_path / "shd", mirror=server.url, progress=False, checksums=sums)
    assert (tmp_path / "shd" / "shd_test.h5").read_bytes() == shd_files["shd_test.h5"]
    assert "md5sums.txt" not in [r[0] for r in server.requests[1:]]


def test_checksums_file_problems_are_one_line(tmp_path):
    sums = tmp_path / "sums"
    sums.write_text(f"{'a' * 32}  shd_train.h5.gz\n")
    with pytest.raises(ValueError, match=rf"^{sums} lists no checksum for shd_test.h5.gz$"):
        fetch.fetch("shd", tmp_path / "shd", checksums=sums)
    sums.write_text(f"{'a' * 32}  shd_train.h5.gz\nabc  shd_test.h5.gz\n")
    with pytest.raises(ValueError, match=rf"^{sums}:2: expected '<md5 or sha256>  <file name>'"):
        fetch.fetch("shd", tmp_path / "shd", checksums=sums)
    with pytest.raises(ValueError, match="checksum file not found"):
        fetch.fetch("shd", tmp_path / "shd", checksums=tmp_path / "missing")
    assert not (tmp_path / "shd").exists() and not (tmp_path / "shd.lock").exists()


def test_read_checksums_takes_md5sum_and_sha256sum_output(tmp_path):
    sums = tmp_path / "sums"
    sums.write_text(f"{'A' * 32}  dir/x.gz\n\n{'b' * 64} *y.tar.gz\n")
    assert fetch.read_checksums(sums) == {"x.gz": ("md5", "a" * 32), "y.tar.gz": ("sha256", "b" * 64)}


# Datasets that are not downloaded, and the hints.


@pytest.mark.parametrize("fmt", MANUAL)
def test_manual_formats_raise_with_the_layout(tmp_path, fmt):
    with pytest.raises(ValueError, match="cannot be downloaded automatically") as err:
        fetch.fetch(fmt, tmp_path / fmt)
    assert fetch.SOURCES[fmt].layout.splitlines()[0] in str(err.value)
    assert "https://" in str(err.value) and not (tmp_path / fmt).exists()


@pytest.mark.parametrize(
    "name,fmt",
    [
        ("imagenet", "imagefolder"),
        ("es_imagenet", "es_imagenet"),
        ("ucf101_frames", "ucf101_frames"),
        ("es_ucf101", "es_ucf101"),
    ],
)
def test_fetch_data_prints_the_manual_steps(tmp_path, name, fmt, monkeypatch, capsys):
    from pipeline.drivers.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["fetch_data", name, "--params", str(REPO / "params.yaml"), "--preset", str(PRETRAIN)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "error:" not in out
    assert out.startswith(
        f"{name} cannot be downloaded automatically: follow these steps to put it at data/raw/{name}."
    )
    assert fetch.SOURCES[fmt].layout.splitlines()[0] in out and fetch.SOURCES[fmt].where in out
    assert not (tmp_path / "data").exists()


def test_unknown_format_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset format 'mnist' .*shd, ssc, gsc, imagefolder"):
        fetch.fetch("mnist", tmp_path)


def test_describe():
    text = fetch.describe("shd", "shd")
    assert "shd_train.h5" in text and "zenkelab.org" in text
    assert text.endswith("python -m pipeline fetch_data shd")
    assert "fetch_data" not in fetch.describe("imagefolder")
    assert "val/<wnid>/*.JPEG" in fetch.describe("imagefolder")
    assert "arr_0" in fetch.describe("es_ucf101") and "vallabel.txt" in fetch.describe("es_imagenet")
    assert fetch.describe("gsc").endswith("fetch_data <dataset name>")
    presets = ["workflow/presets/paper-delays.yaml", Path("my preset.yaml")]
    with_presets = fetch.describe("ssc", "ssc", presets=presets)
    assert with_presets.endswith(
        "python -m pipeline fetch_data ssc --preset workflow/presets/paper-delays.yaml 'my preset.yaml'"
    )


@pytest.fixture
def project(tmp_path) -> Path:
    """params.yaml and workflow/presets/ as in the repository, so commands run as printed from here."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO / "workflow/presets", tmp_path / "workflow/presets")
    return tmp_path


def test_the_command_describe_prints_runs(project, server, shd_files):
    """The hint of a dry run with the delays preset, run as printed (plus --mirror: no network)."""
    hint = fetch.describe("shd", "shd", presets=["workflow/presets/paper-delays.yaml"])
    command = hint.splitlines()[-1].removeprefix("To download it: ")
    assert command == "python -m pipeline fetch_data shd --preset workflow/presets/paper-delays.yaml"
    proc = run([*shlex.split(command), "--mirror", server.url, "--no-progress"], cwd=project, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "shd: 2 file(s) in data/raw/shd"
    assert (project / "data/raw/shd/shd_test.h5").read_bytes() == shd_files["shd_test.h5"]


def test_the_command_describe_prints_for_two_presets_runs(project, server, shd_files):
    """Both presets reach the command: the second only moves the root the first defines."""
    (project / "mine.yaml").write_text(
        "delays:\n  sets:\n    shd:\n      data:\n        root: elsewhere/shd\n"
    )
    hint = fetch.describe("shd", "shd", presets=["workflow/presets/paper-delays.yaml", "mine.yaml"])
    command = hint.splitlines()[-1].removeprefix("To download it: ")
    proc = run([*shlex.split(command), "--mirror", server.url, "--no-progress"], cwd=project, check=False)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (project / "elsewhere/shd").iterdir()) == [
        ".fetched.json",
        "shd_test.h5",
        "shd_train.h5",
    ]


def test_dataset_of_a_preset_names_the_preset_to_add(project):
    proc = run(["python", "-m", "pipeline", "fetch_data", "shd"], cwd=project, check=False)
    assert proc.returncode == 2
    assert one_error_line(proc) == (
        "error: shd is defined in workflow/presets/paper-delays.yaml: "
        "add --preset workflow/presets/paper-delays.yaml"
    )
    proc = run(
        [
            "python",
            "-m",
            "pipeline",
            "fetch_data",
            "es_ucf101",
            "--preset",
            "workflow/presets/paper-delays.yaml",
        ],
        cwd=project,
        check=False,
    )
    assert one_error_line(proc).endswith("add --preset workflow/presets/paper-pretrain.yaml")
    proc = run(["python", "-m", "pipeline", "fetch_data", "mnist"], cwd=project, check=False)
    assert proc.returncode == 2 and "unknown dataset 'mnist'" in one_error_line(proc)


def test_fetch_data_command_puts_a_presets_dataset_at_its_root(
    tmp_path, server, shd_files, monkeypatch, capsys
):
    """`python -m pipeline fetch_data shd --preset workflow/presets/paper-delays.yaml` (the README's command,
    here with --mirror: no network): the root comes from the preset."""
    from pipeline.drivers.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "fetch_data",
            "shd",
            "--params",
            str(REPO / "params.yaml"),
            "--preset",
            str(DELAYS),
            "--mirror",
            server.url,
            "--no-progress",
        ]
    )
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "data/raw/shd").glob("*.h5")) == ["shd_test.h5", "shd_train.h5"]
    assert "shd: 2 file(s) in data/raw/shd" in capsys.readouterr().out


def test_fetch_data_command_checksum_mismatch_is_one_line(tmp_path, server, shd_files):
    """A mismatch against the published list: one line, exit code 2, nothing at the root."""
    server.files["md5sums.txt"] = md5sums({"shd_train.h5.gz": b"other", "shd_test.h5.gz": b"other"})
    proc = fetch_data("shd", "--preset", str(DELAYS), "--mirror", server.url, "--no-progress", cwd=tmp_path)
    assert proc.returncode == 2 and "md5 mismatch" in one_error_line(proc)
    assert not (tmp_path / "data/raw/shd").exists()
