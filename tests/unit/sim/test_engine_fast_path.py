"""The engine's fast paths keep its semantics: the routing uniforms drawn in batches are the
stream of one draw at a time (other draws in between included), the per-replica held counter
is what the queues hold, and per-chunk tallies equal the per-request ones."""

from __future__ import annotations

import numpy as np

from conftest import Fixed, hand_workload, tiny_scenario
from llmfleet.sim.engine import _UNIFORM_BATCH, Engine


def _engine(seed: int = 3) -> Engine:
    sc = tiny_scenario()
    wl = hand_workload([0.0], [10], [10])
    return Engine(sc.snapshot(), wl, Fixed(1), sc.engine, seed=seed)


def test_batched_uniforms_are_the_stream_of_one_draw_at_a_time():
    # uniforms interleaved with exponentials (spot lives) at irregular points, across batch
    # edges: the same numbers as the generator gives drawing each one when it is needed
    eng = _engine()
    ref = np.random.default_rng(3 + 7919)
    pattern = [5, 0, 1, _UNIFORM_BATCH - 2, 3, _UNIFORM_BATCH, _UNIFORM_BATCH + 7, 0, 2]
    for k in pattern:
        for _ in range(k):
            assert eng._uniform() == ref.random()
        eng._sync_rng()
        assert eng.rng.exponential(2.0) == ref.exponential(2.0)
        assert eng.rng.exponential(1.0) == ref.exponential(1.0)
    assert eng._uniform() == ref.random()


def test_held_counts_what_the_replica_holds_at_every_event():
    sc = tiny_scenario(max_seqs=2)
    rng = np.random.default_rng(1)
    n = 400
    wl = hand_workload(np.sort(rng.uniform(0, 60, n)).tolist(),
                       rng.integers(10, 400, n).tolist(), rng.integers(5, 80, n).tolist(),
                       tiers=rng.integers(0, 2, n).tolist(), duration=300.0)
    eng = Engine(sc.snapshot(), wl, Fixed(2), sc.engine, seed=0)
    inner = eng._replica_event
    seen = []

    def check(rep):
        inner(rep)
        for reps in eng.replicas.values():
            for r in reps:
                held = (len(r.waiting) + len(r.prefill_q) + len(r.prefill_bq)
                        + (r.prefilling is not None) + len(r.decode))
                assert r.held == held
                seen.append(held)

    eng._replica_event = check  # type: ignore[method-assign]
    rec = eng.run()
    assert max(seen) > 2  # queues formed
    s = rec.summary()
    assert s["completed"] + s["rejected"] + s["in_flight_end"] == n


def test_demand_history_and_usage_equal_per_request_sums():
    sc = tiny_scenario()
    rng = np.random.default_rng(2)
    n = 3000
    arr = np.sort(rng.uniform(0, 1790, n))
    prompt, out = rng.integers(10, 300, n), rng.integers(5, 50, n)
    tiers = rng.integers(0, 2, n)
    wl = hand_workload(arr.tolist(), prompt.tolist(), out.tolist(), tiers=tiers.tolist(),
                       duration=1800.0)
    seen = []
    eng = Engine(sc.snapshot(), wl, Fixed(2, on_decide=seen.append), sc.engine, seed=0)
    eng.run()
    obs = seen[-1]  # at t = 1740 s: complete steps only, the usage of the last step
    step = obs.step_seconds
    done = int(obs.now // step)
    assert done >= 5 and len(obs.history) == 2
    for fk, h in obs.history.items():
        t = wl.tiers.index(fk.tier)
        mine = tiers == t
        for s_ in range(done):
            inside = mine & (arr // step == s_)
            assert h.rates.requests_per_s[-done + s_] == inside.sum() / step
            assert h.rates.prompt_tokens_per_s[-done + s_] == prompt[inside].sum() / step
    sent = {}
    for i in np.nonzero(arr < obs.now)[0]:
        k = (wl.tenants[wl.tenant[i]], "m", "r1")
        sent[k] = sent.get(k, 0.0) + float(prompt[i] + out[i])
    assert len(sent) == 2 and eng._sent == sent
