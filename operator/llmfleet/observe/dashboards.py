"""Grafana dashboards as code: one typed function per panel, stable UIDs, sorted JSON.

A dashboard is a title plus panels; each panel function returns a :class:`Panel` with its
PromQL targets. Layout is computed (two panels per row, 8 units high), panel ids are
positions, and the dashboard UID is derived from its title, so regenerating is
byte-identical. Every query reads only metrics named in :mod:`llmfleet.observe.metrics`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from llmfleet.observe import metrics as m
from llmfleet.observe import rules as r

PanelType = Literal["timeseries", "stat", "state-timeline", "bargauge"]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "5m"


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    targets: tuple[Target, ...]
    unit: str = "short"
    type: PanelType = "timeseries"
    width: int = 12
    thresholds: tuple[tuple[float, str], ...] = ()
    """(value, colour) steps above the base green, e.g. a target line."""


@dataclass(frozen=True)
class Dashboard:
    title: str
    description: str
    panels: tuple[Panel, ...]
    tags: tuple[str, ...] = field(default=("llmfleet",))

    @property
    def uid(self) -> str:
        return stable_uid(self.title)

    @property
    def slug(self) -> str:
        return "llmfleet-" + "-".join(self.title.lower().replace("/", " ").split())


def stable_uid(name: str) -> str:
    """``llmfleet-`` plus 12 hex digits of sha256(name): stable across runs, < 40 chars."""
    return "llmfleet-" + hashlib.sha256(name.encode()).hexdigest()[:12]


def _tokens_rate(by: str) -> str:
    """Prompt plus generated tokens per second from vLLM's counters, summed by ``by``."""
    grouping = f" by ({by})" if by else ""
    return (
        f"sum{grouping} (rate({m.VLLM_PROMPT_TOKENS}[{RATE}]) "
        f"+ rate({m.VLLM_GENERATION_TOKENS}[{RATE}]))"
    )


def _quantile(q: float, histogram: str) -> str:
    return f"histogram_quantile({q}, sum by (tier, le) (rate({histogram}_bucket[{RATE}])))"


# ----------------------------------------------------------------- fleet overview


def cost_planned_vs_actual() -> Panel:
    return Panel(
        "USD/h planned vs actual",
        "Hourly cost of the last plan against the cost of the nodes running now.",
        (
            Target("sum(llmfleet_plan_cost_dollars_per_hour)", "planned"),
            Target("sum(llmfleet_fleet_cost_dollars_per_hour)", "actual"),
        ),
        unit="currencyUSD",
    )


def gpus_by_pool() -> Panel:
    return Panel(
        "GPUs by region / pool / capacity type",
        "GPUs on the nodes of each pool now, spot and on-demand apart.",
        (
            Target(
                "sum by (region, pool, capacity_type) (llmfleet_current_gpus)",
                "{{region}}/{{pool}} {{capacity_type}}",
            ),
        ),
    )


def nodes_desired() -> Panel:
    return Panel(
        "Nodes desired by region / pool / capacity type",
        "Nodes the last plan asks each pool for.",
        (
            Target(
                "sum by (region, pool, capacity_type) (llmfleet_desired_nodes)",
                "{{region}}/{{pool}} {{capacity_type}}",
            ),
        ),
    )


def replicas_desired_vs_current() -> Panel:
    return Panel(
        "Replicas desired vs current",
        "Model replicas the plan wants against those that exist, per model.",
        (
            Target("sum by (model_name) (llmfleet_desired_replicas)", "{{model_name}} desired"),
            Target("sum by (model_name) (llmfleet_current_replicas)", "{{model_name}} current"),
        ),
    )


def corrected_replicas() -> Panel:
    return Panel(
        "Short-term correction",
        "Replicas the correction runs above the last applied plan, and what it added per "
        "rule over 10 minutes (demand: the last window's demand; load: slots plus queue).",
        (
            Target("max by (policy) (llmfleet_corrected_replicas)", "{{policy}} above plan"),
            Target(
                "sum by (model_name, region, rule) "
                "(increase(llmfleet_correction_replicas_added_total[10m]))",
                "{{model_name}} in {{region}} +{{rule}}",
            ),
        ),
    )


def unmet_demand() -> Panel:
    return Panel(
        "Unmet demand",
        "Forecast tokens/s the plan could not place (0 unless capacity or budget runs out).",
        (
            Target(
                "sum by (model_name, region) (llmfleet_unmet_demand_tokens_per_second)",
                "{{model_name}} in {{region}}",
            ),
        ),
        unit="short",
        thresholds=((1.0, "red"),),
    )


