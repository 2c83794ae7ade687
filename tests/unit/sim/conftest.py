"""A one-region, one-model fleet the twin's tests can compute by hand."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from llmfleet.sim.policy import FleetTarget, Observation
from llmfleet.sim.scenario import Scenario
from llmfleet.sim.workload import Workload
from support.tiny import API, tiny_fleet, tiny_scenario

__all__ = ["API", "tiny_fleet", "tiny_scenario"]


def hand_workload(
    arrivals: Sequence[float], prompts: Sequence[int], outputs: Sequence[int],
    tiers: Sequence[int] | None = None, duration: float = 100.0,
) -> Workload:
    n = len(arrivals)
    tier = np.array(tiers if tiers is not None else [1] * n, dtype=np.int64)  # 1 = fast
    return Workload(
        arrival=np.array(arrivals, dtype=float), tenant=np.where(tier == 1, 0, 1),
        model=np.zeros(n, dtype=np.int64), tier=tier, origin=np.zeros(n, dtype=np.int64),
        prompt=np.array(prompts, dtype=np.int64), output=np.array(outputs, dtype=np.int64),
        tenants=("a", "b"), models=("m",), tiers=("batch", "fast"), regions=("r1",),
        duration=duration, start_unix=0.0, history_start_unix=0.0, history_step=300,
        history={},
    )


class Fixed:
    """A policy that always wants ``n`` replicas of the tiny model."""

    name = "fixed"
    interval_seconds = 60.0

    def __init__(self, n: int = 1, on_decide: Callable[[Observation], None] | None = None):
        self.n = n
        self.on_decide = on_decide

    def decide(self, obs: Observation) -> FleetTarget:
        if self.on_decide:
            self.on_decide(obs)
        return FleetTarget(replicas={("m", "r1", "gpu"): self.n}, routes={})


@pytest.fixture
def scenario() -> Scenario:
    return tiny_scenario()
