"""The planning instance: everything one solve needs, as plain frozen data (no I/O).

A :class:`PlanningInstance` is built from the API objects with :func:`from_snapshot`
(the controller's path) or directly (tests and the benchmark generator). It names
things by their API names; :mod:`llmfleet.plan.indexed` compiles it into the numeric
arrays the model, the heuristic and the validator work on.

Units: rates are tokens/s or requests/s averaged over a step; prices USD per node-hour;
times seconds. Demand comes from :class:`llmfleet.forecast.types.DemandForecast`
(``point`` and ``upper`` per :class:`FlowKey`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from llmfleet.api.model import GPUProfile, LLMModel
from llmfleet.api.policy import FleetPolicy
from llmfleet.api.references import FleetSnapshot
from llmfleet.api.region import Region
from llmfleet.api.tenant import TenantQuota
from llmfleet.api.tier import SLATier
from llmfleet.forecast.types import DemandForecast

TierKind = Literal["interactive", "deadline"]


class InstanceError(ValueError):
    """The inputs cannot form a planning instance; the message names the object and field."""


@dataclass(frozen=True)
class PoolSpec:
    """One node pool of a region."""

    region: str
    name: str
    gpu_type: str
    gpus_per_node: int
    spot: bool
    price_per_node_hour: float
    min_nodes: int
    max_nodes: int
    interruption_rate_per_hour: float = 0.0
    provisioning_seconds: float = 300.0


@dataclass(frozen=True)
class RegionSpec:
    """A region, its pools and its round-trip times to other regions (ms)."""

    name: str
    pools: tuple[PoolSpec, ...]
    rtt_ms: Mapping[str, float] = field(default_factory=dict)
    utc_offset_hours: float = 0.0

    def rtt_to(self, other: str) -> float | None:
        """RTT in ms to ``other``; 0 to itself; None when unknown (unreachable)."""
        if other == self.name:
            return 0.0
        return self.rtt_ms.get(other)


@dataclass(frozen=True)
class ProfileSpec:
    """How one replica of a model performs on one GPU type."""

    gpu_type: str
    gpus_per_replica: int
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    max_concurrency: int = 256
    load_seconds: float = 120.0


@dataclass(frozen=True)
class ModelSpec:
    """A served model: its GPU profiles and placement limits."""

    name: str
    profiles: tuple[ProfileSpec, ...]
    allowed_regions: tuple[str, ...] = ()
    """Empty means every region."""
    min_replicas_per_region: int = 0

    def profile(self, gpu_type: str) -> ProfileSpec | None:
        return next((p for p in self.profiles if p.gpu_type == gpu_type), None)


@dataclass(frozen=True)
class TierSpec:
    """An SLA tier."""

    name: str
    kind: TierKind
    ttft_s: float | None = None
    e2e_s: float | None = None
    tpot_s: float | None = None
    deadline_s: float | None = None
    spot_allowed: bool = True
    max_spot_fraction: float = 1.0
    target_utilization: float = 0.7
    penalty_per_request: float = 0.01
    priority: int = 100


@dataclass(frozen=True)
class Guarantee:
    """Tokens/s reserved for one tenant of a tier (its models; empty means all)."""

    tenant: str
    tier: str
    tokens_per_s: float
    models: tuple[str, ...] = ()


@dataclass(frozen=True)
class Weights:
    """Objective weights (FleetPolicy ``objective``)."""

    gpu_cost: float = 1.0
    scaling_overhead: float = 1.0
    sla_risk: float = 1.0


@dataclass(frozen=True)
class Settings:
    """Horizon, limits and solver settings (FleetPolicy)."""

    step_seconds: int = 3600
    steps: int = 24
    max_changes_per_cycle: int = 100
    max_interactive_spot_fraction: float = 0.3
    time_limit_seconds: float = 30.0
    relative_gap: float = 0.01
    weights: Weights = field(default_factory=Weights)
    policy: str = "default"


@dataclass(frozen=True)
class CurrentState:
    """The fleet when planning starts: step 0 changes are counted from here."""

    nodes: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """(region, pool) -> nodes provisioned now."""
    replicas: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    """(model, region, pool) -> replicas running now."""
    backlog_tokens: Mapping[tuple[str, str], float] = field(default_factory=dict)
    """(model, deadline tier) -> batch tokens queued now (due within the tier deadline)."""


@dataclass(frozen=True)
class PlanningInstance:
    """All inputs of one planning solve."""

    regions: tuple[RegionSpec, ...]
    models: tuple[ModelSpec, ...]
    tiers: tuple[TierSpec, ...]
    demand: tuple[DemandForecast, ...]
    settings: Settings = field(default_factory=Settings)
    current: CurrentState = field(default_factory=CurrentState)
    guarantees: tuple[Guarantee, ...] = ()
    replica_bounds: Mapping[tuple[str, str, str], tuple[int, int | None]] = field(
        default_factory=dict
    )
    """(model, region, pool) -> (lo, hi): replicas of that placement at every step are
    ``>= lo`` and, when ``hi`` is not None, ``<= hi`` (a held region uses ``lo == hi``).
    A key whose placement does not exist (model gone, pool gone, model cannot run on that
    pool) is ignored. Node floors are not part of this: they are the pools'
    ``min_nodes``/``max_nodes``."""

    def __post_init__(self) -> None:
        check_instance(self)

    def region(self, name: str) -> RegionSpec:
        return next(r for r in self.regions if r.name == name)

    def tier(self, name: str) -> TierSpec:
        return next(t for t in self.tiers if t.name == name)

    def model(self, name: str) -> ModelSpec:
        return next(m for m in self.models if m.name == name)

    def without_region(self, name: str) -> PlanningInstance:
        """The same instance with region ``name`` removed (its demand still originates)."""
        regions = tuple(r for r in self.regions if r.name != name)
        return PlanningInstance(
            regions=regions,
            models=self.models,
            tiers=self.tiers,
            demand=self.demand,
            settings=self.settings,
            current=self.current,
            guarantees=self.guarantees,
            replica_bounds=self.replica_bounds,
        )


def check_instance(inst: PlanningInstance) -> None:
    """Raise :class:`InstanceError` on inputs no plan can be made from."""
    names = [r.name for r in inst.regions]
    if len(set(names)) != len(names):
        raise InstanceError("duplicate region names")
    tiers = {t.name for t in inst.tiers}
    models = {m.name for m in inst.models}
    steps = inst.settings.steps
    for r in inst.regions:
        for p in r.pools:
            if p.min_nodes > p.max_nodes:
                raise InstanceError(f"region {r.name} pool {p.name}: minNodes > maxNodes")
    for t in inst.tiers:
        if t.kind == "interactive" and t.ttft_s is None:
            raise InstanceError(f"tier {t.name}: an interactive tier needs ttft")
        if t.kind == "deadline" and t.deadline_s is None:
            raise InstanceError(f"tier {t.name}: a deadline tier needs a deadline")
    keys = [d.key for d in inst.demand]
    if len(set(keys)) != len(keys):
        raise InstanceError("two forecasts for the same flow (model, origin, tier)")
    for d in inst.demand:
        if d.key.tier not in tiers:
            raise InstanceError(f"demand {d.key}: unknown tier {d.key.tier!r}")
        if d.key.model not in models:
            raise InstanceError(f"demand {d.key}: unknown model {d.key.model!r}")
        if d.step_seconds != inst.settings.step_seconds:
            raise InstanceError(
                f"demand {d.key}: forecast step {d.step_seconds}s differs from the planning "
                f"step {inst.settings.step_seconds}s"
            )
        if d.steps < steps:
            raise InstanceError(f"demand {d.key}: forecast covers {d.steps} steps, need {steps}")
    for key, (lo, hi) in inst.replica_bounds.items():
        if lo < 0:
            raise InstanceError(f"replica_bounds {key}: lo={lo} < 0")
        if hi is not None and hi < lo:
            raise InstanceError(f"replica_bounds {key}: hi={hi} < lo={lo}")


def _region(r: Region) -> RegionSpec:
    pools = tuple(
        PoolSpec(
            region=r.metadata.name,
            name=p.name,
            gpu_type=p.gpu_type,
            gpus_per_node=p.gpus_per_node,
            spot=p.capacity_type == "spot",
            price_per_node_hour=p.price_per_node_hour,
            min_nodes=p.min_nodes,
            max_nodes=p.max_nodes,
            interruption_rate_per_hour=p.spot_interruption_rate_per_hour or 0.0,
            provisioning_seconds=float(p.provisioning_seconds),
        )
        for p in r.spec.pools
    )
    return RegionSpec(
        name=r.metadata.name,
        pools=pools,
        rtt_ms={lat.region: lat.rtt_ms for lat in r.spec.latencies},
        utc_offset_hours=r.spec.utc_offset_hours,
    )


def profile_spec(p: GPUProfile) -> ProfileSpec:
    """The planner's view of one LLMModel profile."""
    return ProfileSpec(
        gpu_type=p.gpu_type,
        gpus_per_replica=p.gpus_per_replica,
        prefill_tokens_per_s=p.prefill_tokens_per_second,
        decode_tokens_per_s=p.decode_tokens_per_second,
        max_concurrency=p.max_concurrent_sequences,
        load_seconds=p.load_seconds,
    )


