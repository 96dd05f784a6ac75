"""The papers' presets through both drivers, on tiny files in every real format at the presets' roots.

The README's preset commands run here with two changes: both papers' presets at once, and one more
preset, TEST_SIZES, which sets `max_epochs: 1` (what the README passes as `--config max_epochs=1`),
one seed, and input resolutions small enough for the papers' real architectures (ResNet-18/34, the
3 x 512 delay networks) to train on a CPU in seconds. The slurm command runs as a dry run. The trained
models must have the presets' architectures: their parameter counts.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.io import read_json
from tests.conftest import copy_project, run
from tests.tiny_data import write_random_h5, write_tiny_gsc
from tests.tiny_images import write_es_imagenet, write_es_ucf101, write_imagenet, write_ucf101_frames

pytestmark = pytest.mark.e2e

PRESETS = ["workflow/presets/paper-delays.yaml", "workflow/presets/paper-pretrain.yaml"]
ES_CANVAS = 32
TEST_SIZES = {
    "max_epochs": 1,
    "delays": {"seeds": [0]},
    "pretrain": {
        "num_workers": 1,
        "datasets": {"imagenet": {"image_size": 16},
                     "es_imagenet": {"long_side": ES_CANVAS - 2, "canvas": ES_CANVAS, "margin": 1},
                     "ucf101_frames": {"n_frames": 4, "height": 12, "width": 16}},
    },
}
ROOTS = {"shd": "data/raw/shd", "ssc": "data/raw/ssc", "gsc": "data/raw/gsc", "imagenet": "data/raw/imagenet",
         "es_imagenet": "data/raw/es_imagenet", "ucf101_frames": "data/raw/ucf101_frames",
         "es_ucf101": "data/raw/es_ucf101"}
# Trainable parameters of the papers' models (delays: learned positions included).
SHD_LEARNED, SSC_LEARNED, SSC_NO_DELAY = 214_016, 1_230_848, 616_960
RESNET18, RESNET34 = 11_689_512, 21_797_672
LEARNED_DECAYS = {"resnet18": 17, "resnet34": 33}  # one per neuron layer
EVENT_STEM = 64 * 7 * 7  # an event model's 7x7 stem reads 2 polarities, not 3 RGB channels: 3,136 weights fewer


def write_real_formats(work: Path) -> None:
    for root in ("shd", "ssc"):
        (work / ROOTS[root]).mkdir(parents=True)
    # labels cycle through the classes: train holds every class, so the prepared sets have 20 and 35
    for split, n in (("train", 120), ("test", 6)):  # 6 per class: the 10 % hold-out keeps one of each
        write_random_h5(work / ROOTS["shd"] / f"shd_{split}.h5", n, seed=len(split), n_classes=20, max_s=0.3)
    for split, n in (("train", 36), ("valid", 4), ("test", 4)):
        write_random_h5(work / ROOTS["ssc"] / f"ssc_{split}.h5", n, seed=len(split), n_classes=35, max_s=0.3)
    write_tiny_gsc(work / ROOTS["gsc"], [f"word{i:02d}" for i in range(35)], per_word=3)
    write_imagenet(work / ROOTS["imagenet"])
    write_es_imagenet(work / ROOTS["es_imagenet"], canvas=ES_CANVAS)
    write_ucf101_frames(work / ROOTS["ucf101_frames"])
    write_es_ucf101(work / ROOTS["es_ucf101"])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """The tiny real-format datasets, written once and copied into each project copy."""
    root = tmp_path_factory.mktemp("real_formats")
    write_real_formats(root)
    return root


def _project(tmp: Path, data: Path | None) -> Path:
    work = copy_project(tmp, commit=True)
    (work / "test-sizes.yaml").write_text(yaml.safe_dump(TEST_SIZES))
    if data is not None:
        shutil.copytree(data / "data", work / "data")
    return work


def _n_params(work: Path, live: str) -> int:
    return read_json(work / live / "metrics.json")["n_params"]


def test_a_preset_dry_run_without_data_names_every_missing_root(tmp_path: Path) -> None:
    work = _project(tmp_path, None)
    proc = run(["snakemake", "-n", "--cores", "1", "--configfile", *PRESETS], cwd=work, check=False)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert [re.match(r"error: (\S+): data root", e).group(1) for e in errors] == list(ROOTS.values())
    assert "python -m pipeline fetch_data shd" in proc.stderr and "image-net.org" in proc.stderr
    assert not (work / "data").exists() and not (work / "results").exists()


def test_the_paper_presets_through_snakemake(tmp_path: Path, data_dir: Path) -> None:
    work = _project(tmp_path, data_dir)
    command = ["snakemake", "--cores", "2", "--configfile", *PRESETS, "test-sizes.yaml"]
    planned = run([*command, "-n"], cwd=work).stdout
    runs = set(re.findall(r"(?:finetune|scratch)/(\w+)\.pt", planned))
    assert {"es_r18_lif", "es_r18_liaf", "es_r34_lif", "es_r34_liaf", "pipeD", "pipeD_r18_liaf", "pipeD_r34_liaf",
            "pipeS", "imagenet_r18", "pipeU", "es_ucf101"} <= runs  # every row of the paper's tables
    run(command, cwd=work, timeout=1500)

    assert _n_params(work, "results/delays/train/shd/learned_delay/s0") == SHD_LEARNED
    assert _n_params(work, "results/delays/train/ssc/learned_delay/s0") == SSC_LEARNED
    assert _n_params(work, "results/delays/train/gsc/no_delay/s0") == SSC_NO_DELAY
    assert _n_params(work, "results/pretrain/finetune/pipeS") == RESNET18
    assert _n_params(work, "results/pretrain/ann/imagenet_r34") == RESNET34
    assert _n_params(work, "results/pretrain/scratch/es_r34_liaf") == RESNET34 - EVENT_STEM + LEARNED_DECAYS["resnet34"]
    assert _n_params(work, "results/pretrain/finetune/pipeD_r18_liaf") == RESNET18 - EVENT_STEM + LEARNED_DECAYS["resnet18"]
    assert len(read_json(work / "results/pretrain/scratch/es_r34_lif/history.json")) == 1  # max_epochs
    assert read_json(work / "results/pretrain/transfer/pipeU.json")["new"] == ["encoder.conv1.weight"]

    table = (work / "results/tables/pretrain.md").read_text()
    assert re.search(r"\| es_imagenet .*ResNet-34.*LIAF \(learned decay\).*scratch.*\|\s+47\.47 \|", table)
    assert re.search(r"\| es_imagenet .*ResNet-18.*LIAF \(learned decay\).*pretrained.*\|\s+52\.25 \|", table)
    assert "95.07 ± 0.24" in (work / "results/tables/delays.md").read_text()
    assert "Nothing to be done" in run(command, cwd=work).stderr


def test_the_paper_presets_through_dvc(tmp_path: Path, data_dir: Path) -> None:
    work = _project(tmp_path, data_dir)
    for preset in PRESETS:
        run(["python", "-m", "pipeline", "apply_preset", "--preset", preset], cwd=work)
    run(["python", "-m", "pipeline", "apply_preset", "--preset", "test-sizes.yaml"], cwd=work)
    targets = ["delays_train@shd-learned_delay-0", "delays_train@ssc-fixed_delay-0", "delays_train@gsc-no_delay-0",
               "train_snn_scratch@es_r34_liaf", "finetune_snn@pipeS", "finetune_snn@pipeU"]
    out = run(["dvc", "repro", *targets], cwd=work, timeout=1500).stdout
    assert {"check_params", "delays_prepare@gsc", "pretrain_ann@ucf101", "transfer@pipeU"} <= set(
        re.findall(r"Running stage '([^']+)'", out))
    assert _n_params(work, "results/delays/train/shd/learned_delay/s0") == SHD_LEARNED
    assert _n_params(work, "results/delays/train/ssc/fixed_delay/s0") == SSC_NO_DELAY  # fixed positions: not trained
    assert _n_params(work, "results/delays/train/gsc/no_delay/s0") == SSC_NO_DELAY
    assert _n_params(work, "results/pretrain/scratch/es_r34_liaf") == RESNET34 - EVENT_STEM + LEARNED_DECAYS["resnet34"]
    assert _n_params(work, "results/pretrain/finetune/pipeS") == RESNET18
    assert read_json(work / "results/pretrain/transfer/pipeU.json")["new"] == ["encoder.conv1.weight"]


def _resources(dry_run: str) -> dict[tuple[str, str], dict[str, str]]:
    """(rule, first wildcard value) -> resources of each job in a dry run's output."""
    jobs = {}
    for block in dry_run.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0]
        wildcards = re.search(r"wildcards: \w+=([^,\n]+)", block)
        resources = re.search(r"resources: (.*)", block)
        if wildcards and resources:
            jobs[(rule, wildcards.group(1))] = dict(kv.split("=", 1) for kv in resources.group(1).split(", "))
    return jobs


