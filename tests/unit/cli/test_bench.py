"""`llmfleet bench X` dispatches to llmfleet_bench; each bench prints its targets."""

from __future__ import annotations

import math

import pytest

from llmfleet.cli import BENCH_TARGETS, main
from llmfleet_bench import planner, sim
from llmfleet_bench.forecast import BacktestRow, BacktestTable
from llmfleet_bench.forecast import target_lines as forecast_targets
from llmfleet_bench.targets import Threshold


@pytest.mark.parametrize("target", BENCH_TARGETS)
def test_every_bench_starts_from_the_cli(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["bench", target, "--help"])
    assert done.value.code == 0
    assert f"usage: llmfleet bench {target}" in capsys.readouterr().out


def test_a_threshold_prints_its_limit_beside_the_figure_with_a_mark() -> None:
    at_most = Threshold("solve time", 10.0, "s", fmt="{:.1f}")
    assert at_most.line(9.6) == "  target solve time: <= 10.0 s  measured 9.6 s  pass"
    assert at_most.line(10.4).endswith("measured 10.4 s  MISS")
    assert at_most.line(None).endswith("measured not measured  MISS")
    assert not at_most.passed(math.nan)
    at_least = Threshold("rate", 1e6, at_most=False, fmt="{:,.0f}")
    assert at_least.passed(1e6) and not at_least.passed(999_999)
    assert at_least.line(5.0, "tiny run").endswith("MISS (tiny run)")


def _row(size: str, gap: float | None, solve_s: float) -> planner.Row:
    nan = float("nan")
    return planner.Row(size, 0, 0, solve_s, "m", nan, nan, None, None, gap, None, 0, 0, 0, 0)


def test_planner_checks_the_targets_of_the_sizes_that_ran() -> None:
    rows = [_row("10x3x2x24", 0.01, 1.0), _row("50x6x4x24", 0.0178, 9.6),
            _row("200x12x6x24", 0.0612, 47.1)]  # fmt: skip
    lines = planner.target_lines(rows)
    assert lines == [
        "  target 50x6x4x24 gap to the LP bound: <= 3.00%  measured 1.78%  pass",
        "  target 50x6x4x24 solve time: <= 10.0 s  measured 9.6 s  pass",
        "  target 200x12x6x24 gap to the LP bound: <= 5.00%  measured 6.12%  MISS",
        "  target 200x12x6x24 solve time: <= 60.0 s  measured 47.1 s  pass",
    ]
    assert planner.target_lines([_row("50x6x4x24", None, 3.0)])[0].endswith("not measured  MISS")


def test_planner_rejects_a_malformed_size_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["bench", "planner", "--sizes", "50x6x4"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "--sizes: size '50x6x4': expected models x regions x pools x steps" in err


def test_sim_checks_speed_at_every_size_and_memory_growth() -> None:
    lines = sim.target_lines([(1_000_000, 5_900_000.0, 136.0), (10_000_000, 900_000.0, 300.0)])
    assert lines[0].startswith("  target simulated requests per minute: >= 5,000,000")
    assert lines[0].endswith("pass (1,000,000 requests)")
    assert "measured 900,000  MISS" in lines[1]
    assert "peak RSS, largest size over smallest: <= 2.00 x  measured 2.21 x  MISS" in lines[2]
    assert len(sim.target_lines([(1_000, 2e6, 100.0)])) == 1  # memory needs two sizes


def test_forecast_checks_auto_against_the_best_method_and_calibration() -> None:
    def row(method: str, wape: float, coverage: float) -> BacktestRow:
        return BacktestRow(method, 6, wape, wape, 1.0, coverage, 0)

    table = BacktestTable(
        (row("arima", 52.7, 0.8), row("seasonal", 47.8, 0.8), row("naive", 52.7, 0.8),
         row("auto", 45.2, 0.83)),
        "prompt_tokens", 0.9, 24, 3600,
    )  # fmt: skip
    wape, calibration = forecast_targets(table)
    assert "best single method's (seasonal, 47.8%)" in wape and wape.endswith("0.95 x  pass")
    assert "distance to the quantile 0.9: <= 0.10  measured 0.07  pass (coverage 0.83)" in (
        calibration
    )
    worse = BacktestTable((*table.rows[:3], row("auto", 50.0, 0.5)), "prompt_tokens", 0.9, 24, 3600)
    wape, calibration = forecast_targets(worse)
    assert wape.endswith("MISS") and calibration.endswith("MISS (coverage 0.50)")
