"""The planning loop: on each FleetPolicy's schedule, read demand, forecast, plan, record
the plan as a FleetPlan, then actuate it (unless the policy is ``plan-only``).

Scheduling. kopf timers have one fixed interval per handler, while each policy has its own
``spec.intervalSeconds``; so a short timer *tick* runs on every FleetPolicy and plans when

    1. now >= status.nextRunTime, or the policy has no nextRunTime yet, or
    2. the ``Planned`` condition's observedGeneration differs from metadata.generation
       (the spec changed: plan again at once).

After a cycle ``nextRunTime = now + intervalSeconds``; after a temporary failure
``now + retry`` with ``retry = min(intervalSeconds, 60 s)`` (and kopf retries the handler
after the same delay).

One cycle (:func:`run_cycle`, testable without kopf):

    gather   the Regions, LLMModels, SLATiers and TenantQuotas (kopf indexes; namespaced kinds
             from the policy's namespace) and the fleet now (``kube.actuate.observe``);
    demand   range-query Prometheus (``kube.prometheus``) at the horizon's step over
             ``forecast.historySeconds`` and forecast every flow (``forecast.forecaster``).
             Prometheus unreachable -> TemporaryError, last plan kept. Data older than
             ``maxDataAgeSeconds`` -> last plan kept. No data (or none for a known flow) ->
             the last plan is kept when there is one; before the first plan, the demand the
             TenantQuotas' budgets imply (``forecast.synthetic``) is planned for, with every
             pool and replica count floored at what runs now (never scale down on missing
             data). Each of the three sets ``DemandDataStale=True``. Rejected query ->
             PermanentError until the spec changes;
    observe  nodes and replicas in every region's cluster. A region whose cluster does not
             answer is *held*: its pools are pinned and its replicas kept at the last plan's
             figures (it is neither scaled down nor counted on for more), the condition
             ``RegionUnreachable=True`` names it, and the other regions are still actuated;
    plan     ``plan.solve.plan_fleet`` (on its time limit it returns the best feasible plan
             found); an infeasible solve, or none found in time, writes no FleetPlan: the
             last good plan stays, the status says why;
    limits   the tenants' fair-share limits (``fairness.limits.compute_limits``) from the
             plan's step-0 capacity (``kube.throttling.capacity_from_step``; a deferred
             batch tier gets its mean planned rate over the horizon) and each
             tenant's usage now (``spec.prometheus.queries.tenantUsage``, per origin
             region, moved to the serving regions along the plan's routes; none, or a failed
             read, is no usage: the limits are then the budgets, nothing is overloaded);
             recorded in the FleetPlan's ``spec.throttles`` and the
             ``llmfleet_tenant_{limit,usage}_tokens_per_second`` gauges;
    record   FleetPlan ``<policy>-<yyyymmddhhmmss>`` owned by the policy; older plans beyond
             ``plansToKeep`` are deleted;
    actuate  ``kube.actuate.actuate`` when ``mode: apply``; a dry-run diff otherwise;
    throttle when ``mode: apply``, after routing: ``kube.throttling.publish_throttling``
             (the ``llmfleet-throttling`` ConfigMap, Envoy Gateway BackendTrafficPolicies,
             every TenantQuota's status). A failure there is a Warning Event and
             ``ThrottlingPublished=False``; it never stops the cycle. ``plan-only`` publishes
             nothing.

Every scale action and every failure is an Event; the policy's status carries the last plan,
USD/h, gap, next run and the ``Planned``/``DemandRead``/``DemandDataStale``/
``RegionUnreachable``/``Actuated``/``ThrottlingPublished`` conditions. A FleetPolicy the operator cannot read is
``Planned=False InvalidSpec`` with a Warning Event (never a crash).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import kopf
from pydantic import ValidationError

from llmfleet.api.base import API_VERSION, GROUP, VERSION, ConditionStatus
from llmfleet.api.conditions import upsert_condition
from llmfleet.api.loading import describe_validation_error
from llmfleet.api.plan import FleetPlan, FleetPlanSpec, ModelReplicas, PoolNodes
from llmfleet.api.policy import FleetPolicy, PrometheusQueries
from llmfleet.api.references import FleetSnapshot
from llmfleet.api.resource import Resource
from llmfleet.api.tenant import TenantQuota
from llmfleet.controller.metrics import FleetMetrics
from llmfleet.fairness.limits import (
    LimitTable,
    PoolCapacity,
    Usage,
    compute_limits,
    to_throttles,
)
from llmfleet.forecast.forecaster import forecast_all
from llmfleet.forecast.synthetic import quota_demand
from llmfleet.forecast.types import DemandForecast, FlowKey
from llmfleet.kube.actuate import RegionClusters, actuate, observe
from llmfleet.kube.client import Cluster, KubeError
from llmfleet.kube.prometheus import (
    BadQuery,
    DemandRead,
    DemandReader,
    PrometheusError,
    PrometheusUnreachable,
)
from llmfleet.kube.throttling import capacity_from_step, publish_throttling
from llmfleet.plan.convert import to_fleet_plan_spec
from llmfleet.plan.instance import CurrentState, InstanceError, PlanningInstance, from_snapshot
from llmfleet.plan.solve import plan_fleet
from llmfleet.plan.types import Infeasible, Plan, PlanOutcome

PLANNED = "Planned"
DEMAND = "DemandRead"
STALE = "DemandDataStale"
UNREACHABLE = "RegionUnreachable"
ACTUATED = "Actuated"
THROTTLING = "ThrottlingPublished"
POLICY_LABEL = f"{GROUP}/policy"
RETRY_SECONDS = 60.0

DemandSourceKind = Literal["prometheus", "quota"]


@dataclass(frozen=True)
class PlanningSettings:
    """Knobs of the planning loop."""

    enabled: bool = True
    """False runs no planning at all (a validating-only operator)."""
    tick_seconds: float = 15.0
    """How often every FleetPolicy is checked for being due."""
    retry_seconds: float = RETRY_SECONDS
    """Most time before a temporarily failed cycle is tried again."""


class DemandSource(Protocol):
    """What :func:`run_cycle` reads demand from (a :class:`DemandReader`)."""

    def read(
        self, queries: PrometheusQueries, *, end: float, history_seconds: int, step_seconds: int
    ) -> DemandRead: ...


class UsageSource(Protocol):
    """What :func:`tenant_usage` reads per-tenant usage from (a :class:`DemandReader`)."""

    def read_usage(
        self, queries: PrometheusQueries, *, end: float, step_seconds: int
    ) -> tuple[Usage, ...]: ...


class StaleDemand(PrometheusError):
    """The newest demand sample is older than ``maxDataAgeSeconds``."""


@dataclass(frozen=True)
class Demand:
    """The forecasts one cycle plans for, and where they came from."""

    forecasts: tuple[DemandForecast, ...]
    source: DemandSourceKind
    message: str
    age_seconds: float | None = None


@dataclass(frozen=True)
class Floors:
    """What a plan may not go under: ``nodes`` per (region, pool) and ``replicas`` per
    (model, region, pool). Regions in ``pinned`` (unreachable ones) are held exactly: their
    pools neither grow nor shrink and their replicas are the floors (0 where none)."""

    nodes: Mapping[tuple[str, str], int] = field(default_factory=dict)
    replicas: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    pinned: frozenset[str] = frozenset()
    why: str = ""

    def __bool__(self) -> bool:
        return bool(self.nodes or self.replicas or self.pinned)

    def merged(self, other: Floors) -> Floors:
        """Both floors (the higher of two); the pinned regions' own figures win."""
        nodes = {k: max(v, other.nodes.get(k, 0)) for k, v in self.nodes.items()}
        nodes |= {k: v for k, v in other.nodes.items() if k not in nodes}
        replicas = {k: max(v, other.replicas.get(k, 0)) for k, v in self.replicas.items()}
        replicas |= {k: v for k, v in other.replicas.items() if k not in replicas}
        pinned = self.pinned | other.pinned
        for src in (self, other):
            if src.pinned:
                nodes |= {k: v for k, v in src.nodes.items() if k[0] in src.pinned}
                replicas |= {k: v for k, v in src.replicas.items() if k[1] in src.pinned}
        return Floors(nodes, replicas, pinned, "; ".join(w for w in (self.why, other.why) if w))


