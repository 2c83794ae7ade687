"""Sizing helpers shared by the baselines: pools per model and the planner's capacity model."""

from __future__ import annotations

from llmfleet.api.model import GPUProfile, LLMModel
from llmfleet.api.references import FleetSnapshot
from llmfleet.api.region import NodePool
from llmfleet.api.tier import SLATier
from llmfleet.plan.capacity import replica_throughput
from llmfleet.plan.instance import profile_spec, tier_spec


def throughput(p: GPUProfile, tier: SLATier, prompt_share: float = 0.85,
               tokens_per_request: float = 500.0) -> float:
    """Tokens/s one replica sustains for ``tier`` (the planner's capacity model)."""
    return replica_throughput(profile_spec(p), tier_spec(tier), prompt_share, tokens_per_request)


def best_pool(
    snap: FleetSnapshot, model: LLMModel, region: str, spot: bool | None
) -> tuple[str, GPUProfile] | None:
    """The pool of ``region`` (spot, on-demand, or either when None) with the most tokens/s
    per USD for ``model``."""
    allowed = model.spec.allowed_regions
    if allowed and region not in allowed:
        return None
    reg = next(r for r in snap.regions if r.metadata.name == region)
    best: tuple[float, str, GPUProfile] | None = None
    for pool in reg.spec.pools:
        if spot is not None and (pool.capacity_type == "spot") != spot:
            continue
        for prof in model.spec.profiles:
            if prof.gpu_type != pool.gpu_type or prof.gpus_per_replica > pool.gpus_per_node:
                continue
            mu = 1.0 / (0.85 / prof.prefill_tokens_per_second
                        + 0.15 / prof.decode_tokens_per_second)
            value = mu / (_price_per_gpu(pool) * prof.gpus_per_replica + 1e-9)
            if best is None or value > best[0]:
                best = (value, pool.name, prof)
    return (best[1], best[2]) if best else None


def _price_per_gpu(pool: NodePool) -> float:
    return pool.price_per_node_hour / pool.gpus_per_node
