r"""Per-tenant limits from the plan's capacity: weighted max-min fair, work-conserving.

Every cycle the controller hands :func:`compute_limits` the TenantQuotas, the planned
capacity per (model, region, tier) ("pool" below) and the recent usage per
(tenant, model, region). For one pool with capacity ``C`` tokens/s and the tenants ``i``
that may use it (same tier, model allowed) with weight ``w_i``, guarantee ``g_i``, budget
cap ``b_i`` (``inf`` without ``tokensPerMinute``) and recent demand ``d_i`` (tokens/s):

1. **Guarantees.** A tenant's ``guaranteedTokensPerMinute / 60`` is split over its pools in
   proportion to its usage there (in proportion to the pools' capacity while it has none).
   If the pool's guarantees ``G = sum g_i`` exceed ``C`` they are scaled by ``C / G`` and
   every tenant of the pool is told (``problems``).

2. **Weighted max-min fair allocation with floors and caps** (water filling):
   ``a_i(lam) = min(u_i, max(l_i, w_i * lam))`` with the water level ``lam`` the smallest
   value at which ``sum a_i = min(C, sum u_i)`` (:func:`water_fill`). Each tenant gets at
   least its floor, no tenant more than it can use, and the rest in proportion to weights.

3. **Entitlement** ``e_i``: (2) with ``l_i = g_i``, ``u_i = b_i`` — the share a tenant gets
   when every tenant is backlogged. It is *always* available to the tenant.

4. **Allocation** ``a_i``: (2) with ``u_i = D_i = min(d_i, b_i)`` and ``l_i = min(g_i, D_i)``:
   what the pool can give each tenant for its current demand. When the pool is overloaded
   ``sum_i a_i = C`` (work conserving): the share light tenants leave unused is lent to the
   heavy ones in proportion to their weights.

5. **Overload.** A pool is overloaded when ``sum_i D_i > theta * C`` (``theta`` =
   :attr:`ThrottleSettings.overload_threshold`) or when the caller says so (e.g. requests
   queue at its replicas). Limits bite only then:

       L_i = max(e_i, a_i)            overloaded (fair share plus what is lent)
       L_i = b_i                      otherwise, with a budget (the budget alone)
       L_i = C                        otherwise, without one (recorded, not enforced)

   A tenant under its budget is never held to the planned capacity ``C`` of a pool that is
   not overloaded: the plan sized ``C`` from a forecast, and the fleet grows instead.

6. **Derived limits.** With the tenant's profile (``n_call`` = mean input + system + output
   tokens of one call): request rate ``L_i / n_call`` capped by ``requestsPerMinute / 60``;
   concurrency ``ceil(slots * L_i / C)`` capped by ``maxConcurrency``; token bucket depth
   ``max(L_i * burst_seconds, calls_per_interaction * n_call)`` so a whole interaction fits.

7. **Enforced limits.** The ingress enforces a tenant's limits only where they bite: when it
   is throttled on some pool (5), or when its quota sets a rate budget (``tokensPerMinute``,
   ``requestsPerMinute``). Every other tenant's limits are recorded (the plan, the
   TenantQuota's status) but not enforced: a pool that is not overloaded throttles nobody,
   even when a tenant's burst is above the share the plan sized it for (the planner's
   correction and the next plan absorb it; the schedulers keep contention fair).

Later calls of an interaction already under way are never throttled: the schedulers and
the ingress rules exempt them (see :mod:`llmfleet.fairness.schedulers` and
``llmfleet.kube.throttling``); a first call is charged for its whole interaction.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from llmfleet.api.plan import TenantThrottle
from llmfleet.api.tenant import TenantLimits, TenantQuota

INF = math.inf

CapacityKey = tuple[str, str, str]
"""(model, region, tier)."""
UsageKey = tuple[str, str, str]
"""(tenant id, model, region)."""


@dataclass(frozen=True)
class PoolCapacity:
    """Planned capacity of one (model, region, tier) for this cycle."""

    model: str
    region: str
    tier: str
    tokens_per_second: float
    """Tokens/s (prompt + output) the plan provisions for the tier there."""
    slots: int = 0
    """Concurrent sequences of those replicas (0: unknown, concurrency limited by budget)."""

    @property
    def key(self) -> CapacityKey:
        return (self.model, self.region, self.tier)


@dataclass(frozen=True)
class Usage:
    """Recent usage of one tenant on one (model, region)."""

    tenant: str
    model: str
    region: str
    tokens_per_second: float
    requests_per_second: float = 0.0


@dataclass(frozen=True)
class ThrottleSettings:
    overload_threshold: float = 1.0
    """(5) theta: a pool is overloaded when its demand exceeds theta x capacity."""
    burst_seconds: float = 10.0
    """(6) Token bucket depth in seconds of the limit."""


@dataclass(frozen=True)
class PoolLimit:
    """One tenant's share of one pool."""

    tenant: str
    tier: str
    model: str
    region: str
    weight: float
    guarantee: float
    """(1) guaranteed tokens/s on this pool (after any scaling)."""
    entitlement: float
    """(3) tokens/s always available."""
    allocation: float
    """(4) tokens/s for the current demand."""
    demand: float
    """Recent usage, tokens/s."""
    tokens_per_second: float
    """(5) the limit."""
    requests_per_second: float
    max_concurrency: int
    burst_tokens: float
    overloaded: bool

    @property
    def throttled(self) -> bool:
        """The limit bites: the pool is overloaded and the tenant wants more than it."""
        return self.overloaded and self.demand > self.tokens_per_second * (1 + 1e-9)


