"""``FleetPolicy``: how and when the controller plans and actuates the fleet."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
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
    burst_window_seconds: int = Field(default=300, ge=0, le=3600)
    """Width of the busiest window inside each step that is read as the step's peak
    (Prometheus: ``max_over_time`` of each demand template at this ``$window`` over the
    step, at a 1-minute resolution); 0 reads no peaks. Capped at the horizon's step."""
    burst_memory_steps: int = Field(default=3, ge=0, le=48)
    """Burst reserve: for this many steps after a flow's peak, its upper forecast is at
    least that peak (a flow that burst within the last hours may burst as high again: its
    capacity is kept through a node's provisioning and a model's load, which a burst inside
    a step cannot wait for); 0 turns the reserve off."""


class CorrectionSettings(ApiModel):
    """The short-term correction between plans (:mod:`llmfleet.cycle.correction`): every
    ``intervalSeconds``, and right after each new plan, replicas are added on top of the
    plan (never fewer than it; the next plan starts again from its own) where the last
    ``windowSeconds`` of interactive demand, routed along the plan, needs more than are
    ready or loading, or where a (model, region)'s sequence slots plus queue are fuller than
    ``utilisation``. Needs ``mode: apply``; in ``plan-only`` nothing is corrected."""

    enabled: bool = True
    """False: the plan alone sizes the fleet until the next plan."""
    interval_seconds: int = Field(default=60, ge=15, le=3600)
    """How often the correction runs, seconds."""
    window_seconds: int = Field(default=60, ge=30, le=900)
    """The window of the demand it reads (the demand templates at this ``$window``), seconds."""
    utilisation: float = Field(default=0.9, gt=0, le=1)
    """Share of a (model, region)'s sequence slots in use, plus its queue, above which it
    adds replicas (vLLM's running plus waiting requests over the ready replicas' slots)."""
    demand_margin: float = Field(default=0.1, ge=0, le=10)
    """The window's demand must need this share more replicas than are ready or loading
    before any are added (the noise of a minute's counts)."""
    spill_rtt_ms: float = Field(default=250, ge=0, le=10000)
    """Where the serving region has no room (its pools at ``maxNodes``), replicas go to the
    nearest regions within this round trip, where the ingress spills the burst."""


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


QueryProfile = Literal["envoy-ai-gateway", "llm-d-epp", "vllm"]
"""Which layer of the serving stack demand is read from (``spec.prometheus.queries.profile``)."""

DemandTemplate = Literal["prompt_tokens", "generation_tokens", "requests", "tenant_usage"]
"""The templates whose default depends on the profile."""
DemandSeriesTemplate = Literal["prompt_tokens", "generation_tokens", "requests"]
"""The range-queried demand templates (each profile has all three)."""

_MODEL_FROM_GATEWAY = '"model_name", "$1", "gen_ai_request_model", "(.+)"'
_TENANT_FROM_GATEWAY = '"tenant", "$1", "tenant_id", "(.+)"'
_TENANT_FROM_EPP = '"tenant", "$1", "fairness_id", "(.+)"'


def _gateway_tokens(kind: str) -> str:
    return (
        "sum by (model_name, region, tier) (label_replace(rate(gen_ai_client_token_usage_sum"
        f'{{gen_ai_token_type="{kind}"}}[$window]), {_MODEL_FROM_GATEWAY}))'
    )


