"""The planning timer: a thin kopf adapter around :func:`llmfleet.cycle.run_cycle`.

On every tick each FleetPolicy that is due (:func:`llmfleet.cycle.records.is_due`) is
planned:

    read     the policy, the fleet objects (kopf indexes), the fleet now in every region
             (``kube.actuate.observe``; a region that does not answer is *unreachable*) and
             the last plan;
    shares   the router's shares, ``shares.json`` of ConfigMap ``llmfleet-router``
             (``kube.actuate.read_router_shares``; none: no routing split; a bad one: a
             ``RouterSharesRead=False`` condition and a Warning Event, no split);
    cycle    ``run_cycle`` with Prometheus as the demand and usage source: a FleetPlanSpec
             with the tenants' limits, the conditions to set, or one ``Failure``;
    write    the FleetPlan (``<policy>-<yyyymmddhhmmss>``, owned by the policy; older plans
             beyond ``plansToKeep`` deleted, unfinished older ones marked ``Superseded``),
             the status, Events and metrics;
    actuate  ``kube.actuate.actuate`` when ``mode: apply`` (a dry-run diff otherwise), then
             ``kube.throttling.publish_throttling`` (a failure there is a Warning Event and
             ``ThrottlingPublished=False``; it never stops the cycle).

There is one failure path (:meth:`PlanningLoop._fail`): every cycle that makes no plan --
whatever the cause, including an exception nobody foresaw -- ends as ``Planned=False`` with
a reason, a Warning Event and a log line, and the next attempt is scheduled
(``nextRunTime``: the policy's retry delay for a temporary cause, the interval otherwise; a
spec change plans again at once). The handler never raises: kopf's timer keeps running
through any outage.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kopf
from pydantic import ValidationError

from llmfleet.api.base import API_VERSION, GROUP, VERSION, ConditionStatus
from llmfleet.api.conditions import (
    ACTUATED,
    CORRECTED,
    PLANNED,
    THROTTLING_PUBLISHED,
    Reason,
    upsert_condition,
)
from llmfleet.api.loading import describe_validation_error
from llmfleet.api.plan import FleetPlan, FleetPlanSpec
from llmfleet.api.policy import FleetPolicy
from llmfleet.api.references import FleetSnapshot
from llmfleet.api.resource import Resource
from llmfleet.api.tenant import TenantQuota
from llmfleet.controller.correction import CorrectionRun, run_correction
from llmfleet.controller.metrics import FleetMetrics
from llmfleet.cycle import (
    ConditionUpdate,
    CycleInputs,
    CyclePorts,
    CycleResult,
    Failure,
    policy_snapshot,
    reachability,
    run_cycle,
)
from llmfleet.cycle.records import (
    POLICY_LABEL,
    fleet_plan_object,
    is_due,
    iso,
    plans_to_delete,
    plans_to_supersede,
)
from llmfleet.kube.actuate import (
    ROUTER_SHARES_READ,
    Observation,
    RegionClusters,
    actuate,
    observe,
    read_router_shares,
)
from llmfleet.kube.client import Cluster, KubeError
from llmfleet.kube.errors import ActuationError
from llmfleet.kube.prometheus import DemandReader, PrometheusAllow
from llmfleet.kube.throttling import publish_throttling
from llmfleet.plan.instance import CurrentState
from llmfleet.plan.types import Plan
from llmfleet.routing.models.serving import RouterShares

RETRY_SECONDS = 60.0
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanningSettings:
    """Knobs of the planning loop."""

    enabled: bool = True
    """False runs no planning at all (a validating-only operator)."""
    tick_seconds: float = 15.0
    """How often every FleetPolicy is checked for being due."""
    retry_seconds: float = RETRY_SECONDS
    """Most time before a temporarily failed cycle is tried again."""
    stale_after_intervals: float = 3.0
    """``/healthz`` fails when a due policy has not finished a cycle for this many of its
    intervals (plus one retry delay)."""
    kubeconfig_secret_namespaces: tuple[str, ...] = ()
    """Namespaces Regions' kubeconfig Secrets may be read from (``llmfleet operator
    --kubeconfig-secret-namespaces``, default the operator's own namespace); empty: none, so
    every ``mode: kubeconfig`` Region is unreachable with a message saying so."""
    create_namespaces: bool = False
    """Whether actuation creates the fleet namespace in a region's cluster where it is
    missing (``--create-namespaces``); off, a missing namespace is an error naming it."""
    prometheus_allow: PrometheusAllow = field(default_factory=PrometheusAllow)
    """Which ``spec.prometheus.url`` hosts may be fetched (``--prometheus-allow``; default any
    host but link-local and cloud metadata)."""


def connect_hub() -> Cluster:
    """The operator's own cluster: ``$KUBECONFIG`` as it is when the loop first connects,
    else the client's defaults (``~/.kube/config``, in-cluster credentials). The kubernetes
    client reads ``$KUBECONFIG`` once, when it is imported, and ``llmfleet operator
    --kubeconfig`` sets it after that: read at import, every cycle crashed on "Invalid
    kube-config file" while kopf (which reads it at login) ran on."""
    path = os.environ.get("KUBECONFIG")
    return Cluster.connect(Path(path) if path else None)


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

    def apply(self, updates: Sequence[ConditionUpdate]) -> None:
        for u in updates:
            self.set(u.type, u.status, u.reason, u.message)

    def merged_into(self, fresh: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``fresh`` (the conditions now, e.g. a ``Valid`` written while we planned) with the
        types this cycle set replaced by ours."""
        keep = [dict(c) for c in fresh if c.get("type") not in self.touched]
        mine = [c for c in self.items if c.get("type") in self.touched]
        return sorted([*keep, *mine], key=lambda c: str(c.get("type")))


@dataclass
class _Tick:
    """One tick's writing context: what every step of the adapter needs to report."""

    body: kopf.Body
    status: kopf.Status
    patch: kopf.Patch
    cond: _Conditions
    now: datetime
    namespace: str
    logger: logging.Logger


@dataclass
class PlanningLoop:
    """The planning timer's state: the hub cluster, the metrics, the last plan per policy
    (the solver's warm start) and when each policy last finished a cycle (liveness)."""

    settings: PlanningSettings
    metrics: FleetMetrics
    connect: Callable[[], Cluster] = connect_hub
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    _cluster: Cluster | None = None
    _previous: dict[str, Plan] = field(default_factory=dict)
    _finished: dict[str, tuple[float, float]] = field(default_factory=dict)
    """policy uid -> (monotonic time the last cycle finished, its interval seconds)."""
    _corrected_at: dict[str, float] = field(default_factory=dict)
    """policy uid -> monotonic time of its last short-term correction (or plan)."""
    _applied: dict[str, tuple[str, FleetPlanSpec]] = field(default_factory=dict)
    """policy uid -> (name, spec) of its last applied plan (the correction's floor)."""

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = self.connect()
        return self._cluster

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    # ---------------------------------------------------------------- liveness

    def stalled(self) -> list[str]:
        """Policies (uid) whose last finished cycle is older than
        ``stale_after_intervals`` of their interval plus one retry delay."""
        now = self.clock()
        return sorted(
            uid
            for uid, (at, interval) in self._finished.items()
            if now - at > self.settings.stale_after_intervals * interval + self.settings.retry_seconds
        )

    def forget(self, uid: str) -> None:
        """A deleted policy is no longer watched for liveness."""
        self._finished.pop(uid, None)
        self._previous.pop(uid, None)
        self._corrected_at.pop(uid, None)
        self._applied.pop(uid, None)

    # ---------------------------------------------------------------- the handler

    def tick(
        self,
        body: kopf.Body,
        status: kopf.Status,
        patch: kopf.Patch,
        logger: logging.Logger,
        **kwargs: Any,
    ) -> None:
        now = self.wall_clock()
        generation = body.metadata.get("generation")
        # a deep copy: kopf's live body changes under us while the cycle runs
        cond = _Conditions(copy.deepcopy(list(status.get("conditions") or [])), now, generation)
        t = _Tick(body, status, patch, cond, now, body.metadata.namespace or "default", logger)
        if not is_due(status, generation, now):
            try:
                self._correct(t, kwargs)
            except Exception:  # the correction's boundary: it must not stop the timer
                logger.exception("short-term correction crashed")
                self.metrics.cycle_crashes.inc()
            return
        try:
            self._plan(t, kwargs)
        except Exception as err:  # the cycle's boundary: nothing may stop the timer
            logger.exception("planning cycle crashed")
            self.metrics.cycle_crashes.inc()
            self._fail(t, Failure(Reason.CYCLE_CRASHED, f"{type(err).__name__}: {err}", retry="soon"))

    def _plan(self, t: _Tick, kwargs: Mapping[str, Any]) -> None:
        try:
            policy = FleetPolicy.from_wire(
                {
                    "apiVersion": t.body.get("apiVersion"),
                    "kind": t.body.get("kind"),
                    "metadata": dict(t.body.metadata),
                    "spec": dict(t.body.spec),
                }
            )
        except ValidationError as err:
            msg = f"FleetPolicy {t.namespace}/{t.body.metadata.name}: {describe_validation_error(err)}"
            self._fail(t, Failure(Reason.INVALID_SPEC, msg, permanent=True), interval=RETRY_SECONDS * 60)
            return
        interval = float(policy.spec.interval_seconds)
        snapshot = policy_snapshot(_indexed(kwargs), t.namespace)
        last_name = t.status.get("lastAppliedPlan") or t.status.get("lastPlan")
        uid = str(t.body.metadata.uid)
        with RegionClusters(
            self.cluster,
            kubeconfig_namespaces=self.settings.kubeconfig_secret_namespaces,
            create_namespaces=self.settings.create_namespaces,
        ) as clusters:
            current, observe_note, unreachable, observed = self._observe(
                clusters, snapshot, t.namespace
            )
            reader = DemandReader(
                policy.spec.prometheus,
                allow=self.settings.prometheus_allow,
                # a gateway labels demand with the request's model field, the served name
                served_names={m.spec.served_model_name: m.metadata.name for m in snapshot.models},
            )
            try:
                result = run_cycle(
                    CycleInputs(
                        policy=policy,
                        snapshot=snapshot,
                        current=current,
                        now=t.now,
                        last_plan=self._plan_spec(last_name, t.namespace) if unreachable else None,
                        last_plan_name=last_name,
                        unreachable=unreachable,
                        previous=self._previous.get(uid),
                        observe_note=observe_note,
                        router_shares=self._router_shares(t),
                    ),
                    CyclePorts(demand=reader, usage=reader),
                )
                self._record(t, policy, snapshot, result, unreachable, clusters, interval,
                             _After(observed, reader))
            finally:
                reader.close()
        self._finished[uid] = (self.clock(), interval)

    # ---------------------------------------------------------------- steps

    def _router_shares(self, t: _Tick) -> RouterShares | None:
        """The router's shares (``shares.json`` of its ConfigMap in the policy's namespace
        of this cluster); a bad or unreadable one is a condition and a Warning Event, and
        the cycle plans without a routing split."""
        read = read_router_shares(self.cluster, t.namespace)
        t.cond.set(ROUTER_SHARES_READ, read.status, read.reason, read.message)
        if read.warning:
            kopf.event(t.body, type="Warning", reason=read.reason, message=read.message)
            t.logger.warning("%s", read.message)
        return read.shares

    def _record(
        self,
        t: _Tick,
        policy: FleetPolicy,
        snapshot: FleetSnapshot,
        result: CycleResult,
        unreachable: Mapping[str, str],
        clusters: RegionClusters,
        interval: float,
        after: _After | None = None,
    ) -> None:
        """Write what the cycle decided: the failure, or the plan and its actuation (the
        plan as the short-term correction leaves it, ``after`` reading what it needs)."""
        t.cond.apply(result.conditions)
        self._report_excluded(t, result)
        if result.demand is not None and result.demand.age_seconds is not None:
            self.metrics.data_age.set(result.demand.age_seconds)
        if result.solver_status:
            self.metrics.record_solve(policy.name, result.solver_status, result.solve_seconds)
        if result.spec is None or result.plan is None:
            if result.solver_status:  # the solve ran: say which regions it could count on
                self._reachability(t, snapshot, unreachable, result)
            self._fail(t, result.failure or Failure(Reason.INVALID_FLEET, "no plan"),
                       interval=interval, policy=policy)  # fmt: skip
            self._retry_last(t, policy, snapshot, clusters)
            return
        spec, name = result.spec, result.name
        try:
            plan_obj = self.cluster.apply(
                fleet_plan_object(spec, name, t.namespace, {"name": policy.name, "uid": t.body.metadata.uid})
            )  # fmt: skip
            self._prune(policy, name, t.namespace)
        except KubeError as err:
            msg = f"writing FleetPlan {t.namespace}/{name}: {err}"
            self._fail(t, Failure(Reason.PLAN_NOT_RECORDED, msg, retry="soon"), policy=policy)
            return
        self._previous[str(t.body.metadata.uid)] = result.plan
        self.metrics.record_plan(spec, t.now.timestamp())
        kopf.event(
            t.body, type="Normal", reason="Planned",
            message=f"FleetPlan {name}: {spec.cost_per_hour:.2f} USD/h, "
            f"{sum(n.nodes for n in spec.nodes)} nodes, "
            f"{sum(r.replicas for r in spec.replicas)} replicas ({result.demand.source if result.demand else 'no'} demand)",
        )  # fmt: skip
        to_apply = spec
        uid = str(t.body.metadata.uid)
        if after is not None and after.observed is not None and self._corrects(policy):
            run = run_correction(policy, snapshot, spec, after.observed, after.reader,
                                 t.now.timestamp(), after_plan=True)
            self._corrected_at[uid] = self.clock()
            to_apply = self._report_correction(t, run, name) or spec
        applied, lost = self._actuate(t, policy, snapshot, to_apply, plan_obj, clusters)
        if applied:
            self._applied[uid] = (name, spec)
        self._throttle(t, policy, snapshot, result, name)
        self._reachability(t, snapshot, {**unreachable, **lost}, result)
        t.patch.status["lastPlan"] = name
        t.patch.status["costPerHour"] = round(spec.cost_per_hour, 4)
        if spec.solver.gap is not None:
            t.patch.status["gap"] = round(spec.solver.gap, 6)
        if applied:
            t.patch.status["lastAppliedPlan"] = name
        self._finish(t, ran=True, next_in=interval)

    def _retry_last(
        self, t: _Tick, policy: FleetPolicy, snapshot: FleetSnapshot, clusters: RegionClusters
    ) -> None:
        """No new plan: the last plan stays, so make it real if it is not yet (its first
        actuation failed or was interrupted; once the cause is gone, this one succeeds)."""
        last = t.status.get("lastPlan")
        if policy.spec.mode != "apply" or not last or last == t.status.get("lastAppliedPlan"):
            return
        spec = self._plan_spec(last, t.namespace)
        if spec is None:
            return
        plan_obj = {"apiVersion": API_VERSION, "kind": "FleetPlan",
                    "metadata": {"name": last, "namespace": t.namespace}}  # fmt: skip
        applied, _lost = self._actuate(t, policy, snapshot, spec, plan_obj, clusters)
        if applied:
            t.patch.status["lastAppliedPlan"] = last
            t.logger.info("the last plan %s is applied now (retried)", last)

    # ---------------------------------------------------------------- correction

    @staticmethod
    def _corrects(policy: FleetPolicy) -> bool:
        return policy.spec.mode == "apply" and policy.spec.correction.enabled

    def _correct(self, t: _Tick, kwargs: Mapping[str, Any]) -> None:
        """The short-term correction between plans (:mod:`llmfleet.controller.correction`),
        when it is due."""
        try:
            policy = FleetPolicy.from_wire({
                "apiVersion": t.body.get("apiVersion"), "kind": t.body.get("kind"),
                "metadata": dict(t.body.metadata), "spec": dict(t.body.spec),
            })  # fmt: skip
        except ValidationError:
            return  # the planning tick reports it
        uid = str(t.body.metadata.uid)
        last = self._corrected_at.get(uid)
        if not self._corrects(policy) or (
            last is not None and self.clock() - last < policy.spec.correction.interval_seconds
        ):
            return
        applied = self._last_applied(t, uid)
        if applied is None:
            return
        self._corrected_at[uid] = self.clock()
        name, plan = applied
        snapshot = policy_snapshot(_indexed(kwargs), t.namespace)
        with RegionClusters(
            self.cluster,
            kubeconfig_namespaces=self.settings.kubeconfig_secret_namespaces,
            create_namespaces=self.settings.create_namespaces,
        ) as clusters:
            *_, observed = self._observe(clusters, snapshot, t.namespace)
            if observed is None:
                return  # the next plan says why
            reader = DemandReader(
                policy.spec.prometheus,
                allow=self.settings.prometheus_allow,
                served_names={m.spec.served_model_name: m.metadata.name for m in snapshot.models},
            )
            try:
                run = run_correction(policy, snapshot, plan, observed, reader, t.now.timestamp())
            finally:
                reader.close()
            spec = self._report_correction(t, run, name)
            if spec is not None:
                result = actuate(clusters, snapshot, spec, policy, t.namespace)
                for ev in result.events:
                    if ev.type == "Warning":
                        kopf.event(t.body, type="Warning", reason=ev.reason,
                                   message=f"correcting FleetPlan {name}: {ev.kind} {ev.name}: {ev.message}")  # fmt: skip
                if result.errors:
                    self.metrics.record_actuation_errors(_error_labels(result.errors))
                    t.cond.set(CORRECTED, "False", Reason.CORRECTION_NOT_APPLIED,
                               f"FleetPlan {name}: {len(result.errors)} errors applying the "
                               f"correction, e.g. {result.errors[0]}")  # fmt: skip
        if t.cond.changed:
            t.patch.status["conditions"] = t.cond.merged_into(
                copy.deepcopy(list(t.status.get("conditions") or []))
            )

    def _last_applied(self, t: _Tick, uid: str) -> tuple[str, FleetPlanSpec] | None:
        """The last applied plan (remembered, else read back after a restart)."""
        name = t.status.get("lastAppliedPlan")
        if not name:
            return None
        known = self._applied.get(uid)
        if known is not None and known[0] == name:
            return known
        spec = self._plan_spec(name, t.namespace)
        if spec is None:
            return None
        self._applied[uid] = (name, spec)
        return name, spec

    def _report_correction(self, t: _Tick, run: CorrectionRun, plan: str) -> FleetPlanSpec | None:
        """Condition, status, Events and metrics of one correction; the spec to actuate
        (None: the plan as it is)."""
        if run.failure is not None:
            t.cond.set(CORRECTED, "False", Reason.CORRECTION_READ_FAILED,
                       f"FleetPlan {plan}: {run.failure}")  # fmt: skip
            return None
        decided = run.correction
        if decided is None:
            return None
        for a in decided.additions:
            self.metrics.corrections.labels(a.model, a.region, a.pool, a.rule).inc(a.replicas)
            kopf.event(t.body, type="Normal", reason="Corrected", message=f"FleetPlan {plan}: {a}")
        for (model, region), n in decided.unplaced:
            kopf.event(t.body, type="Warning", reason="CorrectionNoRoom",
                       message=f"FleetPlan {plan}: {n} more replicas of {model} in {region} "
                       "found no room within maxNodes and spillRttMs")  # fmt: skip
        self.metrics.corrected_replicas.labels(str(t.body.metadata.name)).set(run.above_plan)
        if (t.status.get("correctedReplicas") or 0) != run.above_plan:
            t.patch.status["correctedReplicas"] = run.above_plan
        if decided.changed:
            t.patch.status["lastCorrectionTime"] = iso(t.now)
        if run.above_plan:
            t.cond.set(CORRECTED, "True", Reason.ABOVE_PLAN,
                       f"FleetPlan {plan} plus {run.above_plan} replicas: {decided.summary()}")  # fmt: skip
        else:
            t.cond.set(CORRECTED, "False", Reason.AS_PLANNED, f"FleetPlan {plan} as planned")
        return run.spec

    def _report_excluded(self, t: _Tick, result: CycleResult) -> None:
        """A Warning Event on each object the cycle left out, naming the field and the fix
        (the validator marks it ``Valid=False`` with the same words)."""
        for e in result.excluded:
            target: Any = {
                "apiVersion": API_VERSION,
                "kind": e.key.kind,
                "metadata": {"name": e.key.name, **({"namespace": e.key.namespace} if e.key.namespace else {})},
            }
            kopf.event(target, type="Warning", reason=e.reason, message=f"{e.field}: {e.message}")
            t.logger.warning("left out of planning: %s", e)

    def _fail(
        self,
        t: _Tick,
        failure: Failure,
        *,
        interval: float | None = None,
        policy: FleetPolicy | None = None,
    ) -> None:
        """The one failure path: ``Planned=False`` with the reason, a Warning Event, a log
        line, and the next attempt scheduled."""
        t.cond.set(PLANNED, "False", failure.reason, failure.message)
        every = interval if interval is not None else (
            float(policy.spec.interval_seconds) if policy is not None else RETRY_SECONDS
        )
        delay = min(every, self.settings.retry_seconds) if failure.retry == "soon" else every
        self._finish(t, ran=False, next_in=delay)
        kopf.event(t.body, type="Warning", reason=failure.reason, message=failure.message)
        t.logger.warning("no plan (%s): %s", failure.reason, failure.message)
        if policy is not None:  # the loop is alive, it just has no plan this time
            self._finished[str(t.body.metadata.uid)] = (self.clock(), float(policy.spec.interval_seconds))

    def _finish(self, t: _Tick, *, ran: bool, next_in: float) -> None:
        if t.cond.changed:
            # the live status: another handler may have written a condition while we planned
            t.patch.status["conditions"] = t.cond.merged_into(
                copy.deepcopy(list(t.status.get("conditions") or []))
            )
        if ran:
            t.patch.status["lastRunTime"] = iso(t.now)
        t.patch.status["nextRunTime"] = iso(t.now + timedelta(seconds=next_in))

    def _observe(
        self, clusters: RegionClusters, snapshot: FleetSnapshot, namespace: str
    ) -> tuple[CurrentState, str, dict[str, str], Observation | None]:
        """The fleet now, a note on what could not be read, the unreachable regions, and
        the observation itself (None when it failed)."""
        try:
            obs = observe(clusters, snapshot, namespace)
        except KubeError as err:
            return CurrentState(), f"fleet not observed: {err}", {}, None
        note = f"observing the fleet: {'; '.join(str(e) for e in obs.errors)}" if obs.errors else ""
        current = CurrentState(nodes=dict(obs.nodes), replicas=dict(obs.replicas))
        return current, note, dict(obs.unreachable), obs

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
        t: _Tick,
        snapshot: FleetSnapshot,
        unreachable: Mapping[str, str],
        result: CycleResult,
    ) -> None:
        for r in snapshot.regions:
            self.metrics.region_reachable.labels(r.name).set(0.0 if r.name in unreachable else 1.0)
        update = reachability(snapshot, unreachable, result.floors)
        t.cond.apply([update])
        if unreachable:
            kopf.event(t.body, type="Warning", reason=update.reason, message=update.message)

    def _prune(self, policy: FleetPolicy, newest: str, namespace: str) -> None:
        """Delete the plans beyond ``plansToKeep``; mark unfinished older ones Superseded."""
        plans = self.cluster.list(
            API_VERSION, "FleetPlan", namespace, label_selector=f"{POLICY_LABEL}={policy.name}"
        )
        gone = set(plans_to_delete(plans, policy.spec.plans_to_keep))
        for old in sorted(gone):
            self.cluster.delete(API_VERSION, "FleetPlan", old, namespace)
        for old in plans_to_supersede([p for p in plans if p["metadata"]["name"] not in gone], newest):
            self._plan_status(old, namespace, {"phase": "Superseded", "applied": False,
                                               "supersededBy": newest})  # fmt: skip

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
        t: _Tick,
        policy: FleetPolicy,
        snapshot: FleetSnapshot,
        spec: FleetPlanSpec,
        plan_obj: dict[str, Any],
        clusters: RegionClusters,
    ) -> tuple[bool, dict[str, str]]:
        """Actuate (or, plan-only, diff) ``spec``: whether it is fully applied, and the
        regions found unreachable."""
        name = plan_obj["metadata"]["name"]
        dry_run = policy.spec.mode == "plan-only"
        try:
            result = actuate(clusters, snapshot, spec, policy, t.namespace, dry_run=dry_run)
        except Exception as err:  # the actuator's boundary: a bug there must not stop planning
            t.logger.exception("actuating FleetPlan %s", name)
            msg = f"FleetPlan {name}: actuation crashed: {type(err).__name__}: {err}"
            t.cond.set(ACTUATED, "False", Reason.ACTUATION_FAILED, msg)
            kopf.event(t.body, type="Warning", reason=Reason.ACTUATION_FAILED, message=msg)
            self.metrics.record_actuation_errors([("", "other")])
            self._plan_status(name, t.namespace, {"phase": "Failed", "applied": False})
            return False, {}
        errors = list(result.errors)
        if dry_run:
            t.cond.set(ACTUATED, "False", Reason.PLAN_ONLY,
                       f"mode plan-only: FleetPlan {name} would make {len(result.diff)} changes")  # fmt: skip
            self._plan_status(name, t.namespace, {"phase": "PlanOnly", "applied": False,
                                                  "changes": 0, "diff": result.diff[:4096]})  # fmt: skip
            return False, dict(result.unreachable)
        target: Any = plan_obj  # kopf reads apiVersion, kind and metadata of any mapping
        for ev in result.events:
            kopf.event(target, type=ev.type, reason=ev.reason, message=f"{ev.kind} {ev.name}: {ev.message}")
        complete = bool(result.complete)
        self._plan_status(
            name,
            t.namespace,
            {
                "phase": "Applied" if complete else ("Failed" if errors else "Applying"),
                "applied": complete,
                **({"appliedAt": iso(datetime.now(UTC))} if complete else {}),
                "changes": result.changes,
                "diff": result.diff[:4096],
            },
        )
        if errors and all(e.region in result.unreachable for e in errors):
            msg = (
                f"FleetPlan {name}: {result.changes} changes applied to the reachable regions; "
                f"{', '.join(sorted(result.unreachable))} unreachable (held as they are)"
            )
            t.cond.set(ACTUATED, "False", Reason.REGION_UNREACHABLE, msg)
        elif errors:
            self.metrics.record_actuation_errors(_error_labels(errors))
            msg = f"FleetPlan {name}: {len(errors)} errors, e.g. {errors[0]}"
            t.cond.set(ACTUATED, "False", Reason.ACTUATION_FAILED, msg)
            kopf.event(t.body, type="Warning", reason=Reason.ACTUATION_FAILED, message=msg)
            t.logger.warning("%s", msg)
        elif not complete:
            t.cond.set(ACTUATED, "False", Reason.CHANGE_BUDGET_EXHAUSTED,
                       f"FleetPlan {name}: {result.changes} changes made, "
                       f"{len(result.pending)} left for the next cycle (maxChangesPerCycle)")  # fmt: skip
        else:
            msg = f"FleetPlan {name}: {result.changes} changes applied"
            t.cond.set(ACTUATED, "True", Reason.APPLIED, msg)
            if result.changes:
                kopf.event(t.body, type="Normal", reason=Reason.APPLIED, message=msg)
        return complete, dict(result.unreachable)

    def _throttle(
        self,
        t: _Tick,
        policy: FleetPolicy,
        snapshot: FleetSnapshot,
        result: CycleResult,
        name: str,
    ) -> None:
        """Export the plan's tenant limits and, in ``mode: apply``, publish them (after
        routing); a failure is a condition and an Event, never an exception."""
        table = result.limits
        if table is None:
            msg = f"FleetPlan {name}: no tenant limits: {result.limits_error or 'not computed'}"
            t.cond.set(THROTTLING_PUBLISHED, "False", Reason.LIMITS_FAILED, msg)
            kopf.event(t.body, type="Warning", reason="ThrottlingFailed", message=msg)
            return
        self.metrics.record_limits(table)
        throttled = sum(1 for x in table.tenants if x.throttled)
        summary = (
            f"{len(table.tenants)} tenants, {throttled} throttled, "
            f"{len(table.overloaded)} overloaded (model, region, tier)"
            + (f"; {result.usage_note}" if result.usage_note else "")
        )
        if policy.spec.mode == "plan-only":
            t.cond.set(THROTTLING_PUBLISHED, "False", Reason.PLAN_ONLY,
                       f"mode plan-only: nothing published, FleetPlan {name} holds the limits ({summary})")  # fmt: skip
            return
        try:
            pub = publish_throttling(
                self.cluster,
                table,
                self._quotas(snapshot, t.namespace),
                namespace=t.namespace,
                policy=policy.name,
                ingress=policy.spec.ingress,
                now=t.now,
            )
        except Exception as err:  # publishing's boundary: it must not stop the cycle
            t.logger.exception("publishing the tenant limits of FleetPlan %s", name)
            pub_errors = [f"{type(err).__name__}: {err}"]
        else:
            pub_errors = [str(e) for e in pub.errors]
        if pub_errors:
            msg = (
                f"FleetPlan {name}: {len(pub_errors)} errors publishing the tenant limits, "
                f"e.g. {pub_errors[0]}"
            )
            t.cond.set(THROTTLING_PUBLISHED, "False", Reason.PUBLISH_FAILED, msg)
            kopf.event(t.body, type="Warning", reason="ThrottlingFailed", message=msg)
            self.metrics.record_actuation_errors([("", "throttling")] * len(pub_errors))
            t.logger.warning("%s", msg)
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
        t.cond.set(THROTTLING_PUBLISHED, "True", Reason.PUBLISHED, msg)

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


