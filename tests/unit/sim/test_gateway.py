"""The twin's ingress enforces the tenants' published limits: token and request buckets,
throttled requests rejected with a reason and counted, later calls of an interaction exempt."""

from __future__ import annotations

import numpy as np

from conftest import Fixed, hand_workload, tiny_scenario
from llmfleet.api.plan import TenantThrottle
from llmfleet.sim.engine import Engine
from llmfleet.sim.gateway import Gateway
from llmfleet.sim.policy import FleetTarget


def _limit(tenant: str, tps: float, burst: float, rps: float = 1e9) -> TenantThrottle:
    return TenantThrottle(tenant=tenant, tier="fast", tokens_per_second=tps,
                          requests_per_second=rps, burst_tokens=burst, max_concurrency=100)


def test_a_token_bucket_admits_a_minute_of_its_rate_and_counts_the_rest():
    g = Gateway()
    g.update([_limit("a", tps=10.0, burst=0.0)], now=0.0)  # a minute holds 600 tokens
    assert [g.admit("a", 200.0, 0, 0.0) for _ in range(4)] == [True, True, True, False]
    assert g.admit("a", 100.0, 0, 10.0)  # ten seconds refill 100 tokens
    assert not g.admit("a", 100.0, 0, 10.0)
    assert g.admit("a", 100.0, 1, 10.0)  # a later call of an interaction is never throttled
    assert g.admit("b", 1e9, 0, 10.0)  # no published limit: not limited
    assert g.throttled == {"a": 2}
    # a request larger than the bucket passes when it is full, and leaves it in debt
    g.update([_limit("c", tps=1.0, burst=0.0)], now=20.0)
    assert g.admit("c", 500.0, 0, 20.0) and not g.admit("c", 1.0, 0, 21.0)
    # a new plan without the tenant lifts its limit
    g.update([], now=40.0)
    assert g.admit("a", 1e6, 0, 40.0)


def test_limits_that_do_not_bite_are_not_enforced():
    g = Gateway()
    free = _limit("a", tps=1.0, burst=0.0).model_copy(update={"enforced": False})
    g.update([free], now=0.0)
    assert all(g.admit("a", 1e6, 0, 0.0) for _ in range(5)) and not g.throttled


def test_the_request_bucket_limits_calls_whatever_their_size():
    g = Gateway()
    g.update([_limit("a", tps=1e6, burst=1e6, rps=1 / 30)], now=0.0)  # 2 requests a minute
    got = [g.admit("a", 1.0, 0, 0.0) for _ in range(4)]
    assert got.count(True) == 2 and got[-1] is False


class _Throttling(Fixed):
    """Two replicas, and the plan's limits: tenant a (fast) to 50 tokens/s."""

    def decide(self, obs):  # type: ignore[no-untyped-def]
        t = super().decide(obs)
        return FleetTarget(replicas=t.replicas, routes=t.routes,
                           throttles=[_limit("a", tps=50.0, burst=500.0)])


def test_the_engine_throttles_at_the_ingress_counts_it_and_loses_nothing():
    rng = np.random.default_rng(1)
    n = 400
    arrivals = np.sort(rng.uniform(0, 200, n))
    tiers = [1] * (n // 2) + [0] * (n // 2)  # tenant a (fast) and tenant b (batch)
    wl = hand_workload(arrivals.tolist(), [200] * n, [50] * n, tiers=tiers, duration=400.0)
    sc = tiny_scenario()
    rec = Engine(sc.snapshot(), wl, _Throttling(2), sc.engine).run()
    s = rec.summary()
    # a sends ~250 tokens/s against a 50 tokens/s limit: most of its requests are throttled
    assert s["reject_reasons"].get("throttled", 0) > 100
    rows = {r["tenant"]: r for r in rec.per_tenant()}
    assert rows["a"]["throttled"] == s["reject_reasons"]["throttled"]
    assert rows["b"]["throttled"] == 0  # the other tenant is not limited
    assert s["completed"] + s["rejected"] + s["in_flight_end"] == s["requests"] == n
    # the tier's throttled requests are counted, and its hours in SLO without them hold
    fast = rec.within_limits()["fast"]
    assert fast["throttled"] == s["reject_reasons"]["throttled"]
    assert s["tiers"]["fast"]["hourly_attainment"] == 0.0
    assert fast["hourly_attainment_within_limits"] == 1.0
