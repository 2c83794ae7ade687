"""The fleet in a box's Gateway API data plane (issue 14): Traefik v3.6 (hack/traefik, built by
``bash hack/fleet.sh build traefik``) with its Kubernetes Gateway provider, started by
``FLEET_TRAEFIK=1 hack/fleet.sh up``.

Not in CI, and not collected by a plain ``pytest`` (the file name does not match ``test_*.py``):
Traefik's cold build takes far longer than hack/setup.sh's budget allows (see
hack/traefik/README.md). Run it by path once the binary is built::

    bash hack/fleet.sh build traefik
    python -m pytest tests/integration/box/traefik_gateway.py

The operator's own HTTPRoute (``render.render_httproutes``: the model header plus the tier or
tenant header, weighted backendRefs to the region Services r1 and r2, one emulator pod each)
attached to the fleet's Gateway; 200 matching requests through Traefik split as the weights
say (Traefik's weighted round robin is earliest-deadline-first, deterministic: within 5% of
the requests, well inside a binomial 4-sigma bound too), requests for another model or with no
model header get 404 and reach no emulator, and Traefik's /metrics carries the tenant, tier
and origin_region labels from the x-tenant-id, x-tier and x-origin-region headers. Traefik
sends to the Services' ClusterIPs (nativeLBByDefault), where the harness listens, never to
kwok's fake pod IPs in the EndpointSlices.

Its own control plane (hack/fleet.sh up on free ports and a random loopback Service range),
as test_fleet_box.py."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmfleet.api import KINDS
from llmfleet.api.crdgen import crd_for
from llmfleet.api.model import LLMModel
from llmfleet.api.policy import ParentRef
from llmfleet.api.region import NodePool
from llmfleet.kube import render
from llmfleet.kube.client import Cluster
from llmfleet.routing.table import MODEL_HEADER, RouteEntry
from support.fleetbox import NAMESPACE, ROOT, FleetBox, wait_for

TRAEFIK = ROOT / "hack" / "bin" / "traefik"
GATEWAY = "llmfleet-gateway"
API = "llmfleet.dev/v1alpha1"
SERVED = "org/tiny"
WEIGHTS = (("r1", 700), ("r2", 300))
REQUESTS = 200
HEADERS = {
    MODEL_HEADER: SERVED,
    "x-tier": "gold",
    "x-tenant-id": "acme",
    "x-origin-region": "r1",
    "Content-Type": "application/json",
}


class Fleet(FleetBox):
    log_names = ("traefik", "harness", "kwok", "kube-scheduler")

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, ports=11)
        port = self.port
        self.env.update({
            "FLEET_PROMETHEUS": "0",
            "FLEET_TRAEFIK": "1",
            "FLEET_GATEWAY_PORT": str(port + 5),
            "FLEET_TRAEFIK_ADMIN_PORT": str(port + 6),
            "FLEET_ROUTER_PORT": str(port + 7),
            "FLEET_ROUTER_METRICS_PORT": str(port + 8),
            "FLEET_GATEWAY": GATEWAY,
        })  # fmt: skip
        self.gateway = f"http://127.0.0.1:{port + 5}"
        self.admin = f"http://127.0.0.1:{port + 6}"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    if not TRAEFIK.exists():
        pytest.fail(f"no {TRAEFIK}: build it first (bash hack/fleet.sh build traefik)")
    f = Fleet(tmp_path / "fleet")
    up = f.run("up", timeout=300)
    try:
        assert up.returncode == 0, f"fleet.sh up failed:\n{up.stdout}\n{up.stderr}\n{f.logs()}"
        assert f"traefik:     {f.gateway} (Gateway listener)" in up.stdout, up.stdout
        yield f
    finally:
        down = f.run("down", timeout=120)
        assert down.returncode == 0, down.stderr


def _model() -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "LLMModel",
        "metadata": {"name": "tiny", "namespace": NAMESPACE},
        "spec": {
            "servedModelName": SERVED,
            "runtime": {"port": 8000},
            "profiles": [
                {
                    "gpuType": "G",
                    "gpusPerReplica": 1,
                    "prefillTokensPerSecond": 50000,
                    "decodeTokensPerSecond": 4000,
                    "maxConcurrentSequences": 8,
                    "loadSeconds": 30,
                }
            ],
        },
    }


def _complete(base: str, headers: dict[str, str]) -> int:
    body = json.dumps({"model": SERVED, "prompt": "a b", "max_tokens": 1}).encode()
    req = urllib.request.Request(f"{base}/v1/completions", data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            json.loads(resp.read())
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return e.code


def _successes(backend: str) -> float:
    """The emulator's vllm:request_success_total, all finished reasons."""
    with urllib.request.urlopen(f"http://{backend}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:request_success_total{")
    )


def _labels(sample: str) -> dict[str, str]:
    inner = sample[sample.index("{") + 1 : sample.rindex("}")]
    out = {}
    for part in inner.split('",'):
        k, _, v = part.partition("=")
        out[k.strip()] = v.strip().strip('"')
    return out


