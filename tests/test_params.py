"""params.yaml is validated against the schema by both drivers; bad values stop
the run before any stage with a message naming the key and what is allowed."""

from __future__ import annotations

import copy
import math
import re

import pytest
import yaml

from pipeline.io import read_json
from pipeline.params.load import (
    ParamsError,
    dump_yaml,
    load_params,
    load_schema,
    load_yaml,
    reference_problems,
    structure_problems,
)
from pipeline.params.load import deep_merge
from tests.conftest import REPO, copy_project, run

LEARNED = "delays.variant_recipe.learned_delay"  # the block only learned-delay runs read


def test_default_params_are_valid() -> None:
    load_params(REPO / "params.yaml")


def _described(schema: dict, path: str = "") -> list[str]:
    """Keys of the schema (resolving $refs) that have no description."""
    missing = []
    defs = load_schema().get("$defs", {})

    def walk(node: dict, where: str) -> None:
        if "$ref" in node:
            node = defs[node["$ref"].split("/")[-1]]
        for key, sub in (node.get("properties") or {}).items():
            sub_resolved = defs[sub["$ref"].split("/")[-1]] if "$ref" in sub else sub
            if not sub_resolved.get("description"):
                missing.append(f"{where}{key}")
            walk(sub, f"{where}{key}.")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{where}<name>.")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{where}[].")

    walk(schema, path)
    return missing


def test_every_schema_key_has_a_description() -> None:
    assert _described(load_schema()) == []


def test_objects_reject_unknown_keys() -> None:
    """Every object in the schema closes itself (additionalProperties false or a schema)."""
    open_objects = []

    def walk(node, where):
        if isinstance(node, dict):
            if node.get("type") == "object" and "additionalProperties" not in node:
                open_objects.append(where)
            for k, v in node.items():
                walk(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")

    walk(load_schema(), "")
    assert open_objects == []


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda p: p.update(device="gpu0"), ["device", "does not match"]),
        (lambda p: p.update(colour="blue"), ["<top level>", "unknown key(s) 'colour'", "allowed: device"]),
        (lambda p: p["delays"].update(trian=1), ["delays: unknown key(s) 'trian'", "allowed: datasets"]),
        (
            lambda p: p["delays"]["sets"]["synth"]["train"].update(epochs=-1),
            ["delays.sets.synth.train.epochs", "minimum"],
        ),
        (
            lambda p: p["delays"]["sets"]["synth"]["train"].update(epochs="ten"),
            ["delays.sets.synth.train.epochs", "not of type 'integer'"],
        ),
        (
            lambda p: p["delays"].update(variants=["learned_delay", "quantum_delay"]),
            ["delays.variants.1", "allowed: no_delay, fixed_delay, learned_delay"],
        ),
        (
            lambda p: p["delays"]["sets"]["synth"]["data"].update(format="wav"),
            ["delays.sets.synth.data.format", "'wav' is not allowed (allowed: shd, ssc, gsc)"],
        ),
        (
            lambda p: p["pretrain"]["ann"].update(epochs=-1),
            ["pretrain.ann.epochs", "minimum"],
        ),  # 0: import only
        (
            lambda p: p["pretrain"]["datasets"]["digits_events"].update(image_size=16),
            ["pretrain.datasets.digits_events.image_size: not allowed here"],
        ),
        (
            lambda p: p["pretrain"]["pipelines"]["pipeD"].update(finetune={"optimiser": "adam"}),
            ["pretrain.pipelines.pipeD.finetune: unknown key(s) 'optimiser'"],
        ),
    ],
)
def test_schema_errors_name_the_key(params: dict, mutate, expected: list[str]) -> None:
    bad = copy.deepcopy(params)
    mutate(bad)
    problems = structure_problems(bad)
    assert len(problems) == 1, problems  # one line per problem, not a dump of the schema
    for text in expected:
        assert text in problems[0]


def test_undefined_names_are_caught(params: dict) -> None:
    bad = copy.deepcopy(params)
    bad["delays"]["datasets"] = ["synth", "shd_typo"]
    bad["pretrain"]["pipelines"]["pipeD"]["baseline"] = "nope"
    assert reference_problems(bad) == [
        "delays.datasets: 'shd_typo' is not defined in delays.sets (defined: synth)",
        "pretrain.pipelines.pipeD.baseline: 'nope' is not defined in pretrain.baselines "
        "(defined: digits, digits_events, motion_events)",
    ]


