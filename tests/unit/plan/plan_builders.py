"""Small planning instances built directly (no API objects), for fast planner tests."""

from __future__ import annotations

import numpy as np

from llmfleet.forecast.types import DemandForecast, DemandRates, FlowKey
from llmfleet.plan.instance import (
    CurrentState,
    ModelSpec,
    PlanningInstance,
    PoolSpec,
    ProfileSpec,
    RegionSpec,
    Settings,
    TierSpec,
)

FAST = TierSpec(
    "fast",
    "interactive",
    ttft_s=1.0,
    tpot_s=0.06,
    spot_allowed=False,
    max_spot_fraction=0.0,
    target_utilization=0.6,
    penalty_per_request=0.05,
)
NORMAL = TierSpec(
    "normal",
    "interactive",
    ttft_s=5.0,
    e2e_s=60.0,
    spot_allowed=True,
    max_spot_fraction=0.5,
    target_utilization=0.75,
    penalty_per_request=0.01,
)
BATCH = TierSpec(
    "batch", "deadline", deadline_s=4 * 3600.0, target_utilization=0.95, penalty_per_request=0.002
)
SMALL = ModelSpec(
    "small",
    (ProfileSpec("H100", 1, 24000, 6000, 256, 60), ProfileSpec("A100", 1, 12000, 3000, 256, 75)),
    (),
    1,
)


def pool(
    region: str,
    name: str,
    gpu: str = "H100",
    price: float = 55.0,
    spot: bool = False,
    max_nodes: int = 10,
    min_nodes: int = 0,
) -> PoolSpec:
    return PoolSpec(
        region,
        name,
        gpu,
        8,
        spot,
        price,
        min_nodes,
        max_nodes,
        0.05 if spot else 0.0,
        600 if spot else 420,
    )


def flow(
    model: str,
    origin: str,
    tier: str,
    tokens: list[float] | np.ndarray,
    upper: float = 1.2,
    prompt_share: float = 0.8,
    tpr: float = 1500.0,
) -> DemandForecast:
    tok = np.asarray(tokens, dtype=float)

    def rates(x: np.ndarray) -> DemandRates:
        return DemandRates(
            requests_per_s=tuple(x / tpr),
            prompt_tokens_per_s=tuple(x * prompt_share),
            output_tokens_per_s=tuple(x * (1 - prompt_share)),
        )

    return DemandForecast(
        key=FlowKey(model=model, origin=origin, tier=tier),
        start=0.0,
        step_seconds=3600,
        point=rates(tok),
        upper=rates(tok * upper),
        quantile=0.9,
        method="oracle",
    )


def two_regions(
    demand_scale: float = 1.0,
    steps: int = 4,
    min_replicas: int = 1,
    current: CurrentState | None = None,
    max_changes: int = 10000,
    time_limit: float = 20.0,
) -> PlanningInstance:
    regions = (
        RegionSpec(
            "east",
            (
                pool("east", "h100-od"),
                pool("east", "h100-spot", price=24.0, spot=True),
                pool("east", "a100-od", "A100", 33.0),
            ),
            {"west": 70.0},
        ),
        RegionSpec(
            "west",
            (pool("west", "h100-od", price=60.0), pool("west", "a100-od", "A100", 35.0)),
            {"east": 70.0},
        ),
    )
    model = ModelSpec("small", SMALL.profiles, (), min_replicas)
    big = ModelSpec("big", (ProfileSpec("H100", 4, 14000, 2800, 256, 240),), ("east",), 0)
    shape = 1 + 0.5 * np.sin(np.arange(steps) / 24 * 2 * np.pi)
    demand = (
        flow("small", "east", "fast", 40000 * demand_scale * shape),
        flow("small", "west", "normal", 25000 * demand_scale * shape),
        flow("small", "east", "batch", 15000 * demand_scale * np.ones(steps)),
        flow("big", "east", "normal", 8000 * demand_scale * shape),
    )
    return PlanningInstance(
        regions=regions,
        models=(model, big),
        tiers=(FAST, NORMAL, BATCH),
        demand=demand,
        settings=Settings(
            steps=steps, max_changes_per_cycle=max_changes, time_limit_seconds=time_limit
        ),
        current=current or CurrentState(),
    )
