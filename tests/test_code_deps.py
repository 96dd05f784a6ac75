"""Every stage lists, in both drivers, the source files it really runs: the
static import closure of its stage module (function-level imports included)."""
from __future__ import annotations

from pipeline.cli import STAGES
from tests.conftest import REPO
from tests.dag import dvc_stages, import_closure

# DVC stage name -> CLI stage it runs
STAGE_OF = {
    "delays_synth": "delays-synth", "delays_prepare": "delays-prepare", "delays_train": "delays-train",
    "delays_evaluate": "delays-evaluate", "images_embedded": "images-embedded",
    "es_imagenet_convert": "es-imagenet-convert", "pretrain_index": "pretrain-index",
    "pretrain_ann": "pretrain-ann", "transfer": "transfer", "finetune_snn": "finetune-snn",
    "train_snn_scratch": "train-snn-scratch", "report": "report",
}


def test_every_stage_depends_on_the_code_it_imports() -> None:
    entry = import_closure("pipeline.__main__", REPO) | import_closure("pipeline.cli", REPO) | import_closure("pipeline.params", REPO)
    stages = dvc_stages(REPO)
    assert {s.name for s in stages} == set(STAGE_OF)
    for stage in stages:
        module = STAGES[STAGE_OF[stage.name]].split(":")[0]
        needed = entry | import_closure(module, REPO)
        listed = {d for d in stage.inputs if d.startswith("pipeline/")}
        assert needed - listed == set(), f"{stage.name} runs code it does not list"
        assert listed - needed == set(), f"{stage.name} lists code it does not run"
