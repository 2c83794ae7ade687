"""The tenant limits in the planning loop, end to end: the operator as a process, a real
Prometheus holding per-tenant vLLM token counters, the Gateway API HTTPRoute and Envoy Gateway
BackendTrafficPolicy CRDs (pinned upstream, ``hack/tools.sh crds``).

In ``plan-only`` the FleetPlan carries the limits and nothing is published; once the policy
says ``apply``, one cycle writes the ``llmfleet-throttling`` ConfigMap, the
BackendTrafficPolicy and every TenantQuota's status from that plan's table, and /metrics
carries the tenant series.

Own control plane (as test_planning_apply.py): applying a plan creates cluster-scoped Nodes
that must not leak into the session's shared apiserver.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import OperatorProcess, wait_for
from llmfleet.api import API_VERSION
from llmfleet.fairness.limits import LIMIT_METRIC, USAGE_METRIC
from llmfleet.kube.client import Cluster
from llmfleet.kube.throttling import BTP_API_VERSION, BTP_NAME
from support.builders import all_samples
from support.clusters import fresh_cluster
from support.controlplane import LocalControlPlane
from support.promtools import LocalPrometheus, Series
from support.servingseries import gateway_demand, vllm_replica

ROOT = Path(__file__).resolve().parents[2]
NS = "fleet"
STEP = 300
UPSTREAM = {
    "gateway-api": "gateway.networking.k8s.io_httproutes.yaml",
    "envoy-gateway": "gateway.envoyproxy.io_backendtrafficpolicies.yaml",
}
FLOWS = (
    # model, origin region, tier, tenant, prompt tokens/s (output: a quarter of it)
    ("llama-3-1-8b", "us-east", "interactive-fast", "acme-chat", 2000.0),
    ("llama-3-1-8b", "us-east", "interactive-normal", "initech-search", 800.0),
)


def _tools_dir(name: str) -> Path:
    out = subprocess.run(
        ["bash", str(ROOT / "hack/tools.sh"), "dir", name],
        check=True, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return Path(out.stdout.strip())


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalControlPlane, Cluster]]:
    docs = []
    for name, file in UPSTREAM.items():
        path = _tools_dir(name) / file
        assert path.exists(), f"{path} missing: run `bash hack/tools.sh crds`"
        docs.append(yaml.safe_load(path.read_text()))
    with fresh_cluster(tmp_path_factory.mktemp("throttle-hub"), NS, docs) as pair:
        yield pair


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    """Gateway counters of two tenants over the last 3 hours (the default profile), and
    vLLM's gauges of the serving region."""
    prom = LocalPrometheus(tmp_path_factory.mktemp("prom-tenants"))
    end = time.time() - 15
    start = end - 3 * 3600
    series: list[Series] = []
    for model, region, tier, tenant, tps in FLOWS:
        series += gateway_demand(model, region, tier, tenant, tps, start)
    series += vllm_replica("llama-3-1-8b", "us-east")
    prom.start(series, start, end, step=60)
    try:
        yield prom
    finally:
        prom.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(c: Cluster) -> dict[str, Any]:
    return (c.get(API_VERSION, "FleetPolicy", "default", NS) or {}).get("status") or {}


def _cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((x for x in status.get("conditions") or [] if x["type"] == type_), {})


