"""``SLATier``: a service level — interactive latency targets or a batch deadline."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from llmfleet.api.base import ApiModel, LabelNamedMeta, Rule, StatusBase, cel_or_default
from llmfleet.api.resource import AGE_COLUMN, VALID_COLUMN, KindInfo, PrinterColumn, Resource

TierType = Literal["interactive", "deadline"]


class InteractiveTargets(ApiModel):
    """Latency targets of an interactive tier (p95 over each planning step)."""

    ttft_p95_seconds: float | None = Field(default=None, gt=0, le=600)
    """95th-percentile time to first token, seconds (required for interactive tiers)."""
    e2e_p95_seconds: float | None = Field(default=None, gt=0, le=86400)
    """95th-percentile end-to-end request latency, seconds."""
    tpot_p95_seconds: float | None = Field(default=None, gt=0, le=60)
    """95th-percentile time per output token after the first, seconds."""


class DeadlineTarget(ApiModel):
    """Completion deadline of a batch (deferrable) tier."""

    completion_seconds: int = Field(ge=60, le=7 * 86400)
    """Every request must complete within this many seconds of its arrival."""


class SLATierSpec(ApiModel):
    """Desired state of an SLATier."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.type != 'interactive' || "
            "(has(self.interactive) && has(self.interactive.ttftP95Seconds))",
            message="an interactive tier needs interactive.ttftP95Seconds",
            check=lambda s: (
                s.type != "interactive"
                or (s.interactive is not None and s.interactive.ttft_p95_seconds is not None)
            ),
            field_path=".interactive",
        ),
        Rule(
            cel="self.type != 'deadline' || has(self.deadline)",
            message="a deadline tier needs deadline.completionSeconds",
            check=lambda s: s.type != "deadline" or s.deadline is not None,
            field_path=".deadline",
        ),
        Rule(
            cel="self.type != 'deadline' || !has(self.interactive)",
            message="a deadline tier takes no interactive targets",
            check=lambda s: s.type != "deadline" or s.interactive is None,
            field_path=".interactive",
        ),
        Rule(
            cel=f"{cel_or_default('self.spotAllowed', True)} || "
            f"{cel_or_default('self.maxSpotFraction', 1.0)} == 0.0",
            message="maxSpotFraction must be 0 when spotAllowed is false",
            check=lambda s: s.spot_allowed or s.max_spot_fraction == 0.0,
            field_path=".maxSpotFraction",
        ),
    )

    type: TierType
    """``interactive``: served in the step it arrives, judged by latency targets.
    ``deadline``: batch work that may be deferred, judged by completion time."""
    interactive: InteractiveTargets | None = None
    """Latency targets (interactive tiers)."""
    deadline: DeadlineTarget | None = None
    """Completion deadline (deadline tiers)."""
    priority: int = Field(default=100, ge=0, le=1000)
    """Higher is served first under contention."""
    spot_allowed: bool = True
    """Whether replicas serving this tier may run on spot pools."""
    max_spot_fraction: float = Field(default=1.0, ge=0, le=1)
    """Largest share of this tier's served load that may sit on spot capacity."""
    target_utilization: float = Field(default=0.7, gt=0, le=1)
    """Fraction of a replica's sustainable throughput the planner fills with this tier's
    load; the rest is headroom for bursts."""
    penalty_per_violation: float = Field(default=0.01, ge=0, le=1000)
    """USD charged per request that misses its target; the planner weighs unmet demand
    with it."""


class SLATierStatus(StatusBase):
    """Observed state of an SLATier."""

    attainment: float | None = Field(default=None, ge=0, le=1)
    """Fraction of requests in the last window that met the target."""


class SLATier(Resource):
    """A service level agreement tier."""

    info: ClassVar[KindInfo] = KindInfo(
        kind="SLATier",
        plural="slatiers",
        singular="slatier",
        scope="Namespaced",
        short_names=("tier",),
        printer_columns=(
            PrinterColumn("Type", ".spec.type"),
            PrinterColumn("TTFT-p95", ".spec.interactive.ttftP95Seconds", "number"),
            PrinterColumn("Deadline-s", ".spec.deadline.completionSeconds", "integer"),
            PrinterColumn("Priority", ".spec.priority", "integer"),
            PrinterColumn("Spot", ".spec.spotAllowed", "boolean"),
            VALID_COLUMN,
            AGE_COLUMN,
        ),
    )

    kind: Literal["SLATier"] = "SLATier"
    metadata: LabelNamedMeta
    spec: SLATierSpec
    status: SLATierStatus | None = None
