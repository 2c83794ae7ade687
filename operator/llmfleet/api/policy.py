"""``FleetPolicy``: how and when the controller plans and actuates the fleet."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, StringConstraints

from llmfleet.api.base import (
    DNS_SUBDOMAIN,
    HTTP_HEADER_NAME,
    ApiModel,
    NamespaceName,
    ObjectName,
    PolicyNamedMeta,
    Rule,
    StatusBase,
    Timestamp,
    cel_or_default,
    rules_check,
    rules_schema,
)
from llmfleet.api.resource import AGE_COLUMN, VALID_COLUMN, KindInfo, PrinterColumn, Resource

Mode = Literal["plan-only", "apply"]
ForecastMethod = Literal["auto", "arima", "seasonal", "naive"]

#: The base URL of an HTTP API: ``http``/``https``, a host (name, IPv4 or bracketed IPv6),
#: an optional port and path; no credentials, query or fragment. Which hosts the operator
#: may reach is its own configuration, not the API's.
HTTP_URL_PATTERN = (
    r"^https?://(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[-A-Za-z0-9.]*[A-Za-z0-9])?)"
    r"(?::[0-9]{1,5})?(?:/[!-\"$->@-~]*)?$"
)
PROMQL_MAX_LENGTH = 4096


def _same_count(opening: str, closing: str) -> Rule:
    return Rule(
        cel=f"size(self.split('{opening}')) == size(self.split('{closing}'))",
        message=f"a query template needs as many '{closing}' as '{opening}'",
        check=lambda q: q.count(opening) == q.count(closing),
    )


#: A query template holds something besides ASCII whitespace (schema ``pattern``).
PROMQL_NOT_BLANK = r"[^\t\n\v\f\r ]"

#: What the apiserver checks of a query template, besides ``minLength``/``maxLength`` and
#: :data:`PROMQL_NOT_BLANK` in the schema (CEL): one expression, no ``;``, and each bracket
#: pair counted equal over the whole text (string literals included: CEL cannot tell them
#: apart). Pydantic checks the same, and then :func:`promql_structure_problem`.
PROMQL_RULES: tuple[Rule, ...] = (
    Rule(
        cel="!self.contains(';')",
        message="a query template is a single PromQL expression: no ';'",
        check=lambda q: ";" not in q,
    ),
    _same_count("(", ")"),
    _same_count("[", "]"),
    _same_count("{", "}"),
)

_CLOSES = {")": "(", "]": "[", "}": "{"}


def promql_structure_problem(query: str) -> str | None:
    """What pydantic checks beyond :data:`PROMQL_RULES` (no CEL can: it needs a scan):
    outside string literals and ``#`` comments, brackets nest properly, and every string
    literal (``"..."``, ``'...'`` with ``\\`` escapes, raw `````...`````) is closed.
    None when the template is well formed."""
    stack: list[tuple[str, int]] = []
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if c in "\"'`":
            end = i + 1
            while end < n and query[end] != c:
                end += 2 if query[end] == "\\" and c != "`" else 1
            if end >= n:
                return f"the string literal opened at offset {i} is not closed"
            i = end + 1
            continue
        if c == "#":
            newline = query.find("\n", i)
            i = n if newline < 0 else newline + 1
            continue
        if c in "([{":
            stack.append((c, i))
        elif c in _CLOSES:
            if not stack:
                return f"'{c}' at offset {i} closes nothing open"
            if stack[-1][0] != _CLOSES[c]:
                opened, at = stack[-1]
                return f"'{c}' at offset {i} does not close the '{opened}' at offset {at}"
            stack.pop()
        i += 1
    if stack:
        c, at = stack[-1]
        return f"'{c}' at offset {at} is not closed"
    return None


def _check_promql_structure(query: str) -> str:
    problem = promql_structure_problem(query)
    if problem:
        raise ValueError(f"not a single well-formed PromQL expression: {problem}")
    return query


#: A PromQL query template (see :data:`PROMQL_RULES` and :func:`promql_structure_problem`).
PromQLTemplate = Annotated[
    str,
    StringConstraints(min_length=1, max_length=PROMQL_MAX_LENGTH, pattern=PROMQL_NOT_BLANK),
    Field(json_schema_extra=rules_schema(*PROMQL_RULES)),
    AfterValidator(rules_check(*PROMQL_RULES)),
    AfterValidator(_check_promql_structure),
]


class Horizon(ApiModel):
    """The planning horizon: ``steps`` steps of ``stepSeconds`` each."""

    step_seconds: int = Field(default=3600, ge=300, le=3600)
    """Length of one planning step, seconds (5 to 60 minutes)."""
    steps: int = Field(default=24, ge=1, le=336)
    """Number of steps planned ahead; only the first is executed, the rest shape it."""


class ForecastSettings(ApiModel):
    """How demand is forecast from history."""

    method: ForecastMethod = "auto"
    """``auto`` picks per series by rolling backtest among ``arima`` (SageServe's method),
    ``seasonal`` (daily and weekly seasonality) and ``naive`` (last value)."""
    upper_quantile: float = Field(default=0.9, ge=0.5, le=0.999)
    """Quantile of the forecast that interactive tiers are provisioned for."""
    history_seconds: int = Field(default=14 * 86400, ge=3600, le=90 * 86400)
    """How much demand history to read, seconds."""
    backtest_folds: int = Field(default=4, ge=1, le=50)
    """Rolling-origin backtest folds used to pick a method and report its error."""


class ObjectiveWeights(ApiModel):
    """Relative weights of the planner's objective terms (dimensionless multipliers)."""

    gpu_cost: float = Field(default=1.0, ge=0, le=1000)
    """Weight of the USD cost of node-hours."""
    scaling_overhead: float = Field(default=1.0, ge=0, le=1000)
    """Weight of the cost of GPU time spent provisioning nodes and loading replicas."""
    sla_risk: float = Field(default=1.0, ge=0, le=1000)
    """Weight of the SLA penalty on unmet demand."""


class SolverSettings(ApiModel):
    """Limits of one solve."""

    time_limit_seconds: float = Field(default=30, gt=0, le=600)
    """Wall-clock limit of one solve, seconds; the best plan found by then is used."""
    relative_gap: float = Field(default=0.01, ge=0, le=1)
    """Stop once the plan is within this fraction of the best bound."""


class PrometheusQueries(ApiModel):
    """PromQL templates for reading demand. ``$window`` is replaced by the step length
    (e.g. ``5m``); results must carry the labels ``model_name``, ``region`` and ``tier``
    (``tenantUsage``: ``tenant``, ``model_name`` and ``region``). Each template is one PromQL
    expression of at most 4096 characters: not blank, no ``;``, brackets, parentheses and
    braces balanced, string literals closed."""

    prompt_tokens: PromQLTemplate = Field(
        default="sum by (model_name, region, tier) (rate(vllm:prompt_tokens_total[$window]))"
    )
    """Prompt tokens per second."""
    generation_tokens: PromQLTemplate = Field(
        default="sum by (model_name, region, tier) (rate(vllm:generation_tokens_total[$window]))"
    )
    """Generated tokens per second."""
    requests: PromQLTemplate = Field(
        default="sum by (model_name, region, tier) "
        "(rate(vllm:e2e_request_latency_seconds_count[$window]))"
    )
    """Completed requests per second."""
    running: PromQLTemplate = Field(
        default="sum by (model_name, region) (vllm:num_requests_running)"
    )
    """Requests being served now."""
    waiting: PromQLTemplate = Field(
        default="sum by (model_name, region) (vllm:num_requests_waiting)"
    )
    """Requests queued now."""
    tenant_usage: PromQLTemplate = Field(
        default="sum by (tenant, model_name, region) (rate(vllm:prompt_tokens_total[$window]))"
        " + sum by (tenant, model_name, region) "
        "(rate(vllm:generation_tokens_total[$window]))"
    )
    """Tokens per second (prompt plus generated) each tenant uses now, an instant query at
    the cycle's time; results must carry ``tenant``, ``model_name`` and ``region`` (the
    origin, as in the other templates: the controller moves it to the serving regions along
    the plan's routes). Feeds the fair-share limits; no result means no usage (limits are
    computed all the same)."""


class PrometheusSource(ApiModel):
    """Where demand history is read from."""

    url: str = Field(
        default="http://prometheus-operated.monitoring.svc:9090",
        min_length=1,
        max_length=2048,
        pattern=HTTP_URL_PATTERN,
    )
    """Base URL of the Prometheus HTTP API: ``http(s)://host[:port][/path]``, at most 2048
    characters (no credentials, query or fragment)."""
    timeout_seconds: float = Field(default=10, gt=0, le=300)
    """Timeout of one query, seconds."""
    max_data_age_seconds: int = Field(default=900, ge=30, le=86400)
    """Demand data older than this is stale: the controller keeps the last plan and never
    scales down on it."""
    queries: PrometheusQueries = Field(default_factory=PrometheusQueries)
    """Query templates."""


class ParentRef(ApiModel):
    """A Gateway API parentRef the generated HTTPRoutes attach to."""

    group: str = Field(
        default="gateway.networking.k8s.io", max_length=253, pattern=rf"^$|{DNS_SUBDOMAIN}"
    )
    """API group of the parent (an RFC 1123 subdomain; empty for the core group)."""
    kind: str = Field(
        default="Gateway",
        min_length=1,
        max_length=63,
        pattern=r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$",
    )
    """Kind of the parent."""
    name: ObjectName
    """Name of the parent."""
    namespace: NamespaceName | None = None
    """Namespace of the parent; the policy's namespace when absent."""
    section_name: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=DNS_SUBDOMAIN
    )
    """Listener name on the parent."""


