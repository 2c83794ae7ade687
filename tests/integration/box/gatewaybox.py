"""The fleet in a box with its gateway layer, for the gateway's tests: ``hack/fleet.sh up``
with Traefik (``FLEET_TRAEFIK=1``), the router in front of it (the gen_ai demand metrics) and
Prometheus scraping both, on a free port block and a random loopback Service range (so it
never collides with another box running at the same time); a tiny model served in the
regions ``r1`` and ``r2`` (one emulator each, behind their Services' ClusterIPs); helpers to
attach the operator's HTTPRoutes and to query Prometheus."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from llmfleet.api import KINDS
from llmfleet.api.crdgen import crd_for
from llmfleet.api.model import LLMModel
from llmfleet.api.region import NodePool
from llmfleet.kube import render
from llmfleet.kube.client import Cluster
from support.fleetbox import NAMESPACE, ROOT, FleetBox, wait_for
from support.promtools import scraped_after

TRAEFIK = ROOT / "hack" / "bin" / "traefik"
GATEWAY = "llmfleet-gateway"
API = "llmfleet.dev/v1alpha1"
MODEL = "tiny"
SERVED = "org/tiny"
REGIONS = ("r1", "r2")


class GatewayBox(FleetBox):
    """``hack/fleet.sh up DIR`` with Traefik, the router and Prometheus on ports of its own."""

    log_names = ("router", "traefik", "prometheus", "harness", "kwok", "kube-scheduler")

    def __init__(self, workdir: Path, scrape_interval: str = "1s") -> None:
        super().__init__(workdir, ports=11, scrape_interval=scrape_interval)
        port = self.port
        self.env.update({
            "FLEET_PROMETHEUS": "1",
            "FLEET_TRAEFIK": "1",
            "FLEET_GATEWAY_PORT": str(port + 5),
            "FLEET_TRAEFIK_ADMIN_PORT": str(port + 6),
            "FLEET_ROUTER_PORT": str(port + 7),
            "FLEET_ROUTER_METRICS_PORT": str(port + 8),
            "FLEET_OPERATOR": "0",
            "FLEET_GATEWAY": GATEWAY,
        })  # fmt: skip
        self.traefik = f"http://127.0.0.1:{port + 5}"
        self.admin = f"http://127.0.0.1:{port + 6}"
        self.router = f"http://127.0.0.1:{port + 7}"
        self.router_metrics = f"http://127.0.0.1:{port + 8}/metrics"

    # ------------------------------------------------------------------ Prometheus

    def query(self, promql: str, at: float) -> list[dict[str, Any]]:
        """An instant query at Unix time ``at``: the result vector."""
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql, "time": f"{at:.3f}"}
        )
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.loads(r.read())
        assert doc["status"] == "success", doc
        return doc["data"]["result"]  # type: ignore[no-any-return]

    def scraped_after(self, job: str, t: float) -> bool:
        """Prometheus scraped every target of ``job`` after Unix time ``t``."""
        with urllib.request.urlopen(f"{self.prometheus}/api/v1/targets", timeout=10) as r:
            targets = json.loads(r.read())["data"]["activeTargets"]
        return scraped_after(targets, job, t)


def gateway_box(tmp_path: Path, scrape_interval: str = "1s") -> Iterator[GatewayBox]:
    """The fixture body: up, yield, down."""
    if not TRAEFIK.exists():
        raise AssertionError(f"no {TRAEFIK}: build it first (bash hack/fleet.sh build traefik)")
    box = GatewayBox(tmp_path / "fleet", scrape_interval)
    up = box.run("up", timeout=300)
    try:
        assert up.returncode == 0, f"fleet.sh up failed:\n{up.stdout}\n{up.stderr}\n{box.logs()}"
        assert f"gateway:     {box.router} (the router" in up.stdout, up.stdout
        yield box
    finally:
        down = box.run("down", timeout=120)
        assert down.returncode == 0, down.stderr


def model_doc() -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "LLMModel",
        "metadata": {"name": MODEL, "namespace": NAMESPACE},
        "spec": {
            "servedModelName": SERVED,
            "runtime": {"port": 8000},
            "profiles": [
                {
                    "gpuType": "G",
                    "gpusPerReplica": 1,
                    "prefillTokensPerSecond": 200000,
                    "decodeTokensPerSecond": 20000,
                    "maxConcurrentSequences": 64,
                    "loadSeconds": 30,
                }
            ],
        },
    }


def serve_model(
    box: GatewayBox, cluster: Cluster, regions: Sequence[str] = REGIONS
) -> dict[str, str]:
    """The CRDs, the model and, per region, a kwok Node, a 1-replica Deployment and its
    Service; waits until the harness has one emulator behind each Service. Region -> the
    emulator's host:port."""
    docs = [crd_for(k) for k in KINDS]
    cluster.apply_all(docs)
    cluster.wait_crds_established([d["metadata"]["name"] for d in docs])
    cluster.ensure_namespace(NAMESPACE)
    cluster.apply(model_doc())
    model = LLMModel.model_validate(model_doc())
    pool = NodePool.model_validate(
        {"name": "gpu", "gpuType": "G", "gpusPerNode": 8, "pricePerNodeHour": 8.0,
         "maxNodes": 1, "provisioningSeconds": 60}
    )  # fmt: skip
    urls: dict[str, str] = {}
    for region in regions:
        node = render.render_static_node(region, pool, 0)
        cluster.apply(node)
        cluster.apply(
            render.render_static_node_status(node["metadata"]["name"], 8), subresource="status"
        )
        cluster.apply(render.render_deployment(model, region, pool, 1, NAMESPACE))
        svc = cluster.apply(render.render_service(model, region, NAMESPACE))
        urls[region] = f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"

    def backend_of(url: str) -> str | None:
        lst = [x for x in box.state().get("listeners", []) if x["url"] == url]
        have: list[str] = lst[0]["backends"] if lst else []
        return have[0] if len(have) == 1 else None

    return {
        region: wait_for(
            lambda u=url: backend_of(u), 90, f"one emulator behind {url}\n{box.logs()}"
        )
        for region, url in urls.items()
    }


def route_accepted(cluster: Cluster, name: str) -> bool:
    route = cluster.get(render.GATEWAY_VERSION, "HTTPRoute", name, NAMESPACE)
    for parent in (route or {}).get("status", {}).get("parents", []):
        conds = {c["type"]: c["status"] for c in parent.get("conditions", [])}
        if parent["parentRef"]["name"] == GATEWAY:
            return conds.get("Accepted") == "True" and conds.get("ResolvedRefs") == "True"
    return False


def complete(base: str, headers: dict[str, str], max_tokens: int = 1) -> int:
    """One non-streaming completion; its HTTP status."""
    body = json.dumps({"model": SERVED, "prompt": "a b", "max_tokens": max_tokens}).encode()
    req = urllib.request.Request(
        f"{base}/v1/completions", data=body,
        headers={**headers, "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            json.loads(resp.read())
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return e.code


def labels_of(sample: str) -> dict[str, str]:
    inner = sample[sample.index("{") + 1 : sample.rindex("}")]
    out = {}
    for part in inner.split('",'):
        k, _, v = part.partition("=")
        out[k.strip()] = v.strip().strip('"')
    return out


def counter(text: str, name: str, **want: str | Callable[[str], bool]) -> float:
    """The sum of the samples of counter ``name`` whose labels match ``want`` (a value, or a
    predicate on the label's value)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        lab = labels_of(line)
        if all((w(lab.get(k, "")) if callable(w) else lab.get(k) == w) for k, w in want.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
