"""RPM, VTC and FairServe's weighted service counter, alone and in the replica simulation."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from llmfleet.api.tenant import TenantQuota
from llmfleet.fairness.schedulers import (
    SCHEDULERS,
    VTC,
    OverloadThrottle,
    RPMLimit,
    TokenProfile,
    WeightedServiceCounter,
    make_scheduler,
)
from llmfleet.fairness.scheduling import FCFS, RequestView
from llmfleet_bench.fairness import (
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


def test_fairserve_counts_tokens_over_weight_whatever_the_profile():
    # a weight is a share of tokens, so FairServe's priority is c(E_u) / w_u and the
    # profile normalisation cancels: the counter is VTC-priced tokens over the weight
    prof = {"chat": TokenProfile(900, 100, 200), "agent": TokenProfile(100, 0, 50)}
    s = WeightedServiceCounter(prof, {"agent": 2.0})
    s.on_service(call(1, "chat", p=1000, o=200), 1000, 0, 0.0)
    s.on_service(call(1, "chat", p=1000, o=200), 0, 200, 0.0)
    s.on_service(call(2, "agent", p=100, o=50), 100, 50, 0.0)
    assert s.counters["chat"] == pytest.approx(W_PROMPT * 1000 + W_OUTPUT * 200)
    assert s.counters["agent"] == pytest.approx((W_PROMPT * 100 + W_OUTPUT * 50) / 2)


def test_published_fairserve_counts_typical_calls():
    # (4): one typical call costs 1 whatever the application (a_in=1, a_sys=2, a_out=1)
    prof = {"chat": TokenProfile(900, 100, 200), "agent": TokenProfile(100, 0, 50)}
    s = WeightedServiceCounter(prof, a_in=1.0, a_sys=2.0, a_out=1.0, per_call=True)
    s.on_service(call(1, "chat", p=1000, o=0), 1000, 0, 0.0)
    s.on_service(call(1, "chat", p=1000, o=200), 0, 200, 0.0)
    s.on_service(call(2, "agent", p=100, o=50), 100, 50, 0.0)
    assert s.counters["chat"] == pytest.approx(1.0)
    assert s.counters["agent"] == pytest.approx(1.0)


def test_later_calls_go_first_within_one_typical_call_of_the_least_served() -> None:
    prof = {"chat": TokenProfile(100, 0, 10), "agent": TokenProfile(60, 0, 20)}  # c(E) 120, 100
    s = WeightedServiceCounter(prof)
    waiting = [call(1, "chat"), call(2, "agent", k=1)]
    for c in waiting:
        s.on_arrival(c, 0.0)
    s.counters["agent"] = 90.0  # within one typical call of chat (0): its later call first
    assert _drain(s, waiting).tenant == "agent"
    waiting = [call(3, "chat"), call(4, "agent", k=2)]
    for c in waiting:
        s.on_arrival(c, 0.0)
    s.counters["agent"] = 150.0  # further ahead: the least-served tenant goes first
    assert _drain(s, waiting).tenant == "chat"
    # the published rule (no slack): later calls always first
    lit = make_scheduler("fairserve-calls", _quotas({"chat": 1, "agent": 4}))
    assert isinstance(lit, WeightedServiceCounter) and lit.interaction_slack is None
    waiting = [call(5, "chat"), call(6, "agent", k=1)]
    for c in waiting:
        lit.on_arrival(c, 0.0)
    lit.counters["agent"] = 1e6
    assert _drain(lit, waiting).tenant == "agent"


def test_a_later_call_of_an_idle_tenant_is_lifted() -> None:
    s = WeightedServiceCounter({"a": TokenProfile(100, 0, 10)})
    a = call(1, "a")
    s.on_arrival(a, 0.0)
    s.counters["a"] = 500.0
    later = call(2, "b", k=1)  # b had nothing waiting: it banks no credit
    s.on_arrival(later, 1.0)
    assert s.counters["b"] == pytest.approx(500.0)


def test_overload_throttle_spares_later_calls_and_idle_replicas():
    th = OverloadThrottle(limits={"a": 10.0}, overload_waiting=2, window=10.0)
    th.record("a", 500.0, 0.0)  # 50 tokens/s over the window
    assert th.check(call(1, "a"), 1.0, waiting=5) == "fair-share-limit"
    assert th.check(call(2, "a", k=1), 1.0, waiting=5) is None
    assert th.check(call(3, "a"), 1.0, waiting=1) is None
    assert th.check(call(4, "a"), 11.0, waiting=5) is None  # usage aged out


def _quotas(
    calls: dict[str, float],
    lengths: dict[str, tuple[float, float]] | None = None,
    weights: dict[str, float] | None = None,
) -> list[TenantQuota]:
    out = []
    for t, k in calls.items():
        p, o = (lengths or {}).get(t, (100.0, 10.0))
        app = {"meanInputTokens": p, "meanOutputTokens": o, "callsPerInteraction": k}
        spec = {"tenantId": t, "tier": "x", "weight": (weights or {}).get(t, 1.0)}
        out.append(TenantQuota.new(t, {**spec, "application": app}))
    return out


def test_make_scheduler_names():
    q = TenantQuota.new("a", {"tenantId": "a", "tier": "t", "budgets": {"requestsPerMinute": 5}})
    assert isinstance(make_scheduler("fcfs", [q]), FCFS)
    rpm = make_scheduler("rpm", [q])
    assert isinstance(rpm, RPMLimit) and rpm.rpm == {"a": 5.0}
    fs = make_scheduler("fairserve", [q], limits={"a": 10.0})
    assert isinstance(fs, WeightedServiceCounter) and fs.name == "fairserve"
    assert fs.throttle is not None and not fs.per_call
    assert fs.interaction_slack == {"a": pytest.approx(1000 + 2 * 250)}  # one typical call
    lit = make_scheduler("fairserve-calls", [q])
    assert isinstance(lit, WeightedServiceCounter) and lit.per_call and lit.throttle is None
    assert set(SCHEDULERS) == {"fcfs", "rpm", "vtc", "fairserve", "fairserve-calls"}
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


@pytest.mark.parametrize("name", ["fcfs", "vtc", "fairserve", "fairserve-calls"])
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


def _flood(
    spec: dict[str, tuple[int, int, int, int, int]], seed: int, think: float = 0.0
) -> list[Interaction]:
    """tenant -> (interactions, calls each, max prompt, max output, start): every tenant
    floods the replica from its start (always backlogged)."""
    rng = random.Random(seed)
    out = []
    for tenant, (n, k, max_in, max_out, start) in spec.items():
        for _ in range(n):
            calls = tuple(
                (rng.randint(max_in // 2, max_in), rng.randint(max_out // 2, max_out))
                for _ in range(k)
            )
            out.append(Interaction(len(out), tenant, start + rng.random() * 0.1, calls, think))
    return sorted(out, key=lambda x: x.start)


_SIM = ServerConfig(slots=8, report_every=1, sample_dt=0.05, queue_timeout=1e9)


def test_fairserve_keeps_token_shares_between_tenants_of_different_call_sizes() -> None:
    # "big" calls are ~15x "small" ones; both always backlogged, "small" weighs 2
    spec = {"big": (400, 1, 600, 40, 0), "small": (8000, 1, 40, 4, 0)}
    inters = _flood(spec, seed=2)
    lengths = {"big": (450.0, 30.0), "small": (30.0, 3.0)}
    quotas = _quotas({"big": 1, "small": 1}, lengths, {"small": 2.0})
    weights = {"small": 2.0}
    fs = make_scheduler("fairserve", quotas)
    out = serve(inters, fs, _SIM, weights=weights, until=20.0)
    assert isinstance(fs, WeightedServiceCounter)
    c_max = W_PROMPT * 600 + W_OUTPUT * 40
    bound = 2 * c_max + max(fs.interaction_slack.values())  # type: ignore[union-attr]
    diff = max_service_difference(out, [("big", "small")])
    assert 0 < diff <= bound
    # per-call normalisation (as published) equalises calls: "big" gets its 15x
    lit = serve(
        inters, make_scheduler("fairserve-calls", quotas), _SIM, weights=weights, until=20.0
    )
    assert max_service_difference(lit, [("big", "small")]) > 3 * bound


def test_fairserve_bounds_an_agent_whose_interactions_outrun_its_profile() -> None:
    # the agent declares one call per interaction but makes 40, many interactions at once
    spec = {"agent": (60, 40, 300, 30, 0), "chat": (3000, 1, 300, 30, 0)}
    inters = _flood(spec, seed=3)
    quotas = _quotas({"agent": 1, "chat": 1}, {"agent": (225.0, 22.5), "chat": (225.0, 22.5)})
    fs = make_scheduler("fairserve", quotas)
    out = serve(inters, fs, _SIM, until=20.0)
    assert isinstance(fs, WeightedServiceCounter)
    c_max = W_PROMPT * 300 + W_OUTPUT * 30
    bound = 2 * c_max + max(fs.interaction_slack.values())  # type: ignore[union-attr]
    diff = max_service_difference(out, [("agent", "chat")])
    assert 0 < diff <= bound
    assert any(s > 0 for s in out.service["chat"])
    # later calls always first (the published rule): the agent's calls take every slot
    lit = make_scheduler("fairserve", quotas)
    assert isinstance(lit, WeightedServiceCounter)
    lit.interaction_slack = None
    unfair = serve(inters, lit, _SIM, until=20.0)
    assert max_service_difference(unfair, [("agent", "chat")]) > 3 * bound
