"""Rendering of the throttling publication (pure parts of llmfleet.kube.throttling)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from llmfleet.api.policy import IngressTarget, ParentRef
from llmfleet.api.tenant import TenantQuota
from llmfleet.fairness.limits import PoolCapacity, Usage, compute_limits
from llmfleet.kube.throttling import (
    MAX_RULES,
    rate_limit_rules,
    render_policies,
    render_status,
    render_throttling_config_map,
)


def _q(t: str, calls: float = 1, budget: bool = False) -> TenantQuota:
    spec = {"tenantId": t, "tier": "fast", "application": {"callsPerInteraction": calls}}
    if budget:
        spec["budgets"] = {"tokensPerMinute": 600_000}
    return TenantQuota.new(t, spec, namespace="ns")


def test_rules_charge_first_calls_for_their_interaction_and_cap_at_256() -> None:
    # budgets make limits enforced; t150 has none but floods the pool, so it is throttled
    qs = [_q(f"t{i:03d}", budget=i != 150) for i in range(200)]
    qs.append(_q("agent", calls=4, budget=True))
    qs.append(_q("free"))  # no budget, not throttled: its limits do not bite, it gets no rule
    usage = [Usage("t150", "m", "r", 1e6)]
    table = compute_limits(qs, [PoolCapacity("m", "r", "fast", 1e5)], usage)
    rules, left = rate_limit_rules(table.tenants, tenant_header="x-t", token_costs=True)
    assert len(rules) == MAX_RULES and len(left) == 201 - MAX_RULES // 2
    assert rules[0]["clientSelectors"][0]["headers"][0]["value"] == "t150"  # throttled first
    free = table.tenant("free")
    assert free is not None and not free.enforced and "free" not in left
    assert not any(r["clientSelectors"][0]["headers"][0]["value"] == "free" for r in rules)
    agent = table.tenant("agent")
    assert agent is not None
    rules1, _ = rate_limit_rules([agent], tenant_header="x-t", token_costs=False)
    expect = -(-agent.limits.requests_per_second * 60 // 4)
    assert rules1[0]["limit"]["requests"] == int(expect)


def test_only_limits_that_bite_are_enforced() -> None:
    qs = [_q("a"), _q("b"), _q("c", budget=True)]
    pool = [PoolCapacity("m", "r", "fast", 100.0)]
    calm = compute_limits(qs, pool, [Usage("a", "m", "r", 30.0)])
    assert [t.enforced for t in calm.tenants] == [False, False, True]  # c: its budget
    over = compute_limits(qs, pool, [Usage("a", "m", "r", 500.0), Usage("b", "m", "r", 10.0)])
    a, b, c = over.tenants
    assert a.throttled and a.enforced and not b.enforced and c.enforced


def test_policies_per_gateway_namespace_and_deterministic_config_map() -> None:
    qs = [_q("a"), _q("b")]
    table = compute_limits(qs, [PoolCapacity("m", "r", "fast", 100)], [Usage("a", "m", "r", 50)])
    ing = IngressTarget(
        parent_refs=[
            ParentRef(name="g1"),
            ParentRef(name="g2", namespace="edge"),
            ParentRef(name="svc", kind="Service", group=""),
        ]
    )
    pols, left = render_policies(table, namespace="ns", ingress=ing, token_costs=False)
    assert [
        (p["metadata"]["namespace"], [r["name"] for r in p["spec"]["targetRefs"]]) for p in pols
    ] == [("edge", ["g2"]), ("ns", ["g1"])]
    assert left == []
    a = render_throttling_config_map(table, namespace="ns", policy="p", ingress=ing)
    b = render_throttling_config_map(table, namespace="ns", policy="p", ingress=ing)
    assert a == b
    assert a["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "llmfleet",
        "llmfleet.dev/component": "throttling",
    }
    doc = json.loads(a["data"]["throttling.json"])
    assert doc["tenants"]["a"]["pools"][0]["usageTokensPerSecond"] == 50
    st = render_status(qs[0], table, datetime(2026, 1, 1, tzinfo=UTC))
    assert st["status"]["conditions"][0]["reason"] == "NotOverloaded"


def test_capacity_from_plan_step_is_routed_load_over_utilisation() -> None:
    from llmfleet.cycle.limits import capacity_from_step
    from llmfleet.plan.types import PoolStep, ReplicaStep, Route, StepPlan

    step = StepPlan(
        step=0,
        integral=True,
        usd_per_hour=1.0,
        pools=(PoolStep("us", "h100", "H100", False, 2, 4, 16, 0.8),),
        replicas=(ReplicaStep("m", "us", "h100", 2),),
        routes=(
            Route("m", "fast", "us", "us", 0.7, 700.0),
            Route("m", "fast", "eu", "us", 0.5, 100.0),
            Route("m", "batch", "us", "us", 1.0, 200.0),
        ),
        batch=(),
        backlog=(),
        unmet=(),
    )
    caps = {c.key: c.tokens_per_second for c in capacity_from_step(step)}
    assert caps == {("m", "us", "batch"): 250.0, ("m", "us", "fast"): 1000.0}
