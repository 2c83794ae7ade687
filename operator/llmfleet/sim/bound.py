"""Fluid lower bound on cost: no queueing, no granularity, perfect packing.

For each request class (model m, tier k) with total token work ``W_mk`` (prompt + output
tokens) and prompt share ``p``, the best any fleet can do is serve it on the pool that
gives the most tokens per USD (per GPU-second for the GPU bound), spot only if the tier
allows it:

1. ``USD >= sum_mk W_mk / max_pool (mu_m,pool(p) / (price per GPU-s x GPUs per replica))``
2. ``GPU-h >= sum_mk W_mk / max_pool (mu_m,pool(p) / GPUs per replica) / 3600``

with ``mu`` the replica's full-batch mixed throughput (:func:`plan.capacity.mix_throughput`,
utilisation 1).
"""

from __future__ import annotations

import numpy as np

from llmfleet.api.references import FleetSnapshot
from llmfleet.plan.capacity import mix_throughput
from llmfleet.plan.instance import profile_spec
from llmfleet.sim.workload import AnyWorkload


def fluid_bound(snap: FleetSnapshot, wl: AnyWorkload) -> dict[str, float]:
    """{"usd": lower bound on USD, "gpu_hours": lower bound on GPU-hours} for ``wl`` (one
    pass over the stream)."""
    tiers = {t.metadata.name: t for t in snap.tiers}
    models = {m.metadata.name: m for m in snap.models}
    prompt = np.zeros((len(wl.models), len(wl.tiers)))
    output = np.zeros_like(prompt)
    for c in wl.chunks():
        np.add.at(prompt, (c.model, c.tier), c.prompt.astype(np.float64))
        np.add.at(output, (c.model, c.tier), c.output.astype(np.float64))
    usd = gpu_h = 0.0
    for mi, mname in enumerate(wl.models):
        for ti, tname in enumerate(wl.tiers):
            work = float(prompt[mi, ti] + output[mi, ti])
            if work <= 0:
                continue
            share = float(prompt[mi, ti]) / work
            spot_ok = tiers[tname].spec.spot_allowed
            best_usd = best_gpu = 0.0
            m = models[mname]
            for r in snap.regions:
                if m.spec.allowed_regions and r.metadata.name not in m.spec.allowed_regions:
                    continue
                for pool in r.spec.pools:
                    if pool.capacity_type == "spot" and not spot_ok:
                        continue
                    for pr in m.spec.profiles:
                        if pr.gpu_type != pool.gpu_type:
                            continue
                        mu = mix_throughput(profile_spec(pr), share)
                        per_gpu_s = pool.price_per_node_hour / pool.gpus_per_node / 3600.0
                        best_usd = max(best_usd, mu / (per_gpu_s * pr.gpus_per_replica))
                        best_gpu = max(best_gpu, mu / pr.gpus_per_replica)
            if best_usd > 0:
                usd += work / best_usd
                gpu_h += work / best_gpu / 3600.0
    return {"usd": usd, "gpu_hours": gpu_h}
