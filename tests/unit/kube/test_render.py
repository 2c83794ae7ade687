"""Rendering desired manifests (pure)."""

from __future__ import annotations

import re

import pytest

from llmfleet.api.model import LLMModel
from llmfleet.api.policy import ParentRef
from llmfleet.api.region import NodePool, ObjectRef
from llmfleet.kube.render import (
    MAX_RULES_PER_ROUTE,
    deployment_name,
    identity_name,
    label_value,
    node_name,
    ownership_problem,
    render_config_map,
    render_deployment,
    render_httproutes,
    render_karpenter_limits,
    render_machine_deployment_replicas,
    render_service,
    render_static_node,
    route_name,
    service_name,
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


DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def test_the_model_region_join_collision_gets_two_names():
    # LLMModel llama-3-1-8b-us in Region east vs llama-3-1-8b in us-east: the same
    # "llama-3-1-8b-us-east" when joined with "-"; distinct names now
    a, b = ("llama-3-1-8b-us", "east"), ("llama-3-1-8b", "us-east")
    assert service_name(*a) != service_name(*b)
    assert deployment_name(*a, "od") != deployment_name(*b, "od")
    assert node_name("a-b", "c", 0) != node_name("a", "b-c", 0)
    # part 2 of model m vs part 1 of model m-2
    assert route_name("m", 2) != route_name("m-2")
    for name in (service_name(*a), service_name(*b)):
        assert name.startswith("llama-3-1-8b-us-east-") and DNS_1035.match(name), name
    assert service_name(*a) == service_name(*a)  # deterministic


def test_names_are_dns_safe_and_bounded():
    long_model, long_region = "m." * 100 + "x", "r" * 200
    assert len(service_name(long_model, long_region)) <= 63
    assert DNS_1035.match(service_name(long_model, long_region))
    assert len(deployment_name(long_model, long_region, "p" * 63)) <= 63
    assert len(route_name(long_model, 3)) <= 253 and len(node_name(long_region, "p", 12)) <= 253
    assert node_name(long_region, "p", 12).endswith("-12")
    assert service_name(long_model, "a") != service_name(long_model, "b")
    assert identity_name(("1b",), ("1b",)).startswith("x-1b-")
    assert DNS_1035.match(identity_name(("Ü",), ("Ü",)))
    assert label_value("us-east") == "us-east"
    long_label = label_value(long_model)
    assert len(long_label) <= 63 and long_label != label_value(long_model + "y")


def test_ownership_is_the_identity_labels():
    m = _model()
    ours = render_service(m, "eu-west", "fleet")
    assert ownership_problem(ours, ours) is None
    other = render_service(_model("llama-3-1-8b"), "eu-west", "fleet")
    problem = ownership_problem(other, ours)
    assert problem is not None and "llmfleet's for model llama-3-1-8b, region eu-west" in problem
    foreign = {"metadata": {"labels": {"app": "mine"}}}
    assert "not managed by llmfleet" in (ownership_problem(foreign, ours) or "")
    helm = {"metadata": {"labels": {"app.kubernetes.io/managed-by": "Helm"}}}
    assert "managed by 'Helm'" in (ownership_problem(helm, ours) or "")
    cm = render_config_map("llmfleet-routing", "fleet", {"routing.json": "{}"}, component="routing")
    assert cm["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "llmfleet",
        "llmfleet.dev/component": "routing",
    }
    throttling = render_config_map("x", "fleet", {"t": "{}"}, component="throttling")
    assert ownership_problem(throttling, cm) is not None


def test_deployment_runs_vllm_on_the_pool_with_labels_for_metrics():
    m = _model()
    d = render_deployment(m, "eu-west", _pool(), 3, "fleet")
    assert d["metadata"]["name"] == deployment_name("llama-3-3-70b", "eu-west", "h100-spot")
    assert d["metadata"]["name"].startswith("llama-3-3-70b-eu-west-h100-spot-")
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
    assert s["metadata"]["name"] == service_name("llama-3-3-70b", "eu-west")
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
    assert "kind" not in refs[service_name("llama-3-3-70b", "us")]
    assert refs[service_name("llama-3-3-70b", "eu")]["kind"] == "ServiceImport"
    assert sum(r["weight"] for r in rule["backendRefs"]) == 1000
    fallback = route["spec"]["rules"][-1]
    assert [h["name"] for h in fallback["matches"][0]["headers"]] == ["x-gateway-model-name"]


def test_shared_cluster_matches_origin_and_splits_past_16_rules():
    origins = tuple(f"r{i}" for i in range(6))  # 6 x (2 tiers + fallback) = 18 rules
    routes = _routes(set(origins), match_origin=True, origins=origins)
    assert [r["metadata"]["name"] for r in routes] == [
        route_name("llama-3-3-70b"),
        route_name("llama-3-3-70b", 2),
    ]
    assert routes[1]["metadata"]["name"].startswith("llmfleet-llama-3-3-70b-2-")
    assert len(routes[0]["spec"]["rules"]) == MAX_RULES_PER_ROUTE
    headers = routes[0]["spec"]["rules"][0]["matches"][0]["headers"]
    assert {"type": "Exact", "name": "x-origin-region", "value": "r0"} in headers


def test_node_pool_patches_own_only_their_field():
    md = render_machine_deployment_replicas(ObjectRef(name="md"), "fleet", 4)
    assert md["metadata"] == {"name": "md", "namespace": "fleet"} and md["spec"] == {"replicas": 4}
    np = render_karpenter_limits(ObjectRef(name="gpu"), 3, 8)
    assert np["spec"] == {"limits": {"nvidia.com/gpu": "24"}}
    node = render_static_node("us-east", _pool(), 2)
    assert node["metadata"]["name"] == node_name("us-east", "h100-spot", 2)
    assert node["metadata"]["name"].startswith("us-east-h100-spot-")
    assert node["metadata"]["labels"]["llmfleet.dev/capacity-type"] == "spot"
