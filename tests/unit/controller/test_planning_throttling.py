"""The tenant limits in the planning cycle (pure parts and the publishing boundary): every
plan carries the fair-share limits of its step 0 for the tenants' usage; the usage read
never fails a cycle; the metrics are replaced each cycle; plan-only publishes nothing and a
failing publication is a condition, not an exception."""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import pytest
from prometheus_client import generate_latest

from llmfleet.api.conditions import THROTTLING_PUBLISHED as THROTTLING
from llmfleet.api.loading import load_manifests
from llmfleet.api.policy import FleetPolicy, PrometheusQueries
from llmfleet.controller import planning
from llmfleet.controller.metrics import FleetMetrics
from llmfleet.controller.planning import PlanningLoop, PlanningSettings, _Conditions, _Tick
from llmfleet.cycle import CycleResult, policy_snapshot
from llmfleet.cycle.demand import tenant_usage
from llmfleet.cycle.limits import (
    capacity_from_step,
    plan_capacity,
    room_to_grow,
    served_usage,
    tenant_limits,
)
from llmfleet.fairness.limits import LimitTable, Usage, compute_limits, to_throttles
from llmfleet.kube.client import KubeError
from llmfleet.kube.prometheus import BadQuery, PrometheusUnreachable, usage_from_results
from llmfleet.plan.types import Plan
from support.builders import SAMPLES, planning_policy
from support.cycles import NOW, FakeSource, cycle


def _policy(**spec: Any) -> FleetPolicy:
    return planning_policy(**spec)


def _cycle(usage: tuple[Usage, ...] = ()) -> tuple[FleetPolicy, Any, CycleResult, Plan]:
    pol = _policy()
    snap = policy_snapshot(load_manifests([SAMPLES], namespace="ns"), "ns")
    r = cycle(pol, snap, source=_QuotaDemandWithUsage(usage))
    assert r.spec is not None and r.plan is not None
    return pol, snap, r, r.plan


class _QuotaDemandWithUsage(FakeSource):
    """No demand history (the quotas' fallback), and the given usage."""

    def __init__(self, usage: tuple[Usage, ...]) -> None:
        from llmfleet.cycle import DemandRead

        super().__init__(read_result=DemandRead((), 0.0, 3600, None, None), usage=usage)


@pytest.fixture(scope="module")
def idle() -> tuple[FleetPolicy, Any, CycleResult, Plan]:
    return _cycle()


def test_every_plan_carries_its_step0_limits_for_every_tenant(idle):
    _pol, snap, r, plan = idle
    assert r.limits is not None and r.spec is not None
    want = compute_limits(snap.tenants, plan_capacity(plan), ())
    assert r.limits == want == tenant_limits(plan, snap, ())
    # step 0's capacity as planned; the batch tier, deferred at step 0, at its horizon mean
    step0 = capacity_from_step(plan.first())
    assert plan_capacity(plan)[: len(step0)] == step0
    deferred = plan_capacity(plan)[len(step0) :]
    assert deferred and {c.tier for c in deferred} == {"batch"}
    assert all(type(c.tokens_per_second) is float for c in plan_capacity(plan))  # JSON-able
    assert r.spec.throttles == to_throttles(r.limits)
    assert {t.tenant for t in r.spec.throttles} == {q.spec.tenant_id for q in snap.tenants}
    # no usage: nothing is overloaded, nobody is throttled, the limits are still there
    assert r.limits.overloaded == () and not any(t.throttled for t in r.limits.tenants)
    assert all(t.tokens_per_second > 0 for t in r.spec.throttles)


def _full(plan: Plan) -> Plan:
    """``plan`` with every pool of its executed step at its maxNodes: no room to grow."""
    first = plan.first()
    pools = tuple(dataclasses.replace(p, max_nodes=math.ceil(p.nodes)) for p in first.pools)
    return dataclasses.replace(plan, steps=(dataclasses.replace(first, pools=pools),
                                            *plan.steps[1:]))


def test_a_tenant_far_above_its_share_is_throttled_where_the_fleet_cannot_grow(idle):
    _pol, snap, r0, plan = idle
    assert r0.limits is not None
    # the tenant of the first pool asks for ten times the pool's capacity
    p = r0.limits.pools[0]
    cap = next(c for c in plan_capacity(plan) if c.key == (p.model, p.region, p.tier))
    abuser = Usage(p.tenant, p.model, p.region, 10 * cap.tokens_per_second)
    _pol, _snap, r, plan2 = _cycle((abuser,))
    assert r.limits is not None and r.spec is not None
    assert r.limits == tenant_limits(plan2, snap, (abuser,))
    assert r.spec.throttles == to_throttles(r.limits)
    # the region has room: the fleet grows for the demand, nobody is throttled for it
    assert (p.model, p.region) in room_to_grow(plan2.first(), snap)
    t = r.limits.tenant(p.tenant)
    assert t is not None and not t.throttled
    assert (p.model, p.region, p.tier) not in r.limits.overloaded
    # every pool at its maxNodes: the fair-share limits hold the tenant to its share
    full = tenant_limits(_full(plan2), snap, (abuser,))
    t = full.tenant(p.tenant)
    assert t is not None and t.throttled and t.usage_tokens_per_second > 0
    assert (p.model, p.region, p.tier) in full.overloaded


