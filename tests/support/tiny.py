"""A one-region, one-model fleet the twin's and the cycle's tests can compute by hand."""

from __future__ import annotations

from typing import Any

from llmfleet.sim.scenario import Scenario

API = "llmfleet.dev/v1alpha1"


def tiny_fleet(
    prefill: float = 1000.0,
    decode: float = 100.0,
    max_seqs: int = 4,
    spot_rate: float | None = None,
    ttft: float = 2.0,
    target: float = 0.7,
) -> list[dict[str, Any]]:
    pool: dict[str, Any] = {
        "name": "gpu",
        "gpuType": "G",
        "gpusPerNode": 8,
        "pricePerNodeHour": 8.0,
        "maxNodes": 10,
        "provisioningSeconds": 60,
    }
    if spot_rate is not None:
        pool.update(capacityType="spot", spotInterruptionRatePerHour=spot_rate)
    return [
        {
            "apiVersion": API,
            "kind": "Region",
            "metadata": {"name": "r1"},
            "spec": {"location": "x", "pools": [pool]},
        },
        {
            "apiVersion": API,
            "kind": "LLMModel",
            "metadata": {"name": "m"},
            "spec": {
                "servedModelName": "m",
                "profiles": [
                    {
                        "gpuType": "G",
                        "gpusPerReplica": 1,
                        "prefillTokensPerSecond": prefill,
                        "decodeTokensPerSecond": decode,
                        "maxConcurrentSequences": max_seqs,
                        "loadSeconds": 30,
                    }
                ],
            },
        },
        {
            "apiVersion": API,
            "kind": "SLATier",
            "metadata": {"name": "fast"},
            "spec": {
                "type": "interactive",
                "interactive": {"ttftP95Seconds": ttft},
                "targetUtilization": target,
            },
        },
        {
            "apiVersion": API,
            "kind": "SLATier",
            "metadata": {"name": "batch"},
            "spec": {"type": "deadline", "deadline": {"completionSeconds": 3600}},
        },
        {
            "apiVersion": API,
            "kind": "TenantQuota",
            "metadata": {"name": "a"},
            "spec": {"tenantId": "a", "tier": "fast", "models": ["m"]},
        },
        {
            "apiVersion": API,
            "kind": "TenantQuota",
            "metadata": {"name": "b"},
            "spec": {"tenantId": "b", "tier": "batch", "models": ["m"]},
        },
        {
            "apiVersion": API,
            "kind": "FleetPolicy",
            "metadata": {"name": "p"},
            "spec": {"intervalSeconds": 300, "horizon": {"stepSeconds": 300, "steps": 4}},
        },
    ]


def tiny_scenario(**kw: Any) -> Scenario:
    engine = kw.pop("engine", {})
    return Scenario.model_validate(
        {
            "name": "tiny",
            "fleet": tiny_fleet(**kw),
            "engine": engine,
            "workload": {
                "clients": [{"source": "azure:conv", "tenant": "a", "region": "r1"}],
                "history_days": 0,
            },
        }
    )