@dataclass(frozen=True)
class TenantTotals:
    """One tenant's limits summed over its pools (what its status and the ingress show)."""

    tenant: str
    tier: str
    limits: TenantLimits
    usage_tokens_per_second: float
    throttled: bool
    problems: tuple[str, ...]
    calls_per_interaction: float
    tokens_per_call: float
    enforced: bool = True
    """(7) The ingress enforces these limits: the tenant is throttled on some pool, or its
    quota sets a rate budget. Otherwise they are recorded and shown, not enforced."""


@dataclass(frozen=True)
class LimitTable:
    """Every tenant's limits for one cycle."""

    pools: tuple[PoolLimit, ...]
    tenants: tuple[TenantTotals, ...]
    overloaded: tuple[CapacityKey, ...]
    problems: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """tenant id -> what is wrong with its quota against the plan (empty when fine)."""

    def tenant(self, tenant_id: str) -> TenantTotals | None:
        return next((t for t in self.tenants if t.tenant == tenant_id), None)

    def by_tenant_model(self) -> dict[tuple[str, str, str], tuple[float, float]]:
        """(tenant, tier, model) -> (limit tokens/s, usage tokens/s), summed over regions."""
        out: dict[tuple[str, str, str], tuple[float, float]] = {}
        for p in self.pools:
            k = (p.tenant, p.tier, p.model)
            lim, use = out.get(k, (0.0, 0.0))
            out[k] = (lim + p.tokens_per_second, use + p.demand)
        return out


def water_fill(
    capacity: float, weights: Sequence[float], lows: Sequence[float], highs: Sequence[float]
) -> list[float]:
    """(2) Weighted max-min fair shares of ``capacity`` with floors ``lows`` and caps ``highs``.

    Requires ``0 <= lows[i] <= highs[i]``, ``weights[i] > 0`` and ``sum(lows) <= capacity``
    (floors are scaled down proportionally otherwise). Returns ``a`` with
    ``sum(a) = min(capacity, sum(highs))``. Exact: the level is found on the piecewise-linear
    total between breakpoints ``lows/w`` and ``highs/w``.
    """
    n = len(weights)
    if n == 0:
        return []
    lo = [max(0.0, x) for x in lows]
    hi = [max(lo[i], highs[i]) for i in range(n)]
    floor_sum = sum(lo)
    if floor_sum > capacity > 0:
        lo = [x * capacity / floor_sum for x in lo]
    elif capacity <= 0:
        return [0.0] * n
    if sum(hi) <= capacity:
        return list(hi)

    def total(level: float) -> float:
        return sum(min(hi[i], max(lo[i], weights[i] * level)) for i in range(n))

    points = sorted(
        {0.0}
        | {lo[i] / weights[i] for i in range(n)}
        | {hi[i] / weights[i] for i in range(n) if math.isfinite(hi[i])}
    )
    prev = 0.0
    for p in points:
        if total(p) >= capacity:
            break
        prev = p
    else:
        p = INF
    # On [prev, p] the total is linear: base + slope * level for the tenants between bounds.
    base = 0.0
    slope = 0.0
    mid = prev + 1.0 if not math.isfinite(p) else (prev + p) / 2
    for i in range(n):
        if weights[i] * mid <= lo[i]:
            base += lo[i]
        elif weights[i] * mid >= hi[i]:
            base += hi[i]
        else:
            slope += weights[i]
    level = prev if slope == 0 else (capacity - base) / slope
    return [min(hi[i], max(lo[i], weights[i] * level)) for i in range(n)]


