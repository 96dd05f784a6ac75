"""`python -m pipeline experiments`: one row per experiment in 100 columns, running ones without numbers."""

from __future__ import annotations

from pipeline.report.experiments import render, rows


def _state(rev: str, name: str | None, lr_positions: float, acc: float | None) -> dict:
    params = {
        "params.yaml": {
            "data": {
                "delays": {
                    "recipe": {"lr": 0.001},
                    "variant_recipe": {"learned_delay": {"lr_positions": lr_positions}},
                },
                "pretrain": {"seed": 0},
            }
        }
    }
    metrics = (
        {}
        if acc is None
        else {
            "results/metrics.json": {
                "data": {
                    "delays": {
                        "synth/learned_delay": {"test_acc_mean": acc},
                        "synth/no_delay": {"test_acc_mean": 9.6},
                    },
                    "pretrain": {
                        "digits_events/pipeD": {"top1": 69.64, "time_ratio": 0.76},
                        "digits/digits": {"top1": 85.79},
                    },
                }
            }
        }
    )
    return {"rev": rev, "name": name, "data": {"params": params, "metrics": metrics}, "error": None}


def _show() -> list[dict]:
    base = _state("a" * 40, "main", 0.1, 97.6)
    base["experiments"] = [
        {
            "revs": [_state("b" * 40, "lrpos-005", 0.05, 95.1)],
            "executor": {"state": "success"},
            "name": "lrpos-005",
        },
        # a running experiment's data are its baseline's until it finishes: no numbers shown
        {
            "revs": [_state("c" * 40, "lrpos-02", 0.2, 97.6)],
            "executor": {"state": "running"},
            "name": "lrpos-02",
        },
    ]
    return [_state("workspace", None, 0.1, 97.6), base]


def test_one_row_per_experiment_with_its_changes_and_headline_metrics() -> None:
    table = list(rows(_show()))
    assert [r["name"] for r in table] == ["workspace", "main", "lrpos-005", "lrpos-02"]
    assert table[2]["changed"] == "delays.variant_recipe.learned_delay.lr_positions=0.05"
    assert dict(table[2]["metrics"]) == {"B synth %": 95.1, "A pipeD %": 69.64, "A pipeD ratio": 0.76}
    assert table[3]["state"] == "running" and table[3]["metrics"] == []


def test_the_table_fits_100_columns_even_with_many_changes() -> None:
    show = _show()
    exp = show[1]["experiments"][0]["revs"][0]["data"]["params"]["params.yaml"]["data"]
    exp["delays"]["recipe"].update({f"key_{i}": i for i in range(30)})
    text = render(list(rows(show)))
    assert max(map(len, text.splitlines())) <= 100, text
    running = next(line for line in text.splitlines() if line.startswith("lrpos-02"))
    assert "running" in running and "97.60" not in running
    assert "lr_positions=0.05" in text and "key_29=29" in text
