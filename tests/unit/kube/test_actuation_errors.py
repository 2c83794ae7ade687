"""Actuation's typed errors, the refusal to take over foreign objects, unknown node-pool
providers, Kubernetes quantities and one RegionClusters per cycle, against an in-memory
stand-in of a cluster (the real apiserver is in tests/integration/test_actuation.py)."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

from llmfleet.api.model import LLMModel
from llmfleet.api.policy import FleetPolicy
from llmfleet.api.references import FleetSnapshot
from llmfleet.api.region import Region
from llmfleet.kube.actuate import ActuationError, RegionClusters, actuate, observe
from llmfleet.kube.client import KubeError
from llmfleet.kube.errors import target_of
from llmfleet.kube.providers import (
    PROVIDERS,
    Karpenter,
    UnknownProvider,
    provider_for,
    quantity,
)
from llmfleet.kube.render import service_name
from support.builders import sample
from support.plans import fleet_plan

MODEL = "llama-3-1-8b"


class FakeCluster:
    """The part of :class:`~llmfleet.kube.client.Cluster` actuation uses, in memory."""

    def __init__(self, server: str = "https://fake:6443") -> None:
        self.server = server
        self.timeout = 5.0
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.gets: dict[str, int] = {}

    def _key(self, kind: str, name: str, namespace: str | None) -> tuple[str, str | None, str]:
        return (kind, None if kind in ("Node", "NodePool") else namespace, name)

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        self.gets[kind] = self.gets.get(kind, 0) + 1
        obj = self.objects.get(self._key(kind, name, namespace))
        return copy.deepcopy(obj) if obj is not None else None

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        terms = [t.split("=", 1) for t in (label_selector or "").split(",") if t]
        out = []
        for (k, ns, _name), obj in sorted(self.objects.items(), key=lambda kv: str(kv[0])):
            labels = obj["metadata"].get("labels") or {}
            if k != kind or (namespace and ns not in (None, namespace)):
                continue
            if all(t[0] in labels and (len(t) == 1 or labels[t[0]] == t[1]) for t in terms):
                out.append(copy.deepcopy(obj))
        return out

    def apply(
        self, obj: dict[str, Any], *, dry_run: bool = False, subresource: str | None = None
    ) -> dict[str, Any]:
        meta = obj["metadata"]
        key = self._key(obj["kind"], meta["name"], meta.get("namespace"))
        merged = copy.deepcopy(self.objects.get(key) or {})
        if subresource == "status":
            merged["status"] = obj["status"]
        else:
            merged.update(copy.deepcopy(obj))
        if not dry_run:
            self.objects[key] = merged
        return copy.deepcopy(merged)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        return self.objects.pop(self._key(kind, name, namespace), None) is not None

    def ensure_namespace(self, name: str) -> None:
        pass

    def with_namespace_creation(self, create: bool) -> FakeCluster:
        self.create_namespaces = create
        return self


def _region(name: str, provider: str = "static", mode: str = "local", **ref: Any) -> Region:
    cluster: dict[str, Any] = {"mode": mode}
    if mode == "kubeconfig":
        cluster["kubeconfigSecretRef"] = {"name": f"kc-{name}", "namespace": "fleet"}
    region = Region.from_wire(
        {
            "apiVersion": "llmfleet.dev/v1alpha1",
            "kind": "Region",
            "metadata": {"name": name},
            "spec": {
                "location": name,
                "cluster": cluster,
                "pools": [
                    {"name": "od", "gpuType": "H100-80GB", "gpusPerNode": 8,
                     "pricePerNodeHour": 50, "maxNodes": 10,
                     "provider": {"type": provider if provider in PROVIDERS else "static",
                                  **ref}}
                ],
            },
        }
    )  # fmt: skip
    if provider not in PROVIDERS:
        # a provider type this operator does not know (e.g. one a newer API added): the
        # pydantic type rejects it, so build it the way a newer API's object would arrive
        pool = region.spec.pools[0]
        odd = pool.model_copy(
            update={"provider": pool.provider.model_copy(update={"type": provider})}
        )
        region = region.model_copy(update={"spec": region.spec.model_copy(update={"pools": [odd]})})
    return region


def _snapshot(*regions: Region) -> FleetSnapshot:
    model = sample("LLMModel", MODEL)
    model["metadata"]["namespace"] = "fleet"
    policy = sample("FleetPolicy")
    policy["metadata"]["namespace"] = "fleet"
    return FleetSnapshot(
        regions=list(regions),
        models=[LLMModel.from_wire(model)],
        policies=[FleetPolicy.from_wire(policy)],
    )


def test_actuation_error_is_its_message_with_typed_fields():
    e = ActuationError("us-east", "service", "svc-1", "Service fleet/svc-1: exists")
    assert str(e) == "Service fleet/svc-1: exists" == e.message == e
    assert (e.region, e.target, e.name) == ("us-east", "service", "svc-1")
    assert "exists" in e and f"{e}" == e.message
    assert e in {"Service fleet/svc-1: exists"}  # compares as the message it always was
    assert "target='service'" in repr(e)
    with pytest.raises(AttributeError):
        e.region = "eu-west"  # type: ignore[misc]
    with pytest.raises(ValueError, match="target 'pods'"):
        ActuationError("r", "pods", "n", "m")  # type: ignore[arg-type]
    back = pickle.loads(pickle.dumps(e))
    assert (back.region, back.target, back.name, back.message) == (
        e.region, e.target, e.name, e.message,
    )  # fmt: skip
    assert [target_of(k) for k in ("Node", "Deployment", "HTTPRoute", "Secret")] == [
        "nodepool", "deployment", "httproute", "other",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "want"),
    [("16", 16), (16, 16), ("2Ki", 2048), ("500m", 0.5), ("1.5", 1.5), ("1e3", 1000)],
)
def test_quantities_are_kubernetes_quantities(text, want):
    assert quantity(text, "here") == pytest.approx(want)


def test_a_bad_quantity_names_the_field():
    with pytest.raises(KubeError, match=r"here: 'lots' is not a Kubernetes quantity"):
        quantity("lots", "here")


def test_karpenter_gpu_limit_in_binary_suffix():
    pool = _region("r", provider="karpenter", nodePoolRef={"name": "gpu"}).spec.pools[0]
    c = FakeCluster()
    c.objects[("NodePool", None, "gpu")] = {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": "gpu"},
        "spec": {"limits": {"nvidia.com/gpu": "0.032Ki"}},  # 32.768 GPUs
    }
    assert Karpenter(c, "r", pool).limit_nodes() == 4  # type: ignore[arg-type]
    c.objects[("NodePool", None, "gpu")]["spec"]["limits"]["nvidia.com/gpu"] = "x"
    with pytest.raises(KubeError, match=r"Karpenter NodePool gpu spec.limits\[nvidia.com/gpu\]"):
        Karpenter(c, "r", pool).limit_nodes()  # type: ignore[arg-type]


def test_unknown_provider_is_an_error_not_static():
    region = _region("odd", provider="gke")
    with pytest.raises(UnknownProvider) as info:
        provider_for(FakeCluster(), "odd", region.spec.pools[0], "fleet")  # type: ignore[arg-type]
    msg = str(info.value)
    assert "Region odd" in msg and "pool od" in msg and "'gke'" in msg
    assert "clusterAPI, karpenter, static" in msg


def test_unknown_provider_fails_its_region_only():
    odd, good = _region("odd", provider="gke"), _region("good")
    snap = _snapshot(odd, good)
    c_odd, c_good = FakeCluster("https://odd"), FakeCluster("https://good")
    clusters: Any = {"odd": c_odd, "good": c_good}
    plan = fleet_plan(
        nodes={("odd", "od"): 2, ("good", "od"): 2},
        replicas={(MODEL, "odd", "od"): 1, (MODEL, "good", "od"): 1},
    )
    res = actuate(clusters, snap, plan, snap.policies[0], "fleet")
    assert [(e.region, e.target, e.name) for e in res.errors] == [("odd", "nodepool", "od")]
    assert "not a known node pool provider" in res.errors[0]
    # the other region's capacity is still added, and nothing became static Nodes in odd
    assert len(c_good.list("v1", "Node")) == 2 and c_odd.list("v1", "Node") == []
    assert len(c_good.list("apps/v1", "Deployment")) == 1
    obs = observe(clusters, snap, "fleet")
    assert obs.nodes == {("good", "od"): 2}
    assert [(e.region, e.target, e.name) for e in obs.errors] == [("odd", "nodepool", "od")]


def test_a_foreign_object_of_a_generated_name_is_refused():
    snap = _snapshot(_region("us-east"))
    c = FakeCluster()
    name = service_name(MODEL, "us-east")
    foreign = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "fleet", "labels": {"app": "theirs"}},
        "spec": {"selector": {"app": "theirs"}},
    }
    c.objects[("Service", "fleet", name)] = copy.deepcopy(foreign)
    plan = fleet_plan(replicas={(MODEL, "us-east", "od"): 1})
    res = actuate({"us-east": c}, snap, plan, snap.policies[0], "fleet")  # type: ignore[dict-item]
    (err,) = res.errors
    assert (err.region, err.target, err.name) == ("us-east", "service", name)
    assert f"Service fleet/{name}: exists and is not managed by llmfleet" in err
    assert "not taken over" in err
    assert c.objects[("Service", "fleet", name)] == foreign
    assert any("blocked" in p for p in res.pending)  # no routing towards someone else's pods


def test_one_region_clusters_per_cycle_tries_a_dead_region_once():
    local = FakeCluster()
    snap = _snapshot(_region("remote", mode="kubeconfig"), _region("here"))
    plan = fleet_plan(replicas={(MODEL, "here", "od"): 1})
    with RegionClusters(local, kubeconfig_namespaces=["fleet"]) as clusters:  # type: ignore[arg-type]
        obs = observe(clusters, snap, "fleet")
        assert (
            set(obs.unreachable) == {"remote"} and "Secret not found" in obs.unreachable["remote"]
        )
        res = actuate(clusters, snap, plan, snap.policies[0], "fleet")
    assert res.unreachable == obs.unreachable
    assert [(e.region, e.target) for e in res.errors] == [("remote", "other")]
    assert local.gets["Secret"] == 1  # the dead region was tried once this cycle
    assert res.changes == 3  # here: Deployment, Service, routing ConfigMap
    with RegionClusters(local, kubeconfig_namespaces=["fleet"]) as next_cycle:  # type: ignore[arg-type]
        observe(next_cycle, snap, "fleet")
    assert local.gets["Secret"] == 2  # a new cycle tries again


def test_a_secret_that_is_not_a_kubeconfig_makes_only_its_region_unreachable():
    import base64

    local = FakeCluster()
    for i, text in enumerate(["just: yaml\n", "- a list\n", "apiVersion: v1\nkind: Config\n"]):
        name = f"remote{i}"
        local.objects[("Secret", "fleet", f"kc-{name}")] = {
            "metadata": {"name": f"kc-{name}", "resourceVersion": "1"},
            "data": {"kubeconfig": base64.b64encode(text.encode()).decode()},
        }
    snap = _snapshot(*[_region(f"remote{i}", mode="kubeconfig") for i in range(3)], _region("here"))
    with RegionClusters(local, kubeconfig_namespaces=["fleet"]) as clusters:  # type: ignore[arg-type]
        obs = observe(clusters, snap, "fleet")
    assert set(obs.unreachable) == {"remote0", "remote1", "remote2"}
    assert all("not a usable kubeconfig" in why for why in obs.unreachable.values())


def _secret(local: FakeCluster, region: str, text: str, namespace: str = "fleet") -> None:
    import base64

    local.objects[("Secret", namespace, f"kc-{region}")] = {
        "metadata": {"name": f"kc-{region}", "namespace": namespace, "resourceVersion": "1"},
        "data": {"kubeconfig": base64.b64encode(text.encode()).decode()},
    }


def _in_namespace(region: Region, namespace: str) -> Region:
    ref = region.spec.cluster.kubeconfig_secret_ref
    assert ref is not None
    access = region.spec.cluster.model_copy(
        update={"kubeconfig_secret_ref": ref.model_copy(update={"namespace": namespace})}
    )
    return region.model_copy(update={"spec": region.spec.model_copy(update={"cluster": access})})


@pytest.mark.parametrize(
    ("allowed", "shown"),
    [
        (["fleet"], "allowed: fleet (llmfleet operator --kubeconfig-secret-namespaces"),
        (["fleet", "ops"], "allowed: fleet, ops"),
        ([], "no namespace is allowed (llmfleet operator --kubeconfig-secret-namespaces"),
    ],
)
def test_a_secret_outside_the_allowed_namespaces_is_never_read(
    allowed: list[str], shown: str
) -> None:
    """A Region (cluster-scoped: whoever writes one could name any Secret) naming a Secret
    outside the allow-list is unreachable, the message names the field and the allow-list,
    and the Secret is not even read."""
    local = FakeCluster()
    _secret(local, "remote", "apiVersion: v1\nkind: Config\n", namespace="victim")
    region = _in_namespace(_region("remote", mode="kubeconfig"), "victim")
    snap = _snapshot(region, _region("here"))
    plan = fleet_plan(replicas={(MODEL, "here", "od"): 1})
    with RegionClusters(local, kubeconfig_namespaces=allowed) as clusters:  # type: ignore[arg-type]
        obs = observe(clusters, snap, "fleet")
        res = actuate(clusters, snap, plan, snap.policies[0], "fleet")
    why = obs.unreachable["remote"]
    assert why.startswith(
        "Region remote: spec.cluster.kubeconfigSecretRef.namespace 'victim': kubeconfig "
        "Secrets are read only from the operator's allowed namespaces; "
    ), why
    assert shown in why and "operator.kubeconfigSecretNamespaces" in why
    assert local.gets.get("Secret", 0) == 0  # never read
    assert set(res.unreachable) == {"remote"} and res.changes == 3  # the others are actuated


def test_the_allow_list_admits_its_namespaces() -> None:
    local = FakeCluster()
    _secret(local, "remote", "just: yaml\n", namespace="ops")
    region = _in_namespace(_region("remote", mode="kubeconfig"), "ops")
    with RegionClusters(local, kubeconfig_namespaces=["fleet", "ops"]) as clusters:  # type: ignore[arg-type]
        obs = observe(clusters, _snapshot(region), "fleet")
    assert local.gets["Secret"] == 1  # read, and found not to be a kubeconfig
    assert "not a usable kubeconfig" in obs.unreachable["remote"]


def test_no_secret_content_reaches_a_message() -> None:
    """Neither the YAML of a broken Secret nor the server of a working one is echoed: the
    unreachable messages (statuses, Events) name the Secret, not what is in it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    local = FakeCluster()
    _secret(local, "broken", "token: s3cr3t-t0ken\n  : [\n")
    _secret(local, "odd", "current-context: s3cr3t-ctx\n")
    _secret(
        local,
        "dead",
        f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:{port}", insecure-skip-tls-verify: true}}}}]
users: [{{name: u, user: {{token: s3cr3t-t0ken}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""",
    )
    regions = [_region(n, mode="kubeconfig") for n in ("broken", "odd", "dead")]
    snap = _snapshot(*regions)
    plan = fleet_plan(nodes={("dead", "od"): 1})
    with RegionClusters(local, kubeconfig_namespaces=["fleet"], timeout=2) as clusters:  # type: ignore[arg-type]
        obs = observe(clusters, snap, "fleet")
        res = actuate(clusters, snap, plan, snap.policies[0], "fleet")
    assert set(obs.unreachable) == {"broken", "odd", "dead"}
    assert "not YAML at line" in obs.unreachable["broken"], obs.unreachable
    assert "not a usable kubeconfig" in obs.unreachable["odd"]
    assert obs.unreachable["dead"].startswith(
        "Region dead (the cluster in Secret fleet/kc-dead): "
    ), obs.unreachable["dead"]
    assert "its apiserver unreachable" in obs.unreachable["dead"]
    texts = [*obs.unreachable.values(), *map(str, obs.errors), *map(str, res.errors)]
    texts += [e.message for e in res.events]
    assert texts
    for text in texts:
        assert "s3cr3t" not in text and "127.0.0.1" not in text and str(port) not in text, text