@dataclass(frozen=True)
class _After:
    """What the correction right after a new plan reads: the fleet as observed for the
    cycle, and the cycle's Prometheus reader."""

    observed: Observation | None
    reader: DemandReader


def _indexed(kwargs: Mapping[str, Any]) -> list[Resource]:
    """Every fleet object of kopf's indexes (the handler's ``idx_*`` arguments)."""
    objects: list[Resource] = []
    for name, idx in kwargs.items():
        if name.startswith("idx_") and idx is not None:
            objects += [o for values in idx.values() for o in values]
    return objects


def _error_labels(errors: Sequence[ActuationError]) -> list[tuple[str, str]]:
    """(region, target) of each actuation error, the metric's labels."""
    return [(e.region, e.target) for e in errors]


def register(registry: kopf.OperatorRegistry, loop: PlanningLoop) -> None:
    """Add the planning timer on FleetPolicies, and the liveness probe, to ``registry``."""
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

    @kopf.on.delete(GROUP, VERSION, "fleetpolicies", registry=registry, id="forget", optional=True)
    def forget(body: kopf.Body, **_: Any) -> None:
        loop.forget(str(body.metadata.uid))

    @kopf.on.probe(registry=registry, id="planning")
    def planning_alive(**_: Any) -> str:
        # Permanent: kopf retries any other error inside the /healthz request, 60 s later, so
        # the request hung (no answer) during a stall and for up to 60 s after it ended
        # (found by llmfleet bench soak after an apiserver outage); this one is a 500 at once.
        stalled = loop.stalled()
        if stalled:
            raise kopf.PermanentError(
                f"no planning cycle finished lately for FleetPolicies {stalled}"
            )
        return "ok"
