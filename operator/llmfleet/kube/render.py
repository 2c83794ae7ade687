"""Desired Kubernetes objects of a plan (pure functions: dicts in, manifests out, no I/O).

Names are unique by construction: a readable prefix (the identity's parts joined by ``-``,
lower-cased, anything outside ``[a-z0-9-]`` turned into ``-``, cut to fit) and a 10-hex
sha256 of the *exact* identity tuple (JSON-encoded, so ``("a-b", "c")`` and ``("a", "b-c")``
differ). Two identities share a name only if their digests collide, and even then
actuation refuses to write over the other one (see *Ownership* below):

- Deployment ``<model>-<region>-<pool>-<hash(model, region, pool)>`` (at most 63
  characters: its ReplicaSets and Pods append their own suffixes) and Service
  ``<model>-<region>-<hash(model, region)>`` (a DNS-1035 label, at most 63) in the actuation
  namespace of the region's cluster. The region is part of the identity because several
  Regions may share one cluster (mode ``local``) and pool names repeat across regions.
- HTTPRoute ``llmfleet-<model>[-<part>]-<hash(model, part)>`` (``part`` 2, 3 ... when the
  rules exceed the Gateway API limit of 16 per route; at most 253), one set per model in
  every cluster that hosts an origin region.
- Static Nodes ``<region>-<pool>-<hash(region, pool)>-<i>`` (at most 253).

Labels: every object carries ``app.kubernetes.io/managed-by=llmfleet`` and
``app.kubernetes.io/name=<model>`` (model objects), plus ``llmfleet.dev/model``,
``llmfleet.dev/region``, ``llmfleet.dev/pool``, ``llmfleet.dev/capacity-type``. Pods also
carry the plain keys ``model_name``, ``region``, ``pool``, ``capacity_type``: a PodMonitor's
``podTargetLabels`` copies them onto vLLM's series (the target label wins over vLLM's own
``model_name``, which moves to ``exported_model_name``), so demand queries group by the
LLMModel name. Label values cannot hold ``/``, so ``model_name`` is the LLMModel name, not
the served name. A name longer than a label value's 63 characters is written as
:func:`label_value` (a cut prefix and a hash).

Ownership: the identity of an object is its :data:`OWNER_KEYS` labels (managed-by, model,
region, pool, component, as far as the kind has them). An object of a generated name that
exists with other identity labels is not llmfleet's for that identity and is never written
(:func:`ownership_problem`); managed objects are always found by these labels, never by
name, so objects named by older versions are found, and cleaned up, too.

Routing: each rule matches the model header (``x-gateway-model-name``, set by a body-based
router from the OpenAI ``model`` field) plus the tier header, or the tenant header of each
tenant of that tier; where one cluster hosts several regions, also the origin header. A last
rule per origin without tier matches the model alone and splits by the mean of the tiers'
fractions. A backend region served by the same cluster is its ``Service``; a backend region
in another cluster is a Multi-Cluster Services ``ServiceImport`` of the same name
(``multicluster.x-k8s.io``, GEP-1748), which the MCS implementation of the fleet exports.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from llmfleet.api.model import GPUProfile, LLMModel
from llmfleet.api.policy import ParentRef
from llmfleet.api.region import NodePool, ObjectRef
from llmfleet.routing.table import MODEL_HEADER, ORIGIN_HEADER, RouteEntry
from llmfleet.routing.weights import integer_weights

GPU_RESOURCE = "nvidia.com/gpu"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "llmfleet"
APP_NAME = "app.kubernetes.io/name"
LABEL_MODEL = "llmfleet.dev/model"
LABEL_REGION = "llmfleet.dev/region"
LABEL_POOL = "llmfleet.dev/pool"
LABEL_CAPACITY = "llmfleet.dev/capacity-type"
LABEL_GPU_TYPE = "llmfleet.dev/gpu-type"
LABEL_COMPONENT = "llmfleet.dev/component"
CAPI_VERSION = "cluster.x-k8s.io/v1beta2"
KARPENTER_VERSION = "karpenter.sh/v1"
GATEWAY_VERSION = "gateway.networking.k8s.io/v1"
MAX_RULES_PER_ROUTE = 16
MAX_MATCHES_PER_RULE = 64


NAME_LIMIT = 63
"""Services (DNS-1035 labels), Deployments and label values."""
OBJECT_NAME_LIMIT = 253
"""Other objects (DNS-1123 subdomains): HTTPRoutes, Nodes."""
DIGEST_CHARS = 10
OWNER_KEYS = (MANAGED_BY, LABEL_MODEL, LABEL_REGION, LABEL_POOL, LABEL_COMPONENT)
"""The labels that say which (model, region, pool, component) an object is llmfleet's for."""


