"""One planning cycle: ``run_cycle(inputs, ports) -> CycleResult``, the same function for the
controller (every FleetPolicy interval) and the digital twin's llmfleet policy.

    screen   objects that cannot be planned are left out, named in ``excluded`` and the
             ``ObjectsExcluded`` condition; the rest of the fleet is planned
             (:mod:`llmfleet.cycle.screen`);
    demand   read the history through ``ports.demand`` and forecast every flow
             (:mod:`llmfleet.cycle.demand`). Unreachable source, stale data or a rejected
             query -> no plan, the last one stays. No data (or none for a known flow) -> the
             last plan stays when there is one; before the first plan, the demand the
             TenantQuotas' budgets imply is planned for with nothing scaled down; with
             ``inputs.router_shares`` each routed tier's reference flows are split among
             its candidates (:mod:`llmfleet.cycle.routing`);
    floors   a region the caller could not reach is held at the last plan's figures; without
             demand data nothing goes under what runs now (:mod:`llmfleet.cycle.floors`).
             Both enter the planning instance as bounds;
    plan     ``ports.solve`` (warm-started from ``inputs.previous``): a plan, or why none
             (infeasible, no solution in time) -- the last good plan stays;
    limits   the tenants' fair-share limits on the plan's capacity for their usage now
             (``ports.usage``; none read is no usage) (:mod:`llmfleet.cycle.limits`);
    record   the FleetPlanSpec of exactly the plan solved: its cost, gap and explanation are
             those of the plan that is actuated.

Everything the caller must write is in the result as values: the spec, the limits, the
conditions to set (``ConditionUpdate``), and -- when there is no plan -- one
:class:`Failure` saying why and when to try again. The cycle never raises on bad input.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from pydantic import ValidationError

from llmfleet.api.base import ConditionStatus
from llmfleet.api.conditions import (
    DEMAND_READ,
    DEMAND_STALE,
    OBJECTS_EXCLUDED,
    PLANNED,
    REGION_UNREACHABLE,
    Reason,
)
from llmfleet.api.loading import describe_validation_error
from llmfleet.api.plan import FleetPlanSpec
from llmfleet.api.policy import FleetPolicy
from llmfleet.api.references import FleetSnapshot
from llmfleet.cycle.demand import Demand, DemandFailure, read_demand, tenant_usage
from llmfleet.cycle.floors import Floors, bounded, held_regions
from llmfleet.cycle.limits import tenant_limits
from llmfleet.cycle.ports import (
    DemandSource,
    Forecaster,
    Solver,
    UsageSource,
    forecast_histories,
    solve_with_policy_limits,
)
from llmfleet.cycle.records import plan_name
from llmfleet.cycle.routing import route_demand
from llmfleet.cycle.screen import Excluded, screen
from llmfleet.fairness.limits import LimitTable, Usage, to_throttles
from llmfleet.plan.convert import to_fleet_plan_spec
from llmfleet.plan.explain import RoutedCell, routed_replicas, routing_summary
from llmfleet.plan.instance import CurrentState, InstanceError, from_snapshot
from llmfleet.plan.types import Infeasible, Plan
from llmfleet.routing.models.serving import RouterShares

log = logging.getLogger(__name__)

Retry = Literal["soon", "interval"]
"""When to plan again after a cycle without a plan: ``soon`` (a temporary cause: the
policy's retry delay) or ``interval`` (at the next interval, or at once when the spec
changes)."""


@dataclass(frozen=True)
class ConditionUpdate:
    """One condition the caller sets on the FleetPolicy."""

    type: str
    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True)
class Failure:
    """Why a cycle made no plan (the last good plan stays)."""

    reason: str
    """A :class:`~llmfleet.api.conditions.Reason`; also the Warning Event's reason."""
    message: str
    retry: Retry = "interval"
    permanent: bool = False
    """Retrying cannot help until the spec changes."""


