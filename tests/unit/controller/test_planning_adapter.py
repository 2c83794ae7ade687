"""The kopf adapter around the cycle: one failure path, a loop that never dies, liveness,
a failed plan retried, unfinished plans superseded."""

from __future__ import annotations

import contextlib
import itertools
import json
from datetime import UTC, datetime
from typing import Any

import kopf
import pytest
from prometheus_client import generate_latest

from llmfleet.controller import planning
from llmfleet.controller.metrics import FleetMetrics
from llmfleet.controller.operator import EndlessBackoffs
from llmfleet.cycle import DemandRead
from llmfleet.cycle.correction import CorrectionFleet
from llmfleet.forecast.types import FlowKey
from llmfleet.kube.actuate import ActuationResult, Observation
from llmfleet.plan.capacity import replica_throughput
from support.cycles import FakeSource
from support.plans import fleet_plan
from support.tiny import tiny_scenario

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


class _Hub:
    def __init__(self, plans: list[dict[str, Any]] | None = None) -> None:
        self.applied: list[dict[str, Any]] = []
        self.plans = plans or []
        self.docs: dict[str, dict[str, Any]] = {}

    def apply(self, obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
        self.applied.append(obj)
        return obj

    def list(self, api: str, kind: str, *a: Any, **kw: Any) -> list[dict[str, Any]]:
        return self.plans if kind == "FleetPlan" else []

    def get(self, api: str, kind: str, name: str, namespace: str | None = None) -> Any:
        return self.docs.get(name)

    def delete(self, *a: Any, **kw: Any) -> None:
        return None

    def close(self) -> None:
        return None


@pytest.fixture
def wired(monkeypatch):
    """The adapter with every I/O port faked; returns (loop, hub, events, tick)."""
    events: list[dict[str, Any]] = []
    actuated: list[str] = []
    monkeypatch.setattr(planning.kopf, "event", lambda body, **kw: events.append(kw))
    monkeypatch.setattr(planning, "observe", lambda *a: Observation())
    monkeypatch.setattr(planning, "RegionClusters", lambda cluster, **_: contextlib.nullcontext())

    def fake_actuate(clusters, snapshot, spec, policy, namespace, dry_run=False, **kw):
        actuated.append(spec.policy)
        return ActuationResult(dry_run=dry_run)

    monkeypatch.setattr(planning, "actuate", fake_actuate)
    empty = DemandRead((), 0.0, 300, None, None)
    monkeypatch.setattr(planning, "DemandReader", lambda source, **_: FakeSource(read_result=empty))
    hub = _Hub()
    clock = itertools.count(1000.0, 1.0)
    now = [1000.0]
    loop = planning.PlanningLoop(
        planning.PlanningSettings(retry_seconds=60.0), FleetMetrics(),
        connect=lambda: hub,  # type: ignore[arg-type,return-value]
        clock=lambda: now[0], wall_clock=lambda: NOW,
    )  # fmt: skip
    del clock
    objects = tiny_scenario().objects()
    index = {("i", n): [o] for n, o in enumerate(o for o in objects if o.info.kind != "FleetPolicy")}
    policy = next(o for o in objects if o.info.kind == "FleetPolicy")

    def tick(mode: str = "plan-only", status: dict[str, Any] | None = None) -> kopf.Patch:
        wire = policy.to_wire()
        wire["spec"]["mode"] = mode
        wire["metadata"] |= {"namespace": "default", "uid": "u-1", "generation": 1}
        wire["status"] = status or {}
        body = kopf.Body(wire)
        patch = kopf.Patch()
        loop.tick(body=body, status=body.status, patch=patch, logger=planning.log, idx_all=index)
        return patch

    return loop, hub, events, tick, now, actuated


def _cond(patch: kopf.Patch, type_: str) -> dict[str, Any]:
    return next(c for c in patch.status["conditions"] if c["type"] == type_)


def test_a_crash_anywhere_in_the_cycle_is_a_condition_an_event_and_a_metric(wired, monkeypatch):
    loop, _hub, events, tick, _now, _a = wired

    def boom(*a: Any, **k: Any) -> None:
        raise ZeroDivisionError("a bug nobody foresaw")

    monkeypatch.setattr(planning, "run_cycle", boom)
    patch = tick()  # never raises
    c = _cond(patch, "Planned")
    assert (c["status"], c["reason"]) == ("False", "CycleCrashed")
    assert "ZeroDivisionError: a bug nobody foresaw" in c["message"]
    assert [e["reason"] for e in events] == ["CycleCrashed"]
    assert patch.status["nextRunTime"] == "2026-11-23T15:01:00Z"  # retried soon (60 s)
    text = generate_latest(loop.metrics.registry).decode()
    assert "llmfleet_planning_cycle_crashes_total 1.0" in text


def test_liveness_fails_when_no_cycle_finished_for_a_few_intervals(wired):
    loop, _hub, _events, tick, now, _a = wired
    tick()
    assert loop.stalled() == []
    now[0] += 3 * 300 + 60 - 1  # tiny policy: intervalSeconds 300
    assert loop.stalled() == []
    now[0] += 2
    assert loop.stalled() == ["u-1"]
    tick(status={})  # a cycle finishes: alive again
    assert loop.stalled() == []
    loop.forget("u-1")
    now[0] += 10_000
    assert loop.stalled() == []  # a deleted policy is not watched


def test_kopfs_api_retries_never_give_up():
    b = EndlessBackoffs(cap=30.0)
    first = list(itertools.islice(iter(b), 10))
    assert first == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0, 30.0]
    assert list(itertools.islice(iter(b), 3)) == [1.0, 2.0, 4.0]  # a fresh start per request


