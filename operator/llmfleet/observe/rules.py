"""Prometheus rules: per-tier SLO burn-rate alerts and the operator's operational alerts.

An interactive SLATier with ``ttftP95Seconds = T`` is read as the SLO "95 % of requests
see their first token within T" (likewise ``e2eP95Seconds``). With objective ``o`` = 0.95:

1. bad ratio over window w:  r_w = 1 - rate(bucket{le=B}[w]) / rate(count[w]), where B is the
   largest vLLM histogram bucket bound <= T (a conservative threshold: never looser than T);
2. error budget:  b = 1 - o;  burn rate  beta_w = r_w / b;
3. budget remaining over the 30-day SLO period:  1 - r_30d / b;
4. multiwindow multi-burn-rate alerts (Google SRE workbook, ch. 5): page when
   r_1h > 14.4 b and r_5m > 14.4 b (2 % of a 30-day budget in one hour), and when
   r_6h > 6 b and r_30m > 6 b (5 % in six hours); the short window makes the alert
   reset quickly once the burn stops.

Deadline tiers are judged by completion time, which vLLM's latency histograms do not see
(deferral happens before the engine); they get no latency SLO here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from llmfleet.api.tier import SLATier
from llmfleet.observe import metrics as m

SloKind = Literal["ttft", "e2e"]

# vLLM's histogram bucket bounds (vllm/engine/metrics.py), seconds.
TTFT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
E2E_BUCKETS: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
    120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip

OBJECTIVE = 0.95
"""The targets are p95s: 95 % of requests must meet them."""
WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "6h", "30d")


@dataclass(frozen=True)
class BurnAlert:
    """One multiwindow burn-rate alert: both windows above ``factor`` x budget."""

    long: str
    short: str
    factor: float
    severity: str
    for_: str


BURN_ALERTS: tuple[BurnAlert, ...] = (
    BurnAlert("1h", "5m", 14.4, "critical", "2m"),
    BurnAlert("6h", "30m", 6.0, "warning", "15m"),
)


@dataclass(frozen=True)
class Slo:
    """A latency SLO of one tier, against one vLLM histogram."""

    tier: str
    kind: SloKind
    target_seconds: float
    bucket: float
    objective: float = OBJECTIVE

    @property
    def histogram(self) -> str:
        return m.VLLM_TTFT if self.kind == "ttft" else m.VLLM_E2E

    @property
    def budget(self) -> float:
        return round(1.0 - self.objective, 6)


class RulesError(ValueError):
    """A tier whose target cannot be expressed against vLLM's buckets."""


def _bucket_at_or_below(target: float, buckets: Sequence[float], where: str) -> float:
    below = [b for b in buckets if b <= target + 1e-12]
    if not below:
        raise RulesError(f"{where}: target {target}s is below vLLM's smallest bucket {buckets[0]}s")
    return below[-1]


def slos_of(tiers: Iterable[SLATier]) -> list[Slo]:
    """The latency SLOs the interactive tiers declare, sorted by tier then kind."""
    out: list[Slo] = []
    for tier in tiers:
        targets = tier.spec.interactive
        if tier.spec.type != "interactive" or targets is None:
            continue
        name = tier.metadata.name
        if targets.ttft_p95_seconds is not None:
            t = targets.ttft_p95_seconds
            b = _bucket_at_or_below(
                t, TTFT_BUCKETS, f"SLATier {name} spec.interactive.ttftP95Seconds"
            )
            out.append(Slo(name, "ttft", t, b))
        if targets.e2e_p95_seconds is not None:
            t = targets.e2e_p95_seconds
            b = _bucket_at_or_below(
                t, E2E_BUCKETS, f"SLATier {name} spec.interactive.e2eP95Seconds"
            )
            out.append(Slo(name, "e2e", t, b))
    return sorted(out, key=lambda s: (s.tier, s.kind))


def le_matcher(bucket: float) -> str:
    """Match the bucket's ``le`` whichever way the exporter spells it (``1``, ``1.0``)."""
    whole = float(bucket).is_integer()
    text = str(int(bucket)) if whole else repr(float(bucket))
    pattern = f"{text}(\\\\.0)?" if whole else text.replace(".", "\\\\.")
    return f'le=~"{pattern}"'


def error_ratio_expr(slo: Slo, window: str) -> str:
    sel = f'tier="{slo.tier}"'
    count = f"sum(rate({slo.histogram}_count{{{sel}}}[{window}]))"
    good = f"sum(rate({slo.histogram}_bucket{{{sel},{le_matcher(slo.bucket)}}}[{window}]))"
    return f"1 - {good} / {count}"


def ratio_record(window: str) -> str:
    return f"llmfleet:slo_error_ratio:rate{window}"


BURN_RATE_RECORD = "llmfleet:slo_burn_rate:rate1h"
BUDGET_REMAINING_RECORD = "llmfleet:slo_error_budget_remaining:ratio30d"


def _labels(slo: Slo) -> dict[str, str]:
    return {"tier": slo.tier, "slo": slo.kind}


def _sel(slo: Slo) -> str:
    return f'{{tier="{slo.tier}",slo="{slo.kind}"}}'


