"""Demand for one cycle: read the history, forecast it, keep the flows the fleet knows, and
fall back to the TenantQuotas' budgets when there is no data.

Outcomes (each a value, never an exception out of :func:`read_demand`):

* fresh data -> :class:`Demand` with ``source="history"`` (the forecasts of the known
  flows; flows naming an unknown model, origin region or tier are dropped and counted);
* no data at all, or none for a known flow -> ``source="quota"``: the demand the quotas'
  budgets imply (:func:`llmfleet.forecast.synthetic.quota_demand`), starting at the
  current step;
* data older than ``spec.prometheus.maxDataAgeSeconds``, an unreachable source, or a
  rejected query -> :class:`DemandFailure` naming the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from llmfleet.api.conditions import Reason
from llmfleet.api.policy import FleetPolicy
from llmfleet.api.references import FleetSnapshot
from llmfleet.cycle.ports import (
    BadQuery,
    DemandRead,
    DemandSource,
    DemandSourceError,
    Forecaster,
    UsageSource,
)
from llmfleet.fairness.limits import Usage
from llmfleet.forecast.synthetic import quota_demand
from llmfleet.forecast.types import DemandForecast, FlowKey

if TYPE_CHECKING:
    from llmfleet.cycle.routing import RoutingApplied

DemandSourceKind = Literal["history", "quota"]


@dataclass(frozen=True)
class Demand:
    """The forecasts one cycle plans for, and where they came from."""

    forecasts: tuple[DemandForecast, ...]
    source: DemandSourceKind
    message: str
    age_seconds: float | None = None
    why: str = ""
    """For the quotas' fallback: why there was no data (the start of ``message``)."""
    routing: RoutingApplied | None = None
    """What the router's shares did to the forecasts (None: no shares;
    :func:`llmfleet.cycle.routing.route_demand`)."""


@dataclass(frozen=True)
class DemandFailure:
    """Why no demand could be had this cycle (the last plan stays)."""

    reason: str
    """A :class:`~llmfleet.api.conditions.Reason`: ``PrometheusUnreachable``,
    ``StaleDemand`` or ``BadQuery``."""
    message: str
    permanent: bool = False
    """True when retrying cannot help until the spec changes (a rejected query)."""


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
        why=why,
    )


def demand_from_read(
    policy: FleetPolicy,
    snapshot: FleetSnapshot,
    read: DemandRead,
    now: float,
    forecaster: Forecaster,
    where: str,
) -> Demand | DemandFailure:
    """Forecasts from what the source returned (module docstring)."""
    spec = policy.spec
    if read.empty:
        return quota_fallback(policy, snapshot, now, f"no demand data in {where}")
    if read.age_seconds is not None and read.age_seconds > spec.prometheus.max_data_age_seconds:
        return DemandFailure(
            Reason.STALE_DEMAND,
            f"newest demand sample in {where} is {read.age_seconds:.0f}s old "
            f"(spec.prometheus.maxDataAgeSeconds {spec.prometheus.max_data_age_seconds}); "
            "keeping the last plan",
        )
    keep, dropped = known_flows(forecaster(read.histories, policy, now), snapshot)
    if not keep:
        why = f"no demand in {where} for a known (model, region, tier)"
        if dropped:
            why += f" ({len(dropped)} flows name unknown objects, e.g. {flow_name(dropped[0])})"
        return quota_fallback(policy, snapshot, now, why)
    message = f"{len(keep)} flows from {where}"
    if read.age_seconds is not None:
        message += f", data {read.age_seconds:.0f}s old"
    if dropped:
        message += (
            f"; {len(dropped)} flows ignored (unknown model/region/tier, e.g. "
            f"{flow_name(dropped[0])})"
        )
    return Demand(tuple(keep), "history", message, read.age_seconds)


def read_demand(
    policy: FleetPolicy,
    snapshot: FleetSnapshot,
    source: DemandSource | None,
    now: float,
    forecaster: Forecaster,
) -> Demand | DemandFailure:
    """Read and forecast demand from ``source`` (None: no source configured)."""
    if source is None:
        return quota_fallback(policy, snapshot, now, "no demand source configured")
    spec = policy.spec
    try:
        read = source.read(
            spec.prometheus.queries,
            end=now,
            history_seconds=spec.forecast.history_seconds,
            step_seconds=spec.horizon.step_seconds,
            peak_seconds=min(spec.forecast.burst_window_seconds, spec.horizon.step_seconds),
        )
    except BadQuery as err:
        return DemandFailure(Reason.BAD_QUERY, str(err), permanent=True)
    except DemandSourceError as err:
        # unreachable, 5xx, or an answer that is not what the API sends: temporary
        return DemandFailure(Reason.PROMETHEUS_UNREACHABLE, str(err))
    return demand_from_read(policy, snapshot, read, now, forecaster, source.where)


def tenant_usage(
    policy: FleetPolicy, source: UsageSource | None, now: float
) -> tuple[tuple[Usage, ...], str]:
    """Each tenant's usage now, and a note when it could not be read (then no usage: the
    limits are still computed, from the budgets alone)."""
    if source is None:
        return (), "no usage source configured: no tenant usage"
    try:
        usage = source.read_usage(
            policy.spec.prometheus.queries, end=now, step_seconds=policy.spec.horizon.step_seconds
        )
    except DemandSourceError as err:
        return (), f"tenant usage not read ({err}); limits computed without usage"
    if not usage:
        return (), f"no per-tenant usage in {source.where}"
    return usage, ""


def flow_name(k: FlowKey) -> str:
    return f"{k.model}/{k.origin}/{k.tier}"