PROFILE_TEMPLATES: Mapping[QueryProfile, Mapping[DemandTemplate, str | None]] = MappingProxyType(
    {
        # Envoy AI Gateway: the OpenTelemetry gen_ai metrics of the gateway's ext_proc, tenant
        # and tier from request headers (controller.metricsRequestHeaderAttributes), the
        # origin from the `region` external label of the Prometheus of the gateway's region.
        "envoy-ai-gateway": MappingProxyType(
            {
                "prompt_tokens": _gateway_tokens("input"),
                "generation_tokens": _gateway_tokens("output"),
                "requests": "sum by (model_name, region, tier) (label_replace(rate("
                f"gen_ai_server_request_duration_seconds_count[$window]), {_MODEL_FROM_GATEWAY}))",
                "tenant_usage": "sum by (tenant, model_name, region) (label_replace(label_replace("
                'rate(gen_ai_client_token_usage_sum{gen_ai_token_type=~"input|output"}[$window]), '
                f"{_MODEL_FROM_GATEWAY}), {_TENANT_FROM_GATEWAY}))",
            }
        ),
        # llm-d's endpoint picker (EPP): tenant = fairness_id (the fairness header), tier from
        # a relabelling of the EPP scrape (priority -> tier), origin as above.
        "llm-d-epp": MappingProxyType(
            {
                "prompt_tokens": "sum by (model_name, region, tier) "
                "(rate(llm_d_epp_request_input_tokens_sum[$window]))",
                "generation_tokens": "sum by (model_name, region, tier) "
                "(rate(llm_d_epp_request_output_tokens_sum[$window]))",
                "requests": "sum by (model_name, region, tier) "
                "(rate(llm_d_epp_request_total[$window]))",
                "tenant_usage": "sum by (tenant, model_name, region) (label_replace(rate("
                '{__name__=~"llm_d_epp_request_(input|output)_tokens_sum"}[$window]), '
                f"{_TENANT_FROM_EPP}))",
            }
        ),
        # vLLM alone (no gateway metrics): the serving side only. No tenant, tier or origin:
        # the origin is the serving region, every flow is `defaultTier`, no per-tenant usage.
        "vllm": MappingProxyType(
            {
                "prompt_tokens": "sum by (model_name, region) "
                "(rate(vllm:prompt_tokens_total[$window]))",
                "generation_tokens": "sum by (model_name, region) "
                "(rate(vllm:generation_tokens_total[$window]))",
                "requests": "sum by (model_name, region) "
                "(rate(vllm:request_success_total[$window]))",
                # vLLM's series carry no tenant: no usage is read (the limits are computed
                # from the budgets alone)
                "tenant_usage": None,
            }
        ),
    }
)
"""The default demand templates of each profile (README "Demand from the gateway")."""

LABEL_SOURCES: Mapping[QueryProfile, Mapping[str, str]] = MappingProxyType(
    {
        "envoy-ai-gateway": MappingProxyType(
            {
                "model_name": "Envoy AI Gateway's gen_ai_request_model (the request's model "
                "field), renamed model_name by the template",
                "region": "the `region` external label of the Prometheus that scrapes each "
                "region's gateway (global.external_labels: {region: <Region name>}), seen "
                "through federation, remote-write or Thanos",
                "tier": "Envoy AI Gateway controller.metricsRequestHeaderAttributes "
                "mapping the tier header: x-tier:tier",
                "tenant": "Envoy AI Gateway controller.metricsRequestHeaderAttributes "
                "mapping the tenant header: x-tenant-id:tenant.id (label tenant_id, renamed "
                "tenant by the template)",
            }
        ),
        "llm-d-epp": MappingProxyType(
            {
                "model_name": "llm-d EPP's model_name (the request's model field)",
                "region": "the `region` external label of the Prometheus that scrapes each "
                "region's endpoint picker (global.external_labels: {region: <Region name>})",
                "tier": "a metric_relabel_configs rule of the EPP scrape job writing label "
                "tier from priority (one InferenceObjective priority per SLATier)",
                "tenant": "llm-d EPP's fairness_id (request header "
                "x-gateway-inference-fairness-id), renamed tenant by the template",
            }
        ),
        "vllm": MappingProxyType(
            {
                "model_name": "the PodMonitor's podTargetLabels model_name (the operator "
                "labels every replica's pod with its LLMModel)",
                "region": "the PodMonitor's podTargetLabels region, or the `region` external "
                "label of the region's Prometheus",
                "tier": "spec.prometheus.queries.defaultTier (vLLM knows no tier)",
                "tenant": "nothing: vLLM knows no tenant (profile vllm reads no usage)",
            }
        ),
    }
)
"""Per profile, the configuration that puts each required label on a result series (named
by the reader's missing-label errors)."""

REPLICA_LABEL_SOURCES: Mapping[str, str] = MappingProxyType(
    {
        "model_name": LABEL_SOURCES["vllm"]["model_name"],
        "region": LABEL_SOURCES["vllm"]["region"],
    }
)
"""Where the labels of vLLM's own series (replica state, data age) come from."""


