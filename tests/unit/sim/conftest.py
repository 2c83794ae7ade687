"""A one-region, one-model fleet the twin's tests can compute by hand."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from llmfleet.sim.policy import FleetTarget, Observation
from llmfleet.sim.scenario import Scenario
from llmfleet.sim.workload import Workload

API = "llmfleet.dev/v1alpha1"


def tiny_fleet(
    prefill: float = 1000.0, decode: float = 100.0, max_seqs: int = 4, spot_rate: float | None = None,
    ttft: float = 2.0, target: float = 0.7,
) -> list[dict[str, Any]]:
    pool: dict[str, Any] = {
        "name": "gpu", "gpuType": "G", "gpusPerNode": 8, "pricePerNodeHour": 8.0,
        "maxNodes": 10, "provisioningSeconds": 60,
    }
    if spot_rate is not None:
        pool.update(capacityType="spot", spotInterruptionRatePerHour=spot_rate)
    return [
        {"apiVersion": API, "kind": "Region", "metadata": {"name": "r1"},
         "spec": {"location": "x", "pools": [pool]}},
        {"apiVersion": API, "kind": "LLMModel", "metadata": {"name": "m"},
         "spec": {"servedModelName": "m", "profiles": [{
             "gpuType": "G", "gpusPerReplica": 1, "prefillTokensPerSecond": prefill,
             "decodeTokensPerSecond": decode, "maxConcurrentSequences": max_seqs,
             "loadSeconds": 30}]}},
        {"apiVersion": API, "kind": "SLATier", "metadata": {"name": "fast"},
         "spec": {"type": "interactive", "interactive": {"ttftP95Seconds": ttft},
                  "targetUtilization": target}},
        {"apiVersion": API, "kind": "SLATier", "metadata": {"name": "batch"},
         "spec": {"type": "deadline", "deadline": {"completionSeconds": 3600}}},
        {"apiVersion": API, "kind": "TenantQuota", "metadata": {"name": "a"},
         "spec": {"tenantId": "a", "tier": "fast", "models": ["m"]}},
        {"apiVersion": API, "kind": "TenantQuota", "metadata": {"name": "b"},
         "spec": {"tenantId": "b", "tier": "batch", "models": ["m"]}},
        {"apiVersion": API, "kind": "FleetPolicy", "metadata": {"name": "p"},
         "spec": {"intervalSeconds": 300, "horizon": {"stepSeconds": 300, "steps": 4}}},
    ]


def tiny_scenario(**kw: Any) -> Scenario:
    engine = kw.pop("engine", {})
    return Scenario.model_validate({
        "name": "tiny", "fleet": tiny_fleet(**kw), "engine": engine,
        "workload": {"clients": [{"source": "azure:conv", "tenant": "a", "region": "r1"}],
                     "history_days": 0},
    })


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