def test_invalid_yaml_is_one_line_with_file_line_and_column(tmp_path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("device: auto\nthreads: 1\n\tnproc: 1\n")  # a tab cannot indent YAML
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(err.value).startswith(f"{path}:3:") and "invalid YAML" in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_cli_stops_before_work_on_bad_params(tmp_path, params: dict) -> None:
    bad = copy.deepcopy(params)
    bad["delays"]["sets"]["synth"]["train"]["epochs"] = -3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    out = tmp_path / "never"
    proc = run(
        ["python", "-m", "pipeline", "delays_synth", "--params", str(path), "--out", str(out)],
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.count("error:") == 1
        and "delays.sets.synth.train.epochs" in proc.stderr
        and "minimum of 1" in proc.stderr
    )
    assert not out.exists()


def test_snakemake_validates_against_the_same_schema(tmp_path, params: dict) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("delays:\n  sets:\n    synth:\n      train:\n        epochs: -3\n")
    proc = run(["snakemake", "-n", "--configfile", str(cfg), "--cores", "1"], cwd=REPO, check=False)
    assert proc.returncode == 2
    assert [
        line for line in proc.stderr.splitlines() if not line.startswith("Using workflow specific profile")
    ] == [
        "error: params.yaml + command-line config: delays.sets.synth.train.epochs: "
        "-3 is less than the minimum of 1 (Training epochs.)"
    ]


def test_deep_merge_replaces_lists_and_merges_mappings() -> None:
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 2}
    assert deep_merge(base, {"a": {"y": [3]}}) == {"a": {"x": 1, "y": [3]}, "b": 2}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 2}


def test_apply_preset_keeps_comments_and_validates(tmp_path) -> None:
    target = tmp_path / "params.yaml"
    target.write_text((REPO / "params.yaml").read_text())
    preset = tmp_path / "preset.yaml"
    preset.write_text("delays:\n  seeds: [7, 8]\n")
    run(
        ["python", "-m", "pipeline", "apply_preset", "--preset", str(preset), "--params", str(target)],
        cwd=REPO,
    )
    text = target.read_text()
    assert "# Every knob of the pipeline" in text
    assert yaml.safe_load(text)["delays"]["seeds"] == [7, 8]
    preset.write_text("delays:\n  seeds: [-1]\n")
    before = target.read_text()
    proc = run(
        ["python", "-m", "pipeline", "apply_preset", "--preset", str(preset), "--params", str(target)],
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 2 and "delays.seeds.0" in proc.stderr
    assert target.read_text() == before


def test_exponent_numbers_are_numbers_and_strings_stay_strings() -> None:
    """YAML 1.2 reads 1e-3 as a number (DVC's -S does); PyYAML's YAML 1.1 reads the string '1e-3'."""
    text = "a: 1e-3\nb: 5E+2\nc: 1.5e3\nd: .5e-1\ne: 1.0e-3\nf: 0.1\ng: '1e3'\nh: 1e3x\ni: 7\nj: .nan\n"
    data = load_yaml(text)
    assert math.isnan(data.pop("j"))
    assert data == {
        "a": 1e-3,
        "b": 500.0,
        "c": 1500.0,
        "d": 0.05,
        "e": 1e-3,
        "f": 0.1,
        "g": "1e3",
        "h": "1e3x",
        "i": 7,
    }
    assert [type(data[k]) for k in "abcdei"] == [float] * 5 + [int]
    assert load_yaml(dump_yaml({"name": "1e3", "x": 5e-2})) == {
        "name": "1e3",
        "x": 0.05,
    }  # quoted on the way out


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (
            lambda p: p["delays"]["variant_recipe"]["learned_delay"].update(lr_positions=math.nan),
            f"params: {LEARNED}.lr_positions: nan is not a finite number",
        ),
        (
            lambda p: p["delays"]["recipe"].update(lr=math.inf),
            "params: delays.recipe.lr: inf is not a finite number",
        ),
        (
            lambda p: p.update(
                max_skipped_fraction=-math.inf
            ),  # also below the minimum: still one line for the key
            "params: max_skipped_fraction: -inf is not a finite number",
        ),
        (
            lambda p: p["delays"]["sets"]["synth"]["train"].update(hidden=[math.nan]),
            "params: delays.sets.synth.train.hidden.0: nan is not a finite number",
        ),
        (
            lambda p: p["pretrain"]["snn"].update(decay=math.nan),
            "params: pretrain.snn.decay: nan is not a finite number",
        ),
    ],
)
def test_nan_and_inf_are_refused_naming_the_key(params: dict, mutate, expected: str) -> None:
    bad = copy.deepcopy(params)
    mutate(bad)
    assert structure_problems(bad) == [expected]