def _metrics(port: int) -> dict[tuple[str, str, str, str], float]:
    """(metric, tenant, tier, model_name) -> value of the tenant gauges on /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as rsp:
        text = rsp.read().decode()
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name not in (LIMIT_METRIC, USAGE_METRIC):
            continue
        labels_text, _, value = rest.rpartition("} ")
        labels = dict(kv.split("=", 1) for kv in labels_text.split(","))
        labels = {k: v.strip('"') for k, v in labels.items()}
        out[(name, labels["tenant"], labels["tier"], labels["model_name"])] = float(value)
    return out


def test_limits_are_planned_in_plan_only_and_published_in_apply(
    hub: tuple[LocalControlPlane, Cluster], prometheus: LocalPrometheus, tmp_path: Path
):
    cp, c = hub
    port = _free_port()
    op = OperatorProcess(cp.kubeconfig, tmp_path / "operator.log", "-n", NS,
                         "--plan-tick-seconds", "1", "--metrics-port", str(port))  # fmt: skip
    try:
        policy: dict[str, Any] = {}
        for doc in all_samples():
            if doc["kind"] != "Region":
                doc["metadata"]["namespace"] = NS
            if doc["kind"] == "FleetPolicy":
                doc["spec"].update(
                    {
                        "mode": "plan-only",
                        "intervalSeconds": 600,
                        "maxChangesPerCycle": 1000,
                        "horizon": {"stepSeconds": STEP, "steps": 4},
                        "forecast": {"method": "naive", "historySeconds": 2 * 3600,
                                     "backtestFolds": 1},
                        "ingress": {"parentRefs": [{"name": "llm-gateway"}]},
                    }
                )  # fmt: skip
                doc["spec"]["solver"]["timeLimitSeconds"] = 5
                doc["spec"]["prometheus"]["url"] = prometheus.url
                policy = doc
            c.apply(doc)
        tenants = {d["spec"]["tenantId"] for d in all_samples() if d["kind"] == "TenantQuota"}

        # -- plan-only: the plan carries the table, nothing is published
        st = wait_for(lambda: (s := _status(c)).get("lastPlan") and s,
                      timeout=90, what="a plan-only FleetPlan")  # fmt: skip
        assert _cond(st, "DemandRead")["reason"] == "PrometheusData", st
        throttling = _cond(st, "ThrottlingPublished")
        assert (throttling["status"], throttling["reason"]) == ("False", "PlanOnly"), throttling
        plan = c.get(API_VERSION, "FleetPlan", st["lastPlan"], NS)
        assert plan is not None
        assert {t["tenant"] for t in plan["spec"]["throttles"]} == tenants
        assert c.get("v1", "ConfigMap", "llmfleet-throttling", NS) is None
        assert c.get(BTP_API_VERSION, "BackendTrafficPolicy", BTP_NAME, NS) is None
        for q in c.list(API_VERSION, "TenantQuota", NS):
            status = q.get("status") or {}
            assert "limits" not in status and not _cond(status, "Throttling"), q["metadata"]
        first_plan = st["lastPlan"]

        # -- apply: the next cycle publishes its plan's table
        policy["spec"]["mode"] = "apply"
        c.apply(policy)
        st = wait_for(
            lambda: (s := _status(c)).get("lastAppliedPlan")
            and _cond(s, "ThrottlingPublished").get("status") == "True"
            and s,
            timeout=120, what="an applied plan with its limits published",
        )  # fmt: skip
        name = st["lastAppliedPlan"]
        assert name != first_plan and _cond(st, "Actuated")["reason"] == "Applied"
        assert (
            "ConfigMap llmfleet-throttling, 1 BackendTrafficPolicies"
            in _cond(st, "ThrottlingPublished")["message"]
        )
        plan = c.get(API_VERSION, "FleetPlan", name, NS)
        assert plan is not None
        throttles = {t["tenant"]: t for t in plan["spec"]["throttles"]}
        assert set(throttles) == tenants

        # the ConfigMap holds the plan's per-tenant table
        cm = c.get("v1", "ConfigMap", "llmfleet-throttling", NS)
        assert cm is not None
        doc = json.loads(cm["data"]["throttling.json"])
        assert doc["policy"] == "default" and set(doc["tenants"]) == tenants
        for tenant, row in doc["tenants"].items():
            t = throttles[tenant]
            assert row["tier"] == t["tier"]
            assert row["tokensPerSecond"] == pytest.approx(t["tokensPerSecond"])
            assert row["maxConcurrency"] == t["maxConcurrency"]
        # usage read from Prometheus with the default tenantUsage query
        for _model, _origin, _tier, tenant, tps in FLOWS:
            used = doc["tenants"][tenant]["usageTokensPerSecond"]
            assert 0 < used <= 1.25 * tps * 1.05, (
                tenant, used, _cond(st, "ThrottlingPublished")["message"],
                [(p["model"], p["region"]) for p in doc["tenants"][tenant]["pools"]],
            )  # fmt: skip

        # one BackendTrafficPolicy on the Gateway, a rule per tenant (no AI Gateway here)
        btp = c.get(BTP_API_VERSION, "BackendTrafficPolicy", BTP_NAME, NS)
        assert btp is not None
        assert [r["name"] for r in btp["spec"]["targetRefs"]] == ["llm-gateway"]
        assert len(btp["spec"]["rateLimit"]["global"]["rules"]) == len(tenants)

        # every TenantQuota's status shows its current limits
        for q in c.list(API_VERSION, "TenantQuota", NS):
            status = q.get("status") or {}
            t = throttles[q["spec"]["tenantId"]]
            assert status["limits"]["tokensPerSecond"] == pytest.approx(t["tokensPerSecond"])
            assert status["limits"]["requestsPerSecond"] == pytest.approx(t["requestsPerSecond"])
            assert _cond(status, "Throttling")["status"] in ("True", "False")
            assert _cond(status, "Valid"), "the validation condition survives"

        # /metrics carries the tenant series of the table
        series = _metrics(port)
        for tenant, row in doc["tenants"].items():
            limit = sum(
                v for (n, tn, tier, _mod), v in series.items()
                if n == LIMIT_METRIC and tn == tenant and tier == row["tier"]
            )  # fmt: skip
            assert limit == pytest.approx(
                sum(p["tokensPerSecond"] for p in row["pools"]), rel=1e-3, abs=1e-2
            ), tenant
        acme = [v for (n, tn, *_), v in series.items() if n == USAGE_METRIC and tn == "acme-chat"]
        assert acme and sum(acme) > 0
        assert "Traceback" not in op.output(), op.output()[-4000:]
    finally:
        op.stop()