def _eligible(q: TenantQuota, pool: PoolCapacity) -> bool:
    s = q.spec
    return s.tier == pool.tier and (not s.models or pool.model in s.models)


def tokens_per_call(q: TenantQuota) -> float:
    a = q.spec.application
    return max(1.0, a.mean_input_tokens + a.mean_system_tokens + a.mean_output_tokens)


def compute_limits(
    quotas: Iterable[TenantQuota],
    capacity: Iterable[PoolCapacity],
    usage: Iterable[Usage] = (),
    *,
    overloaded: Mapping[CapacityKey, bool] | None = None,
    settings: ThrottleSettings | None = None,
) -> LimitTable:
    """Each tenant's limits on each pool it may use (see the module docstring, 1-6).

    ``overloaded`` overrides (5) per pool (True forces the fair-share limits, False lifts
    them); pools absent from it use the demand test.
    """
    cfg = settings or ThrottleSettings()
    qs = sorted(quotas, key=lambda q: q.spec.tenant_id)
    pools = sorted((p for p in capacity), key=lambda p: p.key)
    use: dict[UsageKey, Usage] = {(u.tenant, u.model, u.region): u for u in usage}
    problems: dict[str, list[str]] = defaultdict(list)

    # Each tenant's pools, and its usage on each (for (1)).
    members: dict[CapacityKey, list[TenantQuota]] = {
        p.key: [q for q in qs if _eligible(q, p)] for p in pools
    }
    tenant_pools: dict[str, list[PoolCapacity]] = defaultdict(list)
    for p in pools:
        for q in members[p.key]:
            tenant_pools[q.spec.tenant_id].append(p)

    def demand(q: TenantQuota, p: PoolCapacity) -> float:
        u = use.get((q.spec.tenant_id, p.model, p.region))
        return max(0.0, u.tokens_per_second) if u else 0.0

    def guarantee(q: TenantQuota, p: PoolCapacity) -> float:
        g = (q.spec.budgets.guaranteed_tokens_per_minute or 0) / 60.0
        mine = tenant_pools[q.spec.tenant_id]
        used = sum(demand(q, x) for x in mine)
        if used > 0:
            return g * demand(q, p) / used
        cap = sum(x.tokens_per_second for x in mine)
        return g * p.tokens_per_second / cap if cap > 0 else 0.0

    def budget(q: TenantQuota) -> float:
        tpm = q.spec.budgets.tokens_per_minute
        return INF if tpm is None else tpm / 60.0

    out: list[PoolLimit] = []
    over_keys: list[CapacityKey] = []
    for p in pools:
        ts = members[p.key]
        if not ts:
            continue
        c = max(0.0, p.tokens_per_second)
        w = [q.spec.weight for q in ts]
        g = [guarantee(q, p) for q in ts]
        b = [budget(q) for q in ts]
        g_sum = sum(g)
        if g_sum > c * (1 + 1e-9):
            scale = c / g_sum if g_sum > 0 else 0.0
            for q in ts:
                problems[q.spec.tenant_id].append(
                    f"guarantees on {p.model}/{p.region} ({p.tier}) sum to {g_sum:.0f} tokens/s "
                    f"but the plan provides {c:.0f}; guarantees scaled by {scale:.2f}"
                )
            g = [x * scale for x in g]
        g = [min(g[i], b[i]) for i in range(len(ts))]
        d = [demand(q, p) for q in ts]
        dcap = [min(d[i], b[i]) for i in range(len(ts))]
        ent = water_fill(c, w, g, b)  # (3)
        alloc = water_fill(c, w, [min(g[i], dcap[i]) for i in range(len(ts))], dcap)  # (4)
        is_over = (
            overloaded[p.key]
            if overloaded is not None and p.key in overloaded
            else sum(dcap) > cfg.overload_threshold * c
        )
        if is_over:
            over_keys.append(p.key)
        for i, q in enumerate(ts):
            # (5): an overloaded pool's share; else the budget alone (a tenant under its
            # budget is never held to the planned capacity: the fleet grows instead)
            lim = max(ent[i], alloc[i]) if is_over else (b[i] if b[i] < INF else c)
            out.append(_derive(q, p, w[i], g[i], ent[i], alloc[i], d[i], lim, is_over, cfg))

    for q in qs:
        if not tenant_pools[q.spec.tenant_id]:
            models = ", ".join(q.spec.models) or "any model"
            problems[q.spec.tenant_id].append(
                f"no planned capacity for tier {q.spec.tier} on {models}: every request "
                "of the tenant is unserved"
            )
    totals = tuple(
        _totals(q, [x for x in out if x.tenant == q.spec.tenant_id], problems) for q in qs
    )
    return LimitTable(
        pools=tuple(out),
        tenants=totals,
        overloaded=tuple(over_keys),
        problems={k: tuple(v) for k, v in problems.items()},
    )