def digest(*identity: str) -> str:
    """10 hex of the sha256 of the exact ``identity`` tuple."""
    return hashlib.sha256(json.dumps(list(identity)).encode()).hexdigest()[:DIGEST_CHARS]


def identity_name(readable: Sequence[str], identity: Sequence[str], limit: int = NAME_LIMIT) -> str:
    """``<readable parts>-<digest(identity)>``: lower-case, ``[a-z0-9-]``, starting with a
    letter, at most ``limit`` characters; distinct identities give distinct names."""
    tail = f"-{digest(*identity)}"
    head = re.sub(r"[^a-z0-9-]+", "-", "-".join(readable).lower())
    head = re.sub(r"-{2,}", "-", head).strip("-")
    if not head[:1].isalpha():
        head = f"x-{head}".rstrip("-")
    return f"{head[: limit - len(tail)].rstrip('-')}{tail}"


def label_value(text: str) -> str:
    """``text`` as a label value: itself when it fits (63 characters; Kubernetes object names
    are valid label values), else a cut prefix and its digest."""
    if len(text) <= NAME_LIMIT:
        return text
    tail = f"-{digest(text)}"
    return f"{text[: NAME_LIMIT - len(tail)].rstrip('-.')}{tail}"


def deployment_name(model: str, region: str, pool: str) -> str:
    return identity_name((model, region, pool), (model, region, pool))


def service_name(model: str, region: str) -> str:
    return identity_name((model, region), (model, region))


def route_name(model: str, part: int = 1) -> str:
    readable = ("llmfleet", model, *([str(part)] if part > 1 else []))
    return identity_name(readable, (model, str(part)), limit=OBJECT_NAME_LIMIT)


def node_name(region: str, pool: str, index: int) -> str:
    suffix = f"-{index}"
    return identity_name((region, pool), (region, pool), OBJECT_NAME_LIMIT - len(suffix)) + suffix


def owner_labels(obj: Mapping[str, Any]) -> dict[str, str]:
    """The identity labels (:data:`OWNER_KEYS`) of a manifest or stored object."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return {k: str(labels[k]) for k in OWNER_KEYS if k in labels}


def describe_owner(labels: Mapping[str, str]) -> str:
    if labels.get(MANAGED_BY) != MANAGER:
        who = labels.get(MANAGED_BY)
        return (
            f"is managed by {who!r}" if who else "is not managed by llmfleet (no llmfleet labels)"
        )
    parts = [f"{k.split('/')[-1]} {labels[k]}" for k in OWNER_KEYS[1:] if k in labels]
    return f"is llmfleet's for {', '.join(parts) or 'no identity'}"


def ownership_problem(current: Mapping[str, Any], desired: Mapping[str, Any]) -> str | None:
    """None when the stored object ``current`` is llmfleet's for ``desired``'s identity, else
    what it is instead (e.g. ``is llmfleet's for model m, region r``)."""
    want, have = owner_labels(desired), owner_labels(current)
    if have == want:
        return None
    mine = describe_owner(want).removeprefix("is llmfleet's for ")
    return f"{describe_owner(have)}, not llmfleet's for {mine}"


def _managed(**extra: str) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, **extra}


def profile_for(model: LLMModel, gpu_type: str) -> GPUProfile | None:
    return next((p for p in model.spec.profiles if p.gpu_type == gpu_type), None)


