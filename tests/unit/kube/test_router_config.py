"""The router service's ConfigMap and HTTPRoutes, rendered from the SLATiers and a
calibration; the router parses what the operator renders."""

from __future__ import annotations

import json

import pytest

from llmfleet.api.loading import parse_object
from llmfleet.api.model import LLMModel
from llmfleet.api.policy import ParentRef
from llmfleet.api.tenant import TenantQuota
from llmfleet.api.tier import SLATier
from llmfleet.kube.render import service_name
from llmfleet.kube.router_config import (
    ROUTER_MODEL_HEADER,
    TierCalibration,
    render_router_config_map,
    render_router_httproutes,
    router_config_document,
    router_route_entries,
)
from llmfleet.routing.models.serving import FastHashing, parse_config
from llmfleet.routing.table import RouteEntry, RoutingTable
from support.builders import all_samples

NS = "fleet"
TIER = "interactive-normal"


def _objects(kind):
    return [parse_object(d, NS) for d in all_samples() if d["kind"] == kind]


def _fleet(change=None):
    tiers: list[SLATier] = _objects("SLATier")  # type: ignore[assignment]
    if change:
        t = next(t for t in tiers if t.name == TIER)
        change(t)
    models: list[LLMModel] = _objects("LLMModel")  # type: ignore[assignment]
    tenants: list[TenantQuota] = _objects("TenantQuota")  # type: ignore[assignment]
    return tiers, models, tenants


CAL = TierCalibration(
    kind="quality", models=("llama-3-3-70b", "llama-3-1-8b"), artefact="interactive-normal.npz",
    bits=16, lam=0.3, scale=2e-4, cost={"llama-3-3-70b": (2e-4, 1e-8), "llama-3-1-8b": (5e-5, 1e-9)},
    drop_points=0.6, ucb_drop_points=0.95, saving=0.31,
)  # fmt: skip


def test_uncalibrated_tier_sends_everything_to_the_reference_with_api_costs():
    doc = router_config_document(*_fleet(), {})
    assert set(doc["tiers"]) == {TIER}
    tier = doc["tiers"][TIER]
    assert tier["lambda"] is None and tier["calibration"]["threshold"] == "none"
    small = next(c for c in tier["candidates"] if c["model"] == "llama-3-1-8b")
    # 0.18 USD per M tokens either way, 280 output tokens, 4 characters a token
    assert small["costIntercept"] == pytest.approx(0.18 * 280 / 1e6)
    assert small["costPerChar"] == pytest.approx(0.18 / 1e6 / 4)
    assert small["servedName"] == "meta-llama/Llama-3.1-8B-Instruct"
    # tenants of the tier listing models are routed only to those; other tiers' are absent
    assert tier["tenants"]["initech-search"] == ["llama-3-1-8b"]
    assert tier["tenants"]["tyrell-translate"] == ["llama-3-1-8b", "llama-3-3-70b"]
    assert "acme-chat" not in tier["tenants"]
    config = parse_config(doc)
    decision = config.tiers[TIER].decide("hello", FastHashing(16))
    assert decision.candidate.model == "llama-3-3-70b" and decision.reason == "reference"


def test_calibrated_tier_follows_the_artefacts_columns_and_costs():
    doc = router_config_document(*_fleet(), {TIER: CAL}, tier_header="x-sla-tier")
    tier = doc["tiers"][TIER]
    assert [c["model"] for c in tier["candidates"]] == list(CAL.models)
    assert tier["candidates"][1]["costIntercept"] == 5e-5
    assert (tier["lambda"], tier["costScale"], tier["bits"]) == (0.3, 2e-4, 16)
    assert tier["artefact"] == "interactive-normal.npz"
    assert tier["calibration"]["threshold"] == "calibrated"
    assert tier["calibration"]["ucbDropPoints"] == 0.95
    assert doc["headers"] == {
        "tier": "x-sla-tier",
        "tenant": "x-tenant-id",
        "model": ROUTER_MODEL_HEADER,
    }


