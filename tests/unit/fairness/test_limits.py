"""Weighted max-min fair limits from planned capacity (llmfleet.fairness.limits)."""

from __future__ import annotations

import math

import pytest

from llmfleet.api.tenant import TenantQuota
from llmfleet.fairness.limits import (
    LIMIT_METRIC,
    USAGE_METRIC,
    PoolCapacity,
    Usage,
    compute_limits,
    metric_samples,
    to_throttles,
    water_fill,
)


def quota(
    tenant: str,
    weight: float = 1.0,
    *,
    tier: str = "fast",
    models: tuple[str, ...] = (),
    tpm: int | None = None,
    guaranteed: int | None = None,
    calls: float = 1,
) -> TenantQuota:
    budgets: dict[str, int] = {}
    if tpm is not None:
        budgets["tokensPerMinute"] = tpm
    if guaranteed is not None:
        budgets["guaranteedTokensPerMinute"] = guaranteed
    return TenantQuota.new(
        tenant,
        {
            "tenantId": tenant,
            "tier": tier,
            "models": list(models),
            "weight": weight,
            "budgets": budgets,
            "application": {
                "meanInputTokens": 800,
                "meanSystemTokens": 100,
                "meanOutputTokens": 100,
                "callsPerInteraction": calls,
            },
        },
        namespace="ns",
    )


POOL = PoolCapacity("llama", "us", "fast", 1000.0, slots=100)


def use(tenant: str, tps: float, model: str = "llama", region: str = "us") -> Usage:
    return Usage(tenant, model, region, tps)


def test_water_fill_is_weighted_max_min_with_floors_and_caps():
    assert water_fill(9, [1, 2], [0, 0], [math.inf, math.inf]) == pytest.approx([3, 6])
    # a capped tenant's unused share goes to the others, by weight
    assert water_fill(10, [1, 1, 2], [0, 0, 0], [1, 100, 100]) == pytest.approx([1, 3, 6])
    # floors (guarantees) first
    assert water_fill(10, [1, 1], [7, 0], [100, 100]) == pytest.approx([7, 3])
    # under-subscribed: everyone gets its cap
    assert water_fill(10, [1, 1], [0, 0], [2, 3]) == pytest.approx([2, 3])
    # floors above capacity are scaled
    assert sum(water_fill(10, [1, 1], [8, 8], [9, 9])) == pytest.approx(10)


def test_overloaded_pool_gives_weighted_shares_and_lends_unused_share():
    qs = [quota("a", 1), quota("b", 1), quota("c", 2)]
    # c (weight 2) uses little; a and b want everything
    t = compute_limits(qs, [POOL], [use("a", 900), use("b", 900), use("c", 100)])
    lim = {p.tenant: p for p in t.pools}
    assert t.overloaded == (POOL.key,)
    # entitlements: 250 / 250 / 500; allocation: c gets its 100, a and b split 900
    assert lim["c"].entitlement == pytest.approx(500)
    assert lim["a"].allocation == pytest.approx(450)
    assert lim["a"].tokens_per_second == pytest.approx(450)  # lent share included
    # the light tenant's guaranteed share is always there
    assert lim["c"].tokens_per_second == pytest.approx(500)
    assert lim["a"].throttled and not lim["c"].throttled
    # work conserving: allocations fill the pool
    assert sum(p.allocation for p in t.pools) == pytest.approx(1000)


def test_limits_do_not_bite_when_not_overloaded():
    qs = [quota("a", 1, tpm=30_000), quota("b", 1)]
    t = compute_limits(qs, [POOL], [use("a", 200), use("b", 300)])
    lim = {p.tenant: p for p in t.pools}
    assert t.overloaded == ()
    assert lim["a"].tokens_per_second == pytest.approx(500)  # its budget (30k/min)
    assert lim["b"].tokens_per_second == pytest.approx(1000)  # capped by the pool only
    assert not any(p.throttled for p in t.pools)
    # an explicit overload signal (queues at the replicas) turns the fair shares on
    t2 = compute_limits(qs, [POOL], [use("a", 200), use("b", 300)], overloaded={POOL.key: True})
    assert {p.tenant: p.tokens_per_second for p in t2.pools} == pytest.approx({"a": 500, "b": 500})


def test_guarantees_are_floors_and_oversubscription_is_reported():
    qs = [quota("a", 1, guaranteed=48_000), quota("b", 9)]  # a: 800 tokens/s guaranteed
    t = compute_limits(qs, [POOL], [use("a", 2000), use("b", 2000)])
    lim = {p.tenant: p for p in t.pools}
    assert lim["a"].tokens_per_second == pytest.approx(800)
    assert lim["b"].tokens_per_second == pytest.approx(200)
    qs2 = [quota("a", guaranteed=48_000), quota("b", guaranteed=48_000)]
    t2 = compute_limits(qs2, [POOL], [use("a", 2000), use("b", 2000)])
    assert all("guarantees on llama/us (fast) sum to 1600" in m for m in t2.problems["a"])
    assert sum(p.guarantee for p in t2.pools) == pytest.approx(1000)


def test_tenants_only_get_pools_of_their_tier_and_models():
    pools = [
        POOL,
        PoolCapacity("mistral", "us", "fast", 500),
        PoolCapacity("llama", "eu", "batch", 10),
    ]
    qs = [quota("a", models=("llama",)), quota("b"), quota("c", tier="gold")]
    t = compute_limits(qs, pools, [])
    got = sorted((p.tenant, p.model, p.region) for p in t.pools)
    assert got == [("a", "llama", "us"), ("b", "llama", "us"), ("b", "mistral", "us")]
    assert "no planned capacity for tier gold" in t.problems["c"][0]
    totals = t.tenant("c")
    assert totals is not None and totals.limits.tokens_per_second == 0


def test_derived_request_rate_concurrency_burst_and_throttles():
    qs = [quota("a", calls=4), quota("b")]
    t = compute_limits(qs, [POOL], [use("a", 800), use("b", 800)])
    a = next(p for p in t.pools if p.tenant == "a")
    assert a.tokens_per_second == pytest.approx(500)
    assert a.requests_per_second == pytest.approx(0.5)  # 1000 tokens per call
    assert a.max_concurrency == 50  # half of 100 slots
    assert a.burst_tokens == pytest.approx(5000)
    th = {x.tenant: x for x in to_throttles(t)}
    assert th["a"].tokens_per_second == pytest.approx(500) and th["a"].tier == "fast"


def test_metric_samples_per_tenant_tier_model():
    pools = [POOL, PoolCapacity("llama", "eu", "fast", 1000)]
    t = compute_limits([quota("a"), quota("b")], pools, [use("a", 100), use("a", 50, region="eu")])
    samples = {(s.name, s.labels): s.value for s in metric_samples(t)}
    labels = (("tenant", "a"), ("tier", "fast"), ("model_name", "llama"))
    assert samples[(USAGE_METRIC, labels)] == pytest.approx(150)
    assert samples[(LIMIT_METRIC, labels)] == pytest.approx(2000)  # not overloaded: pools' caps
