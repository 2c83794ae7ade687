"""Cost at equal SLO: the knob sweep, the frontier and the equal-SLO ratios."""

from __future__ import annotations

import json

import pytest

from llmfleet.sim.cli import main as simulate_main
from llmfleet.sim.policies import policy_factories
from llmfleet.sim.scenario import load_scenario
from llmfleet.sim.sweep import (
    KNOBS,
    Point,
    equal_slo,
    equal_slo_table,
    frontier,
    sweep_factories,
    with_tier_utilisation,
)


def P(run: str, usd: float, slo: float, reqs: float = 0.99) -> Point:
    policy, _, setting = run.partition("@")
    knob = KNOBS.get(policy)
    value = float(setting.split("=")[1]) if setting else knob.default if knob else None
    return Point(run, policy, value, usd, usd / 10, slo, reqs)


def test_the_frontier_keeps_only_runs_nothing_beats_on_both_cost_and_slo():
    pts = [P("a@k=1", 100, 0.90), P("a@k=2", 150, 0.95), P("a", 160, 0.93),  # beaten
           P("a@k=3", 200, 1.00), P("a@k=4", 250, 1.00)]  # same SLO, dearer
    assert [p.run for p in frontier(pts)] == ["a@k=1", "a@k=2", "a@k=3"]


def test_equal_slo_compares_against_the_cheapest_baseline_run_that_holds_llmfleets_slo():
    pts = [P("llmfleet", 100, 0.96),
           P("reactive@target=0.3", 300, 1.0), P("reactive@target=0.45", 220, 0.96, 0.999),
           P("reactive", 150, 0.88),
           P("static-peak", 400, 0.92)]
    rows = {r.baseline: r for r in equal_slo(pts)}
    assert rows["reactive"].match is not None
    assert rows["reactive"].against.run == "reactive@target=0.45"
    assert rows["reactive"].usd_ratio == pytest.approx(100 / 220)
    # a baseline that never reaches llmfleet's SLO is compared at its best run, and says so
    assert rows["static-peak"].match is None
    assert rows["static-peak"].usd_ratio == pytest.approx(100 / 400)
    text = equal_slo_table(list(rows.values()))
    assert "vs reactive (target=0.45)" in text
    assert "static-peak (headroom=1) (never reaches llmfleet's SLO" in text


def test_slo_ties_are_broken_by_the_share_of_requests_in_slo():
    pts = [P("llmfleet", 100, 1.0, 0.995), P("reactive@target=0.45", 120, 1.0, 0.990),
           P("reactive@target=0.3", 180, 1.0, 0.999)]
    (row,) = equal_slo(pts)
    assert row.against.run == "reactive@target=0.3"


def test_every_knob_value_becomes_a_run_and_the_default_keeps_the_policys_name():
    base = policy_factories()
    runs = sweep_factories(base, ["reactive", "siloed"])
    assert set(runs) == {"reactive", "reactive@target=0.3", "reactive@target=0.45", "siloed"}
    assert runs["reactive"] is base["reactive"]
    assert all(KNOBS[k].default in KNOBS[k].values for k in KNOBS)


def test_the_llmfleet_knob_scales_interactive_tiers_only_and_caps_at_one():
    sc = with_tier_utilisation(load_scenario(), 1.5)
    util = {d["metadata"]["name"]: d["spec"].get("targetUtilization")
            for d in sc.fleet if d["kind"] == "SLATier"}
    assert util == {"interactive-fast": pytest.approx(0.9), "interactive-normal": 1.0,
                    "batch": 0.95}
    with pytest.raises(ValueError, match="factor"):
        with_tier_utilisation(sc, 0)


def test_simulate_sweep_writes_the_frontier_and_the_equal_slo_ratios(tmp_path, capsys):
    rc = simulate_main(["--days", "0.05", "--policies", "reactive,static-peak", "--sweep",
                        "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "equal SLO" in out
    assert (tmp_path / "frontier.png").exists()
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert {"reactive", "reactive@target=0.3", "static-peak@headroom=1.5"} <= set(
        data["policies"])
    # the per-hour SLO table: a column per hour, a row per run
    summary = (tmp_path / "summary.txt").read_text()
    assert "interactive-fast: per hour of arrival" in summary
    hourly = data["policies"]["reactive"]["hourly_in_slo"]["interactive-fast"]
    assert len(hourly) == 2 and all(0 <= x <= 1 for x in hourly)  # 0.05 days: hours 0, 1
    # the per-policy tables and plots show each policy as it ships
    assert not any("@" in p.name for p in tmp_path.iterdir())
    assert "@" not in (tmp_path / "summary.txt").read_text().split("equal SLO")[0]