def test_a_fixed_threshold_overrides_the_calibrated_knob():
    def fixed(t):
        t.spec.routing.router.threshold = 1.5

    tier = router_config_document(*_fleet(fixed), {TIER: CAL})["tiers"][TIER]
    assert tier["lambda"] == 1.5 and tier["calibration"]["threshold"] == "fixed"


def test_a_calibration_of_another_router_or_other_models_is_refused():
    def cluster(t):
        t.spec.routing.router.kind = "cluster"

    with pytest.raises(ValueError, match=r"SLATier interactive-normal: spec.routing.router.kind"):
        router_config_document(*_fleet(cluster), {TIER: CAL})
    other = TierCalibration("quality", ("llama-3-3-70b", "llama-3-1-405b"), "x.npz", 16, 0.1, 1.0)
    with pytest.raises(ValueError, match=r"spec.routing.candidates .* differ"):
        router_config_document(*_fleet(), {TIER: other})


def test_config_map_is_deterministic_and_labelled():
    doc = router_config_document(*_fleet(), {TIER: CAL})
    a = render_router_config_map(doc, "llmfleet-router", NS)
    b = render_router_config_map(
        router_config_document(*_fleet(), {TIER: CAL}), "llmfleet-router", NS
    )
    assert a == b and a["kind"] == "ConfigMap"
    assert a["metadata"]["labels"]["llmfleet.dev/component"] == "model-router"
    assert json.loads(a["data"]["router.json"]) == doc


def _entry(model, tier, origin, fractions):
    return RouteEntry(model, tier, origin, tuple((r, round(1000 * f)) for r, f in fractions),
                      tuple(fractions))  # fmt: skip


def test_httproutes_match_the_routers_header_for_every_candidate():
    tiers, models, _ = _fleet()
    table = RoutingTable((
        _entry("llama-3-3-70b", TIER, "us-east", [("us-east", 1.0)]),
        _entry("llama-3-1-8b", "batch", "us-east", [("us-east", 0.25), ("eu-west", 0.75)]),
    ))  # fmt: skip
    entries, problems = router_route_entries(table, tiers, {})
    assert problems == []
    added = [e for e in entries if e.model == "llama-3-1-8b" and e.tier == TIER]
    assert len(added) == 1 and dict(added[0].weights) == {"eu-west": 750, "us-east": 250}
    small = next(m for m in models if m.name == "llama-3-1-8b")
    routes = render_router_httproutes(
        small, entries, namespace=NS, parent_refs=[ParentRef(name="gw")], policy_namespace=NS,
        tier_header="x-tier", tenant_header="x-tenant-id",
        local_regions=frozenset({"us-east", "eu-west"}), match_origin=False,
    )  # fmt: skip
    rules = [r for route in routes for r in route["spec"]["rules"]]
    wanted = [
        {"type": "Exact", "name": ROUTER_MODEL_HEADER, "value": "meta-llama/Llama-3.1-8B-Instruct"},
        {"type": "Exact", "name": "x-tier", "value": TIER},
    ]
    rule = next(r for r in rules if r["matches"][0]["headers"] == wanted)
    assert {b["name"] for b in rule["backendRefs"]} == {
        service_name("llama-3-1-8b", "us-east"),
        service_name("llama-3-1-8b", "eu-west"),
    }
    assert all(
        h["name"] != "x-gateway-model-name"
        for r in rules
        for m in r["matches"]
        for h in m["headers"]
    )


def test_a_candidate_the_plan_routes_nowhere_gets_its_serving_regions_or_a_problem():
    tiers, _, _ = _fleet()
    table = RoutingTable((_entry("llama-3-3-70b", TIER, "us-east", [("us-east", 1.0)]),))
    entries, problems = router_route_entries(table, tiers, {"llama-3-1-8b": ["eu-west"]})
    added = next(e for e in entries if e.model == "llama-3-1-8b")
    assert added.origin == "us-east" and dict(added.weights) == {"eu-west": 1000}
    _, problems = router_route_entries(table, tiers, {})
    assert len(problems) == 1 and "llama-3-1-8b is served in no region" in problems[0]