def held_regions(last: FleetPlanSpec | None, regions: Mapping[str, str]) -> Floors:
    """Pin the unreachable ``regions`` (name -> why) at the last plan's figures."""
    if last is None or not regions:
        return Floors(why=_unreachable_note(regions, None) if regions else "")
    names = set(regions)
    return Floors(
        nodes={(n.region, n.pool): n.nodes for n in last.nodes if n.region in names},
        replicas={
            (r.model, r.region, r.pool): r.replicas for r in last.replicas if r.region in names
        },
        pinned=frozenset(names),
        why=_unreachable_note(regions, last),
    )


def _unreachable_note(regions: Mapping[str, str], last: FleetPlanSpec | None) -> str:
    names = ", ".join(sorted(regions))
    held = "held at the last plan's nodes and replicas" if last else "not changed (no plan yet)"
    return f"region(s) {names} unreachable: {held}"


def bounded(inst: PlanningInstance, floors: Floors) -> PlanningInstance:
    """``inst`` with every pool's minNodes raised to its floor; pinned regions' pools held
    at exactly their floor."""
    if not floors:
        return inst
    regions = []
    for r in inst.regions:
        pools = []
        for p in r.pools:
            lo = floors.nodes.get((r.name, p.name))
            if r.name in floors.pinned and lo is not None:
                pools.append(replace(p, min_nodes=lo, max_nodes=lo))
            elif lo is not None and lo > p.min_nodes:
                pools.append(replace(p, min_nodes=lo, max_nodes=max(p.max_nodes, lo)))
            else:
                pools.append(p)
        regions.append(replace(r, pools=tuple(pools)))
    return replace(inst, regions=tuple(regions))


