"""The ports the planning cycle reads through, and the errors they may raise.

The cycle is pure: it never opens a socket. What it needs from outside comes through these
protocols, each with more than one implementation:

* :class:`DemandSource` -- the demand history of every flow. The controller's is
  :class:`llmfleet.kube.prometheus.DemandReader` (range queries); the twin's is
  :class:`llmfleet.sim.policies.planner.ObservedDemand` (the history it has seen).
* :class:`UsageSource` -- each tenant's usage now (the controller's reader; the twin's
  observed per-tenant rates).
* :class:`Forecaster` -- history -> forecasts (:func:`forecast_histories` by default; the
  twin's oracle is told the true future instead).
* :class:`Solver` -- instance -> plan (:func:`llmfleet.plan.solve.plan_fleet`).

A source reports failure by raising one of the errors below, which the cycle turns into
values (a :class:`~llmfleet.cycle.run.CycleResult` that keeps the last plan and says why).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from llmfleet.api.policy import FleetPolicy, PrometheusQueries
from llmfleet.fairness.limits import Usage
from llmfleet.forecast.forecaster import forecast_all
from llmfleet.forecast.types import DemandForecast, DemandHistory, FlowKey
from llmfleet.plan.instance import PlanningInstance
from llmfleet.plan.solve import plan_fleet
from llmfleet.plan.types import Plan, PlanOutcome


class DemandSourceError(RuntimeError):
    """Reading demand failed; the message names the source (URL) and the query."""


class SourceUnreachable(DemandSourceError):
    """Connection refused, timed out, or a 5xx answer: temporary, retry later."""


class BadQuery(DemandSourceError):
    """The source rejected a query (or its result lacks a required label): fix the spec."""


@dataclass(frozen=True)
class DemandRead:
    """What one read of the demand history returned."""

    histories: tuple[DemandHistory, ...]
    start: float
    """Unix time of the first history step's start."""
    step_seconds: int
    newest_sample: float | None
    """Unix time of the newest demand sample, None when there is none."""
    age_seconds: float | None
    """``end - newest_sample``; None when there is no data."""

    @property
    def empty(self) -> bool:
        return not self.histories


class DemandSource(Protocol):
    """Where the cycle reads demand history from."""

    @property
    def where(self) -> str:
        """A short name of the source for messages (e.g. ``Prometheus http://...``)."""
        ...

    def read(
        self, queries: PrometheusQueries, *, end: float, history_seconds: int, step_seconds: int,
        peak_seconds: int = 0,
    ) -> DemandRead:
        """Demand of every flow over ``[end - history_seconds, end]`` at ``step_seconds``,
        with each step's peak (its busiest ``peak_seconds``; 0: no peaks,
        :attr:`~llmfleet.forecast.types.DemandHistory.peaks`) where the source has them;
        raises :class:`SourceUnreachable` or :class:`BadQuery`."""
        ...


class UsageSource(Protocol):
    """Where the cycle reads each tenant's usage now from."""

    @property
    def where(self) -> str:
        """A short name of the source for messages."""
        ...

    def read_usage(
        self, queries: PrometheusQueries, *, end: float, step_seconds: int
    ) -> tuple[Usage, ...]:
        """Tokens/s per (tenant, model, origin region) at ``end``; raises
        :class:`DemandSourceError` on failure."""
        ...


class Forecaster(Protocol):
    """History -> one forecast per flow over the policy's horizon."""

    def __call__(
        self, histories: tuple[DemandHistory, ...], policy: FleetPolicy, now: float
    ) -> Mapping[FlowKey, DemandForecast]: ...


class Solver(Protocol):
    """Instance (and the previous plan, for a warm start) -> a plan or why none."""

    def __call__(self, inst: PlanningInstance, previous: Plan | None) -> PlanOutcome: ...


def forecast_histories(
    histories: tuple[DemandHistory, ...], policy: FleetPolicy, now: float
) -> Mapping[FlowKey, DemandForecast]:
    """The policy's forecast (``spec.forecast``) of every flow over its horizon."""
    del now  # the histories end where the forecast starts
    spec = policy.spec
    return forecast_all(
        histories,
        horizon_steps=spec.horizon.steps,
        step_seconds=spec.horizon.step_seconds,
        method=spec.forecast.method,
        quantile=spec.forecast.upper_quantile,
        folds=spec.forecast.backtest_folds,
        burst_memory=spec.forecast.burst_memory_steps if spec.forecast.burst_window_seconds else 0,
    )


def solve_with_policy_limits(inst: PlanningInstance, previous: Plan | None) -> PlanOutcome:
    """:func:`llmfleet.plan.solve.plan_fleet` with the instance's own time limit (the
    policy's ``spec.solver``), warm-started from ``previous``."""
    return plan_fleet(inst, previous=previous)
