"""``SLATier``: a service level — interactive latency targets or a batch deadline."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from llmfleet.api.base import (
    ApiModel,
    LabelNamedMeta,
    Name,
    Rule,
    StatusBase,
    cel_or_default,
)
from llmfleet.api.resource import AGE_COLUMN, VALID_COLUMN, KindInfo, PrinterColumn, Resource

TierType = Literal["interactive", "deadline"]
RouterKind = Literal["random", "good-enough", "quality", "cluster", "blend"]
#: A quality metric's name: lower-case letters, digits, ``_`` and ``-`` (``accuracy``,
#: ``mt-bench``); LLMModel ``spec.evaluations[].metric`` uses the same names.
METRIC_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"


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


class RouterChoice(ApiModel):
    """Which router picks the model of each request, and its knob."""

    kind: RouterKind = "quality"
    """``random``: a random share of requests to the cheaper candidates (the baseline).
    ``good-enough``: Hybrid LLM's classifier of "the cheaper model is good enough" (exactly
    two candidates). ``quality``: one quality predictor per candidate. ``cluster``:
    UniRoute's per-cluster error rates (a new candidate needs only a small labelled set).
    ``blend``: the mean of two quality estimates per candidate, the text one of ``quality``
    (a linear model of the prompt's words) and boosted regression trees on hand-made
    difficulty features (length, how many numbers, operation words, ...); the best router
    of ``llmfleet bench routing``, and slower to fit."""
    threshold: float | None = Field(default=None, ge=0, le=1_000_000)
    """A fixed cost weight ``lambda`` (>= 0; 0 sends each request to the candidate of best
    expected quality, larger values to cheaper ones). Unset: the operator's calibration sets
    it to the largest value whose bootstrap bound of the quality drop stays within
    ``maxQualityDrop``."""
    confidence: float = Field(default=0.9, gt=0, lt=1)
    """Confidence of the calibration's upper bound of the quality drop (0.9: the drop
    exceeds ``maxQualityDrop`` with probability at most 10%)."""


class TierRouting(ApiModel):
    """Quality-aware model routing of a tier: which models may answer its requests and how
    much quality, against the reference model, the tier gives up for cost."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.candidates.exists(c, c == self.referenceModel)",
            message="referenceModel must be one of candidates",
            check=lambda s: s.reference_model in s.candidates,
            field_path=".referenceModel",
        ),
        Rule(
            cel="!has(self.router) || !has(self.router.kind) || "
            "self.router.kind != 'good-enough' || size(self.candidates) == 2",
            message="router good-enough takes exactly 2 candidates (the reference and one "
            "cheaper model)",
            check=lambda s: s.router.kind != "good-enough" or len(s.candidates) == 2,
            field_path=".candidates",
        ),
    )

    reference_model: Name
    """The LLMModel every request would go to without routing; quality drops and savings
    are measured against it. Must be one of ``candidates``."""
    candidates: list[Name] = Field(
        min_length=2, max_length=8, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """LLMModels (by name, in this namespace) that may answer the tier's requests, the
    reference included: 2 to 8. Each needs ``spec.evaluations`` for ``metric`` and
    ``spec.routingCost``."""
    max_quality_drop: float = Field(ge=0, le=100)
    """Largest mean quality loss against the reference model the tier accepts, in points of
    ``metric`` (0-100; 1.0 = one point of accuracy)."""
    metric: str = Field(default="accuracy", max_length=63, pattern=METRIC_PATTERN)
    """The quality metric ``maxQualityDrop`` is measured in; each candidate's
    ``spec.evaluations`` must list it."""
    router: RouterChoice = Field(default_factory=RouterChoice)
    """The router and its knob."""


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
    routing: TierRouting | None = None
    """Quality-aware model routing: the router service sends each request of this tier to
    one of ``candidates``, within ``maxQualityDrop`` of the reference model. Unset: requests
    go to the model they name."""


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
