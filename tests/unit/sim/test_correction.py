"""llmfleet's short-term correction between plans: the last minute's demand, routed along
the plan, at the planner's capacity per replica, adds what is missing at once."""

from __future__ import annotations

import math

from conftest import tiny_scenario
from llmfleet.forecast.types import FlowKey
from llmfleet.plan.capacity import replica_throughput
from llmfleet.sim.policies.planner import Llmfleet
from llmfleet.sim.policy import FleetTarget, Observation, ReplicaStats

KEY = ("m", "r1", "gpu")
FAST = FlowKey(model="m", origin="r1", tier="fast")


def _policy() -> Llmfleet:
    pol = Llmfleet(tiny_scenario(prefill=2000.0, decode=400.0, max_seqs=16, target=0.7))
    pol.target = FleetTarget(replicas={KEY: 2}, routes={})
    pol.planned = {KEY: 2}
    return pol


def _obs(recent: dict, ready: int = 2, loading: int = 0) -> Observation:
    stats = ReplicaStats(ready=ready, loading=loading, busy=0.3, waiting=0, tokens_per_s=0.0)
    return Observation(now=600.0, start_unix=0.0, step_seconds=300, history={}, nodes={},
                       replicas={KEY: stats}, recent=recent, recent_seconds=60.0)


def _per_replica(pol: Llmfleet, prompt: int = 300, out: int = 60) -> float:
    return replica_throughput(pol.fleet.profiles[KEY], pol.fleet.tiers["fast"],
                              prompt / (prompt + out), prompt + out)


def test_a_burst_that_needs_more_replicas_gets_them_at_the_next_correction():
    pol = _policy()
    cap = _per_replica(pol)
    rps = 5.2 * cap / 360  # tokens/s for 5.2 replicas at 360 tokens a request
    t = pol.react(_obs({FAST: (rps, rps * 300, rps * 60)}))
    assert t is not None and t.replicas[KEY] == math.ceil(5.2)


def test_replicas_on_their_way_count_and_noise_within_the_margin_changes_nothing():
    pol = _policy()
    cap = _per_replica(pol)
    rps = 2.15 * cap / 360  # 7.5% over the two replicas: within the 10% margin
    assert pol.react(_obs({FAST: (rps, rps * 300, rps * 60)})) is None
    rps = 5.0 * cap / 360
    assert pol.react(_obs({FAST: (rps, rps * 300, rps * 60)}, ready=2, loading=3)) is None


def test_deadline_work_never_triggers_the_demand_rule():
    pol = _policy()
    batch = FlowKey(model="m", origin="r1", tier="batch")
    assert pol.react(_obs({batch: (100.0, 1e6, 1e5)})) is None


class _Recorder:
    """One replica; records what each correction sees of the last minute's demand."""

    name = "recorder"
    interval_seconds = 3600.0
    react_seconds = 60.0

    def __init__(self) -> None:
        self.seen: list[tuple[float, dict]] = []

    def decide(self, obs: Observation) -> FleetTarget:
        del obs
        return FleetTarget(replicas={KEY: 1}, routes={})

    def react(self, obs: Observation) -> None:
        self.seen.append((obs.now, dict(obs.recent)))


def test_the_engine_reports_the_last_minutes_arrivals_per_flow_and_nothing_later():
    from conftest import hand_workload
    from llmfleet.sim.engine import Engine

    sc = tiny_scenario()
    # 30 fast requests in [0, 60) of 100 prompt / 10 output tokens, 6 more in [60, 120)
    arr = [2.0 * i for i in range(30)] + [60.0 + 10.0 * i for i in range(6)]
    wl = hand_workload(arr, [100] * 36, [10] * 36, duration=200.0)
    pol = _Recorder()
    Engine(sc.snapshot(), wl, pol, sc.engine).run()
    seen = dict(pol.seen)
    assert seen[60.0][FAST] == (30 / 60, 3000 / 60, 300 / 60)
    assert seen[120.0][FAST] == (6 / 60, 600 / 60, 60 / 60)
    assert FAST not in seen[180.0]


def test_the_correction_never_asks_a_pool_for_more_than_its_max_nodes_hold():
    pol = _policy()  # one pool: 10 nodes x 8 GPUs, one GPU a replica: 80 replicas at most
    pol.target = FleetTarget(replicas={KEY: 78}, routes={})
    cap = _per_replica(pol)
    rps = 90 * cap / 360
    t = pol.react(_obs({FAST: (rps, rps * 300, rps * 60)}, ready=78))
    assert t is not None and t.replicas[KEY] == 80
