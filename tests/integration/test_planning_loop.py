"""The planning loop end to end: a real apiserver, a real Prometheus holding backfilled
gateway counters (Envoy AI Gateway's, the default profile) and vLLM gauges, and the operator
as a process. A FleetPolicy pointing at the Prometheus gets
FleetPlans owned by it, a status with USD/h and next run, and metrics; when Prometheus goes
away the status says so and the last plan stays."""

from __future__ import annotations

import copy
import math
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import OperatorProcess, wait_for
from llmfleet.api import API_VERSION, BY_KIND
from llmfleet.api.policy import PrometheusSource
from llmfleet.kube.client import Cluster, format_table
from llmfleet.kube.prometheus import DemandReader, PrometheusUnreachable
from support.builders import all_samples
from support.controlplane import LocalControlPlane
from support.promtools import LocalPrometheus, Series
from support.servingseries import SERVED, gateway_demand, vllm_replica

STEP = 300
HOURS = 4
FLOWS = (
    # model, origin region, tier, prompt tokens/s
    ("llama-3-1-8b", "us-east", "interactive-fast", 2000.0),
    ("llama-3-1-8b", "eu-west", "interactive-normal", 1200.0),
    ("llama-3-3-70b", "us-east", "batch", 800.0),
)


def _series(t0: float) -> list[Series]:
    out = []
    for model, region, tier, tps in FLOWS:
        out += gateway_demand(model, region, tier, "acme", tps, t0)
        out += vllm_replica(model, region)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    prom = LocalPrometheus(tmp_path_factory.mktemp("prometheus"))
    end = time.time() - 15
    start = end - HOURS * 3600
    prom.start(_series(start), start, end, step=60)
    try:
        yield prom
    finally:
        prom.stop()


@pytest.fixture(scope="module")
def ns(cluster: Cluster, crds: list[dict[str, Any]]) -> str:
    name = f"plan-{uuid.uuid4().hex[:8]}"
    cluster.ensure_namespace(name)
    return name


@pytest.fixture(scope="module")
def fleet(cluster: Cluster, ns: str) -> str:
    """The sample fleet (without its FleetPolicy) in ``ns``."""
    for doc in all_samples():
        if doc["kind"] != "FleetPolicy":
            _apply(cluster, doc, ns)
    return ns


@pytest.fixture(scope="module")
def planner(
    controlplane: LocalControlPlane, crds: list[dict[str, Any]], ns: str, tmp_path_factory
) -> Iterator[tuple[OperatorProcess, int]]:
    port = _free_port()
    op = OperatorProcess(
        controlplane.kubeconfig,
        Path(tmp_path_factory.mktemp("planner")) / "operator.log",
        "-n", ns, "--plan-tick-seconds", "1", "--metrics-port", str(port),
    )  # fmt: skip
    try:
        yield op, port
    finally:
        op.stop()


def _apply(cluster: Cluster, doc: dict, namespace: str) -> dict:
    doc = copy.deepcopy(doc)
    if BY_KIND[doc["kind"]].info.scope == "Namespaced":
        doc["metadata"]["namespace"] = namespace
    return cluster.apply(doc)


def _policy(url: str, **spec: Any) -> dict[str, Any]:
    doc = next(d for d in all_samples() if d["kind"] == "FleetPolicy")
    doc["metadata"]["name"] = "fleet"
    doc["spec"].update(
        {
            "mode": "plan-only",
            "intervalSeconds": 1800,
            "horizon": {"stepSeconds": STEP, "steps": 6},
            "forecast": {"method": "naive", "historySeconds": 3 * 3600, "backtestFolds": 1},
            "solver": {"timeLimitSeconds": 5, "relativeGap": 0.01},
            "prometheus": {"url": url, "timeoutSeconds": 5, "maxDataAgeSeconds": 900},
            "plansToKeep": 2,
        }
    )
    doc["spec"].update(spec)
    return doc


def _status(cluster: Cluster, ns: str, name: str = "fleet") -> dict[str, Any]:
    return (cluster.get(API_VERSION, "FleetPolicy", name, ns) or {}).get("status") or {}


def _cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def _plans(cluster: Cluster, ns: str, policy: str = "fleet") -> list[dict[str, Any]]:
    return cluster.list(
        API_VERSION, "FleetPlan", ns, label_selector=f"llmfleet.dev/policy={policy}"
    )


