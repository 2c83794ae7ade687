"""The planning loop's pure pieces: snapshot, demand, one cycle, plan records, schedule."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llmfleet.api.loading import load_manifests
from llmfleet.api.plan import FleetPlan
from llmfleet.api.policy import FleetPolicy
from llmfleet.controller.planning import (
    StaleDemand,
    demand_from_read,
    fleet_plan_object,
    is_due,
    known_flows,
    plan_name,
    plans_to_delete,
    policy_snapshot,
    quota_fallback,
    run_cycle,
)
from llmfleet.forecast.types import DemandHistory, DemandRates, FlowKey
from llmfleet.kube.prometheus import DemandRead
from llmfleet.plan.instance import CurrentState
from support.builders import SAMPLES, planning_policy

NOW = datetime(2026, 11, 23, 15, 7, 9, tzinfo=UTC)


def _policy(**spec: Any) -> FleetPolicy:
    return planning_policy(history_seconds=24 * 3600, **spec)


def _objects(namespace: str = "ns") -> list:
    return load_manifests([SAMPLES], namespace=namespace)


def _history(key: FlowKey, steps: int, start: float, value: float = 100.0) -> DemandHistory:
    return DemandHistory(
        key=key,
        start=start,
        step_seconds=3600,
        rates=DemandRates(
            requests_per_s=(value / 1000,) * steps,
            prompt_tokens_per_s=(value,) * steps,
            output_tokens_per_s=(value / 4,) * steps,
        ),
    )


def test_snapshot_holds_cluster_objects_and_the_policys_namespace_only():
    snap = policy_snapshot(_objects("ns") + _objects("other"), "ns")
    assert {r.name for r in snap.regions} == {"us-east", "eu-west", "ap-northeast"}
    assert snap.models and all(m.namespace == "ns" for m in snap.models)
    assert all(t.namespace == "ns" for t in snap.tenants + snap.tiers)
    assert snap.policies == [] and snap.plans == []


def test_quota_fallback_says_why_and_starts_at_the_current_step():
    pol = _policy()
    d = quota_fallback(pol, policy_snapshot(_objects(), "ns"), NOW.timestamp(), "no data")
    assert d.source == "quota" and d.message.startswith("no data; planned for the demand")
    assert d.forecasts and all(f.start == NOW.timestamp() // 3600 * 3600 for f in d.forecasts)


def test_demand_from_prometheus_keeps_known_flows_and_reports_the_rest():
    pol = _policy()
    snap = policy_snapshot(_objects(), "ns")
    model, tier = snap.models[0].name, snap.tiers[0].name
    start = NOW.timestamp() // 3600 * 3600 - 24 * 3600
    read = DemandRead(
        histories=(
            _history(FlowKey(model=model, origin="eu-west", tier=tier), 24, start),
            _history(FlowKey(model="ghost", origin="eu-west", tier=tier), 24, start),
        ),
        start=start,
        step_seconds=3600,
        newest_sample=NOW.timestamp() - 30,
        age_seconds=30.0,
    )
    d = demand_from_read(pol, snap, read, NOW.timestamp())
    assert d.source == "prometheus" and d.age_seconds == 30.0
    assert [f.key.model for f in d.forecasts] == [model]
    assert "1 flows ignored" in d.message and "ghost/eu-west" in d.message
    f = d.forecasts[0]
    assert f.steps == 4 and math.isclose(f.point.prompt_tokens_per_s[0], 100.0, rel_tol=0.05)


def test_stale_demand_is_an_error_and_no_data_falls_back_to_quotas():
    pol = _policy()
    snap = policy_snapshot(_objects(), "ns")
    key = FlowKey(model=snap.models[0].name, origin="eu-west", tier=snap.tiers[0].name)
    old = DemandRead((_history(key, 4, 0.0),), 0.0, 3600, 1000.0, 7200.0)
    with pytest.raises(StaleDemand, match=r"7200s old.*maxDataAgeSeconds 900"):
        demand_from_read(pol, snap, old, NOW.timestamp())
    empty = DemandRead((), 0.0, 3600, None, None)
    d = demand_from_read(pol, snap, empty, NOW.timestamp())
    assert d.source == "quota" and "no demand data in Prometheus" in d.message


def test_known_flows_drops_unknown_tiers():
    snap = policy_snapshot(_objects(), "ns")
    pol = _policy()
    d = quota_fallback(pol, snap, NOW.timestamp(), "x")
    fc = {f.key: f for f in d.forecasts}
    bad = d.forecasts[0].model_copy(update={"key": FlowKey(model="m", origin="x", tier="y")})
    keep, dropped = known_flows({**fc, bad.key: bad}, snap)
    assert len(keep) == len(fc) and dropped == [bad.key]


def test_a_cycle_makes_a_plan_that_names_its_demand():
    pol = _policy()
    snap = policy_snapshot(_objects(), "ns")
    d = quota_fallback(pol, snap, NOW.timestamp(), "no Prometheus data")
    r = run_cycle(pol, snap, d, CurrentState(), NOW)
    assert r.spec is not None and r.failure is None
    assert r.spec.policy == pol.name and r.spec.made_at == NOW and r.spec.steps == 4
    assert r.spec.cost_per_hour > 0 and r.spec.nodes and r.spec.replicas
    assert "no Prometheus data" in r.spec.solver.message
    assert r.solver_status in ("Optimal", "Feasible")


def test_an_infeasible_fleet_writes_no_plan_and_says_why():
    pol = _policy()
    objs = _objects()
    model = next(o for o in objs if o.info.kind == "LLMModel")
    objs[objs.index(model)] = model.model_copy(
        update={"spec": model.spec.model_copy(update={"min_replicas_per_region": 100000})}
    )
    snap = policy_snapshot(objs, "ns")
    r = run_cycle(pol, snap, quota_fallback(pol, snap, NOW.timestamp(), "x"), CurrentState(), NOW)
    assert r.spec is None and r.solver_status == "Infeasible"
    assert r.failure_reason == "SolveInfeasible"
    assert r.failure and "min replicas need" in r.failure and "last good plan stays" in r.failure


def test_plan_record_is_owned_by_the_policy_and_round_trips():
    pol = _policy()
    snap = policy_snapshot(_objects(), "ns")
    r = run_cycle(pol, snap, quota_fallback(pol, snap, NOW.timestamp(), "x"), CurrentState(), NOW)
    assert r.spec is not None
    name = plan_name(pol.name, NOW)
    assert name == "default-20261123150709"
    obj = fleet_plan_object(r.spec, name, "ns", {"name": pol.name, "uid": "u-1"})
    (owner,) = obj["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "llmfleet.dev/v1alpha1", "kind": "FleetPolicy", "name": "default",
        "uid": "u-1", "controller": True,
    }  # fmt: skip
    assert obj["metadata"]["labels"] == {"llmfleet.dev/policy": "default"}
    assert FleetPlan.from_wire(obj).spec == r.spec


def test_only_the_newest_plans_are_kept():
    plans = [
        {"metadata": {"name": f"p-{i}"}, "spec": {"madeAt": f"2026-11-23T10:0{i}:00Z"}}
        for i in (3, 1, 4, 2, 5)
    ]
    assert plans_to_delete(plans, 3) == ["p-1", "p-2"]
    assert plans_to_delete(plans, 10) == []


def test_due_when_never_planned_when_the_spec_changed_or_the_time_came():
    planned = {"type": "Planned", "status": "True", "observedGeneration": 2}
    later = (NOW + timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert is_due({}, 2, NOW)
    assert is_due({"conditions": [planned], "nextRunTime": later}, 3, NOW)
    assert not is_due({"conditions": [planned], "nextRunTime": later}, 2, NOW)
    assert is_due({"conditions": [planned], "nextRunTime": later}, 2, NOW + timedelta(seconds=61))


def test_conditions_merge_into_what_was_written_meanwhile():
    from llmfleet.controller.planning import _Conditions

    old_valid = {"type": "Valid", "status": "True", "reason": "A", "message": "a",
                 "lastTransitionTime": "2026-11-23T15:00:00Z", "observedGeneration": 1}  # fmt: skip
    cond = _Conditions([old_valid], NOW, 2)
    cond.set("Planned", "True", "PlanRecorded", "ok")
    new_valid = {**old_valid, "reason": "B", "observedGeneration": 2}
    merged = cond.merged_into([new_valid])
    assert [c["type"] for c in merged] == ["Planned", "Valid"]
    assert merged[1] == new_valid and merged[0]["reason"] == "PlanRecorded"