def test_a_plan_whose_actuation_failed_is_retried_when_no_new_plan_is_made(wired):
    _loop, hub, _events, tick, _now, actuated = wired
    spec = fleet_plan(replicas={("m", "r1", "gpu"): 2})
    hub.docs["p-1"] = {"apiVersion": "llmfleet.dev/v1alpha1", "kind": "FleetPlan",
                       "metadata": {"name": "p-1", "namespace": "default"}, "spec": spec.to_wire()}  # fmt: skip
    # no demand data and a last plan: no new plan; the last one is not applied yet
    patch = tick(mode="apply", status={"lastPlan": "p-1"})
    assert _cond(patch, "Planned")["reason"] == "NoDemandData"
    assert actuated == [spec.policy] and patch.status["lastAppliedPlan"] == "p-1"
    # once it is applied, nothing is re-actuated
    actuated.clear()
    tick(mode="apply", status={"lastPlan": "p-1", "lastAppliedPlan": "p-1"})
    assert actuated == []


def test_a_new_plan_supersedes_the_unfinished_older_ones(wired):
    _loop, hub, _events, tick, _now, _a = wired
    hub.plans = [
        {"metadata": {"name": "p-old"}, "spec": {"madeAt": "2026-11-23T10:00:00Z"}, "status": {"phase": "Applying"}},
        {"metadata": {"name": "p-done"}, "spec": {"madeAt": "2026-11-23T11:00:00Z"}, "status": {"phase": "Applied"}},
    ]  # fmt: skip
    patch = tick()  # no last plan: the quotas' fallback makes a plan
    assert _cond(patch, "Planned")["reason"] == "PlanRecorded", patch.status
    statuses = {o["metadata"]["name"]: o["status"] for o in hub.applied if "status" in o}
    assert statuses["p-old"]["phase"] == "Superseded"
    assert statuses["p-old"]["supersededBy"] == patch.status["lastPlan"]
    assert "p-done" not in statuses


def _router_config_map(shares_json: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "llmfleet-router", "namespace": "default"},
            "data": {"router.json": "{}", "shares.json": shares_json}}  # fmt: skip


