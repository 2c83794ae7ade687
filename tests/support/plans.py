"""Small FleetPlanSpec builders for actuation and routing tests."""

from __future__ import annotations

from datetime import UTC, datetime

from llmfleet.api.plan import (
    FleetPlanSpec,
    ModelReplicas,
    PoolNodes,
    RegionWeight,
    RoutingRule,
    SolverResult,
)


def fleet_plan(
    nodes: dict[tuple[str, str], int] | None = None,
    replicas: dict[tuple[str, str, str], int] | None = None,
    routing: dict[tuple[str, str, str], dict[str, float]] | None = None,
    *,
    policy: str = "default",
    gpu_type: str = "H100-80GB",
) -> FleetPlanSpec:
    """nodes: (region, pool) -> n; replicas: (model, region, pool) -> n;
    routing: (model, tier, origin) -> {serving region: fraction}."""
    return FleetPlanSpec(
        policy=policy,
        inputs_digest="sha256:test",
        made_at=datetime(2026, 1, 1, tzinfo=UTC),
        step_seconds=3600,
        steps=1,
        solver=SolverResult(status="Optimal", solve_seconds=0.1),
        cost_per_hour=0.0,
        nodes=[
            PoolNodes(
                region=r,
                pool=p,
                gpu_type=gpu_type,
                capacity_type="spot" if "spot" in p else "on-demand",
                nodes=n,
            )
            for (r, p), n in (nodes or {}).items()
        ],
        replicas=[
            ModelReplicas(model=m, region=r, pool=p, replicas=n)
            for (m, r, p), n in (replicas or {}).items()
        ],
        routing=[
            RoutingRule(
                model=m,
                tier=t,
                origin=o,
                weights=[RegionWeight(region=r, fraction=f) for r, f in w.items()],
            )
            for (m, t, o), w in (routing or {}).items()
        ],
    )
