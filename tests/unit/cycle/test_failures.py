"""Failure behaviour of one planning cycle (pure): a solver out of time gives its best
feasible plan or none (the last plan stays); floors keep an unreachable region as it was
and never let missing demand data scale anything down."""

from __future__ import annotations

from typing import Any

import pytest

from llmfleet.api.loading import load_manifests
from llmfleet.api.policy import FleetPolicy
from llmfleet.cycle import policy_snapshot
from llmfleet.cycle.demand import quota_fallback
from llmfleet.cycle.floors import Floors, bounded, held_regions
from llmfleet.plan.instance import CurrentState, PlanningInstance, from_snapshot
from llmfleet.plan.types import NoSolutionInTime, Plan
from llmfleet.plan.validate import validate
from support.builders import SAMPLES, planning_policy
from support.cycles import NOW, cycle
from support.plans import fleet_plan


def _policy(**solver: Any) -> FleetPolicy:
    return planning_policy(solver)


def _setup(**solver: Any):
    pol = _policy(**solver)
    snap = policy_snapshot(load_manifests([SAMPLES], namespace="ns"), "ns")
    return pol, snap, quota_fallback(pol, snap, NOW.timestamp(), "test demand")


def test_solver_out_of_time_returns_its_best_feasible_plan():
    pol, snap, _demand = _setup(timeLimitSeconds=0.01)
    # no min-replica floors, so the greedy fallback meets every hard limit
    snap.models[:] = [
        m.model_copy(update={"spec": m.spec.model_copy(update={"min_replicas_per_region": 0})})
        for m in snap.models
    ]
    r = cycle(pol, snap)
    assert r.spec is not None and r.failure is None
    assert r.spec.solver.status == "Feasible"
    assert "LP not solved" in r.spec.solver.message
    assert r.spec.nodes and sum(x.replicas for x in r.spec.replicas) > 0


def test_solver_out_of_time_with_nothing_feasible_keeps_the_last_plan():
    pol, snap, _demand = _setup(timeLimitSeconds=0.01)
    r = cycle(pol, snap)
    assert r.spec is None and r.solver_status == "Timeout" and r.failure is not None
    assert r.failure.reason == "SolveTimeout" and "last good plan stays" in r.failure.message


def test_no_solution_in_time_writes_no_plan_and_keeps_the_last():
    pol, snap, _demand = _setup()

    def out_of_time(inst: PlanningInstance, previous: Plan | None) -> NoSolutionInTime:
        return NoSolutionInTime(5.0, 5.1, "a pool above maxNodes")

    r = cycle(pol, snap, solve=out_of_time)
    assert r.spec is None and r.solver_status == "Timeout" and r.failure is not None
    assert r.failure.reason == "SolveTimeout"
    assert "no solution in time" in r.failure.message
    assert "last good plan stays" in r.failure.message


def test_an_unreachable_region_is_held_at_the_last_plans_figures():
    pol, snap, _demand = _setup()
    last = fleet_plan(
        nodes={("eu-west", "a100-od"): 3, ("eu-west", "h100-od"): 0, ("us-east", "a100-od"): 9},
        replicas={("llama-3-1-8b", "eu-west", "a100-od"): 5,
                  ("llama-3-3-70b", "eu-west", "a100-od"): 1},
    )  # fmt: skip
    floors = held_regions(last, {"eu-west": "region eu-west: apiserver unreachable"})
    assert floors.pinned == {"eu-west"}
    assert floors.nodes == {("eu-west", "a100-od"): 3, ("eu-west", "h100-od"): 0}
    assert "eu-west unreachable: held at the last plan" in floors.why

    r = cycle(
        pol, snap, last_plan=last, unreachable={"eu-west": "region eu-west: apiserver unreachable"}
    )
    assert r.spec is not None and r.plan is not None and r.floors.pinned == {"eu-west"}
    eu_nodes = {n.pool: n.nodes for n in r.spec.nodes if n.region == "eu-west"}
    assert eu_nodes.get("a100-od") == 3 and eu_nodes.get("h100-od", 0) == 0
    eu_reps = {(x.model, x.pool): x.replicas for x in r.spec.replicas if x.region == "eu-west"}
    assert {k: v for k, v in eu_reps.items() if v} == {
        ("llama-3-1-8b", "a100-od"): 5,
        ("llama-3-3-70b", "a100-od"): 1,
    }
    assert "floors: region(s) eu-west unreachable" in r.spec.solver.message
    # the other regions are planned as usual
    assert any(n.nodes for n in r.spec.nodes if n.region != "eu-west")
    # the recorded plan is the plan solved: its cost is its own nodes' and it validates
    pools = {
        (p.region, p.name): p
        for rg in from_snapshot(snap, [], CurrentState(), pol).regions
        for p in rg.pools
    }
    cost = sum(n.nodes * pools[(n.region, n.pool)].price_per_node_hour for n in r.spec.nodes)
    assert r.spec.cost_per_hour == pytest.approx(cost, abs=0.01)
    assert r.spec.cost_per_hour == pytest.approx(r.plan.first().usd_per_hour, abs=0.01)


