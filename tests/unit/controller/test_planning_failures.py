"""Failure behaviour of one planning cycle (pure): a solver out of time gives its best
feasible plan or none (the last plan stays); floors keep an unreachable region as it was
and never let missing demand data scale anything down."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from llmfleet.api.loading import load_manifests
from llmfleet.api.policy import FleetPolicy
from llmfleet.controller.planning import (
    Floors,
    bounded,
    held_regions,
    policy_snapshot,
    quota_fallback,
    run_cycle,
)
from llmfleet.plan.instance import CurrentState, PlanningInstance, from_snapshot
from llmfleet.plan.types import NoSolutionInTime
from support.builders import SAMPLES, planning_policy
from support.plans import fleet_plan

NOW = datetime(2026, 11, 23, 15, 7, 9, tzinfo=UTC)


def _policy(**solver: Any) -> FleetPolicy:
    return planning_policy(solver)


def _setup(**solver: Any):
    pol = _policy(**solver)
    snap = policy_snapshot(load_manifests([SAMPLES], namespace="ns"), "ns")
    return pol, snap, quota_fallback(pol, snap, NOW.timestamp(), "test demand")


def test_solver_out_of_time_returns_its_best_feasible_plan():
    pol, snap, demand = _setup(timeLimitSeconds=0.01)
    # no min-replica floors, so the greedy fallback meets every hard limit
    snap.models[:] = [
        m.model_copy(update={"spec": m.spec.model_copy(update={"min_replicas_per_region": 0})})
        for m in snap.models
    ]
    r = run_cycle(pol, snap, demand, CurrentState(), NOW)
    assert r.spec is not None and r.failure is None
    assert r.spec.solver.status == "Feasible"
    assert "LP not solved" in r.spec.solver.message
    assert r.spec.nodes and sum(x.replicas for x in r.spec.replicas) > 0


def test_solver_out_of_time_with_nothing_feasible_keeps_the_last_plan():
    pol, snap, demand = _setup(timeLimitSeconds=0.01)
    r = run_cycle(pol, snap, demand, CurrentState(), NOW)
    assert r.spec is None and r.solver_status == "Timeout"
    assert r.failure_reason == "SolveTimeout" and "last good plan stays" in (r.failure or "")


def test_no_solution_in_time_writes_no_plan_and_keeps_the_last():
    pol, snap, demand = _setup()

    def out_of_time(inst: PlanningInstance) -> NoSolutionInTime:
        return NoSolutionInTime(5.0, 5.1, "a pool above maxNodes")

    r = run_cycle(pol, snap, demand, CurrentState(), NOW, solve=out_of_time)
    assert r.spec is None and r.solver_status == "Timeout"
    assert r.failure_reason == "SolveTimeout"
    assert r.failure and "no solution in time" in r.failure and "last good plan stays" in r.failure


def test_an_unreachable_region_is_held_at_the_last_plans_figures():
    pol, snap, demand = _setup()
    last = fleet_plan(
        nodes={("eu-west", "a100-od"): 3, ("eu-west", "h100-od"): 0, ("us-east", "a100-od"): 9},
        replicas={("llama-3-1-8b", "eu-west", "a100-od"): 5},
    )
    floors = held_regions(last, {"eu-west": "region eu-west: apiserver unreachable"})
    assert floors.pinned == {"eu-west"}
    assert floors.nodes == {("eu-west", "a100-od"): 3, ("eu-west", "h100-od"): 0}
    assert "eu-west unreachable: held at the last plan" in floors.why

    r = run_cycle(pol, snap, demand, CurrentState(), NOW, floors)
    assert r.spec is not None
    eu_nodes = {n.pool: n.nodes for n in r.spec.nodes if n.region == "eu-west"}
    assert eu_nodes.get("a100-od") == 3 and eu_nodes.get("h100-od", 0) == 0
    eu_reps = {(x.model, x.pool): x.replicas for x in r.spec.replicas if x.region == "eu-west"}
    assert {k: v for k, v in eu_reps.items() if v} == {("llama-3-1-8b", "a100-od"): 5}
    assert "floors: region(s) eu-west unreachable" in r.spec.solver.message
    # the other regions are planned as usual
    assert any(n.nodes for n in r.spec.nodes if n.region != "eu-west")


def test_without_a_last_plan_an_unreachable_region_is_only_reported():
    floors = held_regions(None, {"ap-northeast": "gone"})
    assert not floors and "ap-northeast unreachable: not changed (no plan yet)" in floors.why


def test_missing_demand_data_never_lowers_a_count():
    pol, snap, demand = _setup()
    current = CurrentState(
        nodes={("us-east", "h100-od"): 4},
        replicas={("llama-3-3-70b", "us-east", "h100-od"): 6},
    )
    r = run_cycle(pol, snap, demand, current, NOW,
                  Floors(dict(current.nodes), dict(current.replicas), why="no demand data"))  # fmt: skip
    assert r.spec is not None
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
                    pinned=frozenset({"eu-west"}))  # fmt: skip
    out = bounded(inst, floors)
    us = next(p for p in out.region("us-east").pools if p.name == "h100-od")
    eu = next(p for p in out.region("eu-west").pools if p.name == "a100-od")
    assert (us.min_nodes, us.max_nodes) == (2, 16)
    assert (eu.min_nodes, eu.max_nodes) == (7, 7)


def test_floors_merge_to_the_higher_and_keep_pins():
    a = Floors(nodes={("r", "p"): 2}, replicas={("m", "r", "p"): 1}, why="a")
    b = Floors(nodes={("r", "p"): 5, ("s", "q"): 1}, pinned=frozenset({"s"}), why="b")
    m = a.merged(b)
    assert m.nodes == {("r", "p"): 5, ("s", "q"): 1} and m.replicas == {("m", "r", "p"): 1}
    assert m.pinned == {"s"} and m.why == "a; b"
