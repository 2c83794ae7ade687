"""The planner-based policies of the twin: llmfleet, the oracle and SageServe as published."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import hand_workload, tiny_scenario
from llmfleet.cycle import ports
from llmfleet.forecast.types import DemandHistory, DemandRates, FlowKey
from llmfleet.plan.sageserve import SageServePlan
from llmfleet.plan.types import NoSolutionInTime
from llmfleet.sim.policies import planner
from llmfleet.sim.policies.planner import Llmfleet, Oracle, SageServe, realised_rates
from llmfleet.sim.policy import Observation, ReplicaStats

KEY = ("m", "r1", "gpu")
FAST = FlowKey(model="m", origin="r1", tier="fast")


def _history(tok_per_s: float, steps: int = 48) -> dict[FlowKey, DemandHistory]:
    reqs = tok_per_s / 500.0
    rates = DemandRates(
        requests_per_s=(reqs,) * steps,
        prompt_tokens_per_s=(0.8 * tok_per_s,) * steps,
        output_tokens_per_s=(0.2 * tok_per_s,) * steps,
    )
    return {FAST: DemandHistory(key=FAST, start=0.0, step_seconds=300, rates=rates)}


def _obs(now=0.0, tok=2000.0, ready=0, busy=0.0, waiting=0):
    reps = {KEY: ReplicaStats(ready=ready, loading=0, busy=busy, waiting=waiting,
                              tokens_per_s=0.0)} if ready else {}
    return Observation(now=now, start_unix=0.0, step_seconds=300, history=_history(tok),
                       nodes={("r1", "gpu"): 1 if ready else 0}, replicas=reps)


def test_llmfleet_plans_more_replicas_for_more_demand_and_routes_whole_flows():
    low = Llmfleet(tiny_scenario()).decide(_obs(tok=500.0))
    high = Llmfleet(tiny_scenario()).decide(_obs(tok=5000.0))
    assert 0 < low.replicas[KEY] < high.replicas[KEY]
    for fractions in high.routes.values():
        assert sum(fractions.values()) == pytest.approx(1.0)
    assert "gap" in high.note


def test_a_failed_solve_keeps_the_last_plan(monkeypatch):
    p = Llmfleet(tiny_scenario())
    first = p.decide(_obs(tok=3000.0))
    monkeypatch.setattr(ports, "plan_fleet",
                        lambda *a, **k: NoSolutionInTime(1.0, 1.2, "test: solver stopped"))
    again = p.decide(_obs(now=300.0, tok=50.0))
    assert dict(again.replicas) == dict(first.replicas)
    assert again.note.startswith("kept last plan") and p.failures == 1


def test_correction_adds_replicas_above_the_plan_and_never_goes_below_it():
    p = Llmfleet(tiny_scenario())
    planned = p.decide(_obs(tok=2000.0)).replicas[KEY]
    calm = _obs(now=60.0, ready=planned, busy=0.5)
    assert p.react(calm) is None
    hot = p.react(_obs(now=120.0, ready=planned, busy=1.0, waiting=4 * planned))
    assert hot is not None and hot.replicas[KEY] > planned


def test_oracle_is_told_the_realised_rates_with_the_peak_as_upper():
    wl = hand_workload([10.0, 20.0, 30.0, 400.0], [100, 100, 100, 1000], [10, 10, 10, 10],
                       duration=600.0)
    rates = realised_rates(wl, 300, peak_window=100)
    mean, peak = rates[FAST]
    assert mean[:, 0] * 300 == pytest.approx([3.0, 1.0])  # requests per step
    assert (mean[:, 1] * 300).sum() == pytest.approx(1300.0)  # every prompt token counted
    assert np.all(peak >= mean)
    o = Oracle(tiny_scenario(), wl)
    obs = _obs(now=0.0)
    forecaster = o.cycle_ports(obs).forecaster
    fc = forecaster((), o.fleet_policy, obs.start_unix + obs.now)[FAST]
    assert fc.point.prompt_tokens_per_s[0] == pytest.approx(300 / 300)
    assert peak[0, 1] == pytest.approx(300 / 100)  # the busiest 100 s of the first step
    assert fc.upper.prompt_tokens_per_s[0] >= fc.point.prompt_tokens_per_s[0]
    assert len(fc.point) == 4  # past the end of the trace the last step is held


def test_sageserve_reactive_rules_out_above_half_in_below_a_quarter():
    p = SageServe(tiny_scenario())
    p.replicas = {KEY: 2}
    out = p.react(_obs(ready=2, busy=0.7))
    assert out is not None and out.replicas[KEY] == 3
    p.replicas = {KEY: 3}
    out = p.react(_obs(ready=3, busy=0.1))
    assert out is not None and out.replicas[KEY] == 2
    p.replicas = {KEY: 2}
    assert p.react(_obs(ready=2, busy=0.4)) is None


def test_sageserve_provisions_on_demand_pools_for_the_forecast():
    p = SageServe(tiny_scenario())
    t = p.decide(_obs(tok=3000.0))
    assert t.replicas.get(KEY, 0) >= 1 and t.routes == {}
    assert "ILP" in t.note


def test_sageserve_keeps_its_instances_when_the_ilp_fails(monkeypatch):
    p = SageServe(tiny_scenario())
    first = p.decide(_obs(tok=3000.0))
    dead = SageServePlan({}, {}, 0.0, float("nan"), "killed", 12.0)
    monkeypatch.setattr(planner, "solve_sageserve", lambda *a, **k: dead)
    again = p.decide(_obs(now=3600.0, tok=10.0))
    assert dict(again.replicas) == dict(first.replicas)
    assert again.note == "kept last plan: ILP killed" and p.failures == 1


def test_llmfleet_publishes_the_cycles_limits_from_the_usage_it_saw():
    import dataclasses

    calm = Llmfleet(tiny_scenario()).decide(_obs(tok=2000.0))
    assert calm.throttles is not None and {t.tenant for t in calm.throttles} == {"a", "b"}
    # tenant a sends 50x what the plan provisions: where the pool can grow the fleet grows
    # and nobody is throttled; at its maxNodes the next plan's limit holds a to a share
    obs = dataclasses.replace(_obs(tok=2000.0), tenant_usage={("a", "m", "r1"): 100_000.0})
    roomy = Llmfleet(tiny_scenario())
    roomy.decide(obs)
    assert roomy.last_result is not None and roomy.last_result.limits is not None
    assert not roomy.last_result.limits.tenant("a").throttled
    sc = tiny_scenario()
    region = next(d for d in sc.fleet if d["kind"] == "Region")
    region["spec"]["pools"][0]["maxNodes"] = 1  # one node: the plan's, no room to grow
    p = Llmfleet(sc)
    hot = p.decide(obs)
    assert hot.throttles is not None
    a = next(t for t in hot.throttles if t.tenant == "a")
    assert a.tokens_per_second < 100_000.0
    assert p.last_result is not None and p.last_result.limits is not None
    assert p.last_result.limits.tenant("a").throttled