@dataclass(frozen=True)
class CycleInputs:
    """What one cycle plans from (all read by the caller before the cycle runs)."""

    policy: FleetPolicy
    snapshot: FleetSnapshot
    """The fleet objects the policy plans (Regions, LLMModels, SLATiers, TenantQuotas)."""
    current: CurrentState
    """The fleet now (nodes, replicas, batch backlog) in the regions that answered."""
    now: datetime
    last_plan: FleetPlanSpec | None = None
    """The last plan recorded (an unreachable region is held at its figures)."""
    last_plan_name: str | None = None
    """Its name; set means a plan from data exists, so no data keeps it."""
    unreachable: Mapping[str, str] = field(default_factory=dict)
    """Regions whose cluster did not answer: name -> why."""
    previous: Plan | None = None
    """The previous plan this process made (a warm start for the solver)."""
    observe_note: str = ""
    """What the caller could not read of the fleet (said in the ``Planned`` message)."""
    router_shares: RouterShares | None = None
    """The routers' calibrated shares per routed tier: the demand of each tier's reference
    model is split among its candidates before planning (:mod:`llmfleet.cycle.routing`).
    None: no routing, demand as read."""


@dataclass(frozen=True)
class CyclePorts:
    """Where the cycle reads from (:mod:`llmfleet.cycle.ports`)."""

    demand: DemandSource | None = None
    usage: UsageSource | None = None
    forecaster: Forecaster = forecast_histories
    solve: Solver = solve_with_policy_limits


@dataclass(frozen=True)
class CycleResult:
    """One cycle's outcome: a plan to record, or why there is none."""

    name: str
    """The FleetPlan name this cycle's plan gets."""
    conditions: tuple[ConditionUpdate, ...]
    demand: Demand | None = None
    spec: FleetPlanSpec | None = None
    plan: Plan | None = None
    failure: Failure | None = None
    limits: LimitTable | None = None
    """The tenants' limits for the plan (None without a plan, or when they failed)."""
    limits_error: str = ""
    usage_note: str = ""
    floors: Floors = field(default_factory=Floors)
    solver_status: str = ""
    solve_seconds: float = 0.0
    excluded: tuple[Excluded, ...] = ()
    """Objects left out of this cycle (they cannot be planned); the rest was planned."""
    routing: tuple[RoutedCell, ...] = ()
    """Per (model, region): the replicas of the plan that exist because of routing
    (:func:`llmfleet.plan.explain.routed_replicas`; empty without router shares)."""

    @property
    def planned(self) -> bool:
        return self.spec is not None


def run_cycle(inputs: CycleInputs, ports: CyclePorts) -> CycleResult:
    """Plan once (module docstring); never raises on bad input."""
    policy = inputs.policy
    snapshot, excluded = screen(inputs.snapshot, policy)
    inputs = replace(inputs, snapshot=snapshot)
    now = inputs.now.timestamp()
    name = plan_name(policy.name, inputs.now)
    isolation = _excluded_condition(excluded)
    got = read_demand(policy, snapshot, ports.demand, now, ports.forecaster)
    if isinstance(got, DemandFailure):
        r = _no_demand(name, got)
        return replace(r, conditions=(isolation, *r.conditions), excluded=excluded)
    demand = route_demand(got, snapshot, inputs.router_shares)
    if demand.source == "quota" and inputs.last_plan_name:
        # no demand data: keep the plan made from data, never scale down on a guess
        msg = f"{demand.why}; the last plan {inputs.last_plan_name} stays"
        return CycleResult(
            name,
            (
                isolation,
                ConditionUpdate(DEMAND_READ, "False", Reason.NO_DEMAND_DATA, msg),
                ConditionUpdate(
                    DEMAND_STALE, "True", Reason.NO_DEMAND_DATA, f"{msg}, nothing is scaled down"
                ),
                ConditionUpdate(PLANNED, "False", Reason.NO_DEMAND_DATA, msg),
            ),
            demand,
            failure=Failure(Reason.NO_DEMAND_DATA, msg, retry="soon"),
            excluded=excluded,
        )
    conds = [isolation, _demand_condition(demand), _stale_condition(demand)]
    usage, usage_note = tenant_usage(policy, ports.usage, now)
    floors, current = _floors(inputs, demand)
    result = _plan(inputs, ports, demand, current, floors, usage)
    result = replace(result, name=name, usage_note=usage_note, floors=floors, excluded=excluded)
    return replace(result, conditions=(*conds, *result.conditions))