def _derive(
    q: TenantQuota,
    p: PoolCapacity,
    weight: float,
    guarantee: float,
    entitlement: float,
    allocation: float,
    demand: float,
    limit: float,
    overloaded: bool,
    cfg: ThrottleSettings,
) -> PoolLimit:
    """(6) request rate, concurrency and burst from the token limit."""
    bud = q.spec.budgets
    per_call = tokens_per_call(q)
    rps = limit / per_call
    if bud.requests_per_minute is not None:
        rps = min(rps, bud.requests_per_minute / 60.0)
    share = limit / p.tokens_per_second if p.tokens_per_second > 0 else 0.0
    conc = math.ceil(p.slots * min(share, 1.0) - 1e-9) if p.slots else (bud.max_concurrency or 0)
    if bud.max_concurrency is not None:
        conc = min(conc, bud.max_concurrency)
    burst = max(limit * cfg.burst_seconds, q.spec.application.calls_per_interaction * per_call)
    return PoolLimit(
        tenant=q.spec.tenant_id,
        tier=q.spec.tier,
        model=p.model,
        region=p.region,
        weight=weight,
        guarantee=guarantee,
        entitlement=entitlement,
        allocation=allocation,
        demand=demand,
        tokens_per_second=limit,
        requests_per_second=rps,
        max_concurrency=max(0, conc),
        burst_tokens=burst if limit > 0 else 0.0,
        overloaded=overloaded,
    )


def _totals(
    q: TenantQuota, mine: Sequence[PoolLimit], problems: Mapping[str, list[str]]
) -> TenantTotals:
    tps = sum(x.tokens_per_second for x in mine)
    bud = q.spec.budgets
    if bud.tokens_per_minute is not None:
        tps = min(tps, bud.tokens_per_minute / 60.0)
    rps = sum(x.requests_per_second for x in mine)
    if bud.requests_per_minute is not None:
        rps = min(rps, bud.requests_per_minute / 60.0)
    conc = sum(x.max_concurrency for x in mine)
    if bud.max_concurrency is not None:
        conc = min(conc, bud.max_concurrency)
    return TenantTotals(
        tenant=q.spec.tenant_id,
        tier=q.spec.tier,
        limits=TenantLimits(
            tokens_per_second=round(tps, 3),
            requests_per_second=round(rps, 4),
            burst_tokens=round(sum(x.burst_tokens for x in mine), 1),
            max_concurrency=conc,
        ),
        usage_tokens_per_second=round(sum(x.demand for x in mine), 3),
        throttled=any(x.throttled for x in mine),
        problems=tuple(problems.get(q.spec.tenant_id, ())),
        calls_per_interaction=q.spec.application.calls_per_interaction,
        tokens_per_call=tokens_per_call(q),
        enforced=any(x.throttled for x in mine)
        or bud.tokens_per_minute is not None
        or bud.requests_per_minute is not None,
    )


def to_throttles(table: LimitTable) -> list[TenantThrottle]:
    """The plan record's ``spec.throttles``: one entry per tenant (sums over its pools)."""
    return [
        TenantThrottle(
            tenant=t.tenant,
            tier=t.tier,
            tokens_per_second=t.limits.tokens_per_second,
            requests_per_second=t.limits.requests_per_second,
            burst_tokens=t.limits.burst_tokens,
            max_concurrency=t.limits.max_concurrency,
            enforced=t.enforced,
        )
        for t in table.tenants
    ]


@dataclass(frozen=True)
class MetricSample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


LIMIT_METRIC = "llmfleet_tenant_limit_tokens_per_second"
USAGE_METRIC = "llmfleet_tenant_usage_tokens_per_second"


def metric_samples(table: LimitTable) -> list[MetricSample]:
    """Gauge samples ``llmfleet_tenant_{limit,usage}_tokens_per_second{tenant,tier,model_name}``
    (sums over regions), sorted, for the controller's metrics registry."""
    out: list[MetricSample] = []
    for (tenant, tier, model), (lim, use) in sorted(table.by_tenant_model().items()):
        labels = (("tenant", tenant), ("tier", tier), ("model_name", model))
        out.append(MetricSample(LIMIT_METRIC, labels, lim))
        out.append(MetricSample(USAGE_METRIC, labels, use))
    return out
