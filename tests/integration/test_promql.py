"""Every PromQL expression of the dashboards and rules, parsed and evaluated by a real
Prometheus loaded with vLLM-like and llmfleet series, returns data."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import wait_for
from llmfleet.api.loading import load_manifests
from llmfleet.observe import dashboards as d
from llmfleet.observe import metrics as m
from llmfleet.observe import rules as r
from support.promtools import LocalPrometheus, Series

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts" / "llmfleet" / "files" / "prometheus-rules.yaml"
TIERS = ("interactive-fast", "interactive-normal", "batch")
REGIONS = ("us-east", "eu-west")
TENANTS = (("acme", "interactive-fast"), ("initech", "interactive-normal"), ("globex", "batch"))
HOURS = 7  # the longest rule window with full data is 6h


def _le(b: float) -> str:
    return repr(float(b))  # how the Python client (vLLM) spells it: "1.0", "0.25"


def _histogram(
    name: str, buckets: tuple[float, ...], median: float, labels: dict[str, str], rps: float,
    t0: float,
) -> list[Series]:  # fmt: skip
    """Cumulative buckets of a log-normal latency (median ``median`` s), ``rps`` requests/s
    since ``t0``."""

    def share(b: float) -> float:
        return 0.5 * (1 + math.erf(math.log(b / median) / (0.6 * math.sqrt(2))))

    def counter(fraction: float) -> Callable[[float], float]:
        return lambda t: fraction * rps * (t - t0)

    out = [Series(f"{name}_bucket", {**labels, "le": _le(b)}, counter(share(b))) for b in buckets]
    out.append(Series(f"{name}_bucket", {**labels, "le": "+Inf"}, counter(1.0)))
    out.append(Series(f"{name}_count", labels, counter(1.0)))
    out.append(Series(f"{name}_sum", labels, counter(median)))
    return out


def _fleet_series(t0: float) -> list[Series]:
    out: list[Series] = []
    model = "llama-3-1-8b"
    # vLLM, per tenant (counters, gauges) and per tier/region (histograms)
    for region in REGIONS:
        for tenant, tier in TENANTS:
            lab = {"model_name": model, "region": region, "tenant": tenant, "tier": tier}
            k = 1.0 + len(tenant) / 10
            out.append(Series(m.VLLM_PROMPT_TOKENS, lab, lambda t, k=k: 900 * k * (t - t0)))
            out.append(Series(m.VLLM_GENERATION_TOKENS, lab, lambda t, k=k: 300 * k * (t - t0)))
            out.append(Series(m.VLLM_RUNNING, lab, lambda t, k=k: 12 * k))
            out.append(Series(m.VLLM_WAITING, lab, lambda t: 1 + (t // 600) % 3))
        for i, tier in enumerate(TIERS):
            lab = {"model_name": model, "region": region, "tier": tier}
            out += _histogram(m.VLLM_TTFT, r.TTFT_BUCKETS, 0.3 * (i + 1), lab, 5, t0)
            out += _histogram(m.VLLM_E2E, r.E2E_BUCKETS, 8.0 * (i + 1), lab, 5, t0)
    # llmfleet: one series per label combination of a small fleet
    values = {
        "model_name": [model],
        "region": list(REGIONS),
        "origin_region": list(REGIONS),
        "pool": ["a100-od", "h100-spot"],
        "capacity_type": ["on-demand"],
        "policy": ["default"],
        "status": list(m.SOLVER_STATUSES),
        "target": ["nodepool"],
        "tier": list(TIERS[:2]),
        "slo": ["ttft", "e2e"],
        "tenant": [t for t, _ in TENANTS],
        "rule": ["demand", "load"],
    }
    for name, labels in m.LLMFLEET.items():
        combos: list[dict[str, str]] = [{}]
        for label in labels:
            combos = [{**c, label: v} for c in combos for v in values[label]]
        for j, lab in enumerate(combos):
            if name.endswith("_total"):
                out.append(Series(name, lab, lambda t, j=j: (j + 1) * (t - t0) / 600))
            elif name == "llmfleet_plan_timestamp_seconds":
                out.append(Series(name, lab, lambda t: t - t % 300))
            elif name == "llmfleet_solver_status":
                out.append(Series(name, lab, lambda t, ok=lab["status"] == "optimal": float(ok)))
            elif name == "llmfleet_region_reachable":
                out.append(Series(name, lab, lambda t: 1.0))
            else:
                out.append(Series(name, lab, lambda t, j=j: 0.5 + j))
    return out


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    now = time.time()
    start = now - HOURS * 3600
    end = now - 15
    prom = LocalPrometheus(tmp_path_factory.mktemp("prometheus"), rule_files=[RULES])
    prom.start(_fleet_series(start), start, end, step=60)
    try:
        # recording rules evaluated at least once (evaluation_interval 1s)
        wait_for(
            lambda: all(
                rule["health"] != "unknown"
                for g in prom.api("rules")["groups"]
                for rule in g["rules"]
            ),
            timeout=30,
            what="every rule group evaluated once",
        )
        yield prom
    finally:
        prom.stop()


def _tiers() -> list:
    return [
        o
        for o in load_manifests([ROOT / "crds/samples/tiers.yaml"], namespace=None)
        if o.kind == "SLATier"
    ]


@pytest.mark.parametrize(("where", "expr"), d.expressions(), ids=[w for w, _ in d.expressions()])
def test_dashboard_query_returns_data(prometheus: LocalPrometheus, where: str, expr: str) -> None:
    result = prometheus.query(expr)
    assert result, f"{where}: no data for {expr}"
    assert all(not math.isnan(float(s["value"][1])) for s in result), f"{where}: NaN in {result}"


def test_every_rule_evaluates_healthy_and_records_data(prometheus: LocalPrometheus) -> None:
    rules = r.rules_file(_tiers())
    names = {n for n, _ in r.expressions(rules)}
    loaded = prometheus.api("rules")["groups"]
    seen = set()
    for g in loaded:
        for rule in g["rules"]:
            assert rule["health"] == "ok", rule
            seen.add(rule["name"])
    assert seen == names
    for name, expr in r.expressions(rules):
        prometheus.query(expr)  # parses and evaluates (may be empty: alert conditions)
        # each side of an alert, without its threshold, returns data
        for part in expr.split("\nand\n"):
            lhs = re.sub(r"\s*(>|==|<)\s*[-\d.]+\s*$", "", part.strip())
            assert prometheus.query(lhs), f"{name}: no data for {lhs}"


def test_slo_figures_match_the_loaded_latencies(prometheus: LocalPrometheus) -> None:
    """interactive-fast: median 0.3 s, sigma 0.6 -> P(TTFT > 1 s) = 2.2 %: burn 0.45, on budget."""
    [burn] = prometheus.query(f'{r.BURN_RATE_RECORD}{{tier="interactive-fast",slo="ttft"}}')
    expected = 0.5 * (1 - math.erf(math.log(1 / 0.3) / (0.6 * math.sqrt(2)))) / 0.05
    assert float(burn["value"][1]) == pytest.approx(expected, rel=0.02)
    [p95] = prometheus.query(
        'histogram_quantile(0.95, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{tier="interactive-fast"}[5m])))'
    )
    assert 0.5 < float(p95["value"][1]) <= 1.0
    assert not prometheus.query('ALERTS{alertname="LLMFleetSLOBurnRate"}')
