"""Pure helpers for ``status.conditions`` (``metav1.Condition`` semantics)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from llmfleet.api.base import Condition, ConditionStatus

ROUTER_SHARES_READ = "RouterSharesRead"
"""FleetPolicy condition: the router's shares were read (``True``: the routed tiers'
demand is split among their candidates), or why not (no split)."""


class SharesReason:
    """Reasons of the ``RouterSharesRead`` condition."""

    READ = "SharesRead"
    NONE = "NoShares"
    INVALID = "SharesInvalid"
    UNREADABLE = "SharesUnreadable"


def upsert_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Set condition ``type_`` in a wire-format list; returns (new list, changed?).

    ``lastTransitionTime`` moves only when ``status`` flips, as Kubernetes expects.
    """
    old = next((c for c in conditions if c.get("type") == type_), None)
    transition = now if old is None or old.get("status") != status else None
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:32768],
        last_transition_time=transition or datetime.fromisoformat(old["lastTransitionTime"]),  # type: ignore[index]
        observed_generation=observed_generation,
    ).to_wire()
    if old is not None:
        same = all(
            old.get(k) == new.get(k) for k in ("status", "reason", "message", "observedGeneration")
        )
        if same:
            return conditions, False
    rest = [c for c in conditions if c.get("type") != type_]
    return sorted([*rest, new], key=lambda c: str(c["type"])), True


# --------------------------------------------------------------------------- condition types
# One constant per condition type and reason the operator writes (kueue keeps them beside
# the types): a test or a dashboard names these, never a string spelled a second time.

VALID = "Valid"
"""Every kind: the object's references check out (``True``) or why not."""

PLANNED = "Planned"
"""FleetPolicy: the last cycle recorded a FleetPlan (``True``), or why it did not."""
DEMAND_READ = "DemandRead"
"""FleetPolicy: demand was read (from Prometheus, or the quotas' fallback)."""
DEMAND_STALE = "DemandDataStale"
"""FleetPolicy: the plan was made without fresh demand data (nothing is scaled down)."""
REGION_UNREACHABLE = "RegionUnreachable"
"""FleetPolicy: a region's cluster did not answer; it is held at the last plan."""
ACTUATED = "Actuated"
"""FleetPolicy: the last plan is applied in every region."""
CORRECTED = "Corrected"
"""FleetPolicy: the short-term correction runs replicas above the plan (``True``), none
(``False``, reason ``AsPlanned``), or could not read or apply what it needs."""
THROTTLING_PUBLISHED = "ThrottlingPublished"
"""FleetPolicy: the tenants' fair-share limits are published to the ingress."""
OBJECTS_EXCLUDED = "ObjectsExcluded"
"""FleetPolicy: some fleet objects cannot be planned and were left out of the cycle."""
SUPERSEDED = "Superseded"
"""FleetPlan phase: a newer plan replaced this one before it was fully applied."""


class Reason:
    """Condition reasons (CamelCase, as ``metav1.Condition`` wants)."""

    # Corrected
    ABOVE_PLAN = "AbovePlan"
    AS_PLANNED = "AsPlanned"
    CORRECTION_READ_FAILED = "CorrectionReadFailed"
    CORRECTION_NOT_APPLIED = "CorrectionNotApplied"
    # Planned
    PLAN_RECORDED = "PlanRecorded"
    PLAN_NOT_RECORDED = "PlanNotRecorded"
    INVALID_SPEC = "InvalidSpec"
    INVALID_FLEET = "InvalidFleet"
    SOLVE_INFEASIBLE = "SolveInfeasible"
    SOLVE_TIMEOUT = "SolveTimeout"
    CYCLE_CRASHED = "CycleCrashed"
    # DemandRead / DemandDataStale
    PROMETHEUS_DATA = "PrometheusData"
    QUOTA_FALLBACK = "QuotaFallback"
    PROMETHEUS_UNREACHABLE = "PrometheusUnreachable"
    STALE_DEMAND = "StaleDemand"
    BAD_QUERY = "BadQuery"
    NO_DEMAND_DATA = "NoDemandData"
    DEMAND_DATA_FRESH = "DemandDataFresh"
    # RegionUnreachable
    ALL_REGIONS_REACHABLE = "AllRegionsReachable"
    REGION_UNREACHABLE = "RegionUnreachable"
    # Actuated
    APPLIED = "Applied"
    PLAN_ONLY = "PlanOnly"
    ACTUATION_FAILED = "ActuationFailed"
    CHANGE_BUDGET_EXHAUSTED = "ChangeBudgetExhausted"
    # ThrottlingPublished
    PUBLISHED = "Published"
    LIMITS_FAILED = "LimitsFailed"
    PUBLISH_FAILED = "PublishFailed"
    # ObjectsExcluded
    NONE_EXCLUDED = "NoneExcluded"
    CANNOT_BE_PLANNED = "CannotBePlanned"
    # Valid, SLATier spec.routing (cross-object checks in llmfleet.api.references)
    ROUTING_UNKNOWN_MODEL = "RoutingUnknownModel"
    ROUTING_NO_EVALUATION = "RoutingNoEvaluation"
    ROUTING_NO_COST = "RoutingNoCost"
    ROUTING_UNPLACEABLE = "RoutingCandidateUnplaceable"
    ROUTING_SHARED_SERVED_NAME = "RoutingSharedServedName"
