"""pipeline.data.fetch against a local HTTP server serving tiny files in the official formats."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import socket
import tarfile
import threading
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.data import fetch, gsc, shd
from tests.conftest import REPO, run
from tests.tiny_data import write_h5

MANUAL = ("imagefolder", "es_imagenet", "es_ucf101", "ucf101_frames")


@dataclass
class Served:
    """What the test server holds and what it was asked."""

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)  # one response per file stops after this many bytes
    ignore_range: bool = False
    requests: list[tuple[str, str | None, int]] = field(default_factory=list)  # (file, Range header, status)


class Handler(BaseHTTPRequestHandler):
    """Files under /data/, with Range support (bytes=N-), dropped connections and a Range-ignoring mode."""

    def do_GET(self) -> None:
        served: Served = self.server.served
        name = self.path.removeprefix("/data/")
        data = served.files.get(name)
        requested = self.headers.get("Range")
        start = int(requested.removeprefix("bytes=").split("-")[0]) if requested and not served.ignore_range else 0
        status = 404 if data is None else 416 if start and start >= len(data) else 206 if start else 200
        served.requests.append((name, requested, status))
        if status in (404, 416):
            self.send_error(status)
            return
        body = data[start:]
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: served.cut_after.pop(name, len(body))])  # HTTP/1.0: the connection closes after

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.served = Served(url=f"http://127.0.0.1:{httpd.server_address[1]}/data")
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd.served
    httpd.shutdown()
    httpd.server_close()


def serve(monkeypatch, served: Served, fmt: str, archives: dict[str, bytes]) -> None:
    """Serve `archives` under the format's file names and swap their real checksums into SOURCES."""
    source = fetch.SOURCES[fmt]
    remotes = tuple(replace(r, checksum=hashlib.new(r.algorithm, archives[r.name]).hexdigest()) for r in source.files)
    monkeypatch.setitem(fetch.SOURCES, fmt, replace(source, files=remotes))
    served.files.update(archives)