def test_the_slurm_profile_plans_the_paper_jobs_with_their_resources(tmp_path: Path, data_dir: Path) -> None:
    """Per-dataset memory, time and GPUs from the presets, the partition and the preemption notice from the
    profile (dry run with the executor plugin installed: no cluster here)."""
    work = _project(tmp_path, data_dir)
    plan = run(["snakemake", "-n", "--workflow-profile", "profiles/slurm", "--configfile", *PRESETS],
               cwd=work).stdout
    jobs = _resources(plan)
    shd, gsc = jobs[("delays_train", "shd")], jobs[("delays_train", "gsc")]
    assert (shd["runtime"], gsc["runtime"], shd["gpu"], shd["slurm_partition"]) == ("720", "2880", "1", "gpu")
    assert shd["slurm_extra"] == "--signal=USR1@300"
    assert jobs[("delays_prepare", "gsc")]["cpus_per_task"] == "8" and jobs[("delays_prepare", "shd")]["cpus_per_task"] == "4"
    assert jobs[("pretrain_ann", "imagenet_r34")]["mem_mb"] == "64000"
    assert jobs[("pretrain_ann", "ucf101")]["runtime"] == "1440"
    assert jobs[("transfer", "pipeD")]["runtime"] == "30" and "gpu" not in jobs[("transfer", "pipeD")]
