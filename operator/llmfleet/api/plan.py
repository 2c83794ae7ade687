"""``FleetPlan``: one plan the controller made, kept as a readable, revertible record."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from llmfleet.api.base import ApiModel, Name, StatusBase, Timestamp
from llmfleet.api.region import GPU_TYPE_PATTERN, CapacityType
from llmfleet.api.resource import AGE_COLUMN, KindInfo, PrinterColumn, Resource
from llmfleet.api.tenant import TENANT_ID_PATTERN

SolverStatus = Literal["Optimal", "Feasible", "Infeasible", "Timeout", "Error"]
PlanPhase = Literal["Pending", "Applying", "Applied", "PlanOnly", "Superseded", "Failed"]
#: Upper bound of the plan's counts (an int64 at the apiserver; far above any fleet).
MAX_COUNT = 10**9
BindingReason = Literal[
    "demand", "min-replicas", "packing", "latency", "spot-cap", "deadline", "guarantee", "none"
]


class SolverResult(ApiModel):
    """How the solve went."""

    status: SolverStatus
    """``Optimal``/``Feasible``: a plan was found; ``Timeout``: none in time;
    ``Infeasible``: the constraints cannot all hold; ``Error``: the solver failed."""
    objective: float | None = None
    """Objective value of the plan, USD over the horizon."""
    bound: float | None = None
    """Best proven lower bound on the objective, USD."""
    gap: float | None = Field(default=None, ge=0)
    """(objective - bound) / objective."""
    solve_seconds: float = Field(ge=0)
    """Wall-clock time of the solve, seconds."""
    message: str = Field(default="", max_length=4096)
    """Solver detail for people."""


class PoolNodes(ApiModel):
    """Desired nodes of one pool at the first step."""

    region: Name
    """Region name."""
    pool: Name
    """Pool name."""
    gpu_type: str = Field(max_length=63, pattern=GPU_TYPE_PATTERN)
    """GPU SKU of the pool."""
    capacity_type: CapacityType
    """on-demand or spot."""
    nodes: int = Field(ge=0, le=10000)
    """Desired nodes."""
    current_nodes: int | None = Field(default=None, ge=0, le=10000)
    """Nodes when the plan was made."""


class ModelReplicas(ApiModel):
    """Desired replicas of one model on one pool at the first step."""

    model: Name
    """LLMModel name."""
    region: Name
    """Region name."""
    pool: Name
    """Pool name."""
    replicas: int = Field(ge=0, le=MAX_COUNT)
    """Desired replicas."""
    current_replicas: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    """Replicas when the plan was made."""


class RegionWeight(ApiModel):
    """Share of a flow routed to one region."""

    region: Name
    """Serving region."""
    fraction: float = Field(ge=0, le=1)
    """Share of requests sent there."""


class RoutingRule(ApiModel):
    """Where requests of one (model, tier) from one origin region go."""

    model: Name
    """LLMModel name."""
    tier: Name
    """SLATier name."""
    origin: Name
    """Region the requests come from."""
    weights: list[RegionWeight] = Field(default_factory=list, max_length=64)
    """Serving regions and shares (sum to 1 when the flow has demand)."""


class TenantThrottle(ApiModel):
    """Limits for one tenant derived from the plan."""

    tenant: str = Field(max_length=128, pattern=TENANT_ID_PATTERN)
    """Tenant id."""
    tier: Name
    """SLATier name."""
    tokens_per_second: float = Field(ge=0)
    """Token rate limit, tokens/s."""
    requests_per_second: float = Field(ge=0)
    """Request rate limit, requests/s."""
    burst_tokens: float = Field(ge=0)
    """Token bucket depth, tokens."""
    max_concurrency: int = Field(ge=0, le=MAX_COUNT)
    """Most requests in flight."""
    enforced: bool = True
    """Whether the ingress enforces these limits: they bite (the tenant is above its fair
    share of an overloaded pool) or its quota sets a rate budget. False: recorded only."""


class UnmetDemand(ApiModel):
    """Demand the plan cannot serve, and why."""

    model: Name
    """LLMModel name."""
    origin: Name
    """Origin region."""
    tier: Name
    """SLATier name."""
    tokens_per_second: float = Field(ge=0)
    """Unserved load, tokens/s."""
    reason: str = Field(max_length=1024)
    """Why, e.g. every latency-eligible pool is at maxNodes."""


class Explanation(ApiModel):
    """Why a pool holds what it holds."""

    region: Name
    """Region name."""
    pool: Name
    """Pool name."""
    reason: BindingReason
    """The binding reason: ``demand``, ``min-replicas``, ``packing``, ``latency``,
    ``spot-cap``, ``deadline``, ``guarantee``, or ``none``."""
    message: str = Field(max_length=4096)
    """The reason in words."""


class FleetPlanSpec(ApiModel):
    """A plan as made (immutable once written)."""

    policy: Name
    """FleetPolicy that made the plan."""
    inputs_digest: str = Field(max_length=128)
    """Digest of every input (CRs, demand, current state) so identical inputs are visible."""
    made_at: Timestamp
    """When the plan was made."""
    step_seconds: int = Field(ge=1, le=86400)
    """Length of one step, seconds."""
    steps: int = Field(ge=1, le=10000)
    """Steps planned."""
    solver: SolverResult
    """Solve outcome."""
    cost_per_hour: float = Field(ge=0)
    """USD per hour of the first step's nodes."""
    nodes: list[PoolNodes] = Field(default_factory=list, max_length=4096)
    """Desired nodes per pool at the first step."""
    replicas: list[ModelReplicas] = Field(default_factory=list, max_length=65536)
    """Desired replicas per (model, region, pool) at the first step."""
    routing: list[RoutingRule] = Field(default_factory=list, max_length=65536)
    """Routing fractions at the first step."""
    throttles: list[TenantThrottle] = Field(default_factory=list, max_length=65536)
    """Tenant limits at the first step."""
    unmet: list[UnmetDemand] = Field(default_factory=list, max_length=4096)
    """Demand the plan cannot serve."""
    explanation: list[Explanation] = Field(default_factory=list, max_length=4096)
    """Binding reason per pool."""


class FleetPlanStatus(StatusBase):
    """What happened to the plan."""

    phase: PlanPhase = "Pending"
    """``Pending``, ``Applying``, ``Applied``, ``PlanOnly`` (dry run), ``Superseded`` or
    ``Failed``."""
    applied: bool = False
    """Whether every change of the plan reached the fleet."""
    applied_at: Timestamp | None = None
    """When actuation finished."""
    changes: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    """Number of objects the plan changed."""
    diff: list[str] = Field(default_factory=list, max_length=4096)
    """One line per change against the previous state, e.g. ``eu/h100: nodes 3 -> 5``."""


class FleetPlan(Resource):
    """A recorded plan."""

    info: ClassVar[KindInfo] = KindInfo(
        kind="FleetPlan",
        plural="fleetplans",
        singular="fleetplan",
        scope="Namespaced",
        short_names=("fplan",),
        printer_columns=(
            PrinterColumn("Policy", ".spec.policy"),
            PrinterColumn("USD/h", ".spec.costPerHour", "number"),
            PrinterColumn("Gap", ".spec.solver.gap", "number"),
            PrinterColumn("Solver", ".spec.solver.status"),
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Applied", ".status.applied", "boolean"),
            AGE_COLUMN,
        ),
    )

    kind: Literal["FleetPlan"] = "FleetPlan"
    spec: FleetPlanSpec
    status: FleetPlanStatus | None = None
