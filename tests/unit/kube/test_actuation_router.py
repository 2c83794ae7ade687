"""Actuation publishes the router service's ConfigMap and HTTPRoutes for the routed SLATiers,
and the planning loop's reader of the router's shares, against the in-memory cluster of
test_actuation_errors (the real apiserver is in tests/integration/test_actuation.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_actuation_errors import FakeCluster

from llmfleet.api.loading import parse_object
from llmfleet.api.policy import FleetPolicy
from llmfleet.api.references import FleetSnapshot
from llmfleet.kube.actuate import (
    ROUTER_SHARES_READ,
    SharesReason,
    actuate,
    read_router_shares,
)
from llmfleet.kube.client import KubeError
from llmfleet.kube.router_config import (
    ROUTER_CONFIG_KEY,
    ROUTER_CONFIG_MAP,
    ROUTER_MODEL_HEADER,
    SHARES_KEY,
    TierCalibration,
    render_router_config_map,
    router_config_document,
    router_route_name,
)
from llmfleet.routing.models.serving import (
    RouterShares,
    RouteShare,
    TierShares,
    shares_document,
)
from support.builders import all_samples
from support.plans import fleet_plan

NS = "fleet"
TIER = "interactive-normal"
BIG, SMALL = "llama-3-3-70b", "llama-3-1-8b"
PLAN = fleet_plan(
    replicas={(BIG, "us-east", "h100-od"): 2, (SMALL, "eu-west", "a100-od"): 1},
    routing={(BIG, TIER, "us-east"): {"us-east": 1.0}},
)


def _snapshot(mode: str = "apply", change: Any = None) -> FleetSnapshot:
    objs = [parse_object(d, NS) for d in all_samples()]
    snap = FleetSnapshot()
    for o in objs:
        kind = o.info.kind
        if kind == "FleetPolicy":
            assert isinstance(o, FleetPolicy)
            o.spec.mode = mode  # type: ignore[assignment]
            snap.policies.append(o)
        else:
            getattr(snap, {"Region": "regions", "LLMModel": "models", "SLATier": "tiers",
                           "TenantQuota": "tenants"}[kind]).append(o)  # fmt: skip
    if change:
        change(snap)
    return snap


def _clusters(snap: FleetSnapshot, cluster: FakeCluster) -> Any:
    return {r.name: cluster for r in snap.regions}  # every region in one (local) cluster


def _router_cm(c: FakeCluster) -> dict[str, Any] | None:
    return c.objects.get(("ConfigMap", NS, ROUTER_CONFIG_MAP))


def _routes(c: FakeCluster) -> dict[str, dict[str, Any]]:
    return {k[2]: v for k, v in c.objects.items() if k[0] == "HTTPRoute"}


def test_apply_publishes_the_router_config_map_and_header_routes_once():
    snap, c = _snapshot(), FakeCluster()
    res = actuate(_clusters(snap, c), snap, PLAN, snap.policies[0], NS)
    assert res.errors == () and res.complete
    cm = _router_cm(c)
    assert cm is not None
    assert cm["metadata"]["labels"]["llmfleet.dev/component"] == "model-router"
    doc = json.loads(cm["data"][ROUTER_CONFIG_KEY])
    assert set(doc["tiers"]) == {TIER}
    assert doc["tiers"][TIER]["lambda"] is None  # no calibration yet: all to the reference
    assert any(f"ConfigMap {ROUTER_CONFIG_MAP}: model router config updated" in d for d in res.diff)
    routes = _routes(c)
    # the router's routes sit beside the body-based ones of the same model
    small = router_route_name(SMALL)
    assert small in routes and router_route_name(BIG) in routes
    assert any(n.startswith(f"llmfleet-{BIG}-") for n in routes)
    rules = routes[small]["spec"]["rules"]
    tier_rule = [
        r for r in rules
        if {"type": "Exact", "name": "x-tier", "value": TIER} in r["matches"][0]["headers"]
    ]  # fmt: skip
    assert tier_rule, "the candidate the plan routes nowhere for the tier gets a rule"
    headers = tier_rule[0]["matches"][0]["headers"]
    assert headers[0] == {
        "type": "Exact",
        "name": ROUTER_MODEL_HEADER,
        "value": "meta-llama/Llama-3.1-8B-Instruct",
    }
    again = actuate(_clusters(snap, c), snap, PLAN, snap.policies[0], NS)
    assert again.changes == 0 and again.errors == ()


def test_plan_only_publishes_nothing():
    snap, c = _snapshot("plan-only"), FakeCluster()
    res = actuate(_clusters(snap, c), snap, PLAN, snap.policies[0], NS, dry_run=True)
    assert _router_cm(c) is None and _routes(c) == {}
    assert any(f"ConfigMap {ROUTER_CONFIG_MAP}" in d for d in res.diff)


def test_no_routed_tier_publishes_no_router_config_map():
    def unrouted(snap: FleetSnapshot) -> None:
        for t in snap.tiers:
            t.spec.routing = None

    snap, c = _snapshot(change=unrouted), FakeCluster()
    actuate(_clusters(snap, c), snap, PLAN, snap.policies[0], NS)
    assert _router_cm(c) is None
    assert not any(n.startswith("llmfleet-router-") for n in _routes(c))


def test_routing_removed_empties_the_router_config_and_deletes_its_routes():
    snap, c = _snapshot(), FakeCluster()
    actuate(_clusters(snap, c), snap, PLAN, snap.policies[0], NS)
    for t in snap.tiers:
        t.spec.routing = None
    res = actuate(_clusters(snap, c), snap, PLAN, snap.policies[0], NS)
    assert res.errors == ()
    cm = _router_cm(c)
    assert cm is not None and json.loads(cm["data"][ROUTER_CONFIG_KEY])["tiers"] == {}
    assert not any(n.startswith("llmfleet-router-") for n in _routes(c))


def test_a_stored_calibration_is_kept_while_it_fits_the_tier():
    snap, c = _snapshot(), FakeCluster()
    cal = TierCalibration("quality", (BIG, SMALL), f"{TIER}.npz", 16, 0.3, 2e-4,
                          {BIG: (2e-4, 1e-8), SMALL: (5e-5, 1e-9)}, 0.6, 0.95, 0.31)  # fmt: skip
    stored = render_router_config_map(
        router_config_document(snap.tiers, snap.models, snap.tenants, {TIER: cal}),
        ROUTER_CONFIG_MAP, NS,
    )  # fmt: skip
    c.objects[("ConfigMap", NS, ROUTER_CONFIG_MAP)] = stored
    res = actuate(_clusters(snap, c), snap, PLAN, snap.policies[0], NS)
    assert res.errors == ()
    assert not any(f"ConfigMap {ROUTER_CONFIG_MAP}" in d for d in res.diff)  # same: no change
    # the tier changes its router kind: the calibration no longer fits, it is dropped (said)
    for t in snap.tiers:
        if t.spec.routing is not None:
            t.spec.routing.router.kind = "cluster"
    res = actuate(_clusters(snap, c), snap, PLAN, snap.policies[0], NS)
    (err,) = res.errors
    assert (err.target, err.name) == ("configmap", ROUTER_CONFIG_MAP)
    assert f"the stored calibration of tier {TIER} is not used" in err
    tier = json.loads(c.objects[("ConfigMap", NS, ROUTER_CONFIG_MAP)]["data"][ROUTER_CONFIG_KEY])
    assert tier["tiers"][TIER]["lambda"] is None and "artefact" not in tier["tiers"][TIER]


def test_a_tier_that_cannot_be_rendered_is_left_out_and_reported():
    def uncosted(snap: FleetSnapshot) -> None:
        for m in snap.models:
            if m.name == SMALL:
                m.spec.routing_cost = None

    snap, c = _snapshot(change=uncosted), FakeCluster()
    res = actuate(_clusters(snap, c), snap, PLAN, snap.policies[0], NS)
    (err,) = res.errors
    assert (err.target, err.name) == ("configmap", ROUTER_CONFIG_MAP)
    assert f"tier {TIER} left out" in err and "spec.routingCost" in err
    cm = _router_cm(c)
    assert cm is not None and json.loads(cm["data"][ROUTER_CONFIG_KEY])["tiers"] == {}
    assert any(e.type == "Warning" and "routingCost" in e.message for e in res.events)
    assert len([k for k in c.objects if k[0] == "Deployment"]) == 2  # the rest is actuated


class FailingRouterWrites(FakeCluster):
    def apply(self, obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
        if obj["metadata"]["name"] == ROUTER_CONFIG_MAP and not kw.get("dry_run"):
            raise KubeError(f"apply ConfigMap {ROUTER_CONFIG_MAP}: forbidden")
        return super().apply(obj, **kw)


def test_a_failed_publication_is_an_error_and_a_warning_not_an_exception():
    snap, c = _snapshot(), FailingRouterWrites()
    res = actuate(_clusters(snap, c), snap, PLAN, snap.policies[0], NS)
    (err,) = res.errors
    assert (err.target, err.name) == ("configmap", ROUTER_CONFIG_MAP) and "forbidden" in err
    assert any(
        e.type == "Warning" and e.kind == "ConfigMap" and e.name == ROUTER_CONFIG_MAP
        for e in res.events
    )
    assert ("ConfigMap", NS, "llmfleet-routing") in c.objects  # the other routing is published


# --------------------------------------------------------------------------- the shares


SHARES = RouterShares((
    TierShares(TIER, BIG, (RouteShare(BIG, 0.9, 0.75, 0.9), RouteShare(SMALL, 0.1, 0.25, 0.1))),
))  # fmt: skip


def _with_data(data: dict[str, str]) -> FakeCluster:
    c = FakeCluster()
    cm = render_router_config_map({"tiers": {}}, ROUTER_CONFIG_MAP, NS)
    cm["data"].update(data)
    c.objects[("ConfigMap", NS, ROUTER_CONFIG_MAP)] = cm
    return c


def test_the_shares_are_read_from_the_router_config_map():
    c = _with_data({SHARES_KEY: json.dumps(shares_document(SHARES))})
    got = read_router_shares(c, NS)  # type: ignore[arg-type]
    assert got.shares == SHARES
    assert (got.status, got.reason, got.warning) == ("True", SharesReason.READ, False)
    assert TIER in got.message and ROUTER_SHARES_READ == "RouterSharesRead"


def test_no_config_map_or_no_key_is_no_split_without_a_warning():
    for c in (FakeCluster(), _with_data({})):
        got = read_router_shares(c, NS)  # type: ignore[arg-type]
        assert got.shares is None and not got.warning
        assert (got.status, got.reason) == ("False", SharesReason.NONE)


UNBALANCED = {
    "apiVersion": "llmfleet.dev/router-shares/v1",
    "tiers": {TIER: {"reference": BIG, "options": [
        {"model": BIG, "requests": 0.5, "promptTokens": 1, "outputTokens": 1},
    ]}},
}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "not valid JSON"),
        ('{"apiVersion": "v0", "tiers": {}}', "apiVersion"),
        (json.dumps(UNBALANCED), "requests shares sum to 0.5"),
    ],
)
def test_a_malformed_document_names_the_config_map_and_key(text, says):
    got = read_router_shares(_with_data({SHARES_KEY: text}), NS)  # type: ignore[arg-type]
    assert got.shares is None and got.warning
    assert (got.status, got.reason) == ("False", SharesReason.INVALID)
    assert f"ConfigMap {NS}/{ROUTER_CONFIG_MAP}" in got.message
    assert f"data['{SHARES_KEY}']" in got.message and says in got.message


def test_an_unreadable_config_map_is_no_split_never_an_exception():
    class Broken(FakeCluster):
        def get(self, *a: Any, **kw: Any) -> Any:
            raise KubeError("get ConfigMap: forbidden")

    got = read_router_shares(Broken(), NS)  # type: ignore[arg-type]
    assert got.shares is None and got.warning and got.reason == SharesReason.UNREADABLE
    assert "forbidden" in got.message and SHARES_KEY in got.message


def test_a_tier_routing_to_a_deleted_model_does_not_route_and_the_plan_is_applied():
    # the 8B candidate's LLMModel is gone: the tier no longer routes (the SLATier's status
    # says so, from the validation), and nothing of the plan fails for it
    def deleted(snap: FleetSnapshot) -> None:
        snap.models[:] = [m for m in snap.models if m.name != SMALL]

    snap, c = _snapshot(change=deleted), FakeCluster()
    plan = fleet_plan(replicas={(BIG, "us-east", "h100-od"): 2},
                      routing={(BIG, TIER, "us-east"): {"us-east": 1.0}})
    res = actuate(_clusters(snap, c), snap, plan, snap.policies[0], NS)
    assert not res.errors
    assert not any(name.startswith("llmfleet-router-") for name in _routes(c))