def _Usage(out: tuple[Usage, ...] | Exception) -> FakeSource:
    return FakeSource(usage=out)


def test_usage_read_never_fails_the_cycle():
    pol = _policy()
    u = (Usage("acme-chat", "llama-3-1-8b", "us-east", 50.0),)
    src = _Usage(u)
    assert tenant_usage(pol, src, NOW.timestamp()) == (u, "")
    assert src.queries[0] == pol.spec.prometheus.queries
    usage, note = tenant_usage(pol, _Usage(()), NOW.timestamp())
    assert usage == () and "no per-tenant usage in Prometheus" in note
    usage, note = tenant_usage(pol, _Usage(PrometheusUnreachable("down")), NOW.timestamp())
    assert usage == () and "tenant usage not read (down)" in note
    usage, note = tenant_usage(pol, _Usage(BadQuery("no tenant label")), NOW.timestamp())
    assert usage == () and "no tenant label" in note
    assert tenant_usage(pol, None, NOW.timestamp())[0] == ()


def test_default_usage_query_sums_the_gateway_token_counters_by_tenant():
    q = PrometheusQueries().usage_template()
    assert q is not None and "sum by (tenant, model_name, region)" in q and "$window" in q
    assert 'gen_ai_client_token_usage_sum{gen_ai_token_type=~"input|output"}' in q
    assert '"tenant", "$1", "tenant_id"' in q  # the header-derived label, renamed
    custom = _policy(prometheus={"queries": {"tenantUsage": "sum by (tenant) (x)"}})
    assert custom.spec.prometheus.queries.usage_template() == "sum by (tenant) (x)"


def test_usage_results_are_summed_per_tenant_model_region():
    def item(t: str, m: str, r: str, v: str) -> dict[str, Any]:
        return {"metric": {"tenant": t, "model_name": m, "region": r}, "value": [1.0, v]}

    out = usage_from_results(
        [item("b", "m", "eu", "5"), item("a", "m", "us", "1.5"), item("a", "m", "us", "2"),
         item("a", "m", "eu", "NaN"), item("c", "m", "eu", "-3")]
    )  # fmt: skip
    assert out == (
        Usage("a", "m", "us", 3.5),
        Usage("b", "m", "eu", 5.0),
        Usage("c", "m", "eu", 0.0),
    )
    with pytest.raises(BadQuery, match=r"tenantUsage.*lacks label tenant"):
        usage_from_results([{"metric": {"model_name": "m", "region": "us"}, "value": [1, "1"]}])


def _series(text: str, name: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith(name + "{")]


def test_tenant_metrics_replace_the_previous_cycles_series(idle):
    _pol, _snap, r, _plan = idle
    assert r.limits is not None
    m = FleetMetrics()
    m.record_limits(r.limits)
    text = generate_latest(m.registry).decode()
    limits = _series(text, "llmfleet_tenant_limit_tokens_per_second")
    usage = _series(text, "llmfleet_tenant_usage_tokens_per_second")
    assert len(limits) == len(usage) == len(r.limits.by_tenant_model()) > 0
    (tenant, tier, model), (lim, _use) = sorted(r.limits.by_tenant_model().items())[0]
    line = f'{{model_name="{model}",tenant="{tenant}",tier="{tier}"}}'
    assert any(x.startswith(f"llmfleet_tenant_limit_tokens_per_second{line} ") for x in limits)
    assert float(next(x for x in limits if line in x).split()[-1]) == pytest.approx(lim)
    m.record_limits(LimitTable(pools=(), tenants=(), overloaded=()))
    text = generate_latest(m.registry).decode()
    assert _series(text, "llmfleet_tenant_limit_tokens_per_second") == []


