"""The twin's engine: hand-computed latencies, capacity vs the planner, conservation."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import Fixed, hand_workload, tiny_scenario
from llmfleet.plan.capacity import mix_throughput, replica_throughput
from llmfleet.plan.instance import profile_spec, tier_spec
from llmfleet.sim.engine import Engine
from llmfleet.sim.metrics import DONE


def _run(sc, wl, policy=None, seed=0):
    snap = sc.snapshot()
    return Engine(snap, wl, policy or Fixed(1), sc.engine, seed=seed, keep_requests=True).run()


def test_single_replica_latencies_by_hand(scenario):
    # P = 1000 tok/s, D = 100 tok/s, C = 4, saturation 0.25 C = 1 sequence.
    # A: t=0, 500 prompt, 100 output. Prefill 0..0.5 (TTFT 0.5); decodes alone at 100/s.
    # B: t=1, 200 prompt, 100 output. At t=1 A has 50 tokens; B's prefill 1.0..1.2 pauses A
    # (TTFT 0.2). Then both decode at 100/2 = 50/s: A's last 50 take 1 s (done 2.2, e2e 2.2);
    # B has 50 by 2.2, then alone at 100/s for 0.5 s (done 2.7, e2e 1.7).
    wl = hand_workload([0.0, 1.0], [500, 200], [100, 100])
    rec = _run(scenario, wl)
    assert rec.status.tolist() == [DONE, DONE]
    assert rec.ttft == pytest.approx([0.5, 0.2], abs=1e-9)
    assert rec.e2e == pytest.approx([2.2, 1.7], abs=1e-9)


def test_concurrency_cap_queues_the_third_request():
    sc = tiny_scenario(max_seqs=2)
    # three equal requests at t=0; C = 2, so the third waits for a slot
    wl = hand_workload([0.0, 0.0, 0.0], [100, 100, 100], [50, 50, 50])
    rec = _run(sc, wl)
    # A prefills 0..0.1, B 0.1..0.2 (A's decode paused meanwhile). From 0.2 A and B decode
    # at 100/max(2, 0.5) = 50/s: 50 tokens -> both done at 1.2. C is admitted at 1.2,
    # prefills 1.2..1.3 (TTFT 1.3), then decodes alone at 100/s: done 1.8 (e2e 1.8).
    assert rec.ttft == pytest.approx([0.1, 0.2, 1.3], abs=1e-9)
    assert rec.e2e == pytest.approx([1.2, 1.2, 1.8], abs=1e-9)


def test_saturated_throughput_matches_the_planner_capacity_model():
    # Stated tolerance: 3% of mu(p) = 1 / (p/P + (1-p)/D) (the planner's full-batch rate).
    sc = tiny_scenario(prefill=2000.0, decode=400.0, max_seqs=16)
    n, prompt, out = 3000, 300, 60
    wl = hand_workload(np.linspace(0, 100, n).tolist(), [prompt] * n, [out] * n,
                       duration=400.0)
    rec = _run(sc, wl)
    done = rec.status == DONE
    t_end = np.nanmax(rec.done_at[done])
    t_start = 0.0
    measured = done.sum() * (prompt + out) / (t_end - t_start)
    snap = sc.snapshot()
    prof = profile_spec(snap.models[0].spec.profiles[0])
    mu = mix_throughput(prof, prompt / (prompt + out))
    assert measured == pytest.approx(mu, rel=0.03)


def test_at_planner_capacity_the_tier_slo_holds():
    # Poisson load at exactly what the planner says one replica sustains for the tier
    # (target utilisation 0.7): the replica keeps up and p95 TTFT meets the 2 s target.
    sc = tiny_scenario(prefill=2000.0, decode=400.0, max_seqs=16, ttft=2.0, target=0.7)
    snap = sc.snapshot()
    prompt, out = 300, 60
    cap = replica_throughput(profile_spec(snap.models[0].spec.profiles[0]),
                             tier_spec(next(t for t in snap.tiers if t.metadata.name == "fast")),
                             prompt / (prompt + out), prompt + out)
    rate = cap / (prompt + out)
    rng = np.random.default_rng(1)
    arr = np.cumsum(rng.exponential(1 / rate, int(rate * 3000)))
    wl = hand_workload(arr.tolist(), [prompt] * arr.size, [out] * arr.size,
                       duration=float(arr[-1]) + 60)
    rec = _run(sc, wl)
    assert (rec.status == DONE).mean() == 1.0
    assert np.percentile(rec.ttft, 95) <= 2.0


def test_spot_losses_are_retried_and_nothing_is_lost():
    sc = tiny_scenario(spot_rate=1.0, engine={"tick_seconds": 10})
    rng = np.random.default_rng(0)
    n, hours = 6000, 8  # one node at 1 interruption/h: P(no loss in 8 h) = e^-8
    arr = np.sort(rng.uniform(0, hours * 3600, n))
    tiers = rng.integers(0, 2, n)
    wl = hand_workload(arr.tolist(), rng.integers(50, 400, n).tolist(),
                       rng.integers(10, 200, n).tolist(), tiers.tolist(),
                       duration=hours * 3600.0)
    rec = _run(sc, wl, Fixed(3))
    s = rec.summary()
    assert s["spot_interruptions"] > 0
    assert s["retried"] > 0 and s["retry_reasons"]["spot-interruption"] > 0
    # conservation (Recorder.finish also checked every in-flight request is held somewhere)
    assert s["completed"] + s["rejected"] + s["in_flight_end"] == s["requests"] == n
    assert sum(s["reject_reasons"].values()) == s["rejected"]


def test_a_policy_cannot_read_future_arrivals():
    sc = tiny_scenario()
    rng = np.random.default_rng(2)
    arr = np.sort(rng.uniform(0, 3600, 600))
    base = hand_workload(arr.tolist(), [100] * 600, [20] * 600, duration=3600.0)
    # the same past, a different future: arrivals after 1800 s doubled in size
    prompts = np.where(arr > 1800, 200, 100)
    changed = hand_workload(arr.tolist(), prompts.tolist(), [20] * 600, duration=3600.0)
    seen: dict[str, list] = {"a": [], "b": []}

    def recorder(tag):
        def on(obs):
            for h in obs.history.values():
                assert h.start + len(h.rates) * h.step_seconds <= obs.now + 1e-9
            seen[tag].append((obs.now, sorted((k.tier, h.rates.prompt_tokens_per_s)
                                              for k, h in obs.history.items())))
        return on

    _run(sc, base, Fixed(1, recorder("a")))
    _run(sc, changed, Fixed(1, recorder("b")))
    before = [x for x in seen["a"] if x[0] <= 1800]
    assert before and before == [x for x in seen["b"] if x[0] <= 1800]
    assert seen["a"] != seen["b"]  # the future does show up once it is the past


def test_a_target_the_fleet_cannot_run_is_an_error(scenario):
    class Wrong(Fixed):
        def decide(self, obs):
            from llmfleet.sim.policy import FleetTarget

            return FleetTarget(replicas={("m", "r1", "no-such-pool"): 1}, routes={})

    with pytest.raises(ValueError, match="no-such-pool"):
        _run(scenario, hand_workload([1.0], [10], [10]), Wrong())


def test_history_peaks_are_each_steps_busiest_window():
    sc = tiny_scenario()
    fleet = sc.fleet
    for obj in fleet:
        if obj["kind"] == "FleetPolicy":
            obj["spec"]["forecast"] = {"burstWindowSeconds": 60}
    sc = sc.model_copy(update={"fleet": fleet})
    # step 0 [0, 300): 30 requests spread evenly; step 1 [300, 600): 60 requests inside
    # [480, 540), one minute: its mean is 0.2 requests/s and its busiest minute 1.0/s
    arrivals = [i * 10.0 for i in range(30)] + [480.0 + i for i in range(60)]
    wl = hand_workload(arrivals, [100] * 90, [10] * 90, duration=900.0)
    seen: list = []
    _run(sc, wl, Fixed(1, lambda obs: seen.extend(obs.history.values())))
    h = max(seen, key=lambda h: len(h.rates))
    assert h.peaks is not None and len(h.peaks) == len(h.rates) >= 2
    assert h.rates.requests_per_s[:2] == pytest.approx((0.1, 0.2))
    assert h.peaks.requests_per_s[:2] == pytest.approx((0.1, 1.0))
    assert h.peaks.prompt_tokens_per_s[1] == pytest.approx(100.0)