def tiny_h5(path: Path, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    times = [np.sort(rng.uniform(0, 1, n)).astype(np.float32) for n in (5, 0, 12)]
    units = [rng.integers(0, 700, len(t)).astype(np.uint16) for t in times]
    return write_h5(path, times, units, [3, 0, 19]).read_bytes()


@pytest.fixture
def shd_files(tmp_path, server, monkeypatch) -> dict[str, bytes]:
    """Tiny SHD files served gzipped with their real md5; returns the .h5 contents by name."""
    originals = {name: tiny_h5(tmp_path / name, seed) for seed, name in enumerate(("shd_train.h5", "shd_test.h5"))}
    serve(monkeypatch, server, "shd", {f"{name}.gz": gzip.compress(data, mtime=0) for name, data in originals.items()})
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
    return tar_gz({
        "./yes/a_nohash_0.wav": wav(), "./yes/b_nohash_0.wav": wav(), "./no/a_nohash_0.wav": wav(),
        "./no/c_nohash_0.wav": wav(), "./_background_noise_/noise.wav": wav(0.5),
        "./validation_list.txt": b"yes/b_nohash_0.wav\n", "./testing_list.txt": b"no/c_nohash_0.wav\n",
    })


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
    err = capsys.readouterr().err
    assert "shd_train.h5.gz" in err and "100%" in err  # one progress bar per file, on stderr


def test_second_fetch_downloads_nothing(tmp_path, server, shd_files):
    root = tmp_path / "shd"
    first = fetch.fetch("shd", root, mirror=server.url, progress=False)
    asked = len(server.requests)
    assert fetch.fetch("shd", root, mirror=server.url, progress=False) == first
    assert len(server.requests) == asked == 2


def test_dropped_connection_resumes_with_range(tmp_path, server, shd_files):
    root = tmp_path / "shd"
    part = tmp_path / "shd.download" / "shd_train.h5.gz.part"
    server.cut_after["shd_train.h5.gz"] = 300
    with pytest.raises(ConnectionError, match=r"shd_train\.h5\.gz: download failed .* 300 bytes kept .* rerun to resume") as err:
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


def test_wrong_checksum_leaves_nothing(tmp_path, server, shd_files, monkeypatch):
    source = fetch.SOURCES["shd"]
    wrong = (replace(source.files[0], checksum="0" * 32),) + source.files[1:]
    monkeypatch.setitem(fetch.SOURCES, "shd", replace(source, files=wrong))
    found = hashlib.md5(gzip.compress(shd_files["shd_train.h5"], mtime=0)).hexdigest()
    root = tmp_path / "shd"
    with pytest.raises(ValueError, match=f"shd_train.h5.gz: md5 mismatch, expected {'0' * 32}, found {found}") as err:
        fetch.fetch("shd", root, mirror=server.url, progress=False)
    assert "\n" not in str(err.value)
    assert not root.exists() and not (tmp_path / "shd.download").exists()


def test_ssc_checksums_come_from_the_published_list(tmp_path, server):
    names = ("ssc_train.h5", "ssc_valid.h5", "ssc_test.h5")
    originals = {name: tiny_h5(tmp_path / name, seed) for seed, name in enumerate(names)}
    archives = {f"{name}.gz": gzip.compress(data, mtime=0) for name, data in originals.items()}
    server.files.update(archives)
    server.files["md5sums.txt"] = "".join(f"{hashlib.md5(d).hexdigest()}  {n}\n" for n, d in archives.items()).encode()
    root = tmp_path / "ssc"
    assert [p.name for p in fetch.fetch("ssc", root, mirror=server.url, progress=False)] == sorted(originals)
    assert all((root / name).read_bytes() == data for name, data in originals.items())
    server.files["md5sums.txt"] = b"0" * 32 + b"  ssc_valid.h5.gz\n"  # a changed list no longer matches
    (root / "ssc_valid.h5").unlink()
    with pytest.raises(ValueError, match="ssc_valid.h5.gz: md5 mismatch"):
        fetch.fetch("ssc", root, mirror=server.url, progress=False)


def test_gsc_archive_is_extracted_into_the_root(tmp_path, server, monkeypatch, umask_027):
    serve(monkeypatch, server, "gsc", {"speech_commands_v0.02.tar.gz": gsc_archive()})
    root = tmp_path / "gsc"
    got = fetch.fetch("gsc", root, mirror=server.url, progress=False)
    assert [p.name for p in got] == ["_background_noise_", "no", "testing_list.txt", "validation_list.txt", "yes"]
    assert gsc.list_classes(root) == ["no", "yes"]
    assert sf.info(str(root / "yes" / "a_nohash_0.wav")).samplerate == 16000
    assert (root / "yes" / "a_nohash_0.wav").stat().st_mode & 0o777 == 0o640  # archive's 0644, umask applied
    assert (root / "yes").stat().st_mode & 0o777 == 0o750
    asked = len(server.requests)
    fetch.fetch("gsc", root, mirror=server.url, progress=False)
    assert len(server.requests) == asked


@pytest.mark.parametrize("member", ["../evil", "/tmp/evil", "./ok/../../evil"])
def test_tar_members_outside_the_root_are_refused(tmp_path, server, monkeypatch, member):
    serve(monkeypatch, server, "gsc", {"speech_commands_v0.02.tar.gz": tar_gz({"./yes/a.wav": wav(), member: b"x"})})
    root = tmp_path / "gsc"
    with pytest.raises(ValueError, match="speech_commands_v0.02.tar.gz: unsafe archive member refused"):
        fetch.fetch("gsc", root, mirror=server.url, progress=False)
    assert not root.exists() and not (tmp_path / "evil").exists()
    assert not list((tmp_path / "gsc.download").glob("unpack-*"))  # the temporary folder is gone


def test_unreachable_server_is_a_one_line_connection_error(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match=rf"http://127.0.0.1:{port}/shd_train.h5.gz: download failed") as err:
        fetch.fetch("shd", tmp_path / "shd", mirror=f"http://127.0.0.1:{port}", progress=False)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("fmt", MANUAL)
def test_manual_formats_raise_with_the_layout(tmp_path, fmt):
    with pytest.raises(ValueError, match="cannot be downloaded automatically") as err:
        fetch.fetch(fmt, tmp_path / fmt)
    assert fetch.SOURCES[fmt].layout.splitlines()[0] in str(err.value)
    assert "https://" in str(err.value) and not (tmp_path / fmt).exists()


def test_unknown_format_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset format 'mnist' .*shd, ssc, gsc, imagefolder"):
        fetch.fetch("mnist", tmp_path)


def test_describe():
    text = fetch.describe("shd", "shd")
    assert "shd_train.h5" in text and "zenkelab.org" in text and text.endswith("python -m pipeline fetch_data shd")
    assert "fetch_data" not in fetch.describe("imagefolder") and "val/<wnid>/*.JPEG" in fetch.describe("imagefolder")
    assert "arr_0" in fetch.describe("es_ucf101") and "vallabel.txt" in fetch.describe("es_imagenet")


def test_fetch_data_command_puts_a_presets_dataset_at_its_root(tmp_path, server, shd_files, monkeypatch, capsys):
    """`python -m pipeline fetch_data shd --preset workflow/presets/paper-delays.yaml` (the README's command, here
    with --mirror: no network): the root comes from the preset."""
    from pipeline.drivers.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(["fetch_data", "shd", "--params", str(REPO / "params.yaml"),
                 "--preset", str(REPO / "workflow/presets/paper-delays.yaml"), "--mirror", server.url, "--no-progress"])
    assert code == 0 and sorted(p.name for p in (tmp_path / "data/raw/shd").glob("*.h5")) == ["shd_test.h5",
                                                                                           "shd_train.h5"]
    assert "shd: 2 file(s) in data/raw/shd" in capsys.readouterr().out


def test_fetch_data_command_errors_are_one_line(tmp_path, server, shd_files):
    """Real checksums against the tiny served files: a mismatch, one line, nothing at the root. A manual dataset
    prints its steps. A dataset no preset defines says which preset would."""
    base = ["python", "-m", "pipeline", "fetch_data", "--params", str(REPO / "params.yaml")]
    presets = {"delays": str(REPO / "workflow/presets/paper-delays.yaml"),
               "pretrain": str(REPO / "workflow/presets/paper-pretrain.yaml")}
    proc = run([*base[:4], "shd", *base[4:], "--preset", presets["delays"], "--mirror", server.url, "--no-progress"],
               cwd=tmp_path, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "md5 mismatch" in proc.stderr
    assert not (tmp_path / "data/raw/shd").exists()
    proc = run([*base[:4], "es_imagenet", *base[4:], "--preset", presets["pretrain"]], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Tsinghua Cloud" in proc.stderr
    proc = run([*base[:4], "shd", *base[4:]], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "add --preset workflow/presets/<paper>.yaml" in proc.stderr