def floored(spec: FleetPlanSpec, floors: Floors, inst: PlanningInstance) -> FleetPlanSpec:
    """``spec`` with no replica count under its floor (pinned regions exactly at theirs) and
    every pool holding enough nodes for its replicas; the solver message says what moved."""
    if not floors:
        return spec
    pools = {(p.region, p.name): p for r in inst.regions for p in r.pools}
    gpr = {(m.name, pr.gpu_type): pr.gpus_per_replica for m in inst.models for pr in m.profiles}
    replicas = {(r.model, r.region, r.pool): r for r in spec.replicas}
    models = {m.name for m in inst.models}
    raised = 0
    for key in sorted(set(replicas) | set(floors.replicas)):
        model, region, pool = key
        if (region, pool) not in pools or model not in models:
            continue  # a model or pool that is gone is not held
        lo = floors.replicas.get(key, 0)
        cur = replicas.get(key)
        have = cur.replicas if cur is not None else 0
        want = lo if region in floors.pinned else max(have, lo)
        if want != have:
            raised += 1
            replicas[key] = (
                cur.model_copy(update={"replicas": want})
                if cur is not None
                else ModelReplicas(
                    model=model, region=region, pool=pool, replicas=want, current_replicas=want
                )
            )
    need: dict[tuple[str, str], int] = {}
    for (model, region, pool), r in replicas.items():
        p = pools.get((region, pool))
        if p is not None:
            need[(region, pool)] = need.get((region, pool), 0) + r.replicas * gpr.get(
                (model, p.gpu_type), 1
            )
    nodes = {(n.region, n.pool): n for n in spec.nodes}
    cost = spec.cost_per_hour
    for where, p in sorted(pools.items()):
        cur_n = nodes.get(where)
        have = cur_n.nodes if cur_n is not None else 0
        lo = floors.nodes.get(where, 0)
        fit = -(-need.get(where, 0) // p.gpus_per_node)
        pin = where[0] in floors.pinned and where in floors.nodes
        want = lo if pin else max(have, lo, fit)
        if want == have:
            continue
        cost += (want - have) * p.price_per_node_hour
        nodes[where] = (
            cur_n.model_copy(update={"nodes": want})
            if cur_n is not None
            else PoolNodes(
                region=p.region,
                pool=p.name,
                gpu_type=p.gpu_type,
                capacity_type="spot" if p.spot else "on-demand",
                nodes=want,
            )
        )
    solver = spec.solver
    note = f"floors: {floors.why}" + (f" ({raised} replica counts held)" if raised else "")
    return spec.model_copy(
        update={
            "nodes": [nodes[k] for k in sorted(nodes)],
            "replicas": [replicas[k] for k in sorted(replicas)],
            "cost_per_hour": round(max(cost, 0.0), 2),
            "solver": solver.model_copy(update={"message": f"{solver.message}; {note}"[:4096]}),
        }
    )


@dataclass(frozen=True)
class CycleResult:
    """One cycle's outcome: a plan to record, or why there is none."""

    demand: Demand
    solver_status: str
    solve_seconds: float
    spec: FleetPlanSpec | None = None
    failure: str | None = None
    """Why no plan was made (the last good plan stays)."""
    failure_reason: str = ""
    limits: LimitTable | None = None
    """The tenants' limits for the plan (None without a plan, or when they failed)."""
    limits_error: str = ""
    """Why a plan has no limits."""


# --------------------------------------------------------------------------- pure-ish core


def policy_snapshot(objects: Sequence[Resource], namespace: str | None) -> FleetSnapshot:
    """Cluster-scoped objects plus the namespaced ones of ``namespace`` (no plans, no policies)."""
    snap = FleetSnapshot()
    buckets: dict[str, list[Any]] = {
        "Region": snap.regions,
        "LLMModel": snap.models,
        "SLATier": snap.tiers,
        "TenantQuota": snap.tenants,
    }
    for o in sorted(objects, key=lambda o: (o.info.kind, o.namespace or "", o.name)):
        bucket = buckets.get(o.info.kind)
        if bucket is None:
            continue
        if o.info.scope == "Namespaced" and o.namespace != namespace:
            continue
        bucket.append(o)
    return snap


def known_flows(
    forecasts: Mapping[FlowKey, DemandForecast], snapshot: FleetSnapshot
) -> tuple[list[DemandForecast], list[FlowKey]]:
    """Forecasts whose model, origin region and tier exist; and the flows dropped."""
    models = {m.name for m in snapshot.models}
    regions = {r.name for r in snapshot.regions}
    tiers = {t.name for t in snapshot.tiers}
    keep, dropped = [], []
    for key in sorted(forecasts, key=lambda k: (k.model, k.origin, k.tier)):
        if key.model in models and key.origin in regions and key.tier in tiers:
            keep.append(forecasts[key])
        else:
            dropped.append(key)
    return keep, dropped


def quota_fallback(policy: FleetPolicy, snapshot: FleetSnapshot, now: float, why: str) -> Demand:
    """Demand implied by the TenantQuotas' budgets, starting at the current step."""
    h = policy.spec.horizon
    start = math.floor(now / h.step_seconds) * h.step_seconds
    forecasts = quota_demand(
        snapshot,
        start=start,
        steps=h.steps,
        step_seconds=h.step_seconds,
        quantile=policy.spec.forecast.upper_quantile,
    )
    return Demand(
        tuple(forecasts),
        "quota",
        f"{why}; planned for the demand the TenantQuotas' budgets imply "
        f"({len(forecasts)} flows, synthetic daily curve)",
    )


def demand_for(
    policy: FleetPolicy, snapshot: FleetSnapshot, source: DemandSource | None, now: float
) -> Demand:
    """Forecast demand from ``source``; raises :class:`PrometheusUnreachable`,
    :class:`BadQuery` or :class:`StaleDemand`; falls back to the quotas when there is no data."""
    spec = policy.spec
    if source is None:
        return quota_fallback(policy, snapshot, now, "no Prometheus configured")
    read = source.read(
        spec.prometheus.queries,
        end=now,
        history_seconds=spec.forecast.history_seconds,
        step_seconds=spec.horizon.step_seconds,
    )
    return demand_from_read(policy, snapshot, read, now)


def demand_from_read(
    policy: FleetPolicy, snapshot: FleetSnapshot, read: DemandRead, now: float
) -> Demand:
    """Forecasts from what Prometheus returned (see :func:`demand_for`)."""
    spec = policy.spec
    url = spec.prometheus.url
    if read.empty:
        return quota_fallback(policy, snapshot, now, f"no demand data in Prometheus {url}")
    if read.age_seconds is not None and read.age_seconds > spec.prometheus.max_data_age_seconds:
        raise StaleDemand(
            f"newest demand sample in Prometheus {url} is {read.age_seconds:.0f}s old "
            f"(spec.prometheus.maxDataAgeSeconds {spec.prometheus.max_data_age_seconds}); "
            "keeping the last plan"
        )
    forecasts = forecast_all(
        read.histories,
        horizon_steps=spec.horizon.steps,
        method=spec.forecast.method,
        quantile=spec.forecast.upper_quantile,
        folds=spec.forecast.backtest_folds,
    )
    keep, dropped = known_flows(forecasts, snapshot)
    if not keep:
        why = f"no demand in Prometheus {url} for a known (model, region, tier)"
        if dropped:
            why += f" ({len(dropped)} flows name unknown objects, e.g. {_flow(dropped[0])})"
        return quota_fallback(policy, snapshot, now, why)
    message = f"{len(keep)} flows from Prometheus {url}"
    if read.age_seconds is not None:
        message += f", data {read.age_seconds:.0f}s old"
    if dropped:
        message += (
            f"; {len(dropped)} flows ignored (unknown model/region/tier, e.g. {_flow(dropped[0])})"
        )
    return Demand(tuple(keep), "prometheus", message, read.age_seconds)


def tenant_usage(
    policy: FleetPolicy, source: UsageSource | None, now: float
) -> tuple[tuple[Usage, ...], str]:
    """Each tenant's usage now, and a note when it could not be read (then no usage: the
    limits are still computed, from the budgets alone)."""
    if source is None:
        return (), "no Prometheus configured: no tenant usage"
    try:
        usage = source.read_usage(
            policy.spec.prometheus.queries, end=now, step_seconds=policy.spec.horizon.step_seconds
        )
    except PrometheusError as err:
        return (), f"tenant usage not read ({err}); limits computed without usage"
    if not usage:
        return (), f"no per-tenant usage in Prometheus {policy.spec.prometheus.url}"
    return usage, ""


def plan_capacity(plan: Plan) -> list[PoolCapacity]:
    """Capacity per (model, region, tier) the limits share out: the executed step's
    (``capacity_from_step``). A (model, tier) step 0 serves nowhere but later steps do
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
    for their usage in the serving regions (:func:`served_usage`)."""
    return compute_limits(
        snapshot.tenants, plan_capacity(plan), served_usage(plan, snapshot, usage)
    )


def _flow(k: FlowKey) -> str:
    return f"{k.model}/{k.origin}/{k.tier}"


def run_cycle(
    policy: FleetPolicy,
    snapshot: FleetSnapshot,
    demand: Demand,
    current: CurrentState,
    made_at: datetime,
    floors: Floors | None = None,
    solve: Callable[[PlanningInstance], PlanOutcome] = plan_fleet,
    usage: Sequence[Usage] = (),
) -> CycleResult:
    """Plan for ``demand`` from ``current``, never under ``floors``: a FleetPlanSpec with
    the tenants' limits for ``usage`` (``spec.throttles``), or why not (never raises on bad
    input)."""
    floors = floors or Floors()
    try:
        inst = bounded(from_snapshot(snapshot, list(demand.forecasts), current, policy), floors)
    except InstanceError as err:
        return CycleResult(demand, "Error", 0.0, failure=f"cannot plan: {err}",
                           failure_reason="InvalidFleet")  # fmt: skip
    outcome = solve(inst)
    if isinstance(outcome, Plan):
        spec = floored(to_fleet_plan_spec(outcome, inst, made_at), floors, inst)
        note = f"demand: {demand.message}"
        solver = spec.solver
        limits: LimitTable | None = None
        limits_error = ""
        try:
            limits = tenant_limits(outcome, snapshot, usage)
        except Exception as err:  # a bug in the limits must not lose the plan
            logging.getLogger(__name__).exception("computing the tenant limits")
            limits_error = f"{type(err).__name__}: {err}"
        spec = spec.model_copy(
            update={
                "throttles": to_throttles(limits) if limits is not None else [],
                "cost_per_hour": round(spec.cost_per_hour, 2),
                "solver": solver.model_copy(
                    update={
                        "message": f"{solver.message}; {note}"[:4096],
                        "gap": None if solver.gap is None else round(solver.gap, 6),
                        "solve_seconds": round(solver.solve_seconds, 3),
                    }
                ),
            }
        )
        return CycleResult(
            demand, spec.solver.status, spec.solver.solve_seconds, spec,
            limits=limits, limits_error=limits_error,
        )  # fmt: skip
    status = "Infeasible" if isinstance(outcome, Infeasible) else "Timeout"
    return CycleResult(
        demand,
        status,
        outcome.seconds,
        failure=f"{outcome.message}; the last good plan stays",
        failure_reason="SolveInfeasible" if status == "Infeasible" else "SolveTimeout",
    )


def plan_name(policy: str, made_at: datetime) -> str:
    return f"{policy}-{made_at.astimezone(UTC):%Y%m%d%H%M%S}"


def fleet_plan_object(
    spec: FleetPlanSpec, name: str, namespace: str, owner: Mapping[str, Any]
) -> dict[str, Any]:
    """The FleetPlan manifest, owned by the policy (deleted with it)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "FleetPlan",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {POLICY_LABEL: spec.policy},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "FleetPolicy",
                    "name": owner["name"],
                    "uid": owner["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": spec.to_wire(),
    }


def plans_to_delete(plans: Sequence[Mapping[str, Any]], keep: int) -> list[str]:
    """Names of the oldest plans beyond ``keep`` (by spec.madeAt, then name)."""
    ordered = sorted(
        plans,
        key=lambda p: (str((p.get("spec") or {}).get("madeAt", "")), p["metadata"]["name"]),
    )
    return [p["metadata"]["name"] for p in ordered[: max(0, len(ordered) - keep)]]


def is_due(status: Mapping[str, Any], generation: int | None, now: datetime) -> bool:
    """Rule 1-2 of the module docstring."""
    planned = next((c for c in status.get("conditions") or [] if c.get("type") == PLANNED), None)
    if planned is None or planned.get("observedGeneration") != generation:
        return True
    nxt = status.get("nextRunTime")
    if not nxt:
        return True
    try:
        when = datetime.fromisoformat(str(nxt).replace("Z", "+00:00"))
    except ValueError:
        return True
    return now >= when


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- kopf shell


@dataclass
class _Conditions:
    """Accumulates condition changes for one status patch."""

    items: list[dict[str, Any]]
    now: datetime
    generation: int | None
    changed: bool = False
    touched: set[str] = field(default_factory=set)

    def set(self, type_: str, status: ConditionStatus, reason: str, message: str) -> None:
        self.items, changed = upsert_condition(
            self.items, type_, status, reason, message, self.now, self.generation
        )
        self.changed = self.changed or changed
        self.touched.add(type_)

    def merged_into(self, fresh: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``fresh`` (the conditions now, e.g. a ``Valid`` written while we planned) with the
        types this cycle set replaced by ours."""
        keep = [dict(c) for c in fresh if c.get("type") not in self.touched]
        mine = [c for c in self.items if c.get("type") in self.touched]
        return sorted([*keep, *mine], key=lambda c: str(c.get("type")))


@dataclass
class PlanningLoop:
    """The planning timer's state: the hub cluster, the metrics, how to reach actuation."""

    settings: PlanningSettings
    metrics: FleetMetrics
    connect: Callable[[], Cluster] = Cluster.connect
    _cluster: Cluster | None = None

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = self.connect()
        return self._cluster

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    # ---------------------------------------------------------------- the handler

    def tick(
        self,
        body: kopf.Body,
        status: kopf.Status,
        patch: kopf.Patch,
        logger: logging.Logger,
        **kwargs: Any,
    ) -> None:
        now = datetime.now(UTC)
        generation = body.metadata.get("generation")
        if not is_due(status, generation, now):
            return
        # a deep copy: kopf's live body changes under us while the cycle runs
        cond = _Conditions(copy.deepcopy(list(status.get("conditions") or [])), now, generation)
        namespace: str = body.metadata.namespace or "default"
        try:
            policy = FleetPolicy.from_wire(
                {
                    "apiVersion": body.get("apiVersion"),
                    "kind": body.get("kind"),
                    "metadata": dict(body.metadata),
                    "spec": dict(body.spec),
                }
            )
        except ValidationError as err:
            msg = f"FleetPolicy {namespace}/{body.metadata.name}: {describe_validation_error(err)}"
            cond.set(PLANNED, "False", "InvalidSpec", msg)
            self._finish(patch, status, cond, now, None, RETRY_SECONDS * 60)
            kopf.event(body, type="Warning", reason="InvalidSpec", message=msg[:1000])
            raise kopf.PermanentError(msg) from None
        interval = float(policy.spec.interval_seconds)
        retry = min(interval, self.settings.retry_seconds)
        objects: list[Resource] = []
        for name, idx in kwargs.items():
            if name.startswith("idx_") and idx is not None:
                objects += [o for values in idx.values() for o in values]
        snapshot = policy_snapshot(objects, namespace)

        # -- demand
        reader = DemandReader(policy.spec.prometheus)
        try:
            demand = demand_for(policy, snapshot, reader, now.timestamp())
            usage, usage_note = tenant_usage(policy, reader, now.timestamp())
        except (PrometheusUnreachable, StaleDemand) as err:
            reason = (
                "PrometheusUnreachable"
                if isinstance(err, PrometheusUnreachable)
                else ("StaleDemand")
            )
            cond.set(DEMAND, "False", reason, str(err))
            cond.set(STALE, "True", reason, f"{err}; the last plan stays, nothing is scaled down")
            cond.set(PLANNED, "False", reason, f"{err}; the last plan stays")
            self._finish(patch, status, cond, now, None, retry)
            kopf.event(body, type="Warning", reason=reason, message=str(err)[:1000])
            # retry at the tick: the nextRunTime gate spaces the attempts, and a spec change
            # is still noticed at once
            raise kopf.TemporaryError(str(err), delay=self.settings.tick_seconds) from None
        except BadQuery as err:
            cond.set(DEMAND, "False", "BadQuery", str(err))
            cond.set(PLANNED, "False", "BadQuery", f"{err}; fix the query, the last plan stays")
            self._finish(patch, status, cond, now, None, interval)
            kopf.event(body, type="Warning", reason="BadQuery", message=str(err)[:1000])
            raise kopf.PermanentError(str(err)) from None
        finally:
            reader.close()
        if demand.age_seconds is not None:
            self.metrics.data_age.set(demand.age_seconds)
        last_plan = status.get("lastAppliedPlan") or status.get("lastPlan")
        if demand.source == "quota" and last_plan:
            # no demand data: keep the plan made from data, never scale down on a guess
            msg = f"{demand.message.split('; planned for')[0]}; the last plan {last_plan} stays"
            cond.set(DEMAND, "False", "NoDemandData", msg)
            cond.set(STALE, "True", "NoDemandData", f"{msg}, nothing is scaled down")
            cond.set(PLANNED, "False", "NoDemandData", msg)
            self._finish(patch, status, cond, now, None, retry)
            kopf.event(body, type="Warning", reason="NoDemandData", message=msg[:1000])
            return
        cond.set(
            DEMAND,
            "True",
            "PrometheusData" if demand.source == "prometheus" else "QuotaFallback",
            demand.message,
        )
        if demand.source == "quota":
            cond.set(STALE, "True", "NoDemandData",
                     f"{demand.message}; no replica or node count is lowered")  # fmt: skip
        else:
            cond.set(STALE, "False", "DemandDataFresh", demand.message)

        # -- current state, plan
        current, observe_note, unreachable = self._observe(snapshot, namespace)
        floors = Floors()
        if unreachable:
            held = held_regions(self._plan_spec(last_plan, namespace), unreachable)
            floors = held
            current = CurrentState(
                nodes={**current.nodes, **held.nodes},
                replicas={**current.replicas, **held.replicas},
            )
        if demand.source == "quota":
            floors = floors.merged(
                Floors(dict(current.nodes), dict(current.replicas), why="no demand data")
            )
        result = run_cycle(policy, snapshot, demand, current, now, floors, usage=usage)
        self.metrics.record_solve(policy.name, result.solver_status, result.solve_seconds)
        if result.spec is None:
            self._reachability(cond, body, snapshot, unreachable, floors)
            msg = result.failure or "no plan"
            cond.set(PLANNED, "False", result.failure_reason or "NoPlan", msg)
            self._finish(patch, status, cond, now, None, interval)
            kopf.event(body, type="Warning", reason=result.failure_reason or "NoPlan",
                       message=msg[:1000])  # fmt: skip
            logger.warning("no plan: %s", msg)
            return

        # -- record
        spec = result.spec
        name = plan_name(policy.name, now)
        try:
            plan_obj = self.cluster.apply(
                fleet_plan_object(
                    spec, name, namespace, {"name": policy.name, "uid": body.metadata.uid}
                )
            )
            self._prune(policy, namespace)
        except KubeError as err:
            msg = f"writing FleetPlan {namespace}/{name}: {err}"
            cond.set(PLANNED, "False", "PlanNotRecorded", msg)
            self._finish(patch, status, cond, now, None, retry)
            kopf.event(body, type="Warning", reason="PlanNotRecorded", message=msg[:1000])
            raise kopf.TemporaryError(msg, delay=self.settings.tick_seconds) from None
        self.metrics.record_plan(spec, now.timestamp())
        gap = spec.solver.gap
        cond.set(
            PLANNED,
            "True",
            "PlanRecorded",
            f"FleetPlan {name}: {spec.cost_per_hour:.2f} USD/h, solver {spec.solver.status}"
            + (f" (gap {gap:.2%})" if gap is not None else "")
            + f" in {spec.solver.solve_seconds:.1f}s; demand: {demand.message}"
            + (f"; {observe_note}" if observe_note else ""),
        )
        kopf.event(
            body,
            type="Normal",
            reason="Planned",
            message=f"FleetPlan {name}: {spec.cost_per_hour:.2f} USD/h, "
            f"{sum(n.nodes for n in spec.nodes)} nodes, "
            f"{sum(r.replicas for r in spec.replicas)} replicas ({demand.source} demand)",
        )

        # -- actuate
        applied, lost = self._actuate(
            policy, snapshot, spec, plan_obj, namespace, cond, body, logger
        )
        self._throttle(policy, snapshot, result, name, namespace, cond, body, now, usage_note,
                       logger)  # fmt: skip
        self._reachability(cond, body, snapshot, {**unreachable, **lost}, floors)
        patch.status["lastPlan"] = name
        patch.status["costPerHour"] = round(spec.cost_per_hour, 4)
        if gap is not None:
            patch.status["gap"] = round(gap, 6)
        if applied:
            patch.status["lastAppliedPlan"] = name
        self._finish(patch, status, cond, now, now, interval)

    # ---------------------------------------------------------------- helpers

    def _finish(
        self,
        patch: kopf.Patch,
        status: kopf.Status,
        cond: _Conditions,
        now: datetime,
        ran: datetime | None,
        next_in: float,
    ) -> None:
        if cond.changed:
            # the live status: another handler may have written a condition while we planned
            patch.status["conditions"] = cond.merged_into(
                copy.deepcopy(list(status.get("conditions") or []))
            )
        if ran is not None:
            patch.status["lastRunTime"] = _iso(ran)
        patch.status["nextRunTime"] = _iso(now + timedelta(seconds=next_in))

    def _observe(
        self, snapshot: FleetSnapshot, namespace: str
    ) -> tuple[CurrentState, str, dict[str, str]]:
        """The fleet now, a note on what could not be read, and the unreachable regions."""
        clusters = RegionClusters(self.cluster)
        try:
            obs = observe(clusters, snapshot, namespace)
        except KubeError as err:
            return CurrentState(), f"fleet not observed: {err}", {}
        finally:
            clusters.close()
        note = f"observing the fleet: {'; '.join(obs.errors)}" if obs.errors else ""
        current = CurrentState(nodes=dict(obs.nodes), replicas=dict(obs.replicas))
        return current, note, dict(obs.unreachable)

    def _plan_spec(self, name: str | None, namespace: str) -> FleetPlanSpec | None:
        """The spec of FleetPlan ``name`` (None when it is gone or unreadable)."""
        if not name:
            return None
        try:
            doc = self.cluster.get(API_VERSION, "FleetPlan", name, namespace)
            return FleetPlan.from_wire(doc).spec if doc else None
        except (KubeError, ValidationError):
            return None

    def _reachability(
        self,
        cond: _Conditions,
        body: kopf.Body,
        snapshot: FleetSnapshot,
        unreachable: Mapping[str, str],
        floors: Floors,
    ) -> None:
        for r in snapshot.regions:
            self.metrics.region_reachable.labels(r.name).set(0.0 if r.name in unreachable else 1.0)
        if not unreachable:
            cond.set(UNREACHABLE, "False", "AllRegionsReachable",
                     f"{len(snapshot.regions)} regions reached")  # fmt: skip
            return
        names = ", ".join(sorted(unreachable))
        msg = (
            f"{names}: "
            + "; ".join(unreachable[r] for r in sorted(unreachable))
            + (f"; {floors.why}" if floors.why else "; not scaled down")
            + "; the other regions are actuated"
        )
        cond.set(UNREACHABLE, "True", "RegionUnreachable", msg[:4096])
        kopf.event(body, type="Warning", reason="RegionUnreachable", message=msg[:1000])

    def _prune(self, policy: FleetPolicy, namespace: str) -> None:
        plans = self.cluster.list(
            API_VERSION, "FleetPlan", namespace, label_selector=f"{POLICY_LABEL}={policy.name}"
        )
        for old in plans_to_delete(plans, policy.spec.plans_to_keep):
            self.cluster.delete(API_VERSION, "FleetPlan", old, namespace)

    def _plan_status(self, name: str, namespace: str, status: dict[str, Any]) -> None:
        self.cluster.apply(
            {
                "apiVersion": API_VERSION,
                "kind": "FleetPlan",
                "metadata": {"name": name, "namespace": namespace},
                "status": status,
            },
            subresource="status",
        )

    def _actuate(
        self,
        policy: FleetPolicy,
        snapshot: FleetSnapshot,
        spec: FleetPlanSpec,
        plan_obj: dict[str, Any],
        namespace: str,
        cond: _Conditions,
        body: kopf.Body,
        logger: logging.Logger,
    ) -> tuple[bool, dict[str, str]]:
        """Actuate (or, plan-only, diff) ``spec``: whether it is fully applied, and the
        regions found unreachable."""
        name = plan_obj["metadata"]["name"]
        dry_run = policy.spec.mode == "plan-only"
        clusters = RegionClusters(self.cluster)
        try:
            result = actuate(
                clusters, snapshot, spec, policy, namespace,
                max_changes=policy.spec.max_changes_per_cycle, dry_run=dry_run,
            )  # fmt: skip
        except Exception as err:  # the actuator's boundary: a bug there must not stop planning
            logger.exception("actuating FleetPlan %s", name)
            msg = f"FleetPlan {name}: actuation crashed: {type(err).__name__}: {err}"
            cond.set(ACTUATED, "False", "ActuationFailed", msg)
            kopf.event(body, type="Warning", reason="ActuationFailed", message=msg[:1000])
            self.metrics.record_actuation_errors([("", "other")])
            self._plan_status(name, namespace, {"phase": "Failed", "applied": False})
            return False, {}
        finally:
            clusters.close()
        errors = list(result.errors)
        now = _iso(datetime.now(UTC))
        if dry_run:
            cond.set(ACTUATED, "False", "PlanOnly",
                     f"mode plan-only: FleetPlan {name} would make {len(result.diff)} changes")  # fmt: skip
            self._plan_status(name, namespace, {"phase": "PlanOnly", "applied": False,
                                                "changes": 0, "diff": result.diff[:4096]})  # fmt: skip
            return False, dict(result.unreachable)
        target: Any = plan_obj  # kopf reads apiVersion, kind and metadata of any mapping
        for ev in result.events:
            kopf.event(
                target, type=ev.type, reason=ev.reason,
                message=f"{ev.kind} {ev.name}: {ev.message}"[:1000],
            )  # fmt: skip
        complete = bool(result.complete)
        self._plan_status(
            name,
            namespace,
            {
                "phase": "Applied" if complete else ("Failed" if errors else "Applying"),
                "applied": complete,
                **({"appliedAt": now} if complete else {}),
                "changes": result.changes,
                "diff": result.diff[:4096],
            },
        )
        held = set(result.unreachable.values())
        if errors and all(e in held for e in errors):
            msg = (
                f"FleetPlan {name}: {result.changes} changes applied to the reachable regions; "
                f"{', '.join(sorted(result.unreachable))} unreachable (held as they are)"
            )
            cond.set(ACTUATED, "False", "RegionUnreachable", msg)
        elif errors:
            self.metrics.record_actuation_errors(_error_labels(errors))
            msg = f"FleetPlan {name}: {len(errors)} errors, e.g. {errors[0]}"
            cond.set(ACTUATED, "False", "ActuationFailed", msg)
            kopf.event(body, type="Warning", reason="ActuationFailed", message=msg[:1000])
            logger.warning("%s", msg)
        elif not complete:
            cond.set(ACTUATED, "False", "ChangeBudgetExhausted",
                     f"FleetPlan {name}: {result.changes} changes made, "
                     f"{len(result.pending)} left for the next cycle (maxChangesPerCycle)")  # fmt: skip
        else:
            msg = f"FleetPlan {name}: {result.changes} changes applied"
            cond.set(ACTUATED, "True", "Applied", msg)
            if result.changes:
                kopf.event(body, type="Normal", reason="Applied", message=msg)
        return complete, dict(result.unreachable)

    def _throttle(
        self,
        policy: FleetPolicy,
        snapshot: FleetSnapshot,
        result: CycleResult,
        name: str,
        namespace: str,
        cond: _Conditions,
        body: kopf.Body,
        now: datetime,
        usage_note: str,
        logger: logging.Logger,
    ) -> None:
        """Export the plan's tenant limits and, in ``mode: apply``, publish them (after
        routing); a failure is a condition and an Event, never an exception."""
        table = result.limits
        if table is None:
            msg = f"FleetPlan {name}: no tenant limits: {result.limits_error or 'not computed'}"
            cond.set(THROTTLING, "False", "LimitsFailed", msg[:4096])
            kopf.event(body, type="Warning", reason="ThrottlingFailed", message=msg[:1000])
            return
        self.metrics.record_limits(table)
        throttled = sum(1 for t in table.tenants if t.throttled)
        summary = (
            f"{len(table.tenants)} tenants, {throttled} throttled, "
            f"{len(table.overloaded)} overloaded (model, region, tier)"
            + (f"; {usage_note}" if usage_note else "")
        )
        if policy.spec.mode == "plan-only":
            cond.set(THROTTLING, "False", "PlanOnly",
                     f"mode plan-only: nothing published, FleetPlan {name} holds the limits "
                     f"({summary})"[:4096])  # fmt: skip
            return
        try:
            pub = publish_throttling(
                self.cluster,
                table,
                self._quotas(snapshot, namespace),
                namespace=namespace,
                policy=policy.name,
                ingress=policy.spec.ingress,
                now=now,
            )
        except Exception as err:  # publishing's boundary: it must not stop the cycle
            logger.exception("publishing the tenant limits of FleetPlan %s", name)
            msg = f"FleetPlan {name}: publishing the tenant limits failed: {type(err).__name__}: {err}"
            cond.set(THROTTLING, "False", "PublishFailed", msg[:4096])
            kopf.event(body, type="Warning", reason="ThrottlingFailed", message=msg[:1000])
            self.metrics.record_actuation_errors([("", "throttling")])
            return
        if pub.errors:
            msg = (
                f"FleetPlan {name}: {len(pub.errors)} errors publishing the tenant limits, "
                f"e.g. {pub.errors[0]}"
            )
            cond.set(THROTTLING, "False", "PublishFailed", msg[:4096])
            kopf.event(body, type="Warning", reason="ThrottlingFailed", message=msg[:1000])
            self.metrics.record_actuation_errors([("", "throttling")] * len(pub.errors))
            logger.warning("%s", msg)
            return
        msg = (
            f"FleetPlan {name}: ConfigMap {policy.spec.ingress.throttling_config_map}, "
            f"{len(pub.policies)} BackendTrafficPolicies, {len(pub.statuses)} TenantQuota "
            f"statuses: {summary}"
            + (
                f"; no ingress rule for {len(pub.left_out)} tenants (too many rules), e.g. "
                f"{pub.left_out[0]}"
                if pub.left_out
                else ""
            )
        )
        cond.set(THROTTLING, "True", "Published", msg[:4096])

    def _quotas(self, snapshot: FleetSnapshot, namespace: str) -> list[TenantQuota]:
        """The snapshot's TenantQuotas with their live status (the index holds no status;
        a Throttling condition keeps its transition time); deleted ones are left out."""
        try:
            live = {
                d["metadata"]["name"]: d
                for d in self.cluster.list(API_VERSION, "TenantQuota", namespace)
            }
        except KubeError:
            return list(snapshot.tenants)
        out = []
        for q in snapshot.tenants:
            doc = live.get(q.name)
            if doc is None:
                continue
            try:
                out.append(TenantQuota.from_wire(doc))
            except ValidationError:
                out.append(q)
        return out


def _error_labels(errors: Sequence[str]) -> list[tuple[str, str]]:
    """(region, target) of each actuation error message, as far as the message says."""
    out = []
    for e in errors:
        words = e.replace(":", " ").split()
        region = next((words[i + 1] for i, w in enumerate(words[:-1]) if w == "Region"), "")
        target = next(
            (t for t in ("nodepool", "deployment", "httproute", "configmap") if t in e.lower()),
            "other",
        )
        out.append((region, target))
    return out


def register(registry: kopf.OperatorRegistry, loop: PlanningLoop) -> None:
    """Add the planning timer on FleetPolicies to ``registry``."""
    if not loop.settings.enabled:
        return
    handler: Any = loop.tick
    kopf.timer(
        GROUP,
        VERSION,
        "fleetpolicies",
        registry=registry,
        id="plan",
        interval=loop.settings.tick_seconds,
        initial_delay=min(2.0, loop.settings.tick_seconds),
    )(handler)
