"""Desired Kubernetes objects of a plan (pure functions: dicts in, manifests out, no I/O).

Names (every one a DNS-1035 label, at most 63 characters; longer ones are cut and end in an
8-hex sha256 of the full name, so they stay unique):

- Deployment ``<model>-<region>-<pool>`` and Service ``<model>-<region>`` in the actuation
  namespace of the region's cluster. The region is part of the name because several Regions
  may share one cluster (mode ``local``) and pool names repeat across regions.
- HTTPRoute ``llmfleet-<model>`` (``-2``, ``-3`` ... when the rules exceed the Gateway API
  limit of 16 per route), one per model in every cluster that hosts an origin region.
- Static Nodes ``<region>-<pool>-<i>``.

Labels: every object carries ``app.kubernetes.io/managed-by=llmfleet`` and
``app.kubernetes.io/name=<model>`` (model objects), plus ``llmfleet.dev/model``,
``llmfleet.dev/region``, ``llmfleet.dev/pool``, ``llmfleet.dev/capacity-type``. Pods also
carry the plain keys ``model_name``, ``region``, ``pool``, ``capacity_type``: a PodMonitor's
``podTargetLabels`` copies them onto vLLM's series (the target label wins over vLLM's own
``model_name``, which moves to ``exported_model_name``), so demand queries group by the
LLMModel name. Label values cannot hold ``/``, so ``model_name`` is the LLMModel name, not
the served name.

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
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
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


def dns_name(*parts: str, limit: int = 63) -> str:
    """``parts`` joined by ``-``; starts with a letter; cut with a hash suffix past ``limit``."""
    name = "-".join(p.strip("-") for p in parts if p)
    if not name[:1].isalpha():
        name = f"x-{name}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-')}-{digest}"


def deployment_name(model: str, region: str, pool: str) -> str:
    return dns_name(model, region, pool)


def service_name(model: str, region: str) -> str:
    return dns_name(model, region)


def route_name(model: str, part: int = 1) -> str:
    return dns_name("llmfleet", model, *([str(part)] if part > 1 else []))


def node_name(region: str, pool: str, index: int) -> str:
    return dns_name(region, pool, str(index), limit=253)


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
    selector = {LABEL_MODEL: model.name, LABEL_REGION: region, LABEL_POOL: pool.name}
    labels = _managed(**{APP_NAME: model.name, **selector, LABEL_CAPACITY: pool.capacity_type})
    pod_labels = {
        **labels,
        "model_name": model.name,
        "region": region,
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
                    "nodeSelector": {LABEL_REGION: region, LABEL_POOL: pool.name},
                    "tolerations": tolerations,
                    "containers": [_container(model, profile)],
                },
            },
        },
    }


def render_service(model: LLMModel, region: str, namespace: str) -> dict[str, Any]:
    """The Service of (model, region): every pool's pods of the model in that region."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(model.name, region),
            "namespace": namespace,
            "labels": _managed(
                **{APP_NAME: model.name, LABEL_MODEL: model.name, LABEL_REGION: region}
            ),
        },
        "spec": {
            "selector": {LABEL_MODEL: model.name, LABEL_REGION: region},
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
) -> list[dict[str, Any]]:
    """HTTPRoutes of one model for the origins in ``entries`` (all hosted by one cluster)."""
    served = model.spec.served_model_name
    rules: list[dict[str, Any]] = []
    by_origin: dict[str, list[RouteEntry]] = defaultdict(list)
    for e in entries:
        by_origin[e.origin].append(e)
    for origin in sorted(by_origin):
        base = [_header(MODEL_HEADER, served)]
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
                            APP_NAME: model.name,
                            LABEL_MODEL: model.name,
                            LABEL_COMPONENT: "routing",
                        }
                    ),
                },
                "spec": {"parentRefs": parents, "rules": rules[i : i + MAX_RULES_PER_ROUTE]},
            }
        )
    return routes


def render_config_map(name: str, namespace: str, key: str, text: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": _managed(**{LABEL_COMPONENT: "routing"}),
        },
        "data": {key: text},
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
                    LABEL_REGION: region,
                    LABEL_POOL: pool.name,
                    LABEL_CAPACITY: pool.capacity_type,
                    LABEL_GPU_TYPE: pool.gpu_type,
                    "topology.kubernetes.io/region": region,
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