def slo_groups(slos: Sequence[Slo]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    for slo in slos:
        for w in WINDOWS:
            records.append(
                {
                    "record": ratio_record(w),
                    "expr": error_ratio_expr(slo, w),
                    "labels": _labels(slo),
                }
            )
        records.append(
            {
                "record": BURN_RATE_RECORD,
                "expr": f"{ratio_record('1h')}{_sel(slo)} / {slo.budget}",
                "labels": _labels(slo),
            }
        )
        records.append(
            {
                "record": BUDGET_REMAINING_RECORD,
                "expr": f"1 - {ratio_record('30d')}{_sel(slo)} / {slo.budget}",
                "labels": _labels(slo),
            }
        )
        what = "time to first token" if slo.kind == "ttft" else "end-to-end latency"
        for a in BURN_ALERTS:
            threshold = round(a.factor * slo.budget, 6)
            alerts.append(
                {
                    "alert": "LLMFleetSLOBurnRate",
                    "expr": (
                        f"{ratio_record(a.long)}{_sel(slo)} > {threshold}\n"
                        f"and\n{ratio_record(a.short)}{_sel(slo)} > {threshold}"
                    ),
                    "for": a.for_,
                    "labels": {
                        **_labels(slo),
                        "severity": a.severity,
                        "long_window": a.long,
                        "short_window": a.short,
                    },
                    "annotations": {
                        "summary": f"Tier {slo.tier} burns its {what} error budget at "
                        f">{a.factor}x over {a.long} and {a.short}",
                        "description": (
                            f"More than {threshold:.1%} of {slo.tier} requests miss the "
                            f"{what} target of {slo.target_seconds:g}s (checked at the "
                            f"{slo.bucket:g}s bucket) over the last {a.long} and {a.short}; "
                            "at this rate the 30-day budget is gone in "
                            f"{30 * 24 / a.factor:.0f}h. Missed over {a.long}: "
                            "{{ $value | humanizePercentage }}."
                        ),
                    },
                }
            )
    return [
        {"name": "llmfleet-slo-records", "rules": records},
        {"name": "llmfleet-slo-alerts", "rules": alerts},
    ]


@dataclass(frozen=True)
class Thresholds:
    """Operational alert thresholds."""

    plan_stale_seconds: int = 900
    solver_gap_ratio: float = 0.05
    demand_stale_seconds: int = 600
    throttled_for: str = "30m"


def operational_group(t: Thresholds) -> dict[str, Any]:
    bad = "|".join(m.SOLVER_BAD_STATUSES)

    def alert(name: str, expr: str, for_: str, severity: str, summary: str) -> dict[str, Any]:
        return {
            "alert": name,
            "expr": expr,
            "for": for_,
            "labels": {"severity": severity},
            "annotations": {"summary": summary},
        }

    return {
        "name": "llmfleet-operations",
        "rules": [
            alert(
                "LLMFleetPlanStale",
                f"time() - llmfleet_plan_timestamp_seconds > {t.plan_stale_seconds}",
                "5m",
                "warning",
                "FleetPolicy {{ $labels.policy }} has not produced a plan for "
                "{{ $value | humanizeDuration }}",
            ),
            alert(
                "LLMFleetSolverFailing",
                f'llmfleet_solver_status{{status=~"{bad}"}} == 1',
                "15m",
                "critical",
                "The planner of {{ $labels.policy }} ends in {{ $labels.status }}",
            ),
            alert(
                "LLMFleetSolverGapHigh",
                f"llmfleet_solver_gap_ratio > {t.solver_gap_ratio}",
                "30m",
                "warning",
                "The plan of {{ $labels.policy }} is {{ $value | humanizePercentage }} over "
                "its lower bound",
            ),
            alert(
                "LLMFleetActuationErrors",
                "sum by (region, target) (increase(llmfleet_actuation_errors_total[15m])) > 0",
                "5m",
                "warning",
                "Actuating {{ $labels.target }} in {{ $labels.region }} fails",
            ),
            alert(
                "LLMFleetDemandDataStale",
                f"llmfleet_demand_data_age_seconds > {t.demand_stale_seconds}",
                "5m",
                "warning",
                "Demand data is {{ $value | humanizeDuration }} old; plans use stale demand",
            ),
            alert(
                "LLMFleetRegionUnreachable",
                "llmfleet_region_reachable == 0",
                "5m",
                "critical",
                "Region {{ $labels.region }} cannot be reached by the controller",
            ),
            alert(
                "LLMFleetTenantThrottled",
                "sum by (tenant, tier) (rate(llmfleet_tenant_throttled_requests_total[5m])) > 0",
                t.throttled_for,
                "info",
                "Tenant {{ $labels.tenant }} has been throttled for " + t.throttled_for,
            ),
        ],
    }


def rules_file(tiers: Iterable[SLATier], thresholds: Thresholds | None = None) -> dict[str, Any]:
    """A Prometheus rules file (``groups:``), also the ``spec`` of a PrometheusRule."""
    return {"groups": [*slo_groups(slos_of(tiers)), operational_group(thresholds or Thresholds())]}


def expressions(rules: dict[str, Any]) -> list[tuple[str, str]]:
    """(rule name, expr) of every rule, for the tests that evaluate them."""
    out = []
    for g in rules["groups"]:
        for r in g["rules"]:
            out.append((str(r.get("record") or r.get("alert")), str(r["expr"])))
    return out