def solver_duration() -> Panel:
    return Panel(
        "Solver duration",
        "Wall time of the last solve per FleetPolicy.",
        (Target("max by (policy) (llmfleet_solver_duration_seconds)", "{{policy}}"),),
        unit="s",
    )


def solver_gap() -> Panel:
    return Panel(
        "Solver gap",
        "Plan cost over the solver's lower bound; the alert fires above 5 %.",
        (Target("max by (policy) (llmfleet_solver_gap_ratio)", "{{policy}}"),),
        unit="percentunit",
        thresholds=((0.05, "red"),),
    )


def solver_status() -> Panel:
    return Panel(
        "Solver status",
        "Outcome of the last solve per FleetPolicy.",
        (
            Target(
                "max by (policy, status) (llmfleet_solver_status) == 1", "{{policy}}: {{status}}"
            ),
        ),
        type="state-timeline",
        width=24,
    )


# ----------------------------------------------------------------- SLOs per tier


def ttft_quantiles() -> Panel:
    return Panel(
        "TTFT p95 / p99 vs target",
        "Time to first token from vLLM's histogram, per tier, against the SLATier target.",
        (
            Target(_quantile(0.95, m.VLLM_TTFT), "{{tier}} p95"),
            Target(_quantile(0.99, m.VLLM_TTFT), "{{tier}} p99"),
            Target('max by (tier) (llmfleet_tier_target_seconds{slo="ttft"})', "{{tier}} target"),
        ),
        unit="s",
    )


def e2e_quantiles() -> Panel:
    return Panel(
        "End-to-end p95 / p99 vs target",
        "Request latency from vLLM's histogram, per tier, against the SLATier target.",
        (
            Target(_quantile(0.95, m.VLLM_E2E), "{{tier}} p95"),
            Target(_quantile(0.99, m.VLLM_E2E), "{{tier}} p99"),
            Target('max by (tier) (llmfleet_tier_target_seconds{slo="e2e"})', "{{tier}} target"),
        ),
        unit="s",
    )


def error_budget_remaining() -> Panel:
    return Panel(
        "Error budget remaining (30 d)",
        "Share of the 30-day error budget left (95 % objective per p95 target).",
        (Target(r.BUDGET_REMAINING_RECORD, "{{tier}} {{slo}}"),),
        unit="percentunit",
        type="bargauge",
    )


def burn_rate() -> Panel:
    return Panel(
        "Burn rate (1 h)",
        "How fast each tier spends its budget: 1 = exactly on budget; pages at 14.4.",
        (Target(r.BURN_RATE_RECORD, "{{tier}} {{slo}}"),),
        thresholds=((6.0, "orange"), (14.4, "red")),
    )


def requests_in_flight() -> Panel:
    return Panel(
        "Requests running / waiting",
        "vLLM's running and queued requests per tier: queueing is what breaks TTFT first.",
        (
            Target(f"sum by (tier) ({m.VLLM_RUNNING})", "{{tier}} running"),
            Target(f"sum by (tier) ({m.VLLM_WAITING})", "{{tier}} waiting"),
        ),
    )


# ----------------------------------------------------------------- tenants


def tenant_limit_vs_usage() -> Panel:
    return Panel(
        "Limit vs usage",
        "Fair-share token limit the controller set against the tokens each tenant uses.",
        (
            Target("sum by (tenant) (llmfleet_tenant_limit_tokens_per_second)", "{{tenant}} limit"),
            Target("sum by (tenant) (llmfleet_tenant_usage_tokens_per_second)", "{{tenant}} usage"),
        ),
    )


def tenant_throttled() -> Panel:
    return Panel(
        "Throttled requests",
        "Requests refused or delayed by the tenant's limit, per second.",
        (
            Target(
                f"sum by (tenant) (rate(llmfleet_tenant_throttled_requests_total[{RATE}]))",
                "{{tenant}}",
            ),
        ),
        unit="reqps",
    )


def tenant_share_vs_weight() -> Panel:
    return Panel(
        "Served token share vs weight share",
        "Each tenant's share of served tokens against its share of the fair-share weights: "
        "under contention the two should meet.",
        (
            Target(
                f"{_tokens_rate('tenant')} / scalar({_tokens_rate('')})",
                "{{tenant}} served",
            ),
            Target(
                "sum by (tenant) (llmfleet_tenant_weight) / scalar(sum(llmfleet_tenant_weight))",
                "{{tenant}} weight",
            ),
        ),
        unit="percentunit",
        width=24,
    )


# ----------------------------------------------------------------- regions


