"""Baseline policies react to what they observe (and only that)."""

from __future__ import annotations

from conftest import tiny_scenario
from llmfleet.sim.policies.reactive import ReactiveThreshold
from llmfleet.sim.policies.siloed import Siloed
from llmfleet.sim.policies.static import StaticPeak
from llmfleet.sim.policy import Observation, ReplicaStats

KEY = ("m", "r1", "gpu")


def _obs(now, busy, waiting=0, ready=2, backlog=0.0):
    return Observation(
        now=now, start_unix=0.0, step_seconds=300, history={}, nodes={("r1", "gpu"): 1},
        replicas={KEY: ReplicaStats(ready=ready, loading=0, busy=busy, waiting=waiting,
                                    tokens_per_s=0.0)},
        backlog_tokens={("m", "batch"): backlog} if backlog else {},
    )


def test_reactive_scales_out_at_once_and_in_after_stabilisation():
    p = ReactiveThreshold(tiny_scenario())
    assert p.decide(_obs(0, busy=0.9)).replicas[KEY] == 3  # ceil(2 * 0.9 / 0.6)
    p.current[KEY] = 3
    assert p.decide(_obs(60, busy=0.1, ready=3)).replicas[KEY] == 3  # held (window 300 s)
    assert p.decide(_obs(400, busy=0.1, ready=3)).replicas[KEY] == 1


def test_reactive_adds_replicas_for_batch_backlog():
    p = ReactiveThreshold(tiny_scenario())
    assert p.decide(_obs(0, busy=0.3, backlog=5e6)).replicas[KEY] > 1


def test_siloed_separates_lanes_and_static_never_scales_in():
    sc = tiny_scenario()
    t = Siloed(sc).decide(_obs(0, busy=0.5))
    assert set(t.pool_lanes.values()) <= {"interactive", "deadline"}
    s = StaticPeak(sc)
    first = s.decide(_obs(0, busy=0.0))
    again = s.decide(_obs(3600, busy=0.0))
    assert dict(again.replicas) == dict(first.replicas)


def _two_regions():
    """Model m may only run in r2 and r3; r1's demand for it is served in the nearer, r2."""
    from llmfleet.forecast.types import DemandHistory, DemandRates, FlowKey
    from llmfleet.sim.scenario import Scenario
    from support.tiny import tiny_fleet

    fleet = tiny_fleet()
    region = next(d for d in fleet if d["kind"] == "Region")
    region["spec"]["latencies"] = [{"region": "r2", "rttMs": 40}, {"region": "r3", "rttMs": 90}]
    for name, rtt in (("r2", 40), ("r3", 90)):
        other = {**region, "metadata": {"name": name},
                 "spec": {**region["spec"], "latencies": [{"region": "r1", "rttMs": rtt}]}}
        fleet.append(other)
    model = next(d for d in fleet if d["kind"] == "LLMModel")
    model["spec"]["allowedRegions"] = ["r2", "r3"]
    sc = Scenario.model_validate({"name": "two", "fleet": fleet, "workload": {
        "clients": [{"source": "azure:conv", "tenant": "a", "region": "r1"}], "history_days": 0}})
    fk = FlowKey(model="m", origin="r1", tier="fast")
    hist = {fk: DemandHistory(key=fk, start=0.0, step_seconds=300, rates=DemandRates(
        requests_per_s=(1.0,), prompt_tokens_per_s=(500.0,), output_tokens_per_s=(100.0,)))}
    obs = Observation(now=0.0, start_unix=0.0, step_seconds=300, history=hist, nodes={},
                      replicas={})
    return sc, obs


def test_baselines_keep_a_replica_where_demand_from_a_region_that_cannot_host_it_goes():
    sc, obs = _two_regions()
    for policy in (ReactiveThreshold(sc), Siloed(sc)):
        want = policy.decide(obs).replicas
        assert want.get(("m", "r2", "gpu"), 0) >= 1, (policy.name, want)  # the nearest host
        assert want.get(("m", "r3", "gpu"), 0) == 0, (policy.name, want)
        assert ("m", "r1", "gpu") not in want  # r1 cannot host m
