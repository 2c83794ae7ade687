"""Rendering desired manifests (pure)."""

from __future__ import annotations

import pytest

from llmfleet.api.model import LLMModel
from llmfleet.api.policy import ParentRef
from llmfleet.api.region import NodePool, ObjectRef
from llmfleet.kube.render import (
    MAX_RULES_PER_ROUTE,
    dns_name,
    render_deployment,
    render_httproutes,
    render_karpenter_limits,
    render_machine_deployment_replicas,
    render_service,
    render_static_node,
)
from llmfleet.routing import routing_table
from support.builders import sample
from support.plans import fleet_plan


def _model(name: str = "llama-3-3-70b") -> LLMModel:
    doc = sample("LLMModel", name)
    doc["metadata"]["namespace"] = "fleet"
    return LLMModel.from_wire(doc)


def _pool(**kw) -> NodePool:
    base = {
        "name": "h100-spot",
        "gpu_type": "H100-80GB",
        "gpus_per_node": 8,
        "capacity_type": "spot",
        "spot_interruption_rate_per_hour": 0.05,
        "price_per_node_hour": 20,
        "max_nodes": 8,
    }
    return NodePool(**(base | kw))


def test_dns_name_is_short_unique_and_starts_with_a_letter():
    assert dns_name("llama", "us-east", "h100") == "llama-us-east-h100"
    assert dns_name("1b", "x") == "x-1b-x"
    long_a, long_b = dns_name("m" * 60, "region-a"), dns_name("m" * 60, "region-b")
    assert len(long_a) == 63 and long_a != long_b


def test_deployment_runs_vllm_on_the_pool_with_labels_for_metrics():
    m = _model()
    d = render_deployment(m, "eu-west", _pool(), 3, "fleet")
    assert d["metadata"]["name"] == "llama-3-3-70b-eu-west-h100-spot"
    assert d["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "llmfleet"
    spec = d["spec"]
    assert spec["replicas"] == 3
    pod = spec["template"]
    labels = pod["metadata"]["labels"]
    assert labels["model_name"] == "llama-3-3-70b" and labels["capacity_type"] == "spot"
    assert labels["llmfleet.dev/pool"] == "h100-spot" and labels["region"] == "eu-west"
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert pod["spec"]["nodeSelector"] == {
        "llmfleet.dev/region": "eu-west",
        "llmfleet.dev/pool": "h100-spot",
    }
    c = pod["spec"]["containers"][0]
    gpus = next(p.gpus_per_replica for p in m.spec.profiles if p.gpu_type == "H100-80GB")
    assert c["resources"]["limits"]["nvidia.com/gpu"] == str(gpus)
    assert c["command"] == ["vllm", "serve"]
    assert c["args"][0] == m.spec.served_model_name
    assert c["args"][-1] == m.spec.runtime.args[-1]  # the model's own args come last and win
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert any(t.get("value") == "spot" for t in pod["spec"]["tolerations"])


def test_deployment_needs_a_profile_for_the_gpu_type():
    with pytest.raises(ValueError, match="no gpuType 'L4'"):
        render_deployment(_model(), "eu-west", _pool(gpu_type="L4"), 1, "fleet")


def test_service_selects_every_pool_of_the_region():
    s = render_service(_model(), "eu-west", "fleet")
    assert s["metadata"]["name"] == "llama-3-3-70b-eu-west"
    assert s["spec"]["selector"] == {
        "llmfleet.dev/model": "llama-3-3-70b",
        "llmfleet.dev/region": "eu-west",
    }


def _routes(local, match_origin, origins=("us", "eu")):
    m = _model()
    plan = fleet_plan(
        routing={(m.name, t, o): {"us": 0.5, "eu": 0.5} for o in origins for t in ("fast", "batch")}
    )
    return render_httproutes(
        m,
        routing_table(plan).for_model(m.name),
        namespace="fleet",
        parent_refs=[ParentRef(name="gw")],
        policy_namespace="ops",
        tier_header="x-tier",
        tenant_header="x-tenant",
        local_regions=frozenset(local),
        match_origin=match_origin,
    )


def test_routes_use_services_locally_and_service_imports_across_clusters():
    (route,) = _routes({"us"}, match_origin=False, origins=("us",))
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw", "namespace": "ops"}
    ]
    rule = route["spec"]["rules"][0]
    names = [h["name"] for h in rule["matches"][0]["headers"]]
    assert names == ["x-gateway-model-name", "x-tier"]
    refs = {r["name"]: r for r in rule["backendRefs"]}
    assert "kind" not in refs["llama-3-3-70b-us"]
    assert refs["llama-3-3-70b-eu"]["kind"] == "ServiceImport"
    assert sum(r["weight"] for r in rule["backendRefs"]) == 1000
    fallback = route["spec"]["rules"][-1]
    assert [h["name"] for h in fallback["matches"][0]["headers"]] == ["x-gateway-model-name"]


def test_shared_cluster_matches_origin_and_splits_past_16_rules():
    origins = tuple(f"r{i}" for i in range(6))  # 6 x (2 tiers + fallback) = 18 rules
    routes = _routes(set(origins), match_origin=True, origins=origins)
    assert [r["metadata"]["name"] for r in routes] == [
        "llmfleet-llama-3-3-70b",
        "llmfleet-llama-3-3-70b-2",
    ]
    assert len(routes[0]["spec"]["rules"]) == MAX_RULES_PER_ROUTE
    headers = routes[0]["spec"]["rules"][0]["matches"][0]["headers"]
    assert {"type": "Exact", "name": "x-llmfleet-origin", "value": "r0"} in headers


def test_node_pool_patches_own_only_their_field():
    md = render_machine_deployment_replicas(ObjectRef(name="md"), "fleet", 4)
    assert md["metadata"] == {"name": "md", "namespace": "fleet"} and md["spec"] == {"replicas": 4}
    np = render_karpenter_limits(ObjectRef(name="gpu"), 3, 8)
    assert np["spec"] == {"limits": {"nvidia.com/gpu": "24"}}
    node = render_static_node("us-east", _pool(), 2)
    assert node["metadata"]["name"] == "us-east-h100-spot-2"
    assert node["metadata"]["labels"]["llmfleet.dev/capacity-type"] == "spot"