def _container(model: LLMModel, profile: GPUProfile) -> dict[str, Any]:
    rt = model.spec.runtime
    gpus = str(profile.gpus_per_replica)
    container: dict[str, Any] = {"name": "server", "image": rt.image}
    if rt.image.startswith(("vllm/", "docker.io/vllm/")):
        # vLLM's OpenAI server: `vllm serve MODEL` (set explicitly: images before v0.9 had
        # another entrypoint).
        container["command"] = ["vllm", "serve"]
        container["args"] = [
            model.spec.served_model_name,
            f"--served-model-name={model.spec.served_model_name}",
            f"--port={rt.port}",
            f"--tensor-parallel-size={profile.gpus_per_replica}",
            f"--max-num-seqs={profile.max_concurrent_sequences}",
            *rt.args,
        ]
    elif rt.args:
        container["args"] = list(rt.args)
    if rt.env:
        container["env"] = [{"name": e.name, "value": e.value} for e in rt.env]
    probe = {"httpGet": {"path": "/health", "port": "http"}}
    container |= {
        "ports": [{"name": "http", "containerPort": rt.port, "protocol": "TCP"}],
        "resources": {"requests": {GPU_RESOURCE: gpus}, "limits": {GPU_RESOURCE: gpus}},
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
        # weights load for up to load_seconds: allow twice that before restarting
        "startupProbe": {
            **probe,
            "periodSeconds": 10,
            "failureThreshold": max(3, math.ceil(2 * profile.load_seconds / 10)),
        },
    }
    return container


def render_deployment(
    model: LLMModel, region: str, pool: NodePool, replicas: int, namespace: str
) -> dict[str, Any]:
    """The model server Deployment of (model, region, pool). Raises ``ValueError`` when the
    model has no profile for the pool's GPU type."""
    profile = profile_for(model, pool.gpu_type)
    if profile is None:
        raise ValueError(
            f"LLMModel {model.name}: spec.profiles has no gpuType {pool.gpu_type!r} "
            f"(pool {region}/{pool.name})"
        )
    m, r = label_value(model.name), label_value(region)
    selector = {LABEL_MODEL: m, LABEL_REGION: r, LABEL_POOL: pool.name}
    labels = _managed(**{APP_NAME: m, **selector, LABEL_CAPACITY: pool.capacity_type})
    pod_labels = {
        **labels,
        "model_name": m,
        "region": r,
        "pool": pool.name,
        "capacity_type": pool.capacity_type,
    }
    tolerations: list[dict[str, Any]] = [
        {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
    ]
    if pool.capacity_type == "spot":
        tolerations.append(
            {"key": LABEL_CAPACITY, "operator": "Equal", "value": "spot", "effect": "NoSchedule"}
        )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(model.name, region, pool.name),
            "namespace": namespace,
            "labels": labels,
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "nodeSelector": {LABEL_REGION: r, LABEL_POOL: pool.name},
                    "tolerations": tolerations,
                    "containers": [_container(model, profile)],
                },
            },
        },
    }


def render_service(model: LLMModel, region: str, namespace: str) -> dict[str, Any]:
    """The Service of (model, region): every pool's pods of the model in that region."""
    m, r = label_value(model.name), label_value(region)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(model.name, region),
            "namespace": namespace,
            "labels": _managed(**{APP_NAME: m, LABEL_MODEL: m, LABEL_REGION: r}),
        },
        "spec": {
            "selector": {LABEL_MODEL: m, LABEL_REGION: r},
            "ports": [
                {
                    "name": "http",
                    "port": model.spec.runtime.port,
                    "targetPort": "http",
                    "protocol": "TCP",
                }
            ],
        },
    }


def _header(name: str, value: str) -> dict[str, str]:
    return {"type": "Exact", "name": name, "value": value}


def _backend_refs(
    model: LLMModel, weights: Iterable[tuple[str, int]], local_regions: frozenset[str]
) -> list[dict[str, Any]]:
    refs = []
    for region, weight in weights:
        ref: dict[str, Any] = {
            "name": service_name(model.name, region),
            "port": model.spec.runtime.port,
            "weight": weight,
        }
        if region not in local_regions:
            ref = {"group": "multicluster.x-k8s.io", "kind": "ServiceImport", **ref}
        refs.append(ref)
    return refs


