"""A stage command copied from a job's log reruns the job with the parameters it ran with, even after later
Snakemake calls resolved other parameters (every call rewrites the one file all rules pass, so that a
changed value reruns only the jobs that read it; logs name a copy that is never rewritten)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.conftest import run
from tests.project_copy import copy_project


def _logged_command(log: Path) -> str:
    """The command on a log's first line: `<date> <time> on <host>: <command>`."""
    return log.read_text().splitlines()[0].split(": ", 1)[1]


def test_a_command_copied_from_a_log_reruns_with_its_parameters(tmp_path: Path) -> None:
    work = copy_project(tmp_path)
    synth = "delays={synth: {n_train: 40, n_test: 10}}"
    run(["snakemake", "--cores", "1", "data/raw/delays_synth", "--config", "max_epochs=3", synth], work)
    log = work / "logs/delays_synth.log"
    command = _logged_command(log)
    snapshot = work / re.search(r"--params (\S+)", command).group(1)
    assert snapshot.name.startswith("params-") and snapshot.parent == work / ".snakemake/pipeline"
    ran_with = snapshot.read_text()
    assert yaml.safe_load(ran_with)["max_epochs"] == 3

    run(["snakemake", "-n", "--cores", "1", "--config", "max_epochs=5"], work)  # resolves other values
    resolved = yaml.safe_load((work / ".snakemake/pipeline/params.yaml").read_text())
    assert resolved["max_epochs"] == 5  # the file the rules pass changed...
    assert snapshot.read_text() == ran_with  # ...the one the log names did not

    run(["rm", "-rf", "data/raw/delays_synth"], work)
    rerun = run(["bash", "-c", command], work)  # exactly as copied from the log
    assert "wrote" in rerun.stdout
    assert (work / "data/raw/delays_synth/shd_train.h5").is_file()
    assert _logged_command(log) == command  # the rerun's own log names the same parameters
    sizes = yaml.safe_load((work / "data/raw/delays_synth/synth_config.json").read_text())
    assert (sizes["n_train"], sizes["n_test"]) == (40, 10)  # the snapshot's values, not params.yaml's