def test_the_router_shares_are_read_into_the_cycle(wired, monkeypatch):
    _loop, hub, events, tick, _now, _a = wired
    seen: list[Any] = []
    real = planning.run_cycle

    def spy(inputs: Any, ports: Any) -> Any:
        seen.append(inputs.router_shares)
        return real(inputs, ports)

    monkeypatch.setattr(planning, "run_cycle", spy)
    patch = tick()
    assert seen == [None]  # no ConfigMap: no routing split, no warning
    assert _cond(patch, "RouterSharesRead")["reason"] == "NoShares"
    assert not [e for e in events if e["type"] == "Warning"]
    doc = {"apiVersion": "llmfleet.dev/router-shares/v1", "tiers": {"t": {"reference": "m",
           "options": [{"model": "m", "requests": 1, "promptTokens": 1, "outputTokens": 1}]}}}  # fmt: skip
    hub.docs["llmfleet-router"] = _router_config_map(json.dumps(doc))
    patch = tick(status={})
    assert seen[-1] is not None and [t.tier for t in seen[-1].tiers] == ["t"]
    c = _cond(patch, "RouterSharesRead")
    assert (c["status"], c["reason"]) == ("True", "SharesRead")


def test_malformed_router_shares_are_a_condition_and_an_event_not_a_failed_cycle(wired):
    _loop, hub, events, tick, _now, _a = wired
    hub.docs["llmfleet-router"] = _router_config_map('{"apiVersion": "llmfleet.dev/router-shares/v1"')
    patch = tick()
    c = _cond(patch, "RouterSharesRead")
    assert (c["status"], c["reason"]) == ("False", "SharesInvalid")
    assert "ConfigMap default/llmfleet-router: data['shares.json']: not valid JSON" in c["message"]
    warned = [e for e in events if e["reason"] == "SharesInvalid"]
    assert warned and warned[0]["type"] == "Warning" and "shares.json" in warned[0]["message"]
    assert _cond(patch, "Planned")["reason"] == "PlanRecorded"  # planned without a split


# ---------------------------------------------------------------- the short-term correction

FAST = FlowKey(model="m", origin="r1", tier="fast")


def _burst(replicas: float) -> tuple[float, float, float]:
    """The last minute's demand of ``fast`` that ``replicas`` replicas of the tiny model serve
    (300 prompt and 60 output tokens a request)."""
    fleet = CorrectionFleet.of(tiny_scenario().snapshot())
    cap = replica_throughput(fleet.profiles[("m", "r1", "gpu")], fleet.tiers["fast"], 300 / 360, 360)
    rps = replicas * cap / 360
    return rps, rps * 300, rps * 60


@pytest.fixture
def correcting(wired, monkeypatch):
    """``wired`` with one Prometheus source the test sets, and the actuated specs kept."""
    loop, hub, events, tick, now, _actuated = wired
    src = FakeSource(read_result=DemandRead((), 0.0, 300, None, None))
    monkeypatch.setattr(planning, "DemandReader", lambda source, **_: src)
    specs: list[Any] = []

    def fake_actuate(clusters, snapshot, spec, policy, namespace, dry_run=False, **kw):
        specs.append(spec)
        return ActuationResult(dry_run=dry_run)

    monkeypatch.setattr(planning, "actuate", fake_actuate)
    return loop, hub, events, tick, now, src, specs


def _replicas(spec: Any) -> dict[tuple[str, str, str], int]:
    return {(r.model, r.region, r.pool): r.replicas for r in spec.replicas if r.replicas}


def test_a_new_plan_is_actuated_with_what_the_last_minutes_demand_still_needs(correcting):
    _loop, hub, events, tick, _now, src, specs = correcting
    src.recent = {FAST: _burst(7.5)}
    patch = tick(mode="apply")  # no last plan: the quotas' fallback plans
    assert _cond(patch, "Planned")["reason"] == "PlanRecorded", patch.status
    recorded = next(o for o in hub.applied if o.get("kind") == "FleetPlan" and "spec" in o)
    planned = sum(r["replicas"] for r in recorded["spec"]["replicas"])
    assert planned < 8 and src.recent_windows == [60]  # spec.correction.windowSeconds
    assert _replicas(specs[-1]) == {("m", "r1", "gpu"): 8}  # ceil(7.5): the plan plus the burst
    assert patch.status["correctedReplicas"] == 8 - planned
    c = _cond(patch, "Corrected")
    assert (c["status"], c["reason"]) == ("True", "AbovePlan")
    assert "demand: the last 60s need 7.5 replicas" in c["message"]
    assert any(e["reason"] == "Corrected" for e in events)