def render_httproutes(
    model: LLMModel,
    entries: Sequence[RouteEntry],
    *,
    namespace: str,
    parent_refs: Sequence[ParentRef],
    policy_namespace: str,
    tier_header: str,
    tenant_header: str,
    local_regions: frozenset[str],
    match_origin: bool,
    total: int = 1000,
    model_header: str = MODEL_HEADER,
) -> list[dict[str, Any]]:
    """HTTPRoutes of one model for the origins in ``entries`` (all hosted by one cluster);
    ``model_header``: the header carrying the served name (the router service's is
    :data:`llmfleet.kube.router_config.ROUTER_MODEL_HEADER`)."""
    served = model.spec.served_model_name
    rules: list[dict[str, Any]] = []
    by_origin: dict[str, list[RouteEntry]] = defaultdict(list)
    for e in entries:
        by_origin[e.origin].append(e)
    for origin in sorted(by_origin):
        base = [_header(model_header, served)]
        if match_origin:
            base.append(_header(ORIGIN_HEADER, origin))
        mean: dict[str, float] = defaultdict(float)
        for e in sorted(by_origin[origin], key=lambda x: x.tier):
            matches = [{"headers": [*base, _header(tier_header, e.tier)]}]
            if len(e.tenants) < MAX_MATCHES_PER_RULE:
                matches += [{"headers": [*base, _header(tenant_header, t)]} for t in e.tenants]
            rules.append(
                {
                    "matches": matches,
                    "backendRefs": _backend_refs(model, e.weights, local_regions),
                }
            )
            for r, f in e.fractions:
                mean[r] += f / len(by_origin[origin])
        rules.append(
            {
                "matches": [{"headers": base}],
                "backendRefs": _backend_refs(
                    model, integer_weights(mean, total).items(), local_regions
                ),
            }
        )
    parents = [
        {
            "group": p.group,
            "kind": p.kind,
            "name": p.name,
            "namespace": p.namespace or policy_namespace,
            **({"sectionName": p.section_name} if p.section_name else {}),
        }
        for p in parent_refs
    ]
    routes = []
    for i in range(0, len(rules), MAX_RULES_PER_ROUTE):
        routes.append(
            {
                "apiVersion": GATEWAY_VERSION,
                "kind": "HTTPRoute",
                "metadata": {
                    "name": route_name(model.name, i // MAX_RULES_PER_ROUTE + 1),
                    "namespace": namespace,
                    "labels": _managed(
                        **{
                            APP_NAME: label_value(model.name),
                            LABEL_MODEL: label_value(model.name),
                            LABEL_COMPONENT: "routing",
                        }
                    ),
                },
                "spec": {"parentRefs": parents, "rules": rules[i : i + MAX_RULES_PER_ROUTE]},
            }
        )
    return routes


def component_labels(component: str) -> dict[str, str]:
    """The labels of an object llmfleet owns as a whole for one component (``routing``,
    ``throttling``) rather than for a model."""
    return _managed(**{LABEL_COMPONENT: component})


def render_config_map(
    name: str, namespace: str, data: Mapping[str, str], *, component: str
) -> dict[str, Any]:
    """A ConfigMap llmfleet owns for ``component`` (the routing policy, the throttling
    table), holding ``data``."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": component_labels(component)},
        "data": dict(data),
    }


def render_static_node(region: str, pool: NodePool, index: int) -> dict[str, Any]:
    """A Node object standing for one GPU node of a ``static`` pool (status applied apart)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node_name(region, pool.name, index),
            "labels": _managed(
                **{
                    LABEL_REGION: label_value(region),
                    LABEL_POOL: pool.name,
                    LABEL_CAPACITY: pool.capacity_type,
                    LABEL_GPU_TYPE: pool.gpu_type,
                    "topology.kubernetes.io/region": label_value(region),
                }
            ),
        },
    }


def render_static_node_status(name: str, gpus_per_node: int) -> dict[str, Any]:
    capacity = {GPU_RESOURCE: str(gpus_per_node), "cpu": "96", "memory": "1Ti", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def render_machine_deployment_replicas(
    ref: ObjectRef, namespace: str, replicas: int
) -> dict[str, Any]:
    """The apply patch that owns only ``spec.replicas`` of a Cluster API MachineDeployment."""
    return {
        "apiVersion": CAPI_VERSION,
        "kind": "MachineDeployment",
        "metadata": {"name": ref.name, "namespace": ref.namespace or namespace},
        "spec": {"replicas": replicas},
    }


def render_karpenter_limits(ref: ObjectRef, nodes: int, gpus_per_node: int) -> dict[str, Any]:
    """The apply patch that owns only ``spec.limits[nvidia.com/gpu]`` of a Karpenter NodePool
    (``nodes x gpusPerNode``)."""
    return {
        "apiVersion": KARPENTER_VERSION,
        "kind": "NodePool",
        "metadata": {"name": ref.name},
        "spec": {"limits": {GPU_RESOURCE: str(nodes * gpus_per_node)}},
    }
