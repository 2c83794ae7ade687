import dataclasses
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from plan_builders import flow, two_regions

from llmfleet.api.loading import load_manifests, snapshot_of
from llmfleet.plan.convert import to_fleet_plan_spec
from llmfleet.plan.explain import explain
from llmfleet.plan.instance import (
    CurrentState,
    ModelSpec,
    PlanningInstance,
    ProfileSpec,
    from_snapshot,
)
from llmfleet.plan.objective import BUDGET_EXCESS_USD
from llmfleet.plan.sageserve import solve_sageserve
from llmfleet.plan.solve import SolveOptions, plan_fleet
from llmfleet.plan.types import Infeasible, NoSolutionInTime, Plan
from llmfleet.plan.validate import validate
from support.instances import generate, rolled

REPO = Path(__file__).resolve().parents[3]


def planned(inst: PlanningInstance, **kw: object) -> Plan:
    out = plan_fleet(inst, SolveOptions(**kw))  # type: ignore[arg-type]
    assert isinstance(out, Plan), getattr(out, "message", out)
    assert validate(out, inst) == []
    return out


def test_plan_is_valid_and_close_to_its_bound() -> None:
    plan = planned(two_regions(demand_scale=5.0, steps=6))
    assert plan.solver.bound is not None
    assert plan.solver.bound <= plan.objective
    assert plan.solver.gap is not None and plan.solver.gap < 0.05
    assert not plan.first().unmet
    assert plan.first().pools and plan.first().routes


def test_fully_integer_schedule_is_valid() -> None:
    plan = planned(two_regions(steps=4), integer_tail=True)
    assert plan.integral_steps == 4
    assert all(float(p.nodes).is_integer() for st in plan.steps for p in st.pools)


def test_interactive_routes_only_to_latency_eligible_regions() -> None:
    """With 5 s between the regions, the fast tier (TTFT 1 s) from each origin can only be
    served where it originates: both origins get fast routes, all of them local."""
    inst = two_regions(steps=3)
    far = dataclasses.replace(inst.regions[1], rtt_ms={"east": 5000.0})
    east = dataclasses.replace(inst.regions[0], rtt_ms={"west": 5000.0})
    demand = (*inst.demand, flow("small", "west", "fast", [20000.0] * 3))
    far_apart = dataclasses.replace(inst, regions=(east, far), demand=demand)
    plan = planned(far_apart)
    for st in plan.steps:
        fast = [rt for rt in st.routes if rt.tier == "fast"]
        assert {rt.origin for rt in fast} == {"east", "west"}
        assert all(rt.region == rt.origin for rt in fast)
        assert not [u for u in st.unmet if u.tier == "fast"]


def test_sample_fleet_from_api_objects() -> None:
    snap = snapshot_of(load_manifests([REPO / "crds" / "samples"], "llmfleet"))
    fc = []
    for m in snap.models:
        for r in ("us-east", "eu-west"):
            fc.append(flow(m.metadata.name, r, "interactive-normal", [3000.0] * 24))
    fc.append(flow("llama-3-3-70b", "us-east", "batch", [5000.0] * 24))
    inst = from_snapshot(snap, fc, CurrentState(), snap.policies[0])
    inst = dataclasses.replace(
        inst, settings=dataclasses.replace(inst.settings, max_changes_per_cycle=10000)
    )
    plan = planned(inst)
    spec = to_fleet_plan_spec(plan, inst, datetime.now(UTC))
    assert spec.solver.status in ("Optimal", "Feasible")
    assert spec.cost_per_hour == pytest.approx(plan.first().usd_per_hour)
    assert {e.reason for e in spec.explanation} <= {
        "demand",
        "min-replicas",
        "packing",
        "latency",
        "spot-cap",
        "deadline",
        "guarantee",
        "none",
    }


def test_generated_fleet_and_warm_start_are_valid() -> None:
    inst = generate(8, 3, 4, 6, seed=3)
    plan = planned(inst)
    nxt = rolled(inst, plan)
    assert validate(planned(nxt), nxt) == []
    # warm start when the LP gets no time: previous plan shifted by one step
    warm = plan_fleet(nxt, SolveOptions(time_limit=0.01), previous=plan)
    assert isinstance(warm, Plan)
    assert validate(warm, nxt) == []