def _model(m: LLMModel) -> ModelSpec:
    return ModelSpec(
        name=m.metadata.name,
        profiles=tuple(profile_spec(p) for p in m.spec.profiles),
        allowed_regions=tuple(m.spec.allowed_regions),
        min_replicas_per_region=m.spec.min_replicas_per_region,
    )


def tier_spec(t: SLATier) -> TierSpec:
    """The planner's view of one SLATier."""
    s = t.spec
    inter = s.interactive
    return TierSpec(
        name=t.metadata.name,
        kind=s.type,
        ttft_s=inter.ttft_p95_seconds if inter else None,
        e2e_s=inter.e2e_p95_seconds if inter else None,
        tpot_s=inter.tpot_p95_seconds if inter else None,
        deadline_s=float(s.deadline.completion_seconds) if s.deadline else None,
        spot_allowed=s.spot_allowed,
        max_spot_fraction=s.max_spot_fraction if s.spot_allowed else 0.0,
        target_utilization=s.target_utilization,
        penalty_per_request=s.penalty_per_violation,
        priority=s.priority,
    )


def _guarantees(tenants: Iterable[TenantQuota]) -> tuple[Guarantee, ...]:
    out = []
    for t in tenants:
        tpm = t.spec.budgets.guaranteed_tokens_per_minute
        if tpm:
            out.append(
                Guarantee(
                    tenant=t.spec.tenant_id,
                    tier=t.spec.tier,
                    tokens_per_s=tpm / 60.0,
                    models=tuple(t.spec.models),
                )
            )
    return tuple(out)


