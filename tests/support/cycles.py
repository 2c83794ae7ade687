"""Builders for the planning cycle's tests: the sample fleet, fake ports, one-line cycles."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from llmfleet.api.loading import load_manifests
from llmfleet.api.policy import FleetPolicy, PrometheusQueries
from llmfleet.api.references import FleetSnapshot
from llmfleet.cycle import CycleInputs, CyclePorts, CycleResult, DemandRead, run_cycle
from llmfleet.cycle.ports import forecast_histories
from llmfleet.fairness.limits import Usage
from llmfleet.plan.instance import CurrentState
from support.builders import SAMPLES

NOW = datetime(2026, 11, 23, 15, 7, 9, tzinfo=UTC)


def sample_snapshot(namespace: str = "ns") -> FleetSnapshot:
    """The sample fleet (crds/samples) as the policy in ``namespace`` sees it."""
    from llmfleet.cycle import policy_snapshot

    return policy_snapshot(load_manifests([SAMPLES], namespace=namespace), namespace)


@dataclass
class FakeSource:
    """A demand and usage source: returns ``read`` / ``usage``, or raises ``error``."""

    read_result: DemandRead | None = None
    usage: tuple[Usage, ...] | Exception = ()
    error: Exception | None = None
    where: str = "Prometheus http://prom.test"
    queries: list[PrometheusQueries] = field(default_factory=list)
    peak_seconds: int = 0
    """The ``peak_seconds`` of the last ``read``."""
    recent: dict[Any, tuple[float, float, float]] | Exception = field(default_factory=dict)
    """What ``read_recent`` returns (or raises): the short-term correction's demand."""
    states: tuple[Any, ...] = ()
    """What ``read_replica_state`` returns: vLLM's view per (model, serving region)."""
    recent_windows: list[int] = field(default_factory=list)
    """The ``window_seconds`` of every ``read_recent``."""

    def read(
        self, queries: PrometheusQueries, *, end: float, history_seconds: int, step_seconds: int,
        peak_seconds: int = 0,
    ) -> DemandRead:
        self.queries.append(queries)
        self.peak_seconds = peak_seconds
        if self.error is not None:
            raise self.error
        assert self.read_result is not None
        return self.read_result

    def read_usage(
        self, queries: PrometheusQueries, *, end: float, step_seconds: int
    ) -> tuple[Usage, ...]:
        self.queries.append(queries)
        if isinstance(self.usage, Exception):
            raise self.usage
        return self.usage

    def read_recent(
        self, queries: PrometheusQueries, *, end: float, window_seconds: int
    ) -> dict[Any, tuple[float, float, float]]:
        self.recent_windows.append(window_seconds)
        if isinstance(self.recent, Exception):
            raise self.recent
        return dict(self.recent)

    def read_replica_state(self, queries: PrometheusQueries, *, end: float) -> tuple[Any, ...]:
        return self.states

    def close(self) -> None:
        """As :class:`~llmfleet.kube.prometheus.DemandReader` has."""


def cycle(
    policy: FleetPolicy,
    snapshot: FleetSnapshot,
    current: CurrentState | None = None,
    *,
    source: Any = None,
    solve: Any = None,
    **inputs: Any,
) -> CycleResult:
    """One cycle of ``policy`` over ``snapshot`` at :data:`NOW` (no source: the quotas'
    fallback)."""
    ports = CyclePorts(demand=source, usage=source, forecaster=forecast_histories)
    if solve is not None:
        ports = CyclePorts(demand=source, usage=source, solve=solve)
    return run_cycle(
        CycleInputs(
            policy=policy, snapshot=snapshot, current=current or CurrentState(), now=NOW, **inputs
        ),
        ports,
    )