class _Cluster:
    """Records writes; ``fail`` makes every write fail."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.applied: list[dict[str, Any]] = []

    def apply(self, obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
        if self.fail:
            raise KubeError(f"apply {obj['kind']}: forbidden", 403)
        self.applied.append(obj)
        return obj

    def list(self, *args: Any, **kw: Any) -> list[dict[str, Any]]:
        if self.fail:
            raise KubeError("list: forbidden", 403)
        return []

    def raw_get(self, path: str, **kw: Any) -> Any:
        raise KubeError("not found", 404)

    def get(self, *args: Any, **kw: Any) -> dict[str, Any] | None:
        if self.fail:
            raise KubeError("get: forbidden", 403)
        return None


def _throttle(
    monkeypatch: pytest.MonkeyPatch, cluster: _Cluster, result: CycleResult, mode: str
) -> tuple[_Conditions, list[dict[str, Any]], FleetMetrics]:
    events: list[dict[str, Any]] = []
    monkeypatch.setattr(planning.kopf, "event", lambda body, **kw: events.append(kw))
    metrics = FleetMetrics()
    loop = PlanningLoop(PlanningSettings(), metrics, connect=lambda: cluster)  # type: ignore[arg-type,return-value]
    pol = _policy(mode=mode)
    snap = policy_snapshot(load_manifests([SAMPLES], namespace="ns"), "ns")
    cond = _Conditions([], NOW, 1)
    tick = _Tick({}, {}, {}, cond, NOW, "ns", logging.getLogger("test"))  # type: ignore[arg-type]
    loop._throttle(tick, pol, snap, result, "default-x")
    return cond, events, metrics


def _cond(c: _Conditions) -> dict[str, Any]:
    return next(x for x in c.items if x["type"] == THROTTLING)


def test_plan_only_publishes_nothing_but_exports_the_limits(idle, monkeypatch):
    _pol, _snap, r, _plan = idle
    cluster = _Cluster()
    cond, events, metrics = _throttle(monkeypatch, cluster, r, "plan-only")
    assert cluster.applied == [] and events == []
    c = _cond(cond)
    assert (c["status"], c["reason"]) == ("False", "PlanOnly")
    assert "FleetPlan default-x holds the limits" in c["message"]
    text = generate_latest(metrics.registry).decode()
    assert _series(text, "llmfleet_tenant_limit_tokens_per_second")


def test_apply_publishes_the_table_to_the_configmap_and_every_quota(idle, monkeypatch):
    _pol, snap, r, _plan = idle
    cluster = _Cluster()
    cond, events, _m = _throttle(monkeypatch, cluster, r, "apply")
    kinds = [(o["kind"], o["metadata"]["name"]) for o in cluster.applied]
    assert kinds[0] == ("ConfigMap", "llmfleet-throttling")
    assert ("BackendTrafficPolicy", "llmfleet-throttling") in kinds  # the sample's Gateway
    # the live list was empty (the quotas were deleted meanwhile): no status written
    assert all(k != "TenantQuota" for k, _ in kinds)
    c = _cond(cond)
    assert (c["status"], c["reason"]) == ("True", "Published"), c["message"]
    assert f"{len(snap.tenants)} tenants" in c["message"] and events == []


def test_a_failing_publication_is_a_condition_and_an_event_not_an_error(idle, monkeypatch):
    _pol, _snap, r, _plan = idle
    cond, events, metrics = _throttle(monkeypatch, _Cluster(fail=True), r, "apply")
    c = _cond(cond)
    assert (c["status"], c["reason"]) == ("False", "PublishFailed")
    assert "forbidden" in c["message"]
    assert [e["reason"] for e in events] == ["ThrottlingFailed"]
    text = generate_latest(metrics.registry).decode()
    assert 'llmfleet_actuation_errors_total{region="",target="throttling"}' in text


def test_usage_per_origin_moves_to_the_regions_serving_it(idle):
    _pol, snap, _r, plan = idle
    route = next(r for r in plan.first().routes if r.fraction > 0)
    key = (route.model, route.tier, route.origin)
    tenant = next(q.spec.tenant_id for q in snap.tenants if q.spec.tier == route.tier)
    regions = {r.region for r in plan.first().routes if (r.model, r.tier, r.origin) == key}
    out = served_usage(
        plan,
        snap,
        [Usage(tenant, route.model, route.origin, 100.0), Usage("nobody", "m", "x", 5.0)],
    )
    mine = [u for u in out if u.tenant == tenant]
    assert {u.region for u in mine} == regions
    assert sum(u.tokens_per_second for u in mine) == pytest.approx(100.0)
    assert Usage("nobody", "m", "x", 5.0) in out  # no quota, no route: where it was read


def test_deadline_work_arriving_fast_is_queued_never_throttled_at_the_ingress(idle):
    _pol, snap, r0, _plan = idle
    assert r0.limits is not None
    batch = next(q for q in snap.tenants if q.spec.tier == "batch")
    pool = next(p for p in r0.limits.pools if p.tenant == batch.spec.tenant_id)
    flood = Usage(pool.tenant, pool.model, pool.region, 1e7)
    _p, _s, r, _plan2 = _cycle((flood,))
    assert r.limits is not None
    t = r.limits.tenant(pool.tenant)
    assert t is not None and not t.throttled
    assert not any(k[2] == "batch" for k in r.limits.overloaded)
    # enforced only for the budget its quota sets (the sample's batch tenants have one)
    budgeted = batch.spec.budgets.tokens_per_minute is not None
    spec_t = next(x for x in r.spec.throttles if x.tenant == pool.tenant)
    assert spec_t.enforced is budgeted is t.enforced
