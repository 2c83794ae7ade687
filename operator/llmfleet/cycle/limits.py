"""The tenants' fair-share limits for a plan (after FairServe, arXiv 2411.15997).

Capacity per (model, region, tier) is what the plan's executed step provides
(:func:`capacity_from_step`); each tenant's usage, read per origin region like demand, is
moved to the regions serving it along the plan's routes (:func:`served_usage`); the limits
are weighted max-min shares of that capacity (:func:`llmfleet.fairness.limits.compute_limits`).

A pool of the plan is overloaded (FairServe's trigger for the fair-share limits) only when
the fleet cannot grow there: every pool of the region that can run the model is at its
``maxNodes`` in the executed step (:func:`room_to_grow`). Where it can grow, the next plan
and the short-term correction add replicas for the demand instead, and nobody is throttled
for it: the ingress rejects no request while pools have room. Budgets (``tokensPerMinute``)
hold either way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from llmfleet.api.references import FleetSnapshot
from llmfleet.fairness.limits import LimitTable, PoolCapacity, Usage, compute_limits
from llmfleet.plan.types import Plan, StepPlan


def capacity_from_step(step: StepPlan) -> list[PoolCapacity]:
    """Planned capacity per (model, region, tier) from one step of a plan.

    The plan routes ``tokens_per_s`` of each (model, tier, origin) to serving regions; the
    replicas of the model in a region run at the utilisation ``u`` of their pools (load over
    capacity, the planner's headroom; the busiest pool's, to stay conservative). The tier's
    capacity there is its routed load over ``u`` (its load when ``u`` is 0): the tier's share
    of what the replicas can serve.
    """
    util: dict[tuple[str, str], list[float]] = defaultdict(list)
    pools = {(p.region, p.pool): p.utilisation for p in step.pools}
    for r in step.replicas:
        if r.replicas > 0:
            util[(r.model, r.region)].append(pools.get((r.region, r.pool), 0.0))
    load: dict[tuple[str, str, str], float] = defaultdict(float)
    for route in step.routes:
        load[(route.model, route.region, route.tier)] += route.tokens_per_s
    out = []
    for (model, region, tier), tps in sorted(load.items()):
        us = [u for u in util.get((model, region), []) if u > 0]
        u = max(us) if us else 1.0
        # plain floats: the plan's figures are numpy scalars, which JSON cannot write
        out.append(PoolCapacity(model, region, tier, float(tps / min(max(u, 1e-6), 1.0))))
    return out


def room_to_grow(step: StepPlan, snapshot: FleetSnapshot) -> set[tuple[str, str]]:
    """(model, region) cells where some pool that can run the model (a profile for its GPU
    type, the model allowed in the region) has fewer nodes than its ``maxNodes``."""
    gpus = {m.metadata.name: {p.gpu_type for p in m.spec.profiles} for m in snapshot.models}
    allowed = {m.metadata.name: set(m.spec.allowed_regions or ()) for m in snapshot.models}
    out = set()
    for pool in step.pools:
        if pool.nodes + 1e-9 >= pool.max_nodes:
            continue
        for model, types in gpus.items():
            if pool.gpu_type in types and (not allowed[model] or pool.region in allowed[model]):
                out.add((model, pool.region))
    return out


def plan_capacity(plan: Plan) -> list[PoolCapacity]:
    """Capacity per (model, region, tier) the limits share out: the executed step's
    (:func:`capacity_from_step`). A (model, tier) step 0 serves nowhere but later steps do
    (deferred batch work: its requests are queued, not refused) gets the mean rate of each
    region over the horizon, so its tenants are not shut out at the ingress."""
    first = capacity_from_step(plan.first())
    served = {(c.model, c.tier) for c in first}
    later: dict[tuple[str, str, str], float] = {}
    for step in plan.steps[1:]:
        for c in capacity_from_step(step):
            if (c.model, c.tier) not in served:
                later[c.key] = later.get(c.key, 0.0) + c.tokens_per_second
    n = len(plan.steps)
    return first + [PoolCapacity(m, r, t, v / n) for (m, r, t), v in sorted(later.items())]


def served_usage(plan: Plan, snapshot: FleetSnapshot, usage: Sequence[Usage]) -> list[Usage]:
    """Usage as read (``region`` is the origin, as in the demand queries) moved to the
    regions serving it: spread over the plan's routes of the tenant's (model, tier, origin)
    by their fractions (the first step routing it: step 0, or the step deferred work is
    served at). Usage without a quota or a route stays in its region."""
    tiers = {q.spec.tenant_id: q.spec.tier for q in snapshot.tenants}
    routes: dict[tuple[str, str, str], dict[str, float]] = {}
    for step in plan.steps:
        found: dict[tuple[str, str, str], dict[str, float]] = {}
        for r in step.routes:
            key = (r.model, r.tier, r.origin)
            if key not in routes and r.fraction > 0:
                shares = found.setdefault(key, {})
                shares[r.region] = shares.get(r.region, 0.0) + float(r.fraction)
        routes |= found
    out: dict[tuple[str, str, str], list[float]] = {}
    for u in usage:
        shares = routes.get((u.model, tiers.get(u.tenant, ""), u.region)) or {u.region: 1.0}
        total = sum(shares.values())
        for region, f in shares.items():
            acc = out.setdefault((u.tenant, u.model, region), [0.0, 0.0])
            acc[0] += u.tokens_per_second * f / total
            acc[1] += u.requests_per_second * f / total
    return [Usage(t, m, r, tps, rps) for (t, m, r), (tps, rps) in sorted(out.items())]


def tenant_limits(plan: Plan, snapshot: FleetSnapshot, usage: Sequence[Usage]) -> LimitTable:
    """The TenantQuotas' fair-share limits on the planned capacity (:func:`plan_capacity`)
    for their usage in the serving regions (:func:`served_usage`).

    A deadline (batch) tier's pools are never overloaded at the ingress: its work is queued
    and done by its deadline, so arriving faster than the plan's mean rate is what deferral
    means, not overload; fairness among its tenants is the schedulers' (budgets still
    apply). Nor is a pool whose region has room to grow for its model
    (:func:`room_to_grow`, module doc)."""
    capacity = plan_capacity(plan)
    deadline = {t.name for t in snapshot.tiers if t.spec.type == "deadline"}
    room = room_to_grow(plan.first(), snapshot)
    return compute_limits(
        snapshot.tenants,
        capacity,
        served_usage(plan, snapshot, usage),
        overloaded={c.key: False for c in capacity
                    if c.tier in deadline or (c.model, c.region) in room},
    )
