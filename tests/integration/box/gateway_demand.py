"""Demand at the gateway through the whole box (issue 14): load generator -> router (gen_ai
metrics) -> Traefik -> Service ClusterIP -> harness -> emulator, the operator's HTTPRoute in
Traefik; the check itself is ``demandcheck.check_gateway_demand`` (CI runs it without Traefik:
test_gateway_demand.py).

Needs Traefik (``bash hack/fleet.sh build traefik``, not in CI: see hack/traefik/README.md) and
Prometheus (``bash hack/tools.sh prometheus``). Run it by path::

    python -m pytest tests/integration/box/gateway_demand.py
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from demandcheck import ORIGINS, TENANTS, TIERS, check_gateway_demand
from gatewaybox import (
    GATEWAY,
    NAMESPACE,
    SERVED,
    GatewayBox,
    complete,
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
from llmfleet.routing.table import RouteEntry


@pytest.fixture
def box(tmp_path: Path) -> Iterator[GatewayBox]:
    yield from gateway_box(tmp_path, scrape_interval="500ms")


def test_the_envoy_ai_gateway_profile_reads_what_the_load_generator_sent(box: GatewayBox) -> None:
    cluster = Cluster.connect(box.kubeconfig, timeout=20)
    try:
        serve_model(box, cluster)
        model = LLMModel.model_validate(model_doc())
        entry = RouteEntry(
            model="tiny", tier="gold", origin="box-east", weights=(("r1", 500), ("r2", 500)),
            fractions=(("r1", 0.5), ("r2", 0.5)), tenants=TENANTS,
        )  # fmt: skip
        (route,) = render.render_httproutes(
            model, [entry], namespace=NAMESPACE, parent_refs=[ParentRef(name=GATEWAY)],
            policy_namespace=NAMESPACE, tier_header="x-tier", tenant_header="x-tenant-id",
            local_regions=frozenset(("r1", "r2")), match_origin=False,
        )  # fmt: skip
        cluster.apply(route)
        wait_for(lambda: route_accepted(cluster, route["metadata"]["name"]), 60,
                 f"the HTTPRoute accepted\n{box.logs()}")  # fmt: skip
        # the router sets the model header the route matches
        probe = {"x-tenant-id": TENANTS[0], "x-tier": TIERS[0], "x-origin-region": ORIGINS[0]}
        wait_for(lambda: complete(box.router, probe) == 200, 60,
                 f"a completion through the router\n{box.logs()}")  # fmt: skip
        assert complete(box.traefik, {}) == 404  # without the header Traefik has no route

        print("\n" + check_gateway_demand(box.router, SERVED, box))
    finally:
        cluster.close()
