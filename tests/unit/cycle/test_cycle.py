"""The planning cycle's pure pieces: snapshot, demand, one cycle, plan records, schedule."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from llmfleet.api.conditions import DEMAND_READ, DEMAND_STALE, PLANNED, Reason
from llmfleet.api.loading import load_manifests
from llmfleet.api.plan import FleetPlan
from llmfleet.api.policy import FleetPolicy
from llmfleet.controller.planning import _Conditions
from llmfleet.cycle import BadQuery, DemandFailure, DemandRead, SourceUnreachable, policy_snapshot
from llmfleet.cycle.demand import demand_from_read, known_flows, quota_fallback
from llmfleet.cycle.ports import forecast_histories
from llmfleet.cycle.records import (
    fleet_plan_object,
    is_due,
    plan_name,
    plans_to_delete,
    plans_to_supersede,
)
from llmfleet.forecast.types import DemandHistory, DemandRates, FlowKey
from support.builders import SAMPLES, planning_policy
from support.cycles import NOW, FakeSource, cycle

WHERE = "Prometheus http://prom.test"


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
    d = demand_from_read(pol, snap, read, NOW.timestamp(), forecast_histories, WHERE)
    assert not isinstance(d, DemandFailure)
    assert d.source == "history" and d.age_seconds == 30.0
    assert [f.key.model for f in d.forecasts] == [model]
    assert "1 flows ignored" in d.message and "ghost/eu-west" in d.message
    f = d.forecasts[0]
    assert f.steps == 4 and math.isclose(f.point.prompt_tokens_per_s[0], 100.0, rel_tol=0.05)


def test_stale_demand_is_a_failure_and_no_data_falls_back_to_quotas():
    pol = _policy()
    snap = policy_snapshot(_objects(), "ns")
    key = FlowKey(model=snap.models[0].name, origin="eu-west", tier=snap.tiers[0].name)
    old = DemandRead((_history(key, 4, 0.0),), 0.0, 3600, 1000.0, 7200.0)
    f = demand_from_read(pol, snap, old, NOW.timestamp(), forecast_histories, WHERE)
    assert isinstance(f, DemandFailure) and f.reason == Reason.STALE_DEMAND and not f.permanent
    assert "7200s old" in f.message and "maxDataAgeSeconds 900" in f.message
    empty = DemandRead((), 0.0, 3600, None, None)
    d = demand_from_read(pol, snap, empty, NOW.timestamp(), forecast_histories, WHERE)
    assert not isinstance(d, DemandFailure)
    assert d.source == "quota" and "no demand data in Prometheus" in d.message


def _conds(r) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in r.conditions}


def test_an_unreachable_source_keeps_the_last_plan_and_retries_soon():
    pol = _policy()
    snap = policy_snapshot(_objects(), "ns")
    r = cycle(pol, snap, source=FakeSource(error=SourceUnreachable("Prometheus x unreachable")))
    assert r.spec is None and r.failure is not None
    assert (r.failure.reason, r.failure.retry, r.failure.permanent) == (
        Reason.PROMETHEUS_UNREACHABLE,
        "soon",
        False,
    )
    c = _conds(r)
    assert c[DEMAND_READ][:2] == ("False", "PrometheusUnreachable")
    assert c[DEMAND_STALE][0] == "True" and "nothing is scaled down" in c[DEMAND_STALE][2]
    assert c[PLANNED][0] == "False" and "the last plan stays" in c[PLANNED][2]


def test_a_rejected_query_is_permanent_until_the_spec_changes():
    pol = _policy()
    snap = policy_snapshot(_objects(), "ns")
    r = cycle(pol, snap, source=FakeSource(error=BadQuery("rejected promptTokens")))
    assert r.failure is not None and r.failure.permanent and r.failure.reason == "BadQuery"
    assert "fix the query" in _conds(r)[PLANNED][2]


def test_no_data_with_a_last_plan_keeps_it_and_plans_nothing():
    pol = _policy()
    snap = policy_snapshot(_objects(), "ns")
    empty = FakeSource(read_result=DemandRead((), 0.0, 3600, None, None))
    r = cycle(pol, snap, source=empty, last_plan_name="default-1")
    assert r.spec is None and r.failure is not None
    assert (r.failure.reason, r.failure.retry) == (Reason.NO_DEMAND_DATA, "soon")
    assert (
        r.failure.message
    ) == "no demand data in Prometheus http://prom.test; the last plan default-1 stays"
    assert _conds(r)[DEMAND_STALE][0] == "True"


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
    r = cycle(pol, snap)
    assert r.spec is not None and r.failure is None and r.plan is not None
    assert r.spec.policy == pol.name and r.spec.made_at == NOW and r.spec.steps == 4
    assert r.spec.cost_per_hour > 0 and r.spec.nodes and r.spec.replicas
    assert "no demand source configured" in r.spec.solver.message
    assert r.solver_status in ("Optimal", "Feasible")
    assert r.name == "default-20261123150709"
    c = _conds(r)
    assert c[PLANNED][:2] == ("True", "PlanRecorded") and r.name in c[PLANNED][2]
    assert c[DEMAND_READ][:2] == ("True", "QuotaFallback")


def test_an_infeasible_fleet_writes_no_plan_and_says_why():
    pol = _policy()
    objs = _objects()
    model = next(o for o in objs if o.info.kind == "LLMModel")
    objs[objs.index(model)] = model.model_copy(
        update={"spec": model.spec.model_copy(update={"min_replicas_per_region": 100000})}
    )
    snap = policy_snapshot(objs, "ns")
    r = cycle(pol, snap)
    assert r.spec is None and r.solver_status == "Infeasible" and r.failure is not None
    assert r.failure.reason == "SolveInfeasible" and r.failure.retry == "interval"
    assert "min replicas need" in r.failure.message and "last good plan stays" in r.failure.message


def test_plan_record_is_owned_by_the_policy_and_round_trips():
    pol = _policy()
    snap = policy_snapshot(_objects(), "ns")
    r = cycle(pol, snap)
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


def test_unfinished_older_plans_are_superseded_by_the_newest():
    plans = [
        {"metadata": {"name": "p-1"}, "status": {"phase": "Pending"}},
        {"metadata": {"name": "p-2"}, "status": {"phase": "Applying"}},
        {"metadata": {"name": "p-3"}, "status": {"phase": "Applied"}},
        {"metadata": {"name": "p-4"}},
        {"metadata": {"name": "p-5"}, "status": {"phase": "Pending"}},
    ]
    assert plans_to_supersede(plans, "p-5") == ["p-1", "p-2", "p-4"]


def test_due_when_never_planned_when_the_spec_changed_or_the_time_came():
    planned = {"type": "Planned", "status": "True", "observedGeneration": 2}
    later = (NOW + timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert is_due({}, 2, NOW)
    assert is_due({"conditions": [planned], "nextRunTime": later}, 3, NOW)
    assert not is_due({"conditions": [planned], "nextRunTime": later}, 2, NOW)
    assert is_due({"conditions": [planned], "nextRunTime": later}, 2, NOW + timedelta(seconds=61))


def test_conditions_merge_into_what_was_written_meanwhile():
    old_valid = {"type": "Valid", "status": "True", "reason": "A", "message": "a",
                 "lastTransitionTime": "2026-11-23T15:00:00Z", "observedGeneration": 1}  # fmt: skip
    cond = _Conditions([old_valid], NOW, 2)
    cond.set("Planned", "True", "PlanRecorded", "ok")
    new_valid = {**old_valid, "reason": "B", "observedGeneration": 2}
    merged = cond.merged_into([new_valid])
    assert [c["type"] for c in merged] == ["Planned", "Valid"]
    assert merged[1] == new_valid and merged[0]["reason"] == "PlanRecorded"
