"""``llmfleet bench router`` on a small CSV: the decision table, identical decisions, the
target line."""

from __future__ import annotations

import pytest

from llmfleet_bench.router import main
from llmfleet_bench.routing import write_routing_csv
from unit.routing.test_model_router import synthetic


def test_bench_router_prints_times_and_the_target(tmp_path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "set.csv"
    write_routing_csv(synthetic(400, seed=1), path)
    args = ["--data", str(path), "--fit-prompts", "300", "--requests", "200", "--folds", "3",
            "--bits", "12", "--proxy-requests", "0", "--kinds", "quality,good-enough"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| quality |" in out and "| good-enough |" in out
    assert out.count("0 of 200") == 2  # identical to the scikit-learn routers
    assert out.count("target decision p99 (CPU time) on one core: <= 2.00 ms") == 2


def test_bench_router_rejects_an_unknown_kind(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        main(["--kinds", "oracle"])
    assert "unknown router kind 'oracle'" in capsys.readouterr().err