def test_held_figures_that_break_a_hard_limit_are_infeasible_and_say_so():
    pol, snap, _demand = _setup()
    last = fleet_plan(nodes={("eu-west", "a100-od"): 3},
                      replicas={("llama-3-1-8b", "eu-west", "a100-od"): 5})  # fmt: skip
    r = cycle(pol, snap, last_plan=last, unreachable={"eu-west": "apiserver unreachable"})
    assert r.spec is None and r.failure is not None and r.failure.reason == "SolveInfeasible"
    assert "llama-3-3-70b needs minReplicasPerRegion=1 in region eu-west" in r.failure.message


def test_without_a_last_plan_an_unreachable_region_is_only_reported():
    floors = held_regions(None, {"ap-northeast": "gone"})
    assert not floors and "ap-northeast unreachable: not changed (no plan yet)" in floors.why


def test_missing_demand_data_never_lowers_a_count():
    pol, snap, demand = _setup()
    current = CurrentState(
        nodes={("us-east", "h100-od"): 4},
        replicas={("llama-3-3-70b", "us-east", "h100-od"): 6},
    )
    r = cycle(pol, snap, current)  # no demand source: the quotas, nothing scaled down
    assert r.spec is not None and r.floors and "no demand data" in r.floors.why
    nodes = {(n.region, n.pool): n.nodes for n in r.spec.nodes}
    reps = {(x.model, x.region, x.pool): x.replicas for x in r.spec.replicas}
    assert nodes[("us-east", "h100-od")] >= 4
    assert reps[("llama-3-3-70b", "us-east", "h100-od")] >= 6
    # and the pool holds the GPUs its replicas need
    inst = from_snapshot(snap, list(demand.forecasts), current, pol)
    gpr = {(m.name, p.gpu_type): p.gpus_per_replica for m in inst.models for p in m.profiles}
    for r_ in inst.regions:
        for p in r_.pools:
            need = sum(
                n * gpr[(m, p.gpu_type)]
                for (m, reg, pool), n in reps.items()
                if (reg, pool) == (r_.name, p.name)
            )
            assert nodes.get((r_.name, p.name), 0) * p.gpus_per_node >= need


def test_bounds_raise_min_nodes_and_pin_held_regions():
    pol, snap, demand = _setup()
    inst = from_snapshot(snap, list(demand.forecasts), CurrentState(), pol)
    floors = Floors(nodes={("us-east", "h100-od"): 2, ("eu-west", "a100-od"): 7},
                    replicas={("llama-3-1-8b", "us-east", "h100-od"): 3,
                              ("llama-3-1-8b", "eu-west", "a100-od"): 4},
                    pinned=frozenset({"eu-west"}))  # fmt: skip
    out = bounded(inst, floors)
    us = next(p for p in out.region("us-east").pools if p.name == "h100-od")
    eu = next(p for p in out.region("eu-west").pools if p.name == "a100-od")
    assert (us.min_nodes, us.max_nodes) == (2, 16)
    assert (eu.min_nodes, eu.max_nodes) == (7, 7)
    # replicas: a floor outside held regions, exact holds inside (0 where the plan had none)
    assert out.replica_bounds[("llama-3-1-8b", "us-east", "h100-od")] == (3, None)
    assert out.replica_bounds[("llama-3-1-8b", "eu-west", "a100-od")] == (4, 4)
    held = {k: v for k, v in out.replica_bounds.items() if k[1] == "eu-west"}
    assert all(v == (0, 0) for k, v in held.items() if k != ("llama-3-1-8b", "eu-west", "a100-od"))


def test_a_plan_under_floors_is_solved_within_them_not_patched_after():
    pol, snap, demand = _setup()
    current = CurrentState(nodes={("us-east", "h100-od"): 4},
                           replicas={("llama-3-3-70b", "us-east", "h100-od"): 6})  # fmt: skip
    r = cycle(pol, snap, current)
    assert r.spec is not None and r.plan is not None
    inst = bounded(from_snapshot(snap, list(demand.forecasts), current, pol), r.floors)
    assert validate(r.plan, inst) == []
    step0 = {(x.model, x.region, x.pool): round(x.replicas) for x in r.plan.first().replicas}
    assert {(x.model, x.region, x.pool): x.replicas for x in r.spec.replicas if x.replicas} == {
        k: v for k, v in step0.items() if v
    }
    assert "floors: no demand data" in r.spec.solver.message


def test_floors_merge_to_the_higher_and_keep_pins():
    a = Floors(nodes={("r", "p"): 2}, replicas={("m", "r", "p"): 1}, why="a")
    b = Floors(nodes={("r", "p"): 5, ("s", "q"): 1}, pinned=frozenset({"s"}), why="b")
    m = a.merged(b)
    assert m.nodes == {("r", "p"): 5, ("s", "q"): 1} and m.replicas == {("m", "r", "p"): 1}
    assert m.pinned == {"s"} and m.why == "a; b"
