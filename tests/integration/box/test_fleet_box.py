"""A fleet in a box (hack/fleet.sh): a Region-labelled kwok Node, the operator's Deployment (2
replicas) and Service for a tiny model, the pods Running through kube-scheduler + kwok, and
completions through the Service's ClusterIP answered by the harness's emulators, spread over
both (never the fake pod IPs); Prometheus scrapes them; scaling down stops them.

Its own control plane (hack/fleet.sh up on free ports and a random loopback Service range), not
the session one: kwok manages every Node of the cluster it runs against. Needs the binaries
hack/setup.sh builds (hack/fleet.sh build) and Prometheus (hack/tools.sh prometheus)."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmfleet.api import KINDS
from llmfleet.api.crdgen import crd_for
from llmfleet.api.model import LLMModel
from llmfleet.api.region import NodePool
from llmfleet.kube import render
from llmfleet.kube.client import Cluster
from support.fleetbox import NAMESPACE, FleetBox, wait_for

API = "llmfleet.dev/v1alpha1"


class Fleet(FleetBox):
    """The plain box: control plane, scheduler, kwok, harness and Prometheus."""


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path / "fleet")
    up = f.run("up", timeout=300)
    try:
        assert up.returncode == 0, f"fleet.sh up failed:\n{up.stdout}\n{up.stderr}"
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
            "servedModelName": "org/tiny",
            "runtime": {"port": 8000},
            "profiles": [
                {
                    "gpuType": "G",
                    "gpusPerReplica": 1,
                    "prefillTokensPerSecond": 5000,
                    "decodeTokensPerSecond": 400,
                    "maxConcurrentSequences": 4,
                    "loadSeconds": 30,
                }
            ],
        },
    }


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def _successes(backend: str) -> float:
    """The emulator's vllm:request_success_total, all finished reasons."""
    with urllib.request.urlopen(f"http://{backend}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:request_success_total{")
    )


def test_completion_through_the_cluster_ip_reaches_the_emulator(fleet: Fleet) -> None:
    cluster = Cluster.connect(fleet.kubeconfig, timeout=20)
    try:
        docs = [crd_for(k) for k in KINDS]
        cluster.apply_all(docs)
        cluster.wait_crds_established([d["metadata"]["name"] for d in docs])
        cluster.ensure_namespace(NAMESPACE)
        model_doc = cluster.apply(_model())
        model = LLMModel.model_validate(_model())
        pool = NodePool.model_validate(
            {"name": "gpu", "gpuType": "G", "gpusPerNode": 8, "pricePerNodeHour": 8.0,
             "maxNodes": 2, "provisioningSeconds": 60}
        )  # fmt: skip
        # a Region-labelled Node with 8 GPUs, as the operator writes a static pool's Nodes
        node = render.render_static_node("r1", pool, 0)
        cluster.apply(node)
        cluster.apply(
            render.render_static_node_status(node["metadata"]["name"], 8), subresource="status"
        )
        cluster.apply(render.render_deployment(model, "r1", pool, 2, NAMESPACE))
        svc = cluster.apply(render.render_service(model, "r1", NAMESPACE))
        assert model_doc["metadata"]["name"] == "tiny"

        def running_pods() -> list[dict[str, Any]]:
            pods = cluster.list("v1", "Pod", NAMESPACE, label_selector=render.LABEL_MODEL)
            ok = [p for p in pods if p["status"].get("phase") == "Running"]
            return ok if len(ok) == 2 else []

        pods = wait_for(running_pods, timeout=60, what=f"2 Running pods\n{fleet.logs()}")
        assert {p["spec"]["nodeName"] for p in pods} == {node["metadata"]["name"]}
        pod_ips = {p["status"]["podIP"] for p in pods}

        ip, port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["port"]
        url = f"http://{ip}:{port}"

        def backends(n: int) -> list[str] | None:
            lst = [x for x in fleet.state().get("listeners", []) if x["url"] == url]
            have: list[str] = lst[0]["backends"] if lst else []
            return have if len(have) == n else None

        behind = wait_for(lambda: backends(2), 60, f"2 backends behind {url}\n{fleet.logs()}")
        assert all(b.startswith("127.0.0.1:") for b in behind)
        assert not {b.split(":")[0] for b in behind} & pod_ips  # kwok's pod IPs get nothing

        for _ in range(4):
            out = _post(
                f"{url}/v1/completions", {"model": "org/tiny", "prompt": "a b c", "max_tokens": 5}
            )
            assert out["model"] == "org/tiny"
            assert out["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
            assert out["choices"][0]["finish_reason"] == "length"
        # spread over both emulators (round-robin per connection)
        assert [_successes(b) for b in behind] == [2.0, 2.0]

        # Prometheus scrapes the emulators through the file_sd, with the pods' target labels
        def scraped() -> list[dict[str, Any]]:
            q = urllib.parse.quote('vllm:request_success_total{model_name="tiny"}')
            with urllib.request.urlopen(
                f"{fleet.prometheus}/api/v1/query?query={q}", timeout=5
            ) as r:
                result: list[dict[str, Any]] = json.loads(r.read())["data"]["result"]
            ok = [s for s in result if float(s["value"][1]) >= 2]
            return ok if len(ok) == 2 else []

        series = wait_for(scraped, timeout=30, what="the emulators' series in Prometheus")
        assert {s["metric"]["region"] for s in series} == {"r1"}
        assert {s["metric"]["pod"] for s in series} == {p["metadata"]["name"] for p in pods}

        # pods go: their emulators stop and leave the Service
        cluster.apply(render.render_deployment(model, "r1", pool, 1, NAMESPACE))
        wait_for(lambda: backends(1), timeout=30, what="one backend left")
        assert len(fleet.state()["emulators"]) == 1
        cluster.apply(render.render_deployment(model, "r1", pool, 0, NAMESPACE))
        wait_for(lambda: not fleet.state().get("emulators"), timeout=30, what="emulators stopped")
        assert backends(0) == []
    finally:
        cluster.close()
