"""The per-backend request split at the gateway follows the plan (issue 14): a plan's routing
(three flows: (tier, origin) -> fractions over the serving regions r1 and r2) made into
HTTPRoutes by the operator's actuation code (``routing_table`` + ``render_httproutes`` with
the cluster's regions as ``_routes_in`` calls them: both origins in one cluster, so the
routes match the origin header too) and applied; requests through the box's front door
(router -> Traefik -> Services) per flow; Traefik's ``traefik_service_requests_total`` per
backend Service and flow (its header labels tier and origin_region) matches the routes'
weights within 5% of the flow's requests.

Needs Traefik (``bash hack/fleet.sh build traefik``, not in CI: see hack/traefik/README.md).
Run it by path::

    python -m pytest tests/integration/box/gateway_split.py
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from gatewaybox import (
    GATEWAY,
    MODEL,
    NAMESPACE,
    REGIONS,
    GatewayBox,
    complete,
    counter,
    gateway_box,
    model_doc,
    route_accepted,
    serve_model,
    wait_for,
)

from llmfleet.api.model import LLMModel
from llmfleet.api.policy import ParentRef
from llmfleet.kube import render
from llmfleet.kube.client import Cluster
from llmfleet.routing import routing_table
from llmfleet.routing.table import ORIGIN_HEADER
from support.plans import fleet_plan

PLAN_ROUTING = {
    (MODEL, "gold", "r1"): {"r1": 0.62, "r2": 0.38},
    (MODEL, "batch", "r1"): {"r1": 0.15, "r2": 0.85},
    (MODEL, "gold", "r2"): {"r1": 0.3, "r2": 0.7},
}
PER_FLOW = 200
TOLERANCE = 0.05


@pytest.fixture
def box(tmp_path: Path) -> Iterator[GatewayBox]:
    yield from gateway_box(tmp_path)


def _headers(tier: str, origin: str) -> dict[str, str]:
    # x-origin-region (ORIGIN_HEADER): what the routes match and Traefik's origin_region label
    return {"x-tier": tier, "x-tenant-id": "acme", ORIGIN_HEADER: origin}


def test_the_split_per_backend_follows_the_plans_routes(box: GatewayBox) -> None:
    cluster = Cluster.connect(box.kubeconfig, timeout=20)
    try:
        serve_model(box, cluster)
        model = LLMModel.model_validate(model_doc())
        table = routing_table(fleet_plan(routing=PLAN_ROUTING))
        local = frozenset(REGIONS)  # the regions this cluster hosts (actuate's _routes_in)
        routes = render.render_httproutes(
            model, [e for e in table.for_model(MODEL) if e.origin in local],
            namespace=NAMESPACE, parent_refs=[ParentRef(name=GATEWAY)],
            policy_namespace=NAMESPACE, tier_header="x-tier", tenant_header="x-tenant-id",
            local_regions=local, match_origin=len(local) > 1, total=table.total,
        )  # fmt: skip
        for route in routes:
            cluster.apply(route)
        for route in routes:
            name = route["metadata"]["name"]
            wait_for(lambda n=name: route_accepted(cluster, n), 60,
                     f"HTTPRoute {name} accepted\n{box.logs()}")  # fmt: skip
        wait_for(lambda: complete(box.router, _headers("gold", "r1")) == 200, 60,
                 f"a completion through the router\n{box.logs()}")  # fmt: skip

        def served(text: str, region: str, tier: str, origin: str) -> float:
            svc = render.service_name(MODEL, region)
            return counter(
                text, "traefik_service_requests_total", code="200", tier=tier,
                origin_region=origin, service=lambda s, n=svc: f"-{n}-" in s,
            )  # fmt: skip

        def scrape() -> str:
            with urllib.request.urlopen(f"{box.admin}/metrics", timeout=5) as r:
                return r.read().decode()

        before = scrape()
        worst = 0.0
        for entry in table.entries:
            codes = [complete(box.router, _headers(entry.tier, entry.origin))
                     for _ in range(PER_FLOW)]  # fmt: skip
            assert codes == [200] * PER_FLOW, entry
            after = scrape()
            got = {
                r: served(after, r, entry.tier, entry.origin)
                - served(before, r, entry.tier, entry.origin)
                for r in REGIONS
            }
            before = after
            assert sum(got.values()) == PER_FLOW, (entry, got)
            total = sum(w for _, w in entry.weights)
            for region, w in entry.weights:
                err = abs(got.get(region, 0.0) - PER_FLOW * w / total) / PER_FLOW
                worst = max(worst, err)
                assert err <= TOLERANCE, (entry, got)
        print(f"\nper-backend split vs the plan's route weights ({len(table.entries)} flows x "
              f"{PER_FLOW} requests): largest error {worst:.2%} of a flow's requests")  # fmt: skip
    finally:
        cluster.close()