def from_snapshot(
    snapshot: FleetSnapshot,
    forecasts: Sequence[DemandForecast],
    current: CurrentState,
    policy: FleetPolicy,
) -> PlanningInstance:
    """Build the instance from the API objects, the demand forecasts and the current state.

    Forecasts longer than the horizon are cut to ``policy.spec.horizon.steps``.
    """
    spec = policy.spec
    settings = Settings(
        step_seconds=spec.horizon.step_seconds,
        steps=spec.horizon.steps,
        max_changes_per_cycle=spec.max_changes_per_cycle,
        max_interactive_spot_fraction=spec.max_interactive_spot_fraction,
        time_limit_seconds=spec.solver.time_limit_seconds,
        relative_gap=spec.solver.relative_gap,
        weights=Weights(
            gpu_cost=spec.objective.gpu_cost,
            scaling_overhead=spec.objective.scaling_overhead,
            sla_risk=spec.objective.sla_risk,
        ),
        policy=policy.metadata.name,
    )
    return PlanningInstance(
        regions=tuple(_region(r) for r in snapshot.regions),
        models=tuple(_model(m) for m in snapshot.models),
        tiers=tuple(tier_spec(t) for t in snapshot.tiers),
        demand=tuple(forecasts),
        settings=settings,
        current=current,
        guarantees=_guarantees(snapshot.tenants),
    )
