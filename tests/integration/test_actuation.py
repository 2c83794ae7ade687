"""Actuation against a real kube-apiserver with the upstream Gateway API, Cluster API and
Karpenter CRDs (pinned Go modules, fetched by ``hack/tools.sh crds``)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmfleet.api.model import LLMModel
from llmfleet.api.policy import FleetPolicy
from llmfleet.api.references import FleetSnapshot
from llmfleet.api.region import Region
from llmfleet.kube.actuate import RegionClusters, actuate, observe, remove_region
from llmfleet.kube.client import Cluster
from llmfleet.kube.render import deployment_name, route_name, service_name
from support.builders import sample
from support.plans import fleet_plan

ROOT = Path(__file__).resolve().parents[2]
THIRD_PARTY = {
    "gateway-api": ["gateway.networking.k8s.io_httproutes.yaml"],
    "cluster-api": ["cluster.x-k8s.io_machinedeployments.yaml"],
    "karpenter": ["karpenter.sh_nodepools.yaml"],
}
MODEL = "llama-3-1-8b"


def _tools_dir(name: str) -> Path:
    out = subprocess.run(
        ["bash", str(ROOT / "hack/tools.sh"), "dir", name],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return Path(out.stdout.strip())


@pytest.fixture(scope="module")
def upstream_crds(cluster: Cluster) -> None:
    names = []
    for name, files in THIRD_PARTY.items():
        for f in files:
            path = _tools_dir(name) / f
            assert path.exists(), f"{path} missing: run `bash hack/tools.sh crds`"
            doc = yaml.safe_load(path.read_text())
            cluster.apply(doc)
            names.append(doc["metadata"]["name"])
    cluster.wait_crds_established(names)


def _region(name: str, pools: list[dict[str, Any]], cluster: dict | None = None) -> Region:
    return Region.from_wire(
        {
            "apiVersion": "llmfleet.dev/v1alpha1",
            "kind": "Region",
            "metadata": {"name": name},
            "spec": {"location": name, "cluster": cluster or {"mode": "local"}, "pools": pools},
        }
    )


def _pool(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "gpuType": "H100-80GB",
        "gpusPerNode": 8,
        "pricePerNodeHour": 50,
        "maxNodes": 10,
        **({"capacityType": "spot", "spotInterruptionRatePerHour": 0.05} if "spot" in name else {}),
        **extra,
    }


def _policy(namespace: str) -> FleetPolicy:
    doc = sample("FleetPolicy")
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["ingress"]["parentRefs"] = [{"name": "llm-gateway"}]
    return FleetPolicy.from_wire(doc)


def _model(namespace: str) -> LLMModel:
    doc = sample("LLMModel", MODEL)
    doc["metadata"]["namespace"] = namespace
    return LLMModel.from_wire(doc)


@pytest.fixture
def fleet(namespace: str) -> tuple[FleetSnapshot, str, str]:
    a, b = f"a-{namespace}", f"b-{namespace}"
    snap = FleetSnapshot(
        regions=[_region(a, [_pool("od"), _pool("spot")]), _region(b, [_pool("od")])],
        models=[_model(namespace)],
        policies=[_policy(namespace)],
    )
    return snap, a, b


def _plan_up(a: str, b: str):
    return fleet_plan(
        nodes={(a, "od"): 2, (a, "spot"): 1, (b, "od"): 1},
        replicas={(MODEL, a, "od"): 2, (MODEL, a, "spot"): 1, (MODEL, b, "od"): 1},
        routing={
            (MODEL, "fast", a): {a: 0.7, b: 0.3},
            (MODEL, "batch", a): {b: 1.0},
            (MODEL, "fast", b): {b: 1.0},
        },
    )


def _nodes(cluster: Cluster, region: str) -> list[dict[str, Any]]:
    return cluster.list("v1", "Node", label_selector=f"llmfleet.dev/region={region}")


def test_plan_is_applied_in_order_and_reapplying_changes_nothing(
    cluster, upstream_crds, fleet, namespace
):
    snap, a, b = fleet
    policy = snap.policies[0]
    res = actuate({a: cluster, b: cluster}, snap, _plan_up(a, b), policy, namespace)
    assert res.errors == () and res.complete, res
    # 4 nodes, 3 deployments, 2 services, 1 HTTPRoute, 1 ConfigMap
    assert res.changes == 11, res.diff
    kinds = [line.split(":")[0] for line in res.diff]
    assert all("nodes" in ln for ln in res.diff[:4])
    assert res.diff[-2:] == [
        "ConfigMap llmfleet-routing: routing policy updated",
        res.diff[-1],
    ] and res.diff[-1].startswith(f"HTTPRoute {route_name(MODEL)}:"), kinds
    assert {e.reason for e in res.events} >= {"ScaledUpNodes", "ScaledUpReplicas", "UpdatedRouting"}

    nodes = _nodes(cluster, a)
    assert len(nodes) == 3
    spot = next(n for n in nodes if n["metadata"]["labels"]["llmfleet.dev/pool"] == "spot")
    assert spot["metadata"]["labels"]["llmfleet.dev/capacity-type"] == "spot"
    assert spot["status"]["capacity"]["nvidia.com/gpu"] == "8"

    dep = cluster.get("apps/v1", "Deployment", deployment_name(MODEL, a, "od"), namespace)
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]
    assert pod["metadata"]["labels"]["model_name"] == MODEL
    assert pod["metadata"]["labels"]["capacity_type"] == "on-demand"
    assert pod["spec"]["nodeSelector"] == {"llmfleet.dev/region": a, "llmfleet.dev/pool": "od"}
    c = pod["spec"]["containers"][0]
    assert c["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert c["args"][0] == "meta-llama/Llama-3.1-8B-Instruct"
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    spot_dep = cluster.get("apps/v1", "Deployment", deployment_name(MODEL, a, "spot"), namespace)
    assert {
        "key": "llmfleet.dev/capacity-type",
        "operator": "Equal",
        "value": "spot",
        "effect": "NoSchedule",
    } in [
        {k: v for k, v in t.items() if v is not None}
        for t in spot_dep["spec"]["template"]["spec"]["tolerations"]
    ]
    assert cluster.get("v1", "Service", service_name(MODEL, b), namespace)["spec"]["selector"] == {
        "llmfleet.dev/model": MODEL,
        "llmfleet.dev/region": b,
    }

    route = cluster.get("gateway.networking.k8s.io/v1", "HTTPRoute", route_name(MODEL), namespace)
    assert route["spec"]["parentRefs"][0]["name"] == "llm-gateway"
    rules = route["spec"]["rules"]
    fast_a = next(
        r
        for r in rules
        if {"type": "Exact", "name": "x-tier", "value": "fast"}
        in r["matches"][0]["headers"]
        and {"type": "Exact", "name": "x-origin-region", "value": a} in r["matches"][0]["headers"]
    )
    assert {x["name"]: x["weight"] for x in fast_a["backendRefs"]} == {
        service_name(MODEL, a): 700,
        service_name(MODEL, b): 300,
    }
    assert len(rules) == 5  # (a: batch, fast, fallback) + (b: fast, fallback)

    cm = cluster.get("v1", "ConfigMap", "llmfleet-routing", namespace)
    doc = json.loads(cm["data"]["routing.json"])
    assert doc["apiVersion"] == "llmfleet.dev/routing/v1"
    assert doc["models"][MODEL]["routes"][0]["weights"] == {b: 1000}

    again = actuate({a: cluster, b: cluster}, snap, _plan_up(a, b), policy, namespace)
    assert again.changes == 0 and again.diff == [] and again.complete, again

    obs = observe({a: cluster, b: cluster}, snap, namespace)
    assert obs.nodes == {(a, "od"): 2, (a, "spot"): 1, (b, "od"): 1}
    assert obs.replicas == {(MODEL, a, "od"): 2, (MODEL, a, "spot"): 1, (MODEL, b, "od"): 1}


def test_scale_down_moves_routing_first_and_respects_the_budget(
    cluster, upstream_crds, fleet, namespace
):
    snap, a, b = fleet
    policy = snap.policies[0]
    clusters = {a: cluster, b: cluster}
    assert actuate(clusters, snap, _plan_up(a, b), policy, namespace).complete
    down = fleet_plan(
        nodes={(a, "od"): 1, (a, "spot"): 1, (b, "od"): 0},
        replicas={(MODEL, a, "od"): 1, (MODEL, a, "spot"): 1},
        routing={(MODEL, "fast", a): {a: 1.0}, (MODEL, "fast", b): {a: 1.0}},
    )
    tight = policy.model_copy(update={"spec": policy.spec.model_copy(update={"max_changes_per_cycle": 2})})
    cut = actuate(clusters, snap, down, tight, namespace)
    assert cut.changes == 2 and cut.budget_exhausted and not cut.complete
    assert [ln.split(" ")[0] for ln in cut.diff] == ["ConfigMap", "HTTPRoute"]
    assert any(e.reason == "ChangeBudgetExhausted" for e in cut.events)
    assert len(cut.pending) == 5  # 2 deployments down, b's Service, 2 nodes down
    assert len(_nodes(cluster, b)) == 1  # capacity still there

    rest = actuate(clusters, snap, down, policy, namespace)
    assert rest.complete and rest.changes == 5, rest
    assert "replicas" in rest.diff[0] and "replicas" in rest.diff[1]
    assert rest.diff[2] == (
        f"Service {service_name(MODEL, b)}: deleted (no replicas of its model in its region)"
    )
    assert "nodes" in rest.diff[3] and "nodes" in rest.diff[4]
    assert cluster.get("v1", "Service", service_name(MODEL, b), namespace) is None
    assert cluster.get("v1", "Service", service_name(MODEL, a), namespace) is not None
    dep_b = cluster.get("apps/v1", "Deployment", deployment_name(MODEL, b, "od"), namespace)
    assert dep_b["spec"]["replicas"] == 0
    assert len(_nodes(cluster, b)) == 0 and len(_nodes(cluster, a)) == 2
    assert actuate(clusters, snap, down, policy, namespace).changes == 0

    # plan-only style preview: nothing written
    preview = actuate(clusters, snap, _plan_up(a, b), policy, namespace, dry_run=True)
    assert preview.changes > 0 and len(_nodes(cluster, b)) == 0


def test_cluster_api_and_karpenter_pools(cluster, upstream_crds, namespace):
    capi, karp = f"capi-{namespace}", f"karp-{namespace}"
    md = {
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "MachineDeployment",
        "metadata": {"name": "gpu-md", "namespace": namespace},
        "spec": {
            "clusterName": "c1",
            "replicas": 1,
            "selector": {"matchLabels": {"pool": "gpu"}},
            "template": {
                "metadata": {"labels": {"pool": "gpu"}},
                "spec": {
                    "clusterName": "c1",
                    "bootstrap": {"dataSecretName": "boot"},
                    "infrastructureRef": {
                        "apiGroup": "infra.example.com",
                        "kind": "M",
                        "name": "m",
                    },
                },
            },
        },
    }
    cluster.create(md)
    np = {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": f"gpu-{namespace}"},
        "spec": {
            "template": {
                "spec": {
                    "nodeClassRef": {
                        "group": "karpenter.k8s.aws",
                        "kind": "EC2NodeClass",
                        "name": "x",
                    },
                    "requirements": [
                        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}
                    ],
                }
            },
            "limits": {"cpu": "1000"},
        },
    }
    cluster.create(np)
    snap = FleetSnapshot(
        regions=[
            _region(
                capi,
                [
                    _pool(
                        "od",
                        provider={"type": "clusterAPI", "machineDeploymentRef": {"name": "gpu-md"}},
                    ),
                    _pool(
                        "gone",
                        provider={"type": "clusterAPI", "machineDeploymentRef": {"name": "nope"}},
                    ),
                ],
            ),
            _region(
                karp,
                [
                    _pool(
                        "spot",
                        provider={"type": "karpenter", "nodePoolRef": {"name": f"gpu-{namespace}"}},
                    )
                ],
            ),
        ],
        models=[_model(namespace)],
        policies=[_policy(namespace)],
    )
    clusters = {capi: cluster, karp: cluster}
    missing = fleet_plan(nodes={(capi, "od"): 3, (capi, "gone"): 1})
    res = actuate(clusters, snap, missing, snap.policies[0], namespace)
    assert any(
        f"MachineDeployment {namespace}/nope" in e and "not found" in e for e in res.errors
    ), res.errors
    plan = fleet_plan(nodes={(capi, "od"): 3, (karp, "spot"): 2})
    res = actuate(clusters, snap, plan, snap.policies[0], namespace)
    # the MachineDeployment was scaled above; the ConfigMap was blocked by the missing pool
    assert res.complete and res.changes == 2, res
    assert "limits nvidia.com/gpu=16" in res.diff[-1]
    got = cluster.get("cluster.x-k8s.io/v1beta2", "MachineDeployment", "gpu-md", namespace)
    assert got["spec"]["replicas"] == 3
    assert got["spec"]["clusterName"] == "c1"  # other fields untouched
    pool = cluster.get("karpenter.sh/v1", "NodePool", f"gpu-{namespace}")
    assert pool["spec"]["limits"] == {"cpu": "1000", "nvidia.com/gpu": "16"}
    again = actuate(clusters, snap, plan, snap.policies[0], namespace)
    assert again.changes == 0
    obs = observe(clusters, snap, namespace)
    assert obs.nodes[(capi, "od")] == 3 and obs.nodes[(karp, "spot")] == 0


def test_region_reached_through_a_kubeconfig_secret(
    cluster, controlplane, upstream_crds, namespace
):
    text = controlplane.kubeconfig.read_text()
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "remote", "namespace": namespace},
            "data": {"kubeconfig": base64.b64encode(text.encode()).decode()},
        }
    )
    remote = f"r-{namespace}"
    snap = FleetSnapshot(
        regions=[
            _region(
                remote,
                [_pool("od")],
                cluster={
                    "mode": "kubeconfig",
                    "kubeconfigSecretRef": {"name": "remote", "namespace": namespace},
                },
            ),
            _region(
                f"bad-{namespace}",
                [_pool("od")],
                cluster={
                    "mode": "kubeconfig",
                    "kubeconfigSecretRef": {"name": "missing", "namespace": namespace},
                },
            ),
        ],
        models=[_model(namespace)],
        policies=[_policy(namespace)],
    )
    resolver = RegionClusters(cluster, kubeconfig_namespaces=[namespace])
    try:
        plan = fleet_plan(nodes={(remote, "od"): 1}, replicas={(MODEL, remote, "od"): 1})
        res = actuate(resolver, snap, plan, snap.policies[0], namespace)
        assert any("missing" in e and "not found" in e for e in res.errors), res.errors
        assert (
            cluster.get("apps/v1", "Deployment", deployment_name(MODEL, remote, "od"), namespace)[
                "spec"
            ]["replicas"]
            == 1
        )
        assert len(_nodes(cluster, remote)) == 1
    finally:
        resolver.close()


def test_failed_capacity_change_blocks_routing_and_removals(
    cluster, upstream_crds, fleet, namespace
):
    snap, a, b = fleet
    policy = snap.policies[0]
    clusters = {a: cluster, b: cluster}
    assert actuate(clusters, snap, _plan_up(a, b), policy, namespace).complete
    from llmfleet.api.model import EnvVar

    model = _model(namespace)
    # an env name the apiserver rejects (the API type rejects it too, so bypass it: the
    # actuator must survive whatever the apiserver refuses)
    runtime = model.spec.runtime.model_copy(
        update={"env": [EnvVar.model_construct(name="A=B", value="x")]}
    )
    bad = model.model_copy(update={"spec": model.spec.model_copy(update={"runtime": runtime})})
    broken = FleetSnapshot(regions=snap.regions, models=[bad], policies=snap.policies)
    plan = fleet_plan(
        nodes={(a, "od"): 2, (a, "spot"): 1, (b, "od"): 0},
        replicas={(MODEL, a, "od"): 3, (MODEL, a, "spot"): 1, (MODEL, b, "od"): 0},
        routing={(MODEL, "fast", a): {a: 1.0}},
    )
    res = actuate(clusters, broken, plan, policy, namespace)
    assert res.errors and not res.complete
    assert any(e.type == "Warning" and e.reason == "ActuationFailed" for e in res.events)
    assert any("blocked" in p for p in res.pending)
    assert all("HTTPRoute" not in ln and "ConfigMap" not in ln for ln in res.diff)
    assert len(_nodes(cluster, b)) == 1  # nothing removed while capacity is broken


def test_cli_actuates_a_recorded_fleet_plan(cluster, controlplane, upstream_crds, namespace):
    import os
    import sys

    from llmfleet.api.plan import FleetPlan

    region = f"cli-{namespace}"
    plan = fleet_plan(
        nodes={(region, "od"): 1},
        replicas={(MODEL, region, "od"): 2},
        routing={(MODEL, "fast", region): {region: 1.0}},
    )
    cluster.apply(_region(region, [_pool("od")]).to_wire())
    cluster.apply(_model(namespace).to_wire())
    cluster.apply(_policy(namespace).to_wire())
    cluster.apply(FleetPlan.new("p1", plan, namespace=namespace).to_wire())
    env = {**os.environ, "KUBECONFIG": str(controlplane.kubeconfig)}

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "llmfleet.cli", "actuate", "p1", "-n", namespace, *extra],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )

    dry = run("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would change 5 objects" in dry.stdout, dry.stdout
    assert (
        cluster.get("apps/v1", "Deployment", deployment_name(MODEL, region, "od"), namespace)
        is None
    )
    done = run()
    assert done.returncode == 0, done.stderr
    assert "changed 5 objects" in done.stdout  # node, deployment, service, route, configmap
    assert (
        cluster.get("apps/v1", "Deployment", deployment_name(MODEL, region, "od"), namespace)[
            "spec"
        ]["replicas"]
        == 2
    )
    assert "changed 0 objects" in run().stdout
    cluster.delete("llmfleet.dev/v1alpha1", "Region", region)


# -- names that cannot collide, and objects that are not llmfleet's -------------------------

COLLIDING = (("llama-3-1-8b-us", "east"), ("llama-3-1-8b", "us-east"))
"""(model, region) pairs that the old ``<model>-<region>`` names gave one Service."""
LEGACY = "llama-3-1-8b-us-east"


def _named_model(namespace: str, name: str) -> LLMModel:
    doc = sample("LLMModel", MODEL)
    doc["metadata"] = {"name": name, "namespace": namespace}
    doc["spec"]["servedModelName"] = f"served/{name}"
    return LLMModel.from_wire(doc)


def _colliding_fleet(namespace: str) -> tuple[FleetSnapshot, Any]:
    snap = FleetSnapshot(
        regions=[_region(r, [_pool("od")]) for _m, r in COLLIDING],
        models=[_named_model(namespace, m) for m, _r in COLLIDING],
        policies=[_policy(namespace)],
    )
    plan = fleet_plan(
        replicas={(m, r, "od"): 1 for m, r in COLLIDING},
        routing={(m, "fast", r): {r: 1.0} for m, r in COLLIDING},
    )
    return snap, plan


def _legacy_objects(snap: FleetSnapshot, namespace: str) -> list[dict[str, Any]]:
    """What an older version left after the collision: Service ``llama-3-1-8b-us-east``
    taken over by (llama-3-1-8b-us, east), Deployment ``llama-3-1-8b-us-east-od`` of
    (llama-3-1-8b, us-east, od) and HTTPRoute ``llmfleet-llama-3-1-8b``."""
    from llmfleet.kube.render import render_deployment, render_service

    models = {m.name: m for m in snap.models}
    pool = snap.regions[0].spec.pools[0]
    svc = render_service(models["llama-3-1-8b-us"], "east", namespace)
    dep = render_deployment(models["llama-3-1-8b"], "us-east", pool, 1, namespace)
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": "llmfleet-llama-3-1-8b",
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "llmfleet",
                "llmfleet.dev/model": "llama-3-1-8b",
                "llmfleet.dev/component": "routing",
            },
        },
        "spec": {
            "parentRefs": [{"name": "llm-gateway"}],
            "rules": [{"backendRefs": [{"name": LEGACY, "port": 8000}]}],
        },
    }
    svc["metadata"]["name"] = LEGACY
    dep["metadata"]["name"] = f"{LEGACY}-od"
    return [svc, dep, route]


def test_model_region_pairs_that_joined_alike_get_their_own_objects(
    cluster, upstream_crds, namespace
):
    snap, plan = _colliding_fleet(namespace)
    for obj in _legacy_objects(snap, namespace):
        cluster.apply(obj)
    clusters = {r: cluster for _m, r in COLLIDING}
    res = actuate(clusters, snap, plan, snap.policies[0], namespace)
    assert res.errors == () and res.complete, res

    for m, r in COLLIDING:
        svc = cluster.get("v1", "Service", service_name(m, r), namespace)
        assert svc["spec"]["selector"] == {"llmfleet.dev/model": m, "llmfleet.dev/region": r}
        dep = cluster.get("apps/v1", "Deployment", deployment_name(m, r, "od"), namespace)
        assert dep["spec"]["template"]["metadata"]["labels"]["llmfleet.dev/model"] == m
        route = cluster.get("gateway.networking.k8s.io/v1", "HTTPRoute", route_name(m), namespace)
        backends = {b["name"] for rule in route["spec"]["rules"] for b in rule["backendRefs"]}
        assert backends == {service_name(m, r)}, (m, backends)
    assert service_name(*COLLIDING[0]) != service_name(*COLLIDING[1])

    # the older version's objects were found by their labels and removed
    assert cluster.get("v1", "Service", LEGACY, namespace) is None
    assert cluster.get("apps/v1", "Deployment", f"{LEGACY}-od", namespace) is None
    assert (
        cluster.get("gateway.networking.k8s.io/v1", "HTTPRoute", "llmfleet-llama-3-1-8b", namespace)
        is None
    )
    assert any(f"Deployment {LEGACY}-od: deleted (renamed to " in ln for ln in res.diff)

    again = actuate(clusters, snap, plan, snap.policies[0], namespace)
    assert again.changes == 0 and again.complete, again
    obs = observe(clusters, snap, namespace)
    assert obs.replicas == {(m, r, "od"): 1 for m, r in COLLIDING}


def test_a_foreign_service_of_the_generated_name_is_not_taken_over(
    cluster, upstream_crds, namespace
):
    snap, plan = _colliding_fleet(namespace)
    model, region = COLLIDING[1]
    name = service_name(model, region)
    cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": "theirs"}},
            "spec": {"selector": {"app": "theirs"}, "ports": [{"port": 80}]},
        }
    )
    clusters = {r: cluster for _m, r in COLLIDING}
    res = actuate(clusters, snap, plan, snap.policies[0], namespace)
    (err,) = res.errors
    assert (err.region, err.target, err.name) == (region, "service", name)
    assert f"Service {namespace}/{name}: exists and is not managed by llmfleet" in err
    assert any(e.type == "Warning" and e.message == err for e in res.events)
    svc = cluster.get("v1", "Service", name, namespace)
    assert svc["spec"]["selector"] == {"app": "theirs"}
    assert svc["metadata"]["labels"] == {"app": "theirs"}
    # the other pair is served; no route is pointed at someone else's Service
    other = service_name(*COLLIDING[0])
    assert cluster.get("v1", "Service", other, namespace) is not None
    assert (
        cluster.get("gateway.networking.k8s.io/v1", "HTTPRoute", route_name(model), namespace)
        is None
    )
    assert any("blocked" in p for p in res.pending)


def test_remove_region_deletes_what_llmfleet_made_for_it(cluster, upstream_crds, fleet, namespace):
    snap, a, b = fleet
    policy = snap.policies[0]
    clusters = {a: cluster, b: cluster}
    assert actuate(clusters, snap, _plan_up(a, b), policy, namespace).complete
    region_a, region_b = (next(r for r in snap.regions if r.name == x) for x in (a, b))

    gone = remove_region(clusters, region_b, namespace, others=snap.regions)
    assert gone.complete and gone.changes == 3, gone  # its Node, Deployment, Service
    assert _nodes(cluster, b) == [] and len(_nodes(cluster, a)) == 3
    assert cluster.get("apps/v1", "Deployment", deployment_name(MODEL, b, "od"), namespace) is None
    assert cluster.get("v1", "Service", service_name(MODEL, b), namespace) is None
    assert cluster.get("v1", "Service", service_name(MODEL, a), namespace) is not None
    # region a shares the cluster: its routing stays (the next cycle routes without b)
    assert cluster.get("gateway.networking.k8s.io/v1", "HTTPRoute", route_name(MODEL), namespace)
    again = remove_region(clusters, region_b, namespace, others=snap.regions)
    assert again.complete and again.changes == 0 and again.diff == [], again

    last = remove_region(clusters, region_a, namespace, others=[])
    assert last.complete, last
    assert [ln.split(" ")[0] for ln in last.diff[:2]] == ["HTTPRoute", "ConfigMap"]  # routing first
    assert last.diff[-1].startswith("Node ")  # capacity last
    assert _nodes(cluster, a) == []
    assert (
        cluster.get("gateway.networking.k8s.io/v1", "HTTPRoute", route_name(MODEL), namespace)
        is None
    )
    assert cluster.get("v1", "ConfigMap", "llmfleet-routing", namespace) is None
    assert cluster.list("apps/v1", "Deployment", namespace) == []
    assert remove_region(clusters, region_a, namespace, others=[]).changes == 0


def test_remove_region_of_an_unreachable_cluster_deletes_nothing(upstream_crds, fleet, namespace):
    snap, _a, b = fleet
    dead = Cluster.from_kubeconfig_dict(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "d", "cluster": {"server": "https://127.0.0.1:9"}}],
            "users": [{"name": "u", "user": {"token": "x"}}],
            "contexts": [{"name": "c", "context": {"cluster": "d", "user": "u"}}],
            "current-context": "c",
        },
        name="dead",
        timeout=2,
    )
    region_b = next(r for r in snap.regions if r.name == b)
    try:
        res = remove_region({b: dead}, region_b, namespace, others=[])
    finally:
        dead.close()
    assert not res.complete and set(res.unreachable) == {b}
    assert [(e.region, e.target) for e in res.errors] == [(b, "other")]
    assert res.changes == 0


def test_the_router_config_map_and_routes_leave_the_calibrators_keys_alone(
    cluster, upstream_crds, namespace
):
    """A routed tier: llmfleet applies router.json and the router's HTTPRoutes; the keys a
    calibration job adds (shares.json, under another field manager) survive its next apply,
    and the planning loop's reader reads them."""
    from llmfleet.api.tier import SLATier
    from llmfleet.kube.actuate import read_router_shares
    from llmfleet.kube.router_config import ROUTER_CONFIG_MAP, router_route_name
    from llmfleet.routing.models.serving import (
        RouterShares,
        RouteShare,
        TierShares,
        shares_document,
    )

    big, tier_name = "llama-3-3-70b", "interactive-normal"
    a, b = f"a-{namespace}", f"b-{namespace}"
    models = []
    for name in (MODEL, big):
        doc = sample("LLMModel", name)
        doc["metadata"]["namespace"] = namespace
        models.append(LLMModel.from_wire(doc))
    tier_doc = sample("SLATier", tier_name)
    tier_doc["metadata"]["namespace"] = namespace
    tier = SLATier.from_wire(tier_doc)
    snap = FleetSnapshot(
        regions=[_region(a, [_pool("od")]), _region(b, [_pool("od")])],
        models=models, tiers=[tier], policies=[_policy(namespace)],
    )  # fmt: skip
    policy = snap.policies[0]
    plan = fleet_plan(
        nodes={(a, "od"): 1, (b, "od"): 1},
        replicas={(big, a, "od"): 1, (MODEL, b, "od"): 1},
        routing={(big, tier_name, a): {a: 1.0}},
    )
    res = actuate({a: cluster, b: cluster}, snap, plan, policy, namespace)
    assert res.errors == () and res.complete, res
    route = cluster.get(
        "gateway.networking.k8s.io/v1", "HTTPRoute", router_route_name(MODEL), namespace
    )
    headers = [h for r in route["spec"]["rules"] for m in r["matches"] for h in m["headers"]]
    assert {"type": "Exact", "name": "x-ai-eg-model",
            "value": "meta-llama/Llama-3.1-8B-Instruct"} in headers  # fmt: skip
    # the body-based routes stay beside them (the plan routes only the reference)
    assert cluster.get("gateway.networking.k8s.io/v1", "HTTPRoute", route_name(big), namespace)

    shares = RouterShares((TierShares(tier_name, big, (
        RouteShare(big, 0.8, 0.7, 0.8), RouteShare(MODEL, 0.2, 0.3, 0.2))),))  # fmt: skip
    cm_api = cluster.resource("v1", "ConfigMap")
    cm_api.server_side_apply(
        body={"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": ROUTER_CONFIG_MAP, "namespace": namespace},
              "data": {"shares.json": json.dumps(shares_document(shares))}},
        name=ROUTER_CONFIG_MAP, namespace=namespace, field_manager="calibrator",
    )  # fmt: skip
    assert actuate({a: cluster, b: cluster}, snap, plan, policy, namespace).changes == 0
    tier.spec.routing.router.confidence = 0.95  # type: ignore[union-attr]
    res = actuate({a: cluster, b: cluster}, snap, plan, policy, namespace)
    assert res.errors == () and [d for d in res.diff if ROUTER_CONFIG_MAP in d and "ConfigMap" in d]
    cm = cluster.get("v1", "ConfigMap", ROUTER_CONFIG_MAP, namespace)
    config = json.loads(cm["data"]["router.json"])
    assert config["tiers"][tier_name]["calibration"]["confidence"] == 0.95
    assert "shares.json" in cm["data"]
    got = read_router_shares(cluster, namespace)
    assert got.shares == shares and got.status == "True"
