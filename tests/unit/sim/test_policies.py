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
