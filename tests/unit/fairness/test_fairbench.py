"""`llmfleet bench fairness` on small synthetic and ServeGen slices (fast)."""

from __future__ import annotations

import math

import numpy as np

from llmfleet.sim.fairbench import (
    SCENARIOS,
    ClientShape,
    ServerConfig,
    render,
    run_scenario,
    servegen_shapes,
)


def _shape(p: int, o: int) -> ClientShape:
    def sample(rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.integers(p // 2, p * 3 // 2, k), rng.integers(o // 2, o * 3 // 2, k)

    return ClientShape(np.ones(1), np.ones(1), sample)


def test_abusive_tenant_fair_schedulers_protect_the_others() -> None:
    sc = SCENARIOS["abusive"]
    shapes = [_shape(600, 120) for _ in sc.tenants]
    figs = run_scenario(
        sc,
        duration=180,
        seed=0,
        config=ServerConfig(),
        shapes=shapes,
        schedulers=("fcfs", "vtc", "fairserve-tokens"),
    )
    fcfs, vtc, wsc = figs["fcfs"], figs["vtc"], figs["fairserve-tokens"]
    assert vtc.max_diff < fcfs.max_diff / 10 and wsc.max_diff < fcfs.max_diff / 10
    assert vtc.p95_ttft_well < 1 < fcfs.p95_ttft_well  # well-behaved inside the SLO
    assert wsc.p95_ttft_well < 1
    assert wsc.utilisation > 0.95 and wsc.throttled > 0
    table = render("abusive", figs)
    assert "| max service difference (tokens) |" in table and "x)" in table


def test_servegen_shapes_are_busy_clients_with_their_lengths() -> None:
    shapes = servegen_shapes(5, 86400 + 14 * 3600, 1200, 0, 4096, 1024)
    assert len(shapes) == 5
    for s in shapes:
        assert math.isclose(float(s.rel_rate.mean()), 1.0)
        i, o = s.sample_lengths(np.random.default_rng(0), 100)
        assert i.min() >= 1 and i.max() <= 4096 and o.max() <= 1024


def test_the_same_schedulers_run_on_the_fleet_twin() -> None:
    from llmfleet.sim.fairbench import run_scenario_twin

    sc = SCENARIOS["abusive"]
    shapes = [_shape(600, 120) for _ in sc.tenants]
    figs = run_scenario_twin(
        sc, duration=300, seed=0, shapes=shapes, schedulers=("fcfs", "fairserve-tokens")
    )
    fcfs, wsc = figs["fcfs"], figs["fairserve-tokens"]
    assert wsc.max_diff < fcfs.max_diff / 5
    assert wsc.p95_ttft_well < fcfs.p95_ttft_well
    assert wsc.throttled > 0 and wsc.throughput > 0