class IngressTarget(ApiModel):
    """Where routing and throttling policies are published."""

    parent_refs: list[ParentRef] = Field(default_factory=list, max_length=32)
    """Gateways the HTTPRoutes attach to; none means only the ConfigMaps are written."""
    routing_config_map: str = Field(
        default="llmfleet-routing", min_length=1, max_length=253, pattern=DNS_SUBDOMAIN
    )
    """ConfigMap holding the whole routing policy as JSON."""
    throttling_config_map: str = Field(
        default="llmfleet-throttling", min_length=1, max_length=253, pattern=DNS_SUBDOMAIN
    )
    """ConfigMap holding the per-tenant throttling table as JSON."""
    tenant_header: str = Field(
        default="x-llmfleet-tenant", min_length=1, max_length=256, pattern=HTTP_HEADER_NAME
    )
    """HTTP header carrying the tenant id."""
    tier_header: str = Field(
        default="x-llmfleet-tier", min_length=1, max_length=256, pattern=HTTP_HEADER_NAME
    )
    """HTTP header carrying the SLA tier."""


class FleetPolicySpec(ApiModel):
    """Desired state of a FleetPolicy."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=f"{cel_or_default('self.intervalSeconds', 3600)} <= (has(self.horizon) ? "
            f"{cel_or_default('self.horizon.stepSeconds', 3600)} * "
            f"{cel_or_default('self.horizon.steps', 24)} : 3600 * 24)",
            message="intervalSeconds must not exceed the horizon (steps x stepSeconds)",
            check=lambda s: s.interval_seconds <= s.horizon.step_seconds * s.horizon.steps,
            field_path=".intervalSeconds",
        ),
    )

    mode: Mode = "plan-only"
    """``plan-only``: write FleetPlans and change nothing else (dry run).
    ``apply``: actuate every plan."""
    interval_seconds: int = Field(default=3600, ge=30, le=86400)
    """How often the controller plans, seconds."""
    horizon: Horizon = Field(default_factory=Horizon)
    """What the planner looks ahead at."""
    forecast: ForecastSettings = Field(default_factory=ForecastSettings)
    """Demand forecasting."""
    objective: ObjectiveWeights = Field(default_factory=ObjectiveWeights)
    """Objective weights."""
    max_changes_per_cycle: int = Field(default=100, ge=0, le=100000)
    """Most node and replica additions plus removals one cycle may make."""
    max_interactive_spot_fraction: float = Field(default=0.3, ge=0, le=1)
    """Fleet-wide cap on the share of interactive load served from spot pools (a tier's
    own maxSpotFraction may be lower)."""
    solver: SolverSettings = Field(default_factory=SolverSettings)
    """Solver limits."""
    prometheus: PrometheusSource = Field(default_factory=PrometheusSource)
    """Demand history source."""
    ingress: IngressTarget = Field(default_factory=IngressTarget)
    """Where routing and throttling go."""
    plans_to_keep: int = Field(default=10, ge=1, le=1000)
    """How many FleetPlans to keep; older ones are deleted."""


class FleetPolicyStatus(StatusBase):
    """Observed state of a FleetPolicy."""

    last_plan: str | None = Field(default=None, max_length=253)
    """Name of the newest FleetPlan."""
    last_applied_plan: str | None = Field(default=None, max_length=253)
    """Name of the newest FleetPlan that was actuated."""
    cost_per_hour: float | None = Field(default=None, ge=0)
    """USD per hour of the newest plan's first step."""
    gap: float | None = Field(default=None, ge=0)
    """Relative gap of the newest plan to the solver's bound."""
    last_run_time: Timestamp | None = None
    """When the controller last planned."""
    next_run_time: Timestamp | None = None
    """When the controller plans next."""


class FleetPolicy(Resource):
    """How the fleet is planned and actuated."""

    info: ClassVar[KindInfo] = KindInfo(
        kind="FleetPolicy",
        plural="fleetpolicies",
        singular="fleetpolicy",
        scope="Namespaced",
        short_names=("fpol",),
        printer_columns=(
            PrinterColumn("Mode", ".spec.mode"),
            PrinterColumn("Interval", ".spec.intervalSeconds", "integer"),
            PrinterColumn("Last-Plan", ".status.lastPlan"),
            PrinterColumn("USD/h", ".status.costPerHour", "number"),
            PrinterColumn("Gap", ".status.gap", "number"),
            PrinterColumn("Next-Run", ".status.nextRunTime", "date"),
            VALID_COLUMN,
            AGE_COLUMN,
        ),
    )

    kind: Literal["FleetPolicy"] = "FleetPolicy"
    metadata: PolicyNamedMeta
    spec: FleetPolicySpec
    status: FleetPolicyStatus | None = None