def _applied_plan(hub: Any, replicas: int) -> dict[str, Any]:
    spec = fleet_plan(nodes={("r1", "gpu"): 1}, replicas={("m", "r1", "gpu"): replicas},
                      policy="tiny", gpu_type="G")  # fmt: skip
    hub.docs["p-1"] = {"apiVersion": "llmfleet.dev/v1alpha1", "kind": "FleetPlan",
                       "metadata": {"name": "p-1", "namespace": "default"}, "spec": spec.to_wire()}  # fmt: skip
    planned = {"type": "Planned", "status": "True", "reason": "PlanRecorded", "message": "",
               "observedGeneration": 1, "lastTransitionTime": "2026-11-23T14:00:00Z"}  # fmt: skip
    return {"lastPlan": "p-1", "lastAppliedPlan": "p-1", "conditions": [planned],
            "nextRunTime": "2026-11-23T16:00:00Z"}  # fmt: skip


def test_between_plans_the_correction_runs_every_interval_on_the_applied_plan(correcting, monkeypatch):
    _loop, hub, _events, tick, now, src, specs = correcting
    status = _applied_plan(hub, 2)
    monkeypatch.setattr(planning, "observe", lambda *a: Observation(
        replicas={("m", "r1", "gpu"): 2}, ready_replicas={("m", "r1", "gpu"): 2}))
    src.recent = {FAST: _burst(4.6)}
    patch = tick(mode="apply", status=status)
    assert "lastRunTime" not in patch.status  # no plan: a correction
    assert [_replicas(s) for s in specs] == [{("m", "r1", "gpu"): 5}]
    assert [n.nodes for n in specs[0].nodes] == [1]  # 5 one-GPU replicas fit one 8-GPU node
    assert patch.status["correctedReplicas"] == 3
    assert _cond(patch, "Corrected")["reason"] == "AbovePlan"
    tick(mode="apply", status=status)  # within spec.correction.intervalSeconds: nothing
    assert len(specs) == 1 and len(src.recent_windows) == 1
    now[0] += 60
    tick(mode="apply", status=status)  # due again; the fleet still has 2: corrected again
    assert len(specs) == 2
    now[0] += 60
    tick(mode="plan-only", status=status)  # due, but plan-only: never corrected
    assert len(specs) == 2 and len(src.recent_windows) == 2


def test_a_correction_that_cannot_read_its_demand_changes_nothing_and_says_why(correcting):
    _loop, hub, _events, tick, _now, src, specs = correcting
    from llmfleet.cycle.ports import SourceUnreachable

    status = _applied_plan(hub, 2)
    src.recent = SourceUnreachable("Prometheus http://prom.test: connection refused")
    patch = tick(mode="apply", status=status)
    assert specs == []
    c = _cond(patch, "Corrected")
    assert (c["status"], c["reason"]) == ("False", "CorrectionReadFailed")
    assert "connection refused" in c["message"]


def test_a_fleet_within_its_plan_is_left_as_it_is(correcting, monkeypatch):
    _loop, hub, events, tick, _now, src, specs = correcting
    status = _applied_plan(hub, 2)
    monkeypatch.setattr(planning, "observe", lambda *a: Observation(
        replicas={("m", "r1", "gpu"): 2}, ready_replicas={("m", "r1", "gpu"): 2}))
    src.recent = {FAST: _burst(2.1)}  # within the 10% margin of the two replicas
    patch = tick(mode="apply", status=status)
    assert specs == []
    c = _cond(patch, "Corrected")
    assert (c["status"], c["reason"]) == ("False", "AsPlanned")
    assert "correctedReplicas" not in patch.status
    assert not [e for e in events if e["reason"] == "Corrected"]