def region_demand_vs_capacity() -> Panel:
    return Panel(
        "Demand vs capacity",
        "Tokens/s served in each region against the tokens/s its planned replicas sustain.",
        (
            Target(_tokens_rate("region"), "{{region}} demand"),
            Target("sum by (region) (llmfleet_capacity_tokens_per_second)", "{{region}} capacity"),
        ),
    )


def routing_weights() -> Panel:
    return Panel(
        "Routing weights",
        "Share of each origin region's traffic for a model sent to each serving region.",
        (
            Target(
                "max by (model_name, origin_region, region) (llmfleet_routing_weight)",
                "{{model_name}}: {{origin_region}} -> {{region}}",
            ),
        ),
        unit="percentunit",
    )


def spot_interruptions() -> Panel:
    return Panel(
        "Spot interruptions",
        "Spot nodes reclaimed by the provider in the last hour.",
        (
            Target(
                "sum by (region, pool) (increase(llmfleet_spot_interruptions_total[1h]))",
                "{{region}}/{{pool}}",
            ),
        ),
    )


def region_reachable() -> Panel:
    return Panel(
        "Region reachable",
        "1 while the controller reaches the region's cluster.",
        (Target("min by (region) (llmfleet_region_reachable)", "{{region}}"),),
        type="state-timeline",
    )


def dashboards() -> tuple[Dashboard, ...]:
    return (
        Dashboard(
            "Fleet overview",
            "Cost, capacity and the planner's health.",
            (
                cost_planned_vs_actual(),
                gpus_by_pool(),
                nodes_desired(),
                replicas_desired_vs_current(),
                corrected_replicas(),
                unmet_demand(),
                solver_duration(),
                solver_gap(),
                solver_status(),
            ),
        ),
        Dashboard(
            "SLOs per tier",
            "Latency against each SLATier's targets, error budgets and burn rates.",
            (
                ttft_quantiles(),
                e2e_quantiles(),
                error_budget_remaining(),
                burn_rate(),
                requests_in_flight(),
            ),
        ),
        Dashboard(
            "Tenants",
            "Fair-share limits, usage and throttling per tenant.",
            (tenant_limit_vs_usage(), tenant_throttled(), tenant_share_vs_weight()),
        ),
        Dashboard(
            "Regions",
            "Demand, capacity, routing and spot churn per region.",
            (
                region_demand_vs_capacity(),
                routing_weights(),
                spot_interruptions(),
                region_reachable(),
            ),
        ),
    )


def _layout(panels: Sequence[Panel]) -> list[dict[str, int]]:
    out, x, y = [], 0, 0
    for p in panels:
        if x + p.width > 24:
            x, y = 0, y + 8
        out.append({"h": 8, "w": p.width, "x": x, "y": y})
        x += p.width
    return out


def panel_json(p: Panel, pid: int, pos: dict[str, int]) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    steps += [{"color": c, "value": v} for v, c in p.thresholds]
    return {
        "datasource": DATASOURCE,
        "description": p.description,
        "fieldConfig": {
            "defaults": {"thresholds": {"mode": "absolute", "steps": steps}, "unit": p.unit},
            "overrides": [],
        },
        "gridPos": pos,
        "id": pid,
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {
                "datasource": DATASOURCE,
                "expr": t.expr,
                "legendFormat": t.legend,
                "refId": chr(65 + i),
            }
            for i, t in enumerate(p.targets)
        ],
        "title": p.title,
        "type": p.type,
    }


def dashboard_json(d: Dashboard) -> dict[str, Any]:
    return {
        "description": d.description,
        "editable": False,
        "panels": [
            panel_json(p, i + 1, pos)
            for i, (p, pos) in enumerate(zip(d.panels, _layout(d.panels), strict=True))
        ],
        "refresh": "1m",
        "schemaVersion": 39,
        "tags": list(d.tags),
        "templating": {
            "list": [
                {
                    "label": "Data source",
                    "name": "datasource",
                    "query": "prometheus",
                    "type": "datasource",
                }
            ]
        },
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "utc",
        "title": f"llmfleet / {d.title}",
        "uid": d.uid,
        "version": 1,
    }


def render(d: Dashboard) -> str:
    """Sorted, indented JSON with a trailing newline: the bytes committed to the chart."""
    return json.dumps(dashboard_json(d), indent=2, sort_keys=True) + "\n"


def expressions() -> list[tuple[str, str]]:
    """(dashboard / panel, expr) of every query."""
    return [
        (f"{d.title} / {p.title}", t.expr)
        for d in dashboards()
        for p in d.panels
        for t in p.targets
    ]
