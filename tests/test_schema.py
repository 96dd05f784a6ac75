"""The params schema is generated from the config dataclasses, and params.yaml's key comments from the same
descriptions: a key's text and bounds are written once (pipeline/params/configs.py)."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import pytest

from pipeline.params.load import SCHEMA_PATH, load_yaml, structure_problems
from pipeline.params.schema import continues, leaf_lines, render
from tests.conftest import REPO, run

LEARNED = "delays.variant_recipe.learned_delay"


@pytest.fixture
def params() -> dict:
    return load_yaml((REPO / "params.yaml").read_text())


def test_committed_schema_is_generated_from_the_dataclasses() -> None:
    assert SCHEMA_PATH.read_text() == render(), "the schema is stale: run `python -m pipeline schema`"


def test_schema_command_writes_and_checks(tmp_path: Path) -> None:
    out = tmp_path / "schema.yaml"
    run(["python", "-m", "pipeline", "schema", "--out", str(out)], cwd=REPO)
    assert out.read_text() == SCHEMA_PATH.read_text()
    out.write_text(out.read_text().replace("minimum: 1", "minimum: 2", 1))
    proc = run(["python", "-m", "pipeline", "schema", "--out", str(out), "--check"], cwd=REPO, check=False)
    assert proc.returncode == 1 and "differs from pipeline/params/configs.py" in proc.stderr


def test_params_comments_are_the_descriptions(tmp_path: Path) -> None:
    run(["python", "-m", "pipeline", "param_comments", "--check"], cwd=REPO)
    text = (REPO / "params.yaml").read_text()
    edited = tmp_path / "params.yaml"
    edited.write_text(text.replace("# Training batch size.", "# batch size", 1))
    proc = run(
        ["python", "-m", "pipeline", "param_comments", "--file", str(edited), "--check"],
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 1 and "differ from the keys' descriptions" in proc.stderr
    run(["python", "-m", "pipeline", "param_comments", "--file", str(edited)], cwd=REPO)
    assert edited.read_text() == text  # rewritten from the description; values, notes and layout kept
    # whole descriptions, wrapped below the key where they do not fit 110 characters
    lines = text.split("\n")
    for i, before, _, comment, field in leaf_lines(lines):
        assert comment.split(" -- ")[0] == field.metadata["description"]
        column = len(before) + 2
        block = [lines[i]] + list(itertools.takewhile(lambda line: continues(line, column), lines[i + 1 :]))
        assert max(map(len, block)) <= 110, block


def test_full_blocks_require_every_key_of_their_dataclass(params: dict) -> None:
    bad = copy.deepcopy(params)
    del bad["pretrain"]["ann"]["sharpen_epochs"]  # required by AnnRecipe, so by the schema too
    assert structure_problems(bad) == [
        "params: pretrain.ann: 'sharpen_epochs' is a required property "
        "(pretrain_ann recipe (an ANN run may override keys under its own `ann`).)"
    ]


def test_override_blocks_take_any_subset_and_refuse_unknown_keys(params: dict) -> None:
    good = copy.deepcopy(params)
    good["pretrain"]["pipelines"]["pipeD"]["finetune"] = {"frozen_warmup_epochs": 1}
    assert structure_problems(good) == []
    good["pretrain"]["pipelines"]["pipeD"]["finetune"] = {"sharpen_epochs": 1}  # an ANN recipe key
    assert structure_problems(good) == [
        "params: pretrain.pipelines.pipeD.finetune: unknown key(s) 'sharpen_epochs' (allowed: epochs, "
        "batch_size, optimizer, lr, lr_reference_batch, momentum, weight_decay, schedule, milestones, gamma, "
        "frozen_warmup_epochs)"
    ]


def test_error_messages_quote_whole_descriptions(params: dict) -> None:
    bad = copy.deepcopy(params)
    bad["delays"]["variant_recipe"]["learned_delay"]["lr_positions"] = -1.0
    assert structure_problems(bad) == [
        f"params: {LEARNED}.lr_positions: -1.0 is less than or equal to the minimum of 0 "
        "(Adam learning rate of delay positions, cosine-annealed to 0.)"
    ]