def test_reader_reads_the_backfilled_flows(prometheus: LocalPrometheus):
    reader = DemandReader(
        PrometheusSource(url=prometheus.url, timeout_seconds=5),
        served_names={served: model for model, served in SERVED.items()},
    )
    try:
        from llmfleet.api.policy import PrometheusQueries

        read = reader.read(PrometheusQueries(), end=time.time(), history_seconds=3 * 3600,
                           step_seconds=STEP)  # fmt: skip
    finally:
        reader.close()
    assert [(h.key.model, h.key.origin, h.key.tier) for h in read.histories] == sorted(
        (f[0], f[1], f[2]) for f in FLOWS
    )
    assert read.age_seconds is not None and read.age_seconds < 120
    for h in read.histories:
        tps = next(
            f[3] for f in FLOWS if (f[0], f[1], f[2]) == (h.key.model, h.key.origin, h.key.tier)
        )
        full = [v for v in h.rates.prompt_tokens_per_s if not math.isnan(v)]  # drop gaps
        assert len(full) >= 30
        assert all(abs(v - tps) / tps < 0.01 for v in full[1:-1]), full
        assert abs(h.rates.requests_per_s[-2] - tps / 1500) < 0.01


def test_reader_names_an_unreachable_prometheus():
    port = _free_port()
    reader = DemandReader(PrometheusSource(url=f"http://127.0.0.1:{port}", timeout_seconds=2))
    try:
        from llmfleet.api.policy import PrometheusQueries

        with pytest.raises(PrometheusUnreachable, match=f"127.0.0.1:{port} unreachable"):
            reader.read(PrometheusQueries(), end=time.time(), history_seconds=3600,
                        step_seconds=STEP)  # fmt: skip
    finally:
        reader.close()


def test_no_data_falls_back_to_quotas_and_a_bad_query_is_permanent(
    cluster: Cluster, fleet: str, prometheus: LocalPrometheus, planner
):
    ns = fleet
    empty = "sum by (model_name, region, tier) (rate(vllm:no_such_metric_total[$window]))"
    nodata = _policy(prometheus.url)
    nodata["metadata"]["name"] = "nodata"
    nodata["spec"]["prometheus"]["queries"] = {
        "promptTokens": empty, "generationTokens": empty, "requests": empty,
    }  # fmt: skip
    bad = _policy(prometheus.url)
    bad["metadata"]["name"] = "badq"
    # well-formed enough for the schema (balanced, one expression), but not PromQL
    bad["spec"]["prometheus"]["queries"] = {"promptTokens": "sum by (model_name) (rate(x[$window])) bogus"}
    _apply(cluster, nodata, ns)
    _apply(cluster, bad, ns)

    st = wait_for(
        lambda: (s := _status(cluster, ns, "nodata")).get("lastPlan") and s,
        timeout=60, what="a plan from quota demand",
    )  # fmt: skip
    demand = _cond(st, "DemandRead")
    assert (
        demand["reason"] == "QuotaFallback" and "no demand data in Prometheus" in demand["message"]
    )
    plan = cluster.get(API_VERSION, "FleetPlan", st["lastPlan"], ns)
    assert "TenantQuotas' budgets" in plan["spec"]["solver"]["message"]

    cond = wait_for(
        lambda: (c := _cond(_status(cluster, ns, "badq"), "Planned")).get("reason") == "BadQuery"
        and c,
        what="Planned=False BadQuery",
    )  # fmt: skip
    assert cond["status"] == "False" and "spec.prometheus.queries.promptTokens" in cond["message"]
    assert "bad_data" in cond["message"] or "parse error" in cond["message"]
    assert not _plans(cluster, ns, "badq")
    for name in ("nodata", "badq"):
        cluster.delete(API_VERSION, "FleetPolicy", name, ns)


