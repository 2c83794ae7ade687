"""What an autoscaling policy sees and decides in the simulator (the twin's control loop).

Every ``interval_seconds`` the engine hands the policy an :class:`Observation` — only what a
live controller would have at that moment (past demand, the fleet as it is, recent
utilisation; never the future) — and applies the :class:`FleetTarget` it returns: nodes are
provisioned (after the pool's provisioning delay) or released, replicas are started (after
the model's load time) or drained, and the routers follow the new routing fractions.

Policies: llmfleet (forecast + ILP + reactive correction), reactive threshold (HPA/KEDA-like),
siloed, SageServe as published, static peak, oracle (the planner fed the true future).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from llmfleet.api.plan import TenantThrottle
from llmfleet.forecast.types import DemandHistory, DemandRates, FlowKey

ReplicaKey = tuple[str, str, str]
"""(model, region, pool)."""
PoolKey = tuple[str, str]
"""(region, pool)."""
RouteKey = tuple[str, str, str]
"""(model, tier, origin)."""


@dataclass(frozen=True)
class ReplicaStats:
    """One (model, region, pool)'s replicas over the last interval."""

    ready: int
    """Replicas serving now."""
    loading: int
    """Replicas started but still loading the model (or waiting for a node)."""
    busy: float
    """Mean share of sequence slots in use over the interval (0..1): the 'memory'/KV
    utilisation SageServe's reactive rules read."""
    waiting: int
    """Requests queued at these replicas now."""
    tokens_per_s: float
    """Tokens served per second over the interval (prompt + output)."""


@dataclass(frozen=True)
class Observation:
    """The fleet and its demand as a live controller would see them at ``now``."""

    now: float
    """Seconds since the scenario start."""
    start_unix: float
    """Unix time of the scenario start (so forecasts can align daily/weekly seasons)."""
    step_seconds: int
    """Step of :attr:`history` (the planning step)."""
    history: Mapping[FlowKey, DemandHistory]
    """Observed demand per flow (model, origin, tier), complete steps up to ``now`` only."""
    nodes: Mapping[PoolKey, int]
    """Nodes provisioned now (ready or still provisioning)."""
    replicas: Mapping[ReplicaKey, ReplicaStats]
    backlog_tokens: Mapping[tuple[str, str], float] = field(default_factory=dict)
    """(model, deadline tier) -> batch tokens queued now."""
    tenant_usage: Mapping[tuple[str, str, str], float] = field(default_factory=dict)
    """(tenant, model, origin region) -> tokens/s it sent over the last planning step (what
    the controller's ``tenantUsage`` query reads), throttled requests included."""
    recent: Mapping[FlowKey, tuple[float, float, float]] = field(default_factory=dict)
    """Per flow (model, origin, tier): (requests, prompt tokens, output tokens) per second
    that arrived over the last :attr:`recent_seconds` (the gateway's ``rate(...[1m])``)."""
    recent_seconds: float = 0.0
    """The window of :attr:`recent` (0: not observed)."""


@dataclass(frozen=True)
class FleetTarget:
    """What the policy wants the fleet to be."""

    replicas: Mapping[ReplicaKey, int]
    """Replicas wanted per (model, region, pool); absent keys mean 0."""
    routes: Mapping[RouteKey, Mapping[str, float]]
    """(model, tier, origin) -> {region: fraction}, fractions summing to 1. A flow with no
    entry is routed to its origin if it serves the model, else to the nearest region that
    does."""
    nodes: Mapping[PoolKey, int] | None = None
    """Nodes wanted per (region, pool); None lets the engine provision just enough nodes to
    pack the replicas (first fit, at least the pool's minimum)."""
    note: str = ""
    """A short line for the report (e.g. the planner's status and gap)."""
    throttles: Sequence[TenantThrottle] | None = None
    """The tenants' limits the ingress enforces (a plan's ``spec.throttles``); None keeps
    the ones in force (none at the start: no tenant is limited)."""
    pool_lanes: Mapping[PoolKey, str] = field(default_factory=dict)
    """(region, pool) -> ``interactive`` or ``deadline``: a pool listed here serves only that
    lane (the siloed baseline); unlisted pools serve both."""
    spill: bool = False
    """The ingress spills an interactive request to another region when the replica its
    route picked would miss the tier's TTFT target and one that would meet it (its
    estimated prefill wait plus the round trip) is ready there (engine module doc)."""


class Policy(Protocol):
    """An autoscaler in the loop. ``decide`` must not look at anything but ``obs``."""

    name: str
    interval_seconds: float
    """How often ``decide`` is called."""

    def decide(self, obs: Observation) -> FleetTarget: ...


class ReactivePolicy(Policy, Protocol):
    """A policy that also corrects between plans, every ``react_seconds``."""

    react_seconds: float

    def react(self, obs: Observation) -> FleetTarget | None:
        """A corrected target, or None to keep the current one."""
        ...


def flow_total(rates: DemandRates) -> float:
    """Mean prompt + output tokens/s over a rate series (0 for an empty one)."""
    n = len(rates)
    if n == 0:
        return 0.0
    return (sum(rates.prompt_tokens_per_s) + sum(rates.output_tokens_per_s)) / n
