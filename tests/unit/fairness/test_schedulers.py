"""RPM, VTC and FairServe's weighted service counter, alone and in the replica simulation."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from llmfleet.fairness.schedulers import (
    VTC,
    OverloadThrottle,
    RPMLimit,
    TokenProfile,
    WeightedServiceCounter,
    make_scheduler,
)
from llmfleet.fairness.scheduling import FCFS, RequestView
from llmfleet.sim.fairbench import (
    W_OUTPUT,
    W_PROMPT,
    Call,
    Interaction,
    ServerConfig,
    max_service_difference,
    serve,
)


def call(i: int, tenant: str, t: float = 0.0, p: int = 100, o: int = 10, k: int = 0) -> Call:
    return Call(i, tenant, t, p, o, interaction=i if k == 0 else 1000 + i, call_index=k)


def test_rpm_limit_rejects_above_the_rate_and_recovers_after_the_window():
    s = RPMLimit({"a": 2})
    assert s.on_arrival(call(1, "a"), 0.0) is None
    assert s.on_arrival(call(2, "a"), 1.0) is None
    assert s.on_arrival(call(3, "a"), 2.0) == "rpm-limit"
    assert s.on_arrival(call(4, "b"), 2.0) is None  # no limit for b
    assert s.on_arrival(call(5, "a"), 61.0) is None
    exempt = RPMLimit({"a": 1}, exempt_later_calls=True)
    assert exempt.on_arrival(call(1, "a"), 0.0) is None
    assert exempt.on_arrival(call(2, "a", k=1), 0.1) is None
    assert exempt.on_arrival(call(3, "a"), 0.2) == "rpm-limit"


def _drain(s: VTC | WeightedServiceCounter, waiting: list[Call]) -> Call:
    r = s.pick(waiting, 0.0)
    assert r is not None
    waiting.remove(r)  # type: ignore[arg-type]
    return r  # type: ignore[return-value]


def test_vtc_serves_least_counter_and_lifts_a_newly_backlogged_client():
    s = VTC()
    waiting: list[Call] = []
    for i in range(3):
        c = call(i, "a")
        assert s.on_arrival(c, 0.0) is None
        waiting.append(c)
    r = _drain(s, waiting)
    s.on_service(r, 100, 10, 0.0)  # a: 100 + 2 * 10 = 120
    assert s.counters["a"] == pytest.approx(120)
    # b arrives with counter 0 while a is backlogged: lifted to a's counter, not below it
    b = call(10, "b")
    s.on_arrival(b, 1.0)
    waiting.append(b)
    assert s.counters["b"] == pytest.approx(120)
    # tie: a's older request first, then b once a's counter grows
    r = _drain(s, waiting)
    s.on_service(r, 100, 0, 1.0)
    assert _drain(s, waiting).tenant == "b"


def test_vtc_weights_divide_the_counter():
    s = VTC({"a": 2.0})
    s.on_service(call(1, "a"), 100, 50, 0.0)
    assert s.counters["a"] == pytest.approx((W_PROMPT * 100 + W_OUTPUT * 50) / 2)


def test_weighted_service_counter_normalises_by_profile_and_runs_later_calls_first():
    prof = {"chat": TokenProfile(900, 100, 200), "agent": TokenProfile(100, 0, 50)}
    s = WeightedServiceCounter(prof)
    # one typical call costs 1 whatever the application (a_in=1, a_sys=2, a_out=1)
    s.on_service(call(1, "chat", p=1000, o=0), 1000, 0, 0.0)
    s.on_service(call(1, "chat", p=1000, o=200), 0, 200, 0.0)
    s.on_service(call(2, "agent", p=100, o=50), 100, 50, 0.0)
    assert s.counters["chat"] == pytest.approx(1.0)
    assert s.counters["agent"] == pytest.approx(1.0)
    waiting = [call(3, "chat"), call(4, "agent", k=2)]
    for c in waiting:
        s.on_arrival(c, 0.0)
    s.counters["agent"] = 50.0  # far behind, but its interaction is under way
    assert _drain(s, waiting).tenant == "agent"


def test_overload_throttle_spares_later_calls_and_idle_replicas():
    th = OverloadThrottle(limits={"a": 10.0}, overload_waiting=2, window=10.0)
    th.record("a", 500.0, 0.0)  # 50 tokens/s over the window
    assert th.check(call(1, "a"), 1.0, waiting=5) == "fair-share-limit"
    assert th.check(call(2, "a", k=1), 1.0, waiting=5) is None
    assert th.check(call(3, "a"), 1.0, waiting=1) is None
    assert th.check(call(4, "a"), 11.0, waiting=5) is None  # usage aged out


def test_make_scheduler_names():
    from llmfleet.api.tenant import TenantQuota

    q = TenantQuota.new("a", {"tenantId": "a", "tier": "t", "budgets": {"requestsPerMinute": 5}})
    assert isinstance(make_scheduler("fcfs", [q]), FCFS)
    rpm = make_scheduler("rpm", [q])
    assert isinstance(rpm, RPMLimit) and rpm.rpm == {"a": 5.0}
    with pytest.raises(ValueError, match="unknown scheduler"):
        make_scheduler("lottery", [q])


# ------------------------------------------------------------------ in simulation


def _heavy(tenants: dict[str, float], n: int, seed: int, max_in: int, max_out: int):
    """Every tenant floods the replica from its start time (always backlogged)."""
    rng = random.Random(seed)
    out = []
    i = 0
    for tenant, start in tenants.items():
        for _ in range(n):
            out.append(
                Interaction(
                    i,
                    tenant,
                    start + rng.random() * 0.1,
                    ((rng.randint(1, max_in), rng.randint(1, max_out)),),
                )
            )
            i += 1
    return sorted(out, key=lambda x: x.start)


@pytest.mark.parametrize("weights", [{}, {"c": 2.0}])
def test_vtc_service_difference_between_backlogged_clients_is_bounded(weights):
    max_in, max_out = 400, 60
    inters = _heavy({"a": 0.0, "b": 0.0, "c": 15.0}, 250, seed=1, max_in=max_in, max_out=max_out)
    cfg = ServerConfig(slots=8, report_every=1, sample_dt=0.05, queue_timeout=1e9)
    out = serve(inters, VTC(weights), cfg, weights=weights, until=60.0)
    bound = 2 * (W_PROMPT * max_in + W_OUTPUT * max_out)  # VTC's 2 * max request cost
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    diff = max_service_difference(out, pairs)
    assert 0 < diff <= bound
    # and FCFS breaks it: the late client c waits behind everything queued before it
    fcfs = serve(inters, FCFS(), cfg, weights=weights, until=60.0)
    assert max_service_difference(fcfs, pairs) > bound


@pytest.mark.parametrize("name", ["fcfs", "vtc", "fairserve"])
def test_no_idle_capacity_while_an_unthrottled_tenant_waits(name):
    from llmfleet.api.tenant import TenantQuota

    quotas = [
        TenantQuota.new(t, {"tenantId": t, "tier": "x", "application": {"callsPerInteraction": 2}})
        for t in ("a", "b")
    ]
    rng = random.Random(3)
    inters = [
        Interaction(i, "ab"[i % 2], rng.random() * 20, ((200, rng.randint(5, 40)),) * 2, think=0.1)
        for i in range(600)
    ]
    cfg = ServerConfig(slots=8, sample_dt=0.25)
    out = serve(
        sorted(inters, key=lambda x: x.start), make_scheduler(name, quotas), cfg, until=30.0
    )
    assert out.idle_while_waiting == 0
    waited = [
        k
        for k in range(1, len(out.times))
        if any(out.backlogged[t][k] and out.backlogged[t][k - 1] for t in out.backlogged)
    ]
    assert waited, "the scenario must overload the replica"
    assert all(out.busy[k] == cfg.slots for k in waited)


def test_a_non_work_conserving_scheduler_is_caught():
    class Lazy(FCFS):
        def pick(self, waiting: Sequence[RequestView], now: float) -> RequestView | None:
            return waiting[0] if len(waiting) > 3 else None

    inters = [Interaction(i, "a", i * 0.01, ((100, 20),)) for i in range(50)]
    out = serve(inters, Lazy(), ServerConfig(slots=8), until=10.0)
    assert out.idle_while_waiting > 0


def test_later_calls_go_first_only_within_one_interaction_of_the_least_served() -> None:
    s = WeightedServiceCounter({}, a_out=2.0)
    s.interaction_slack = {"agent": 100.0}
    waiting = [call(1, "chat"), call(2, "agent", k=1)]
    for c in waiting:
        s.on_arrival(c, 0.0)
    s.counters["agent"] = 50.0  # within one interaction: its later call goes first
    r = s.pick(waiting, 0.0)
    assert r is not None and r.tenant == "agent"
    waiting = [call(3, "chat"), call(4, "agent", k=2)]
    for c in waiting:
        s.on_arrival(c, 0.0)
    s.counters["agent"] = 500.0  # far ahead: the least-served tenant goes first
    r = s.pick(waiting, 0.0)
    assert r is not None and r.tenant == "chat"
