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
from tests.conftest import REPO, copy_project, run
from tests.tiny_data import write_random_h5, write_tiny_gsc
from tests.tiny_images import write_es_imagenet, write_es_ucf101, write_imagenet, write_ucf101_frames

pytestmark = pytest.mark.e2e

PRESETS = ["workflow/presets/paper-delays.yaml", "workflow/presets/paper-pretrain.yaml"]
ES_CANVAS = 32
UCF_SIZE = (36, 40)  # the crnn's four stride-2 convs need at least 33 x 33
TEST_SIZES = {
    "max_epochs": 1,
    "delays": {"seeds": [0]},
    "pretrain": {
        "num_workers": 1,
        # the embedded stand-in runs of params.yaml stay defined under the presets: small clips for them
        "motion": {"clips_per_class_train": 4, "clips_per_class_val": 2},
        "datasets": {
            "imagenet": {"image_size": 16},
            "es_imagenet": {"long_side": ES_CANVAS - 2, "canvas": ES_CANVAS, "margin": 1},
            "ucf101_frames": {"n_frames": 4, "height": UCF_SIZE[0], "width": UCF_SIZE[1]},
        },
        # the ES-UCF101 crnn at the tiny frames' size, on their 4 steps (the preset's runs: 256 x 342, 15)
        "anns": {"ucf101": {"model": {"input_size": list(UCF_SIZE), "steps": 4}}},
        "baselines": {
            run: {"model": {"input_size": list(UCF_SIZE), "steps": 4}}
            for run in ("es_ucf101_lif", "es_ucf101_liaf")
        },
    },
}
ROOTS = {
    "shd": "data/raw/shd",
    "ssc": "data/raw/ssc",
    "gsc": "data/raw/gsc",
    "imagenet": "data/raw/imagenet",
    "es_imagenet": "data/raw/es_imagenet",
    "ucf101_frames": "data/raw/ucf101_frames",
    "es_ucf101": "data/raw/es_ucf101",
}
# Trainable parameters of the papers' models (delays: learned positions included).
SHD_LEARNED, SSC_LEARNED, SSC_NO_DELAY = 214_016, 1_230_848, 616_960
RESNET18, RESNET34 = 11_689_512, 21_797_672
LEARNED_DECAYS = {"resnet18": 17, "resnet34": 33}  # one per neuron layer
# ES-UCF101: the transfer leaves the crnn's first conv cell new (the reference's 'module.network.cnn0' filter)
UCF_FIRST_CELL = [f"encoder.network.cnn0.kernel.{k}" for k in ("weight", "bias")] + [
    f"encoder.network.cnn0.NormLayer.{k}"
    for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
]
EVENT_STEM = (
    64 * 7 * 7
)  # an event model's 7x7 stem reads 2 polarities, not 3 RGB channels: 3,136 weights fewer


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
    write_ucf101_frames(work / ROOTS["ucf101_frames"], size=UCF_SIZE)
    write_es_ucf101(work / ROOTS["es_ucf101"], size=UCF_SIZE)


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
    assert {
        "es_r18_lif",
        "es_r18_liaf",
        "es_r34_lif",
        "es_r34_liaf",
        "pipeD",
        "pipeD_r18_liaf",
        "pipeD_r34_liaf",
        "pipeS",
        "imagenet_r18",
        "pipeU_lif",
        "pipeU_liaf",
        "es_ucf101_lif",
        "es_ucf101_liaf",
    } <= runs
    run(command, cwd=work, timeout=1500)

    assert _n_params(work, "results/delays/train/shd/learned_delay/s0") == SHD_LEARNED
    assert _n_params(work, "results/delays/train/ssc/learned_delay/s0") == SSC_LEARNED
    assert _n_params(work, "results/delays/train/gsc/no_delay/s0") == SSC_NO_DELAY
    assert _n_params(work, "results/pretrain/finetune/pipeS") == RESNET18
    assert _n_params(work, "results/pretrain/ann/imagenet_r34") == RESNET34
    assert (
        _n_params(work, "results/pretrain/scratch/es_r34_liaf")
        == RESNET34 - EVENT_STEM + LEARNED_DECAYS["resnet34"]
    )
    assert (
        _n_params(work, "results/pretrain/finetune/pipeD_r18_liaf")
        == RESNET18 - EVENT_STEM + LEARNED_DECAYS["resnet18"]
    )
    assert len(read_json(work / "results/pretrain/scratch/es_r34_lif/history.json")) == 1  # max_epochs
    assert read_json(work / "results/pretrain/transfer/pipeU_lif.json")["new"] == UCF_FIRST_CELL

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
    targets = [
        "delays_train@shd-learned_delay-0",
        "delays_train@ssc-fixed_delay-0",
        "delays_train@gsc-no_delay-0",
        "train_snn_scratch@es_r34_liaf",
        "finetune_snn@pipeS",
        "finetune_snn@pipeU_liaf",
    ]
    out = run(["dvc", "repro", *targets], cwd=work, timeout=1500).stdout
    assert {"check_params", "delays_prepare@gsc", "pretrain_ann@ucf101", "transfer@pipeU_liaf"} <= set(
        re.findall(r"Running stage '([^']+)'", out)
    )
    assert _n_params(work, "results/delays/train/shd/learned_delay/s0") == SHD_LEARNED
    assert (
        _n_params(work, "results/delays/train/ssc/fixed_delay/s0") == SSC_NO_DELAY
    )  # fixed positions: not trained
    assert _n_params(work, "results/delays/train/gsc/no_delay/s0") == SSC_NO_DELAY
    assert (
        _n_params(work, "results/pretrain/scratch/es_r34_liaf")
        == RESNET34 - EVENT_STEM + LEARNED_DECAYS["resnet34"]
    )
    assert _n_params(work, "results/pretrain/finetune/pipeS") == RESNET18
    assert read_json(work / "results/pretrain/transfer/pipeU_liaf.json")["new"] == UCF_FIRST_CELL


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
    plan = run(
        ["snakemake", "-n", "--workflow-profile", "profiles/slurm", "--configfile", *PRESETS], cwd=work
    ).stdout
    jobs = _resources(plan)
    shd, gsc = jobs[("delays_train", "shd")], jobs[("delays_train", "gsc")]
    assert (shd["runtime"], gsc["runtime"], shd["gpu"], shd["slurm_partition"]) == ("720", "2880", "1", "gpu")
    assert shd["slurm_extra"] == "--signal=TERM@300"
    assert (
        jobs[("delays_prepare", "gsc")]["cpus_per_task"] == "8"
        and jobs[("delays_prepare", "shd")]["cpus_per_task"] == "4"
    )
    assert jobs[("pretrain_ann", "imagenet_r34")]["mem_mb"] == "64000"
    assert jobs[("pretrain_ann", "ucf101")]["runtime"] == "1440"
    assert jobs[("transfer", "pipeD")]["runtime"] == "30" and "gpu" not in jobs[("transfer", "pipeD")]