class PrometheusQueries(ApiModel):
    """PromQL templates for reading demand and replica state. ``$window`` is replaced by the
    step length (e.g. ``3600s``; replica state: ``replicaWindowSeconds``). Demand
    (``promptTokens``, ``generationTokens``, ``requests``) is read from the layer ``profile``
    names; each result must carry ``model_name``, ``region`` (the origin) and ``tier``
    (profile ``vllm``: ``tier`` may be absent, then ``defaultTier``). Replica state and the
    data age always read vLLM's own series, which must carry ``model_name`` and ``region``
    (the serving region). A template left out is the profile's default. Each template is one
    PromQL expression of at most 4096 characters: not blank, no ``;``, brackets, parentheses
    and braces balanced, string literals closed."""

    profile: QueryProfile = "envoy-ai-gateway"
    """Where demand comes from: ``envoy-ai-gateway`` (Envoy AI Gateway's gen_ai metrics,
    tenant and tier from request headers, origin from the regional Prometheus's ``region``
    external label), ``llm-d-epp`` (llm-d's endpoint picker: tenant = ``fairness_id``), or
    ``vllm`` (vLLM alone: no tenant, tier or origin; origin = serving region, every flow
    ``defaultTier``, no per-tenant usage)."""
    default_tier: ObjectName | None = None
    """SLATier of series without a ``tier`` label (profile ``vllm``: every flow); absent,
    such a series is an error."""
    prompt_tokens: PromQLTemplate | None = None
    """Prompt tokens per second (default: the profile's)."""
    generation_tokens: PromQLTemplate | None = None
    """Generated tokens per second (default: the profile's)."""
    requests: PromQLTemplate | None = None
    """Requests per second (default: the profile's)."""
    tenant_usage: PromQLTemplate | None = None
    """Tokens per second (prompt plus generated) each tenant uses now, an instant query at
    the cycle's time; results must carry ``tenant``, ``model_name`` and ``region`` (the
    origin, as in the other templates: the controller moves it to the serving regions along
    the plan's routes). Feeds the fair-share limits; no result means no usage (limits are
    computed all the same). Default: the profile's."""
    running: PromQLTemplate = Field(
        default="sum by (model_name, region) (vllm:num_requests_running)"
    )
    """Requests being served now, per model and serving region (vLLM)."""
    waiting: PromQLTemplate = Field(
        default="sum by (model_name, region) (vllm:num_requests_waiting)"
    )
    """Requests queued now, per model and serving region (vLLM)."""
    kv_cache_usage: PromQLTemplate = Field(
        default="avg by (model_name, region) (vllm:kv_cache_usage_perc)"
    )
    """Mean KV-cache use of the replicas (0..1), per model and serving region (vLLM;
    ``vllm:gpu_cache_usage_perc`` is its deprecated name)."""
    ttft_p95: PromQLTemplate = Field(
        default="histogram_quantile(0.95, sum by (model_name, region, le) "
        "(rate(vllm:time_to_first_token_seconds_bucket[$window])))"
    )
    """p95 time to first token, seconds, per model and serving region (vLLM)."""
    completions: PromQLTemplate = Field(
        default="sum by (model_name, region) (rate(vllm:request_success_total[$window]))"
    )
    """Requests finished per second, per model and serving region (vLLM)."""
    newest_sample: PromQLTemplate = Field(
        default="max by (region) (timestamp(vllm:num_requests_running))"
    )
    """Unix time of the newest sample of each serving region (vLLM); the data age is that of
    the region whose newest sample is oldest."""
    replica_window_seconds: int = Field(default=300, ge=30, le=3600)
    """``$window`` of the replica-state templates, seconds."""

    def template(self, name: DemandSeriesTemplate) -> str:
        """The demand template ``name``: as written, else the profile's default."""
        value: str | None = getattr(self, name)
        default = PROFILE_TEMPLATES[self.profile][name]
        assert default is not None  # every profile reads the three demand series
        return value if value is not None else default

    def usage_template(self) -> str | None:
        """``tenantUsage`` as written, else the profile's; None: the profile reads no usage."""
        return self.tenant_usage or PROFILE_TEMPLATES[self.profile]["tenant_usage"]

    def label_source(self, label: str) -> str:
        """The configuration that provides ``label`` on the demand series of the profile."""
        return LABEL_SOURCES[self.profile].get(label, f"the query must keep label {label}")


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
        default="x-tenant-id", min_length=1, max_length=256, pattern=HTTP_HEADER_NAME
    )
    """HTTP header carrying the tenant id (the name the gateway's metrics mapping, the
    router and the load generator use: ``x-tenant-id``)."""
    tier_header: str = Field(
        default="x-tier", min_length=1, max_length=256, pattern=HTTP_HEADER_NAME
    )
    """HTTP header carrying the SLA tier (``x-tier``, likewise)."""


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
    correction: CorrectionSettings = Field(default_factory=CorrectionSettings)
    """The short-term correction between plans."""


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
    corrected_replicas: int | None = Field(default=None, ge=0)
    """Replicas the short-term correction runs above the last applied plan now."""
    last_correction_time: Timestamp | None = None
    """When the short-term correction last changed the fleet."""


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
