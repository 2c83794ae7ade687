"""Burst handling between plans: the ingress spills to a region that meets the TTFT target,
cross-region service pays the round trip, and deadline prompts yield the prefill."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest

from conftest import hand_workload, tiny_fleet
from llmfleet.sim.engine import Engine
from llmfleet.sim.metrics import DONE
from llmfleet.sim.policy import FleetTarget, Observation
from llmfleet.sim.scenario import Scenario
from llmfleet.sim.workload import Workload


def two_regions(rtt_ms: float, **kw: object) -> Scenario:
    """The tiny fleet in r1 and a copy in r2, ``rtt_ms`` apart."""
    docs = tiny_fleet(**kw)  # type: ignore[arg-type]
    r1 = next(d for d in docs if d["kind"] == "Region")
    r2 = copy.deepcopy(r1)
    r2["metadata"]["name"] = "r2"
    r1["spec"]["latencies"] = [{"region": "r2", "rttMs": rtt_ms}]
    r2["spec"]["latencies"] = [{"region": "r1", "rttMs": rtt_ms}]
    docs.insert(1, r2)
    return Scenario.model_validate({
        "name": "two", "fleet": docs,
        "workload": {"clients": [{"source": "azure:conv", "tenant": "a", "region": "r1"}],
                     "history_days": 0},
    })


def in_two_regions(wl: Workload) -> Workload:
    """``wl`` with both regions known (every request still comes from r1)."""
    return Workload(**{**wl.__dict__, "regions": ("r1", "r2")})


@dataclass
class OnePerRegion:
    """One replica in each region; every flow routed to ``to``; the ingress spills or not."""

    spill: bool
    to: str = "r1"
    name: str = "one-per-region"
    interval_seconds: float = 60.0

    def decide(self, obs: Observation) -> FleetTarget:
        del obs
        return FleetTarget(
            replicas={("m", "r1", "gpu"): 1, ("m", "r2", "gpu"): 1},
            routes={("m", "fast", "r1"): {self.to: 1.0}}, spill=self.spill,
        )


def _run(sc: Scenario, wl: Workload, policy: object) -> Engine:
    eng = Engine(sc.snapshot(), wl, policy, sc.engine, keep_requests=True)  # type: ignore[arg-type]
    eng.run()
    return eng


def _burst(n: int = 7) -> Workload:
    # n 500-token prompts at t=0: one replica prefills them one after the other at
    # 1000 tok/s, so the k-th (from 0) has its first token at 0.5 (k + 1) s
    return in_two_regions(hand_workload([0.0] * n, [500] * n, [10] * n))


def test_without_spill_a_burst_queues_past_the_target():
    sc = two_regions(50, max_seqs=16, ttft=2.0)
    rec = _run(sc, _burst(), OnePerRegion(spill=False)).rec
    assert rec.ttft == pytest.approx([0.5 * (k + 1) for k in range(7)], abs=1e-9)
    assert rec.spilled_n == 0


def test_the_ingress_spills_a_burst_to_a_region_that_meets_the_target():
    sc = two_regions(50, max_seqs=16, ttft=2.0)
    rec = _run(sc, _burst(), OnePerRegion(spill=True)).rec
    # the first four meet the 2 s target at home (0.5 .. 2.0 s); the next three would not
    # (2.5 .. 3.5 s) and go to r2, paying its 50 ms round trip
    assert (rec.status == DONE).all()
    assert rec.ttft == pytest.approx([0.5, 1.0, 1.5, 2.0, 0.55, 1.05, 1.55], abs=1e-9)
    assert rec.spilled_n == 3


def test_a_spill_never_goes_where_the_target_is_missed_too():
    # ten prompts: two replicas hold eight within 2 s; the last two miss either way and
    # stay home (where they wait least of all: no round trip)
    sc = two_regions(50, max_seqs=16, ttft=2.0)
    rec = _run(sc, _burst(10), OnePerRegion(spill=True)).rec
    assert rec.spilled_n == 3
    assert rec.ttft[7:] == pytest.approx([2.5, 3.0, 3.5], abs=1e-9)


def test_no_spill_where_the_round_trip_alone_misses_the_target():
    sc = two_regions(2500, max_seqs=16, ttft=2.0)
    rec = _run(sc, _burst(), OnePerRegion(spill=True)).rec
    assert rec.spilled_n == 0
    assert rec.ttft.max() == pytest.approx(3.5)


def test_service_in_another_region_pays_the_round_trip():
    sc = two_regions(80, max_seqs=16, ttft=2.0)
    wl = in_two_regions(hand_workload([0.0], [500], [10]))
    rec = _run(sc, wl, OnePerRegion(spill=False, to="r2")).rec
    # prefill 0.5 s, first token +0.08 s; 10 tokens at D / (s C) = 100 / 4 = 25 tok/s: 0.4 s
    assert rec.ttft[0] == pytest.approx(0.58)
    assert rec.e2e[0] == pytest.approx(0.98)


class OneReplica:
    name = "one"
    interval_seconds = 60.0

    def decide(self, obs: Observation) -> FleetTarget:
        del obs
        return FleetTarget(replicas={("m", "r1", "gpu"): 1}, routes={})


def test_deadline_prompts_yield_the_prefill_to_interactive_ones():
    sc = two_regions(50, max_seqs=16, ttft=2.0)
    # t=0 a batch prompt (1 s of prefill) starts at once; at t=0.1 a second batch prompt
    # and then an interactive one are admitted: the interactive one is prefilled first,
    # at 1.0..1.5 (TTFT 1.4), the batch one after it (1.5..2.5)
    wl = in_two_regions(hand_workload([0.0, 0.1, 0.1], [1000, 1000, 500], [10, 10, 10],
                                      tiers=[0, 0, 1]))
    rec = _run(sc, wl, OneReplica()).rec
    assert (rec.status == DONE).all()
    assert rec.ttft[2] == pytest.approx(1.4)
    assert rec.ttft[1] == pytest.approx(2.4)