# ---- `python -m pipeline config`: what a job computes with -----------------------------------------------


def _config(work: Path, *args: str) -> dict:
    return yaml.safe_load(run(["python", "-m", "pipeline", *args], cwd=work).stdout)


def test_config_after_apply_preset_shows_the_authors_recipes(tmp_path: Path) -> None:
    """The README's DVC route: the preset written into params.yaml, then `config` of a job shows the recipe of
    the authors' code (A1 train_finetune.py; A2 example_ES_res18.py + LIAFResNet_18.py, util/util.py)."""
    work = copy_project(tmp_path, commit=False)
    run(
        ["python", "-m", "pipeline", "apply_preset", "--preset", "workflow/presets/paper-pretrain.yaml"],
        cwd=work,
    )
    pipe_s = _config(work, "config", "finetune_snn@pipeS")["finetune_snn@pipeS"]["recipe"]
    assert {
        k: pipe_s[k]
        for k in ("optimizer", "momentum", "weight_decay", "schedule", "milestones", "gamma", "epochs")
    } == {
        "optimizer": "sgd",
        "momentum": 0.9,
        "weight_decay": 0.0,
        "schedule": "multistep",
        "milestones": [2, 4, 6, 8],
        "gamma": 0.3,
        "epochs": 50,
    }
    es = _config(work, "config", "train_snn_scratch@es_r18_lif")["train_snn_scratch@es_r18_lif"]["recipe"]
    # Adam 3e-2 at 26 per process x 7, 25 epochs, x0.3 after the 1st and the 16th epoch
    assert es == {
        "epochs": 25,
        "batch_size": 182,
        "optimizer": "adam",
        "lr": 0.03,
        "lr_reference_batch": 182,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "schedule": "multistep",
        "milestones": [1, 16],
        "gamma": 0.3,
    }


def test_config_is_what_the_stage_computes_with(tmp_path: Path) -> None:
    """A stage without fan-out, by its name, with `--params FILE`: the config the command prints is the one
    the stage runs with (delays_synth records the generator config it used)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["delays"]["synth"].update(n_train=20, n_test=10, seed=7)
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shown = _config(REPO, "--params", str(tmp_path / "small.yaml"), "config", "delays_synth")
    run(
        [
            "python",
            "-m",
            "pipeline",
            "--params",
            str(tmp_path / "small.yaml"),
            "delays_synth",
            "--out",
            str(tmp_path / "synth"),
        ],
        cwd=REPO,
    )
    used = read_json(tmp_path / "synth" / "synth_config.json")
    assert shown == {"delays_synth": {"synth": {k: used[k] for k in shown["delays_synth"]["synth"]}}}
    assert shown["delays_synth"]["synth"]["n_train"] == 20


def test_config_names_jobs_as_dvc_does_and_refuses_unknown_ones(tmp_path: Path) -> None:
    """Job ids are `dvc stage list`'s (mapping fan-out, matrix fan-out, no fan-out); a stage's name gives all
    its jobs; an unknown stage or job is one error line that lists what exists."""
    work = copy_project(tmp_path, commit=True)
    listed = {line.split()[0] for line in run(["dvc", "stage", "list"], cwd=work).stdout.splitlines()}
    for stage in ("delays_train", "finetune_snn", "report"):
        shown = _config(work, "config", stage)
        assert set(shown) == {j for j in listed if j.split("@")[0] == stage}, stage
    job = sorted(j for j in listed if j.startswith("delays_train@"))[0]
    assert list(_config(work, "config", job)) == [job]
    for bad, says in (
        ("finetune_snn@nope", "error: unknown job 'finetune_snn@nope' (jobs of finetune_snn: "),
        ("nope", "error: unknown stage 'nope' (stages: check_params, "),
    ):
        proc = run(["python", "-m", "pipeline", "config", bad], cwd=work, check=False)
        assert proc.returncode == 2 and proc.stdout == ""
        assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith(says), proc.stderr
