"""The engine against queueing theory: one replica serving one sequence at a time is an M/D/1
queue (Poisson arrivals, every request the same size), and Little's law holds on its queue."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import Fixed, hand_workload, tiny_scenario
from llmfleet.sim.engine import Engine
from llmfleet.sim.metrics import DONE

PROMPT, OUTPUT = 500, 50  # at 1000 prefill and 100 decode tokens/s: 0.5 s + 0.5 s
SERVICE = PROMPT / 1000.0 + OUTPUT / 100.0
RHO = 0.7


@pytest.fixture(scope="module")
def md1():
    rng = np.random.default_rng(11)
    n = 40_000
    lam = RHO / SERVICE
    arrivals = np.cumsum(rng.exponential(1.0 / lam, n))
    duration = float(arrivals[-1]) + 60.0
    wl = hand_workload(arrivals.tolist(), [PROMPT] * n, [OUTPUT] * n, duration=duration)
    sc = tiny_scenario(max_seqs=1, engine={"queue_limit_factor": 1e6, "tick_seconds": 1.0})
    samples: list[tuple[float, int]] = []
    policy = Fixed(1, on_decide=lambda obs: samples.extend(
        (s.busy, s.waiting) for s in obs.replicas.values()))
    policy.interval_seconds = 5.0
    rec = Engine(sc.snapshot(), wl, policy, sc.engine, keep_requests=True).run()
    return wl, rec, samples, lam, duration


def test_single_replica_waits_like_md1(md1):
    wl, rec, _, _, _ = md1
    done = rec.status == DONE
    assert done.sum() == len(wl)  # nothing rejected: the queue is unbounded here
    wait = rec.admit[done] - wl.arrival[done]
    wq = RHO * SERVICE / (2 * (1 - RHO))  # Pollaczek-Khinchine for deterministic service
    assert wait.mean() == pytest.approx(wq, rel=0.1)
    assert rec.ttft[done].mean() == pytest.approx(wq + PROMPT / 1000.0, rel=0.1)
    assert rec.e2e[done].mean() == pytest.approx(wq + SERVICE, rel=0.1)


def test_littles_law_on_the_queue_and_the_server(md1):
    wl, rec, samples, _, duration = md1
    done = rec.status == DONE
    lam = done.sum() / duration
    wait = (rec.admit[done] - wl.arrival[done]).mean()
    busy = np.array([b for b, _ in samples[1:]])
    waiting = np.array([w for _, w in samples[1:]])
    assert waiting.mean() == pytest.approx(lam * wait, rel=0.1)  # L_q = lambda W_q
    assert busy.mean() == pytest.approx(lam * SERVICE, rel=0.05)  # L_s = lambda S = rho
