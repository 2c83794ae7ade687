"""The planner's typed output: a :class:`Plan` per step, or a clearly worded failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from llmfleet.plan.objective import Breakdown
from llmfleet.plan.solution import Solution

Reason = Literal[
    "demand", "min-replicas", "packing", "latency", "spot-cap", "deadline", "guarantee", "none"
]
PlanStatus = Literal["Optimal", "Feasible"]


@dataclass(frozen=True)
class PoolStep:
    region: str
    pool: str
    gpu_type: str
    spot: bool
    nodes: float
    """Integer on integral steps; fractional (LP shaping) on the rest of the horizon."""
    max_nodes: int
    gpus_used: float
    utilisation: float
    """Predicted load / capacity of the pool's replicas (0..1)."""


@dataclass(frozen=True)
class ReplicaStep:
    model: str
    region: str
    pool: str
    replicas: float


@dataclass(frozen=True)
class Route:
    """Share of one origin's (model, tier) demand served in ``region``."""

    model: str
    tier: str
    origin: str
    region: str
    fraction: float
    tokens_per_s: float


@dataclass(frozen=True)
class BatchWork:
    """Deferred-batch schedule: work of (model, tier) processed in a region at a step."""

    model: str
    tier: str
    region: str
    tokens_per_s: float


@dataclass(frozen=True)
class Backlog:
    model: str
    tier: str
    tokens: float
    """Queued at the end of the step (due within the tier's deadline)."""


@dataclass(frozen=True)
class Reserve:
    """Idle capacity held in ``region`` for the guaranteed budgets of (model, tier)."""

    model: str
    tier: str
    region: str
    tokens_per_s: float


#: The ``origin`` of an :class:`Unmet` row that is a guarantee shortfall (not one origin's).
GUARANTEE_ORIGIN = "all"


@dataclass(frozen=True)
class Unmet:
    model: str
    origin: str
    tier: str
    tokens_per_s: float
    reason: str


@dataclass(frozen=True)
class StepPlan:
    step: int
    integral: bool
    usd_per_hour: float
    pools: tuple[PoolStep, ...]
    replicas: tuple[ReplicaStep, ...]
    routes: tuple[Route, ...]
    batch: tuple[BatchWork, ...]
    backlog: tuple[Backlog, ...]
    unmet: tuple[Unmet, ...]
    reserves: tuple[Reserve, ...] = ()
    """Capacity held for tenant guarantees beyond what the routes serve (enters capacity)."""


@dataclass(frozen=True)
class PoolExplanation:
    """Why a pool holds what it holds at step 0."""

    region: str
    pool: str
    reason: Reason
    message: str


@dataclass(frozen=True)
class SolverInfo:
    status: PlanStatus
    method: str
    """How the plan was made, e.g. ``lp+round`` or ``greedy (LP not solved in time)``."""
    objective: float
    bound: float | None
    """LP relaxation of the full joint model (USD over the horizon) when it was solved."""
    gap: float | None
    seconds: float
    message: str = ""


@dataclass(frozen=True)
class Plan:
    """A plan over the horizon; only step 0 is executed, the rest shapes it."""

    policy: str
    step_seconds: int
    steps: tuple[StepPlan, ...]
    solver: SolverInfo
    breakdown: Breakdown
    explanations: tuple[PoolExplanation, ...]
    solution: Solution = field(repr=False)
    """The numeric values behind the tables, indexed as the compiled instance (warm starts
    and explanations use them; the validator checks the tables, not these)."""
    integral_steps: int = 1

    @property
    def objective(self) -> float:
        return self.solver.objective

    def first(self) -> StepPlan:
        return self.steps[0]


@dataclass(frozen=True)
class Infeasible:
    """The hard constraints cannot all hold (no plan exists); ``reasons`` say which."""

    reasons: tuple[str, ...]
    seconds: float

    @property
    def message(self) -> str:
        return "infeasible: no plan can satisfy the hard limits — " + "; ".join(self.reasons)


@dataclass(frozen=True)
class NoSolutionInTime:
    """Nothing that satisfies the hard constraints was found within the time limit."""

    time_limit: float
    seconds: float
    detail: str

    @property
    def message(self) -> str:
        return (
            f"no solution in time: no plan meeting the hard limits was found within "
            f"{self.time_limit:.1f}s ({self.detail}); infeasibility was not proven"
        )


PlanOutcome = Plan | Infeasible | NoSolutionInTime