def _counter(text: str, name: str, **want: str | Callable[[str], bool]) -> float:
    """The sum of the samples of counter ``name`` whose labels match ``want`` (a value, or a
    predicate on the label's value)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        lab = _labels(line)
        if all((w(lab.get(k, "")) if callable(w) else lab.get(k) == w) for k, w in want.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _route_accepted(cluster: Cluster, name: str) -> bool:
    route = cluster.get(render.GATEWAY_VERSION, "HTTPRoute", name, NAMESPACE)
    for parent in (route or {}).get("status", {}).get("parents", []):
        conds = {c["type"]: c["status"] for c in parent.get("conditions", [])}
        if parent["parentRef"]["name"] == GATEWAY:
            return conds.get("Accepted") == "True" and conds.get("ResolvedRefs") == "True"
    return False


def test_weighted_httproute_through_traefik(fleet: Fleet) -> None:
    cluster = Cluster.connect(fleet.kubeconfig, timeout=20)
    try:
        docs = [crd_for(k) for k in KINDS]
        cluster.apply_all(docs)
        cluster.wait_crds_established([d["metadata"]["name"] for d in docs])
        cluster.ensure_namespace(NAMESPACE)
        cluster.apply(_model())
        model = LLMModel.model_validate(_model())
        pool = NodePool.model_validate(
            {"name": "gpu", "gpuType": "G", "gpusPerNode": 8, "pricePerNodeHour": 8.0,
             "maxNodes": 1, "provisioningSeconds": 60}
        )  # fmt: skip
        services: dict[str, str] = {}  # region -> http://ClusterIP:port
        for region, _ in WEIGHTS:
            node = render.render_static_node(region, pool, 0)
            cluster.apply(node)
            cluster.apply(
                render.render_static_node_status(node["metadata"]["name"], 8),
                subresource="status",
            )
            cluster.apply(render.render_deployment(model, region, pool, 1, NAMESPACE))
            svc = cluster.apply(render.render_service(model, region, NAMESPACE))
            services[region] = (
                f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"
            )

        def backend_of(url: str) -> str | None:
            lst = [x for x in fleet.state().get("listeners", []) if x["url"] == url]
            have: list[str] = lst[0]["backends"] if lst else []
            return have[0] if len(have) == 1 else None

        backends = {
            region: wait_for(
                lambda u=url: backend_of(u), 90, f"one emulator behind {url}\n{fleet.logs()}"
            )
            for region, url in services.items()
        }
        assert len(set(backends.values())) == 2

        # the operator's HTTPRoute for one (origin, tier) entry: rule 1 matches the model header
        # plus the tier or the tenant header, rule 2 the model header alone (the same split)
        entry = RouteEntry(
            model="tiny", tier="gold", origin="r1", weights=WEIGHTS,
            fractions=tuple((r, w / 1000) for r, w in WEIGHTS), tenants=("acme",),
        )  # fmt: skip
        (route,) = render.render_httproutes(
            model, [entry], namespace=NAMESPACE, parent_refs=[ParentRef(name=GATEWAY)],
            policy_namespace=NAMESPACE, tier_header="x-tier", tenant_header="x-tenant-id",
            local_regions=frozenset(r for r, _ in WEIGHTS), match_origin=False,
        )  # fmt: skip
        assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [700, 300]
        cluster.apply(route)
        name = route["metadata"]["name"]
        wait_for(
            lambda: _route_accepted(cluster, name), 60,
            f"HTTPRoute {name} Accepted + ResolvedRefs by Traefik\n{fleet.logs()}",
        )  # fmt: skip
        wait_for(
            lambda: _complete(fleet.gateway, HEADERS) == 200, 60,
            f"a completion through the gateway\n{fleet.logs()}",
        )  # fmt: skip

        before = {r: _successes(b) for r, b in backends.items()}
        codes = [_complete(fleet.gateway, HEADERS) for _ in range(REQUESTS)]
        assert codes == [200] * REQUESTS
        got = {r: _successes(b) - before[r] for r, b in backends.items()}
        assert sum(got.values()) == REQUESTS
        total = sum(w for _, w in WEIGHTS)
        for region, w in WEIGHTS:
            p = w / total
            sigma = math.sqrt(REQUESTS * p * (1 - p))
            assert abs(got[region] - REQUESTS * p) <= 0.05 * REQUESTS, (got, WEIGHTS)
            assert abs(got[region] - REQUESTS * p) <= 4 * sigma, (got, WEIGHTS)

        # header mismatches: no rule matches, Traefik answers 404, no emulator sees them
        other = {**HEADERS, MODEL_HEADER: "org/other"}
        no_model = {k: v for k, v in HEADERS.items() if k != MODEL_HEADER}
        assert [_complete(fleet.gateway, h) for h in (other, no_model) for _ in range(5)] == [
            404
        ] * 10
        assert {r: _successes(b) - before[r] for r, b in backends.items()} == got

        # Traefik's Prometheus metrics carry the header labels: per backendRef Service, the 200s
        # of (tenant acme, tier gold, origin r1) are what its emulator served (the 200 requests
        # and the readiness probes: the emulators get no other traffic); the 404s on the
        # entrypoint counter
        with urllib.request.urlopen(f"{fleet.admin}/metrics", timeout=5) as r:
            text = r.read().decode()
        flow = {"tenant": "acme", "tier": "gold", "origin_region": "r1"}
        served = {r: _successes(b) for r, b in backends.items()}
        for region, count in served.items():
            svc_name = render.service_name("tiny", region)
            assert _counter(
                text, "traefik_service_requests_total", code="200", **flow,
                service=lambda s, n=svc_name: f"-{n}-" in s,
            ) == count, text  # fmt: skip
        assert _counter(
            text, "traefik_router_requests_total", code="200", **flow,
            router=lambda s: render.route_name("tiny") in s,
        ) == sum(served.values()), text  # fmt: skip
        assert _counter(text, "traefik_entrypoint_requests_total", code="404", **flow) == 10, text
    finally:
        cluster.close()