def test_timeout_is_honoured_and_returns_the_heuristic_plan() -> None:
    inst = generate(50, 6, 4, 24, seed=1)
    start = time.perf_counter()
    out = plan_fleet(inst, SolveOptions(time_limit=0.3))
    took = time.perf_counter() - start
    assert isinstance(out, Plan)
    assert out.solver.method == "greedy"
    assert "LP not solved" in out.solver.message
    assert took < 0.3 + 0.5 + 3.0  # limit + watchdog grace + rounding/assembly
    assert validate(out, inst) == []


def test_infeasible_is_a_clear_error() -> None:
    inst = two_regions(steps=3)
    stuck = ModelSpec("stuck", (ProfileSpec("TPU", 1, 1000, 100),), ("east",), 1)
    bad = dataclasses.replace(inst, models=(*inst.models, stuck))
    out = plan_fleet(bad)
    assert isinstance(out, Infeasible)
    assert out.message.startswith("infeasible:") and "stuck" in out.message


@pytest.mark.parametrize("time_limit", [0.01, 5.0])
def test_change_budget_gives_way_only_to_hard_limits(time_limit: float) -> None:
    """A cold start whose min replicas need more changes than the budget still gets a plan
    (LP or, without time for it, the heuristic) that says how far over it is; within the
    budget, no change is priced as excess."""
    zero = two_regions(steps=3, max_changes=0)
    out = plan_fleet(zero, SolveOptions(time_limit=time_limit))
    assert isinstance(out, Plan), out
    assert validate(out, zero) == []
    forced = sum(r.replicas for r in out.first().replicas) + sum(p.nodes for p in out.first().pools)
    assert out.breakdown.budget_cost == pytest.approx(BUDGET_EXCESS_USD * forced)
    assert f"{forced:.0f} over maxChangesPerCycle=0" in out.solver.message
    roomy = two_regions(steps=3, max_changes=10_000)
    ok = plan_fleet(roomy, SolveOptions(time_limit=time_limit))
    assert isinstance(ok, Plan) and ok.breakdown.budget_cost == 0.0
    assert "maxChangesPerCycle" not in ok.solver.message


def test_no_solution_in_time_is_distinct_from_infeasible() -> None:
    late = NoSolutionInTime(0.5, 0.6, "model m below min replicas in east")
    assert late.message.startswith("no solution in time:")
    assert not late.message.startswith("infeasible")


def test_explain_names_the_reasons() -> None:
    inst = two_regions(steps=3)
    idle = ModelSpec("idle", inst.models[0].profiles, ("west",), 2)
    inst = dataclasses.replace(inst, models=(*inst.models, idle))
    plan = planned(inst)
    text = explain(plan, inst)
    assert "because of demand" in text
    assert "idle @ west: 2 replica(s)" in text and "min-replicas" in text
    only = explain(plan, inst, model="big")
    assert "big @ east" in only and "small @" not in only


def test_sageserve_provisions_forecast_with_integer_instances() -> None:
    inst = two_regions(steps=3, min_replicas=0)
    ss = solve_sageserve(inst)
    assert ss.status == "optimal"
    assert all(isinstance(v, int) and v > 0 for v in ss.replicas.values())
    assert ss.usd_per_hour > 0
    # scale-in from an oversized fleet: x >= -N lets it drop instances
    big = CurrentState(replicas={("small", "east", "h100-od"): 40})
    shrunk = solve_sageserve(dataclasses.replace(inst, current=big))
    assert shrunk.replicas.get(("small", "east", "h100-od"), 0) < 40


def test_unmet_demand_is_stated_with_a_reason() -> None:
    inst = two_regions(demand_scale=40.0, steps=2)
    plan = planned(inst)
    unmet = plan.first().unmet
    assert unmet and all(u.reason for u in unmet)
    assert any("maxNodes" in u.reason for u in unmet)
    assert all(p.nodes <= p.max_nodes for p in plan.first().pools)


def test_current_state_counts_changes() -> None:
    inst = two_regions(steps=3)
    first = planned(inst)
    cur = CurrentState(
        nodes={(p.region, p.pool): int(p.nodes) for p in first.first().pools},
        replicas={(r.model, r.region, r.pool): int(r.replicas) for r in first.first().replicas},
    )
    again = planned(dataclasses.replace(inst, current=cur))
    assert again.breakdown.scaling_cost <= first.breakdown.scaling_cost
    assert np.isfinite(again.objective)