def _with_recipe_text(value: str) -> str:
    """params.yaml with `LEARNED.lr_positions` written as `value`, exactly as a user types it."""
    text = (REPO / "params.yaml").read_text()
    line = re.search(r"^      lr_positions: \S+", text, flags=re.MULTILINE)
    return text[: line.start()] + f"      lr_positions: {value}" + text[line.end() :]


def test_cli_reads_exponents_as_numbers_and_refuses_nan(tmp_path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(_with_recipe_text(".nan"))
    out = tmp_path / "never"
    proc = run(
        ["python", "-m", "pipeline", "delays_synth", "--params", str(params), "--out", str(out)],
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 2 and not out.exists()
    assert proc.stderr.splitlines() == [
        f"error: {params}: {LEARNED}.lr_positions: nan is not a finite number"
    ]
    text = (
        _with_recipe_text("5e-2").replace("n_train: 2000", "n_train: 40").replace("n_test: 500", "n_test: 10")
    )
    params.write_text(
        text.replace("noise_rate_hz: 5.0", "noise_rate_hz: 5e0")
    )  # a key the stage computes with
    run(["python", "-m", "pipeline", "delays_synth", "--params", str(params), "--out", str(out)], cwd=REPO)
    assert read_json(out / "synth_config.json")["noise_rate_hz"] == 5.0


def test_snakemake_presets_and_config_give_numbers(tmp_path) -> None:
    """Snakemake reads --configfile presets as YAML 1.1 and --config mappings as strings: the stages get
    numbers."""
    work = copy_project(tmp_path)
    learned = "delays:\n  variant_recipe:\n    learned_delay:\n      lr_positions: "
    (work / "nan.yaml").write_text(learned + ".nan\n")
    proc = run(["snakemake", "-n", "--cores", "1", "--configfile", "nan.yaml"], cwd=work, check=False)
    assert proc.returncode == 2
    assert [line for line in proc.stderr.splitlines() if line.startswith("error")] == [
        f"error: params.yaml + command-line config: {LEARNED}.lr_positions: nan is not a finite number"
    ]
    (work / "exp.yaml").write_text(learned + "5e-2\n")
    plan = run(
        [
            "snakemake",
            "-n",
            "-p",
            "--cores",
            "1",
            "--configfile",
            "exp.yaml",
            "--config",
            "delays={recipe: {eval_batch_size: 64}, variant_recipe: {learned_delay: {sigma_final: 2.5e-1}}}",
        ],
        cwd=work,
    ).stdout
    snapshot = work / re.search(r"--params (\S+)", plan).group(1)  # what the stages are given
    delays = load_yaml(snapshot.read_text())["delays"]
    resolved = {**delays["recipe"], **delays["variant_recipe"]["learned_delay"]}
    assert (resolved["lr_positions"], resolved["eval_batch_size"], resolved["sigma_final"]) == (
        0.05,
        64,
        0.25,
    )
    assert type(resolved["eval_batch_size"]) is int


def test_dvc_reads_exponents_as_numbers_and_refuses_nan(tmp_path) -> None:
    work = copy_project(tmp_path)
    (work / "params.yaml").write_text(_with_recipe_text("5e-2"))
    run(["dvc", "repro", "check_params"], cwd=work)
    (work / "params.yaml").write_text(_with_recipe_text(".nan"))
    proc = run(["dvc", "repro", "check_params"], cwd=work, check=False)
    assert proc.returncode != 0
    assert (
        f"error: params.yaml: {LEARNED}.lr_positions: nan is not a finite number" in proc.stdout + proc.stderr
    )


@pytest.mark.parametrize("text", ["", "# only a comment\n", "[1, 2]\n"])
def test_an_empty_or_non_mapping_params_file_is_one_line(tmp_path, text: str) -> None:
    """Under Snakemake (its start-up check) and under `python -m pipeline` (what DVC's check_params runs)."""
    work = copy_project(tmp_path)
    (work / "params.yaml").write_text(text)
    for cmd in (
        ["snakemake", "-n", "--cores", "1"],
        ["python", "-m", "pipeline", "check_params", "--out", "ok"],
    ):
        proc = run(cmd, cwd=work, check=False)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
        assert proc.returncode == 2 and len(errors) == 1 and "params.yaml" in errors[0], proc.stderr
