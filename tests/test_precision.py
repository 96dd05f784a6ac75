"""Mixed precision as a parameter: mode resolution, and a bf16 training run on the CPU."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from pipeline.io import read_json
from pipeline.run.precision import Precision, autocast_dtype
from tests.conftest import call_stage
from tests.test_resume import _cli, _delays_params


def test_modes() -> None:
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) is None  # off on CPU by default
    assert autocast_dtype(False, cpu) is None  # YAML's bare `off`
    assert autocast_dtype("bf16", cpu) is torch.bfloat16 and autocast_dtype("fp16", cpu) is torch.float16
    assert Precision("fp16", cpu).scaler.is_enabled() and not Precision("bf16", cpu).scaler.is_enabled()
    with pytest.raises(ValueError, match="unknown amp mode 'fp8'"):
        autocast_dtype("fp8", cpu)


def test_bf16_training_runs_in_bf16(tmp_path) -> None:
    p = _delays_params(tmp_path)
    p["delays"]["sets"]["synth"]["train"]["epochs"] = 1
    p["amp"] = "bf16"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    call_stage("delays_synth", p, out=tmp_path / "raw")
    call_stage("delays_prepare", p, dataset="synth", out=tmp_path / "prep")
    proc = _cli(
        [
            "delays_train",
            "--dataset",
            "synth",
            "--variant",
            "learned_delay",
            "--seed",
            "0",
            "--data",
            "prep",
            "--ckpt",
            "ck",
            "--live",
            "live",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert read_json(tmp_path / "live/config.json")["amp"] == "bf16"
    assert math.isfinite(read_json(tmp_path / "live/history.json")[0]["train_loss"])
    with Precision("bf16", torch.device("cpu")).autocast():
        assert torch.nn.Linear(4, 2)(torch.ones(1, 4)).dtype is torch.bfloat16  # autocast really applies
