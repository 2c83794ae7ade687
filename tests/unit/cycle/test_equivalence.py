"""The controller and the twin run one planning cycle: the same inputs through the kopf
timer's adapter and through the twin's llmfleet policy give the same plan."""

from __future__ import annotations

import contextlib
import dataclasses
from datetime import UTC, datetime
from typing import Any

import kopf
import pytest

from llmfleet.controller import planning
from llmfleet.controller.metrics import FleetMetrics
from llmfleet.cycle import DemandRead, policy_snapshot
from llmfleet.forecast.types import DemandHistory, DemandRates, FlowKey
from llmfleet.kube.actuate import ActuationResult, Observation
from llmfleet.sim.policies.planner import Llmfleet
from llmfleet.sim.policy import Observation as TwinObservation
from llmfleet.sim.policy import ReplicaStats
from support.cycles import FakeSource
from support.tiny import tiny_scenario

START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC).timestamp()
FAST = FlowKey(model="m", origin="r1", tier="fast")
BATCH = FlowKey(model="m", origin="r1", tier="batch")


def _history(key: FlowKey, tok: float, steps: int, now: float) -> DemandHistory:
    wave = [tok * (1.0 + 0.3 * ((i % 12) / 12.0)) for i in range(steps)]
    return DemandHistory(
        key=key,
        start=now - steps * 300,
        step_seconds=300,
        rates=DemandRates(
            requests_per_s=tuple(w / 500.0 for w in wave),
            prompt_tokens_per_s=tuple(0.8 * w for w in wave),
            output_tokens_per_s=tuple(0.2 * w for w in wave),
        ),
    )