def test_plans_status_history_metrics_then_prometheus_down(
    cluster: Cluster, fleet: str, prometheus: LocalPrometheus, planner
):
    ns = fleet
    op, port = planner
    policy = _apply(cluster, _policy(prometheus.url), ns)

    # a plan appears, owned by the policy, and the status shows it
    status = wait_for(
        lambda: (s := _status(cluster, ns)).get("lastPlan") and s,
        timeout=60, what="status.lastPlan",
    )  # fmt: skip
    assert status["costPerHour"] > 0 and status["nextRunTime"] and status["lastRunTime"]
    assert _cond(status, "Planned")["status"] == "True", status
    demand = _cond(status, "DemandRead")
    assert demand["reason"] == "PrometheusData" and "3 flows from Prometheus" in demand["message"]
    plan = cluster.get(API_VERSION, "FleetPlan", status["lastPlan"], ns)
    assert plan is not None
    (owner,) = plan["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "FleetPolicy", "fleet", policy["metadata"]["uid"],
    )  # fmt: skip
    assert plan["spec"]["policy"] == "fleet" and plan["spec"]["steps"] == 6
    assert "3 flows from Prometheus" in plan["spec"]["solver"]["message"]
    assert {r["model"] for r in plan["spec"]["replicas"] if r["replicas"]} >= {"llama-3-1-8b"}
    phase = wait_for(
        lambda: (cluster.get(API_VERSION, "FleetPlan", status["lastPlan"], ns) or {})
        .get("status", {}).get("phase"),
        what="FleetPlan phase",
    )  # fmt: skip
    assert phase == "PlanOnly"
    assert _cond(_status(cluster, ns), "Actuated")["reason"] in ("PlanOnly", "NotImplemented")

    # the metrics endpoint serves the plan
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as rsp:
        text = rsp.read().decode()
    for name in ("llmfleet_desired_replicas", "llmfleet_desired_nodes",
                 "llmfleet_plan_cost_dollars_per_hour", "llmfleet_solver_duration_seconds",
                 "llmfleet_demand_data_age_seconds", "llmfleet_current_replicas",
                 "llmfleet_solver_gap_ratio", "llmfleet_unmet_demand_tokens_per_second",
                 "llmfleet_actuation_errors"):  # fmt: skip
        assert f"# HELP {name}" in text, name
    cost = next(
        float(line.split()[-1]) for line in text.splitlines()
        if line.startswith('llmfleet_plan_cost_dollars_per_hour{policy="fleet"}')
    )  # fmt: skip
    assert cost == status["costPerHour"]
    assert 'llmfleet_solver_status{policy="fleet",status="infeasible"} 0.0' in text

    # a spec change plans again at once; only plansToKeep plans stay: a readable history
    names = {status["lastPlan"]}
    for gap in (0.02, 0.03):
        _apply(
            cluster, _policy(prometheus.url, solver={"timeLimitSeconds": 5, "relativeGap": gap}), ns
        )
        st = wait_for(
            lambda: (s := _status(cluster, ns)).get("lastPlan") not in names and s,
            timeout=60, what="a new plan after a spec change",
        )  # fmt: skip
        names.add(st["lastPlan"])
    wait_for(lambda: len(_plans(cluster, ns)) == 2, what="old plans pruned to plansToKeep")
    table = format_table(cluster.table(API_VERSION, "fleetplans", ns))
    assert table.splitlines()[0].split()[:5] == ["NAME", "POLICY", "USD/H", "GAP", "SOLVER"]
    assert st["lastPlan"] in table and "PlanOnly" in table

    # Prometheus goes away: the status says why, the last plan stays
    last = st["lastPlan"]
    prometheus.stop()
    _apply(
        cluster, _policy(prometheus.url, solver={"timeLimitSeconds": 5, "relativeGap": 0.05}), ns
    )
    cond = wait_for(
        lambda: (c := _cond(_status(cluster, ns), "DemandRead")).get("status") == "False" and c,
        timeout=60, what="DemandRead=False",
    )  # fmt: skip
    assert (
        cond["reason"] == "PrometheusUnreachable"
        and prometheus.url.split("//")[1] in cond["message"]
    )
    st = _status(cluster, ns)
    assert st["lastPlan"] == last and _cond(st, "Planned")["status"] == "False"
    assert "the last plan stays" in _cond(st, "Planned")["message"]
    assert cluster.get(API_VERSION, "FleetPlan", last, ns) is not None
    assert _cond(st, "Valid").get("reason") == "ReferencesResolved", st
    events = wait_for(
        lambda: [e for e in cluster.list("v1", "Event", ns)
                 if e["involvedObject"]["name"] == "fleet" and e["reason"] == "PrometheusUnreachable"],
        what="a PrometheusUnreachable event",
    )  # fmt: skip
    assert events[0]["type"] == "Warning"
    assert op.alive(), op.output()[-3000:]
    assert "Traceback" not in op.output(), op.output()[-5000:]
