"""The seeded fleet generator of the planner benchmark and of the planner's tests.

:func:`generate` builds a realistic :class:`~llmfleet.plan.instance.PlanningInstance` of a
given size ``models x regions x pools x steps``, the same for a seed: regions from a fixed
list of 12 cloud locations (UTC offsets, RTT from great-circle distance at 2/3 c with a 1.5
route factor); pools H100 / A100 (8 GPUs) and L4 (4 GPUs), on-demand and spot, at list-like
prices with a regional factor (spot ~40-45 % of on-demand, 5 % interruptions/h); models
small (8B, 1 GPU, H100/A100/L4), mid (70B, 4 GPUs, H100/A100) and large (405B, 8 GPUs,
H100); Zipf popularity; three tiers (interactive-fast without spot, interactive-normal with
50 % spot cap, 24 h batch); diurnal demand peaking at 14:00 local time of each origin. The
fleet starts at minNodes with no replicas (cold start) and an unbounded change budget;
:func:`rolled` is the same fleet one cycle later, starting from a plan's executed step.

It lives here, in an installed package, so that ``llmfleet bench planner`` runs from an
install; the tests import it through ``tests/support/instances.py``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from llmfleet.forecast.types import DemandForecast, DemandRates, FlowKey
from llmfleet.plan.instance import (
    CurrentState,
    Guarantee,
    ModelSpec,
    PlanningInstance,
    PoolSpec,
    ProfileSpec,
    RegionSpec,
    Settings,
    TierSpec,
)
from llmfleet.plan.types import Plan

__all__ = ["POOLS", "REGIONS", "TIERS", "generate", "rolled"]

REGIONS = [
    ("us-east", -5, 38.9, -77.0, 1.00),
    ("eu-west", 1, 50.1, 8.7, 1.08),
    ("ap-northeast", 9, 35.7, 139.7, 1.15),
    ("us-west", -8, 45.6, -121.2, 1.00),
    ("eu-north", 1, 59.3, 18.1, 1.04),
    ("ap-southeast", 8, 1.35, 103.8, 1.12),
    ("us-central", -6, 41.3, -95.9, 0.98),
    ("sa-east", -3, -23.5, -46.6, 1.25),
    ("ap-south", 5.5, 19.1, 72.9, 1.05),
    ("eu-south", 1, 45.5, 9.2, 1.07),
    ("au-east", 10, -33.9, 151.2, 1.18),
    ("me-central", 4, 25.3, 55.3, 1.20),
]
# name, gpu, gpus/node, spot, on-demand USD/node-h
POOLS = [
    ("h100-od", "H100", 8, False, 55.0),
    ("h100-spot", "H100", 8, True, 55.0 * 0.44),
    ("a100-od", "A100", 8, False, 32.8),
    ("a100-spot", "A100", 8, True, 32.8 * 0.40),
    ("l4-od", "L4", 4, False, 3.4),
    ("l4-spot", "L4", 4, True, 3.4 * 0.40),
]


def _rtt(
    a: tuple[str, float, float, float, float], b: tuple[str, float, float, float, float]
) -> float:
    la1, lo1, la2, lo2 = map(math.radians, (a[2], a[3], b[2], b[3]))
    d = (
        2
        * 6371
        * math.asin(
            math.sqrt(
                math.sin((la2 - la1) / 2) ** 2
                + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
            )
        )
    )
    return round(2 * 1.5 * d / 200.0 + 2.0, 1)


TIERS = (
    TierSpec(
        "interactive-fast",
        "interactive",
        ttft_s=1.0,
        tpot_s=0.06,
        spot_allowed=False,
        max_spot_fraction=0.0,
        target_utilization=0.6,
        penalty_per_request=0.05,
        priority=300,
    ),
    TierSpec(
        "interactive-normal",
        "interactive",
        ttft_s=5.0,
        e2e_s=60.0,
        spot_allowed=True,
        max_spot_fraction=0.5,
        target_utilization=0.75,
        penalty_per_request=0.01,
        priority=200,
    ),
    TierSpec(
        "batch",
        "deadline",
        deadline_s=86400.0,
        spot_allowed=True,
        max_spot_fraction=1.0,
        target_utilization=0.95,
        penalty_per_request=0.002,
        priority=100,
    ),
)


def _model(i: int, kind: str, rng: np.random.Generator, regions: list[str]) -> ModelSpec:
    f = float(rng.uniform(0.8, 1.2))
    prof: tuple[ProfileSpec, ...]
    if kind == "small":
        prof = (
            ProfileSpec("H100", 1, 24000 * f, 6000 * f, 256, 60),
            ProfileSpec("A100", 1, 12000 * f, 3000 * f, 256, 75),
            ProfileSpec("L4", 1, 4000 * f, 900 * f, 128, 90),
        )
        allowed: tuple[str, ...] = ()
        minrep = 1
    elif kind == "mid":
        prof = (
            ProfileSpec("H100", 4, 14000 * f, 2800 * f, 256, 240),
            ProfileSpec("A100", 4, 6500 * f, 1300 * f, 192, 300),
        )
        k = max(2, round(0.6 * len(regions)))
        allowed = tuple(
            sorted(rng.choice(regions, size=min(k, len(regions)), replace=False).tolist())
        )
        minrep = 1
    else:
        prof = (ProfileSpec("H100", 8, 6000 * f, 1100 * f, 128, 600),)
        k = max(2, round(0.4 * len(regions)))
        allowed = tuple(
            sorted(rng.choice(regions, size=min(k, len(regions)), replace=False).tolist())
        )
        minrep = 0
    return ModelSpec(f"m{i:03d}-{kind}", prof, allowed, minrep)


def _rates(tok: np.ndarray, prompt_share: float, tpr: float) -> DemandRates:
    return DemandRates(
        requests_per_s=tuple((tok / tpr).tolist()),
        prompt_tokens_per_s=tuple((tok * prompt_share).tolist()),
        output_tokens_per_s=tuple((tok * (1 - prompt_share)).tolist()),
    )


def generate(models: int, regions: int, pools: int, steps: int, seed: int = 0) -> PlanningInstance:
    """A realistic fleet of the given size (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    regs = REGIONS[:regions]
    names = [r[0] for r in regs]
    region_specs = []
    for r in regs:
        ps = tuple(
            PoolSpec(
                region=r[0],
                name=p[0],
                gpu_type=p[1],
                gpus_per_node=p[2],
                spot=p[3],
                price_per_node_hour=round(p[4] * r[4], 2),
                min_nodes=0,
                max_nodes=max(8, int(models * (3 if p[1] != "L4" else 6) / max(regions, 1) * 4)),
                interruption_rate_per_hour=0.05 if p[3] else 0.0,
                provisioning_seconds=600 if p[3] else 420,
            )
            for p in POOLS[:pools]
        )
        region_specs.append(
            RegionSpec(r[0], ps, {o[0]: _rtt(r, o) for o in regs if o[0] != r[0]}, float(r[1]))
        )
    kinds = rng.choice(["small", "mid", "large"], size=models, p=[0.5, 0.35, 0.15])
    model_specs = [_model(i, str(k), rng, names) for i, k in enumerate(kinds)]
    pop = 1.0 / np.arange(1, models + 1) ** 0.8
    rng.shuffle(pop)
    demand = []
    hours = np.arange(steps)
    for m, spec, w in zip(range(models), model_specs, pop, strict=True):
        # fleet-level tokens/s of this model: a few to tens of replicas at the peak
        per_gpu = {"small": 9000.0, "mid": 1500.0, "large": 400.0}[str(kinds[m])]
        total = per_gpu * float(rng.uniform(4, 12)) * w * models**0.3
        origins = rng.choice(names, size=min(len(names), int(rng.integers(1, 5))), replace=False)
        split = rng.dirichlet(np.ones(len(origins)))
        for o, so in zip(origins, split, strict=True):
            off = regs[names.index(str(o))][1]
            local = (hours + off) % 24
            shape = 1.0 + 0.6 * np.cos(2 * np.pi * (local - 14) / 24)
            for tier, ts, pshare, tpr in (
                ("interactive-fast", 0.5, 0.8, 1500.0),
                ("interactive-normal", 0.3, 0.85, 2500.0),
                ("batch", 0.2, 0.9, 6000.0),
            ):
                if rng.random() < 0.25 and tier != "interactive-fast":
                    continue
                tok = (
                    total
                    * so
                    * ts
                    * (shape if tier != "batch" else np.ones(steps))
                    * rng.uniform(0.95, 1.05, steps)
                )
                demand.append(
                    DemandForecast(
                        key=FlowKey(model=spec.name, origin=str(o), tier=tier),
                        start=0.0,
                        step_seconds=3600,
                        point=_rates(tok, pshare, tpr),
                        upper=_rates(tok * 1.2, pshare, tpr),
                        quantile=0.9,
                        method="oracle",
                    )
                )
    guarantees = tuple(
        Guarantee(f"tenant-{i}", "interactive-fast", float(total_g), (model_specs[i].name,))
        for i, total_g in enumerate(rng.uniform(50, 500, size=min(5, models)))
    )
    settings = Settings(
        step_seconds=3600,
        steps=steps,
        max_changes_per_cycle=100000,
        max_interactive_spot_fraction=0.3,
        time_limit_seconds=60.0,
        relative_gap=0.01,
    )
    return PlanningInstance(
        tuple(region_specs),
        tuple(model_specs),
        TIERS,
        tuple(demand),
        settings,
        CurrentState(),
        guarantees,
    )


def rolled(inst: PlanningInstance, plan: Plan) -> PlanningInstance:
    """The same fleet one cycle later: the plan's step 0 is now the current state."""
    st = plan.first()
    cur = CurrentState(
        nodes={(p.region, p.pool): round(p.nodes) for p in st.pools},
        replicas={(r.model, r.region, r.pool): round(r.replicas) for r in st.replicas},
    )
    return replace(inst, current=cur, settings=replace(inst.settings, max_changes_per_cycle=100000))