class _Cluster:
    """The hub as the adapter sees it: records the FleetPlans written."""

    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []

    def apply(self, obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
        self.applied.append(obj)
        return obj

    def list(self, *a: Any, **kw: Any) -> list[dict[str, Any]]:
        return []

    def get(self, *a: Any, **kw: Any) -> None:
        return None

    def delete(self, *a: Any, **kw: Any) -> None:
        return None

    def close(self) -> None:
        return None


@pytest.mark.parametrize("tok", [400.0, 4000.0])
def test_controller_and_twin_make_the_same_plan_from_the_same_inputs(monkeypatch, tok):
    scenario = tiny_scenario()
    now = START + 3 * 3600
    histories = {k: _history(k, tok if k == FAST else tok / 4, 48, now) for k in (FAST, BATCH)}
    nodes = {("r1", "gpu"): 1}
    replicas = {("m", "r1", "gpu"): 2}

    # the twin: its observation of the same fleet and history
    twin = Llmfleet(scenario)
    obs = TwinObservation(
        now=now - START, start_unix=START, step_seconds=300, history=histories, nodes=nodes,
        replicas={k: ReplicaStats(ready=v, loading=0, busy=0.5, waiting=0, tokens_per_s=0.0)
                  for k, v in replicas.items()},
    )  # fmt: skip
    twin.decide(obs)
    assert twin.last_spec is not None

    # the controller: the kopf timer's adapter, with Prometheus and the clusters answering
    # what the twin saw
    read = DemandRead(tuple(histories.values()), now - 48 * 300, 300, now, 0.0)
    monkeypatch.setattr(planning, "DemandReader", lambda source, **_: FakeSource(read_result=read))
    monkeypatch.setattr(
        planning, "observe", lambda *a: Observation(nodes=dict(nodes), replicas=dict(replicas))
    )
    monkeypatch.setattr(planning, "RegionClusters", lambda cluster, **_: contextlib.nullcontext())
    monkeypatch.setattr(planning, "actuate", lambda *a, **k: ActuationResult(dry_run=True))
    monkeypatch.setattr(planning.kopf, "event", lambda *a, **k: None)
    hub = _Cluster()
    loop = planning.PlanningLoop(
        planning.PlanningSettings(),
        FleetMetrics(),
        connect=lambda: hub,  # type: ignore[arg-type,return-value]
        wall_clock=lambda: datetime.fromtimestamp(now, UTC),
    )
    objects = scenario.objects()
    policy = next(o for o in objects if o.info.kind == "FleetPolicy")
    wire = policy.to_wire()
    wire["metadata"] |= {"namespace": "default", "uid": "u-1", "generation": 1}
    body = kopf.Body(wire)
    patch = kopf.Patch()
    index = {
        ("all", i): [o] for i, o in enumerate(o for o in objects if o.info.kind != "FleetPolicy")
    }
    loop.tick(body=body, status=body.status, patch=patch, logger=planning.log, idx_all=index)

    plans = [o for o in hub.applied if o.get("kind") == "FleetPlan" and "spec" in o]
    assert len(plans) == 1, patch
    ctl = plans[0]["spec"]
    mine = twin.last_spec.to_wire()
    # the same planning instance (its digest covers every input), hence the same plan
    assert ctl["inputsDigest"] == mine["inputsDigest"]
    for key in ("nodes", "replicas", "routing", "costPerHour", "throttles", "unmet", "explanation"):
        assert ctl.get(key) == mine.get(key), key
    assert plans[0]["metadata"]["name"] == twin.last_name


# ---------------------------------------------------------------- the short-term correction


@pytest.mark.parametrize("after_plan", [False, True])
def test_the_controller_and_the_twin_run_one_short_term_correction(after_plan):
    """The same fleet, load and last minute's demand through the controller's adapter
    (kube observation, vLLM's gauges, the gateway's rates) and the twin's policy (its
    observation) give the same correction."""
    from llmfleet.controller.correction import correction_inputs
    from llmfleet.cycle.correction import correct, plan_replicas, plan_routes
    from support.plans import fleet_plan

    sc = tiny_scenario(max_seqs=16)
    key = ("m", "r1", "gpu")
    spec = fleet_plan(nodes={("r1", "gpu"): 1}, replicas={key: 3},
                      routing={("m", "fast", "r1"): {"r1": 1.0}}, policy="tiny", gpu_type="G")  # fmt: skip
    recent = {FAST: (0.9, 675.0, 135.0), BATCH: (50.0, 1e5, 1e4)}  # 2.9 replicas' worth
    # the twin: 3 wanted, 3 ready, 95% of slots busy, 6 queued
    twin = Llmfleet(sc)
    twin.planned, twin.last_spec = plan_replicas(spec), spec
    twin.target = dataclasses.replace(twin.target, replicas={key: 3}, routes=plan_routes(spec))
    stats = ReplicaStats(ready=3, loading=0, busy=0.95, waiting=6, tokens_per_s=0.0)
    obs = TwinObservation(now=600.0, start_unix=START, step_seconds=300, history={}, nodes={},
                          replicas={key: stats}, recent=recent, recent_seconds=60.0)  # fmt: skip
    by_twin = correct(twin.correction_inputs(obs, after_plan=after_plan))
    # the controller: Deployment spec/ready replicas, vLLM running and waiting per cell
    kube = Observation(replicas={key: 3}, ready_replicas={key: 3})
    running = {("m", "r1"): 0.95 * 3 * 16}
    by_controller = correct(correction_inputs(
        sc.snapshot().policies[0], policy_snapshot(sc.objects(), "default"), spec, kube,
        recent, running, {("m", "r1"): 6.0}, after_plan=after_plan))  # fmt: skip
    assert by_twin == by_controller
    if after_plan:  # the demand is within its margin; the load rule waits after a plan
        assert not by_twin.changed and by_twin.replicas == {key: 3}
    else:  # (0.95 x 48 + 6) / 48 slots = 107.5% > 90%: one more
        assert [(a.rule, a.replicas) for a in by_twin.additions] == [("load", 1)]
        assert by_twin.replicas == {key: 4}
