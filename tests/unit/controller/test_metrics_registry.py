"""The controller's metrics: the names the issue and the dashboards expect, on a private registry."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime

from prometheus_client import REGISTRY, generate_latest

from llmfleet.api.plan import FleetPlanSpec
from llmfleet.controller.metrics import FleetMetrics
from llmfleet.observe.metrics import LLMFLEET

ISSUE_NAMES = (
    "llmfleet_desired_replicas",
    "llmfleet_current_replicas",
    "llmfleet_desired_nodes",
    "llmfleet_plan_cost_dollars_per_hour",
    "llmfleet_solver_duration_seconds",
    "llmfleet_solver_gap_ratio",
    "llmfleet_unmet_demand_tokens_per_second",
    "llmfleet_actuation_errors_total",
    "llmfleet_demand_data_age_seconds",
)


def _spec(**kw: object) -> FleetPlanSpec:
    doc = {
        "policy": "default", "inputsDigest": "sha256:x", "madeAt": "2026-11-23T15:00:00Z",
        "stepSeconds": 3600, "steps": 4,
        "solver": {"status": "Optimal", "gap": 0.01, "solveSeconds": 1.5},
        "costPerHour": 42.5,
        "nodes": [{"region": "eu-west", "pool": "h100-od", "gpuType": "H100-80GB",
                   "capacityType": "on-demand", "nodes": 3}],
        "replicas": [{"model": "m", "region": "eu-west", "pool": "h100-od", "replicas": 2,
                      "currentReplicas": 1}],
        "unmet": [{"model": "m", "origin": "us-east", "tier": "a", "tokensPerSecond": 5,
                   "reason": "x"},
                  {"model": "m", "origin": "us-east", "tier": "b", "tokensPerSecond": 7,
                   "reason": "y"}],
    }  # fmt: skip
    doc.update(kw)
    return FleetPlanSpec.model_validate(doc)


def test_every_series_of_a_plan_with_the_contract_labels():
    m = FleetMetrics()
    m.record_plan(_spec(), datetime(2026, 11, 23, tzinfo=UTC).timestamp())
    m.record_solve("default", "Optimal", 1.5)
    m.record_actuation_errors([("eu-west", "nodepool")])
    m.data_age.set(12)
    text = generate_latest(m.registry).decode()
    for name in ISSUE_NAMES:
        assert f"# HELP {name}" in text or f"# HELP {name.removesuffix('_total')}" in text, name
    assert 'llmfleet_desired_replicas{model_name="m",pool="h100-od",region="eu-west"} 2.0' in text
    assert 'llmfleet_current_replicas{model_name="m",pool="h100-od",region="eu-west"} 1.0' in text
    assert (
        'llmfleet_desired_nodes{capacity_type="on-demand",pool="h100-od",region="eu-west"} 3.0'
        in text
    )
    assert 'llmfleet_plan_cost_dollars_per_hour{policy="default"} 42.5' in text
    assert 'llmfleet_unmet_demand_tokens_per_second{model_name="m",region="us-east"} 12.0' in text
    assert 'llmfleet_solver_status{policy="default",status="optimal"} 1.0' in text
    assert 'llmfleet_solver_status{policy="default",status="infeasible"} 0.0' in text
    assert 'llmfleet_actuation_errors_total{region="eu-west",target="nodepool"} 1.0' in text
    assert "llmfleet_demand_data_age_seconds 12.0" in text
    # the dashboards' contract: every exported llmfleet_* name is listed with these labels
    for line in text.splitlines():
        name = line.split("{")[0]
        if line.startswith("llmfleet_") and "{" in line and not name.endswith("_created"):
            labels = {kv.split("=")[0] for kv in line.split("{")[1].split("}")[0].split(",")}
            assert labels == set(LLMFLEET[name]), line
    # a private registry: nothing leaks into the process-wide default one
    assert "llmfleet_" not in generate_latest(REGISTRY).decode()


def test_a_new_plan_replaces_the_old_pools():
    m = FleetMetrics()
    m.record_plan(_spec(), 0)
    m.record_plan(_spec(nodes=[], replicas=[], unmet=[]), 1)
    text = generate_latest(m.registry).decode()
    assert "llmfleet_desired_nodes{" not in text and "llmfleet_desired_replicas{" not in text


def test_served_over_http():
    m = FleetMetrics()
    m.data_age.set(3)
    server = m.serve(0, addr="127.0.0.1")
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as rsp:
            body = rsp.read().decode()
        assert "llmfleet_demand_data_age_seconds 3.0" in body
    finally:
        server.shutdown()


def test_region_reachability_is_exported_for_the_alert():
    m = FleetMetrics()
    m.region_reachable.labels("eu-west").set(0)
    m.region_reachable.labels("us-east").set(1)
    text = generate_latest(m.registry).decode()
    assert 'llmfleet_region_reachable{region="eu-west"} 0.0' in text
    assert 'llmfleet_region_reachable{region="us-east"} 1.0' in text