def reachability(
    snapshot: FleetSnapshot, unreachable: Mapping[str, str], floors: Floors
) -> ConditionUpdate:
    """The ``RegionUnreachable`` condition for the regions that did not answer (when reading
    the fleet, or while actuating)."""
    if not unreachable:
        return ConditionUpdate(
            REGION_UNREACHABLE,
            "False",
            Reason.ALL_REGIONS_REACHABLE,
            f"{len(snapshot.regions)} regions reached",
        )
    names = ", ".join(sorted(unreachable))
    msg = (
        f"{names}: "
        + "; ".join(unreachable[r] for r in sorted(unreachable))
        + (f"; {floors.why}" if floors.why else "; not scaled down")
        + "; the other regions are actuated"
    )
    return ConditionUpdate(REGION_UNREACHABLE, "True", Reason.REGION_UNREACHABLE, msg)


# --------------------------------------------------------------------------- steps


def _no_demand(name: str, f: DemandFailure) -> CycleResult:
    conds: tuple[ConditionUpdate, ...]
    if f.permanent:
        msg = f"{f.message}; fix the query, the last plan stays"
        conds = (
            ConditionUpdate(DEMAND_READ, "False", f.reason, f.message),
            ConditionUpdate(PLANNED, "False", f.reason, msg),
        )
        return CycleResult(name, conds, failure=Failure(f.reason, msg, permanent=True))
    msg = f"{f.message}; the last plan stays"
    conds = (
        ConditionUpdate(DEMAND_READ, "False", f.reason, f.message),
        ConditionUpdate(DEMAND_STALE, "True", f.reason, f"{msg}, nothing is scaled down"),
        ConditionUpdate(PLANNED, "False", f.reason, msg),
    )
    return CycleResult(name, conds, failure=Failure(f.reason, msg, retry="soon"))


def _excluded_condition(excluded: tuple[Excluded, ...]) -> ConditionUpdate:
    if not excluded:
        return ConditionUpdate(OBJECTS_EXCLUDED, "False", Reason.NONE_EXCLUDED, "every object is planned")
    shown = "; ".join(str(e) for e in excluded[:5])
    more = f" (and {len(excluded) - 5} more)" if len(excluded) > 5 else ""
    return ConditionUpdate(
        OBJECTS_EXCLUDED,
        "True",
        Reason.CANNOT_BE_PLANNED,
        f"{len(excluded)} objects left out of planning, the rest is planned: {shown}{more}",
    )


def _demand_condition(demand: Demand) -> ConditionUpdate:
    reason = Reason.PROMETHEUS_DATA if demand.source == "history" else Reason.QUOTA_FALLBACK
    return ConditionUpdate(DEMAND_READ, "True", reason, demand.message)


def _stale_condition(demand: Demand) -> ConditionUpdate:
    if demand.source == "quota":
        return ConditionUpdate(
            DEMAND_STALE,
            "True",
            Reason.NO_DEMAND_DATA,
            f"{demand.message}; no replica or node count is lowered",
        )
    return ConditionUpdate(DEMAND_STALE, "False", Reason.DEMAND_DATA_FRESH, demand.message)


def _floors(inputs: CycleInputs, demand: Demand) -> tuple[Floors, CurrentState]:
    """The floors in force and the fleet the plan starts from (a held region's figures are
    the last plan's: its cluster could not say)."""
    current = inputs.current
    floors = Floors()
    if inputs.unreachable:
        floors = held_regions(inputs.last_plan, inputs.unreachable)
        current = replace(
            current,
            nodes={**current.nodes, **floors.nodes},
            replicas={**current.replicas, **floors.replicas},
        )
    if demand.source == "quota":
        floors = floors.merged(
            Floors(dict(current.nodes), dict(current.replicas), why="no demand data")
        )
    return floors, current


def _plan(
    inputs: CycleInputs,
    ports: CyclePorts,
    demand: Demand,
    current: CurrentState,
    floors: Floors,
    usage: tuple[Usage, ...],
) -> CycleResult:
    policy, snapshot = inputs.policy, inputs.snapshot
    try:
        inst = bounded(from_snapshot(snapshot, list(demand.forecasts), current, policy), floors)
    except InstanceError as err:
        return _failed(demand, Reason.INVALID_FLEET, f"cannot plan: {err}")
    outcome = ports.solve(inst, inputs.previous)
    if not isinstance(outcome, Plan):
        infeasible = isinstance(outcome, Infeasible)
        return replace(
            _failed(
                demand,
                Reason.SOLVE_INFEASIBLE if infeasible else Reason.SOLVE_TIMEOUT,
                f"{outcome.message}; the last good plan stays",
            ),
            solver_status="Infeasible" if infeasible else "Timeout",
            solve_seconds=outcome.seconds,
        )
    try:
        spec = to_fleet_plan_spec(outcome, inst, inputs.now)
    except ValidationError as err:
        return _failed(
            demand,
            Reason.INVALID_FLEET,
            f"cannot record the plan: {describe_validation_error(err)}",
        )
    limits: LimitTable | None = None
    limits_error = ""
    try:
        limits = tenant_limits(outcome, snapshot, usage)
    except Exception as err:  # the limits' boundary: a bug there must not lose the plan
        log.exception("computing the tenant limits")
        limits_error = f"{type(err).__name__}: {err}"
    notes = [f"demand: {demand.message}"]
    if floors:
        notes.append(f"floors: {floors.why}")
    routed: tuple[RoutedCell, ...] = ()
    if demand.routing is not None and demand.routing.shares:
        try:
            routed = routed_replicas(outcome, inst, demand.routing.shares)
            notes.append(f"routing: {routing_summary(routed)}")
        except Exception as err:  # an explanation must not lose the plan
            log.exception("attributing replicas to routing")
            notes.append(f"routing: not attributed ({type(err).__name__}: {err})")
    solver = spec.solver
    spec = spec.model_copy(
        update={
            "throttles": to_throttles(limits) if limits is not None else [],
            "cost_per_hour": round(spec.cost_per_hour, 2),
            "solver": solver.model_copy(
                update={
                    "message": "; ".join([solver.message, *notes])[:4096],
                    "gap": None if solver.gap is None else round(solver.gap, 6),
                    "solve_seconds": round(solver.solve_seconds, 3),
                }
            ),
        }
    )
    gap = spec.solver.gap
    name = plan_name(policy.name, inputs.now)
    planned = ConditionUpdate(
        PLANNED,
        "True",
        Reason.PLAN_RECORDED,
        f"FleetPlan {name}: {spec.cost_per_hour:.2f} USD/h, solver {spec.solver.status}"
        + (f" (gap {gap:.2%})" if gap is not None else "")
        + f" in {spec.solver.solve_seconds:.1f}s; demand: {demand.message}"
        + (f"; {inputs.observe_note}" if inputs.observe_note else ""),
    )
    return CycleResult(
        name,
        (planned,),
        demand,
        spec=spec,
        plan=outcome,
        limits=limits,
        limits_error=limits_error,
        solver_status=spec.solver.status,
        solve_seconds=spec.solver.solve_seconds,
        routing=routed,
    )


def _failed(demand: Demand, reason: str, message: str) -> CycleResult:
    return CycleResult(
        "",
        (ConditionUpdate(PLANNED, "False", reason, message),),
        demand,
        failure=Failure(reason, message),
        solver_status="Error",
    )
