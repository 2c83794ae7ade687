"""GPU node pool providers: observe a pool's nodes and say what reaching N nodes takes.

A provider never writes; it returns :class:`Change` values that the actuator orders, counts
against the cycle's budget and executes (see :mod:`llmfleet.kube.actuate`).

- :class:`StaticNodes` creates and deletes ``Node`` objects (``nvidia.com/gpu`` capacity,
  region/pool/capacity-type labels) - for local clusters and tests. One change per Node.
- :class:`ClusterAPI` owns ``spec.replicas`` of a Cluster API MachineDeployment.
- :class:`Karpenter` owns ``spec.limits[nvidia.com/gpu]`` of a Karpenter NodePool
  (``nodes x gpusPerNode``); Karpenter itself provisions nodes for pending pods up to it.

Cloud-API providers can be added behind the same :class:`NodePoolProvider` protocol;
:func:`provider_for` raises :class:`UnknownProvider` for a type it has no provider for
(never a silent fallback to ``static``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from enum import IntEnum
from typing import Any, Literal, Protocol, get_args

from kubernetes.utils.quantity import parse_quantity

from llmfleet.api.region import NodePool, ProviderType
from llmfleet.kube.client import Cluster, KubeError
from llmfleet.kube.errors import refuse_foreign
from llmfleet.kube.render import (
    CAPI_VERSION,
    GPU_RESOURCE,
    KARPENTER_VERSION,
    LABEL_POOL,
    LABEL_REGION,
    MANAGED_BY,
    MANAGER,
    label_value,
    node_name,
    render_karpenter_limits,
    render_machine_deployment_replicas,
    render_static_node,
    render_static_node_status,
)


class Phase(IntEnum):
    """Actuation order: capacity first, then routing, then removal of capacity."""

    NODES_UP = 0
    WORKLOADS_UP = 1
    ROUTING = 2
    WORKLOADS_DOWN = 3
    NODES_DOWN = 4


@dataclass(frozen=True)
class Change:
    """One object to write: apply ``obj`` (then ``status`` to the status subresource) or
    delete it. ``line`` is the human-readable diff line, ``reason`` the Event reason."""

    phase: Phase
    cluster: str
    """Key of the cluster (its apiserver URL)."""
    kind: str
    api_version: str
    name: str
    namespace: str | None
    verb: Literal["apply", "delete"]
    line: str
    reason: str
    obj: dict[str, Any] | None = field(default=None, compare=False)
    status: dict[str, Any] | None = field(default=None, compare=False)
    region: str = ""
    """The Region the object serves (``""``: several, or the whole cluster)."""


class NodePoolProvider(Protocol):
    """What scales one pool."""

    def observe(self) -> int:
        """Nodes the pool holds now (raises KubeError naming the object when unreadable)."""
        ...

    def changes(self, nodes: int) -> list[Change]:
        """Changes that take the pool to ``nodes`` nodes (empty when it is there)."""
        ...


def _phase(current: int, desired: int) -> Phase:
    return Phase.NODES_UP if desired > current else Phase.NODES_DOWN


def _reason(current: int, desired: int) -> str:
    return "ScaledUpNodes" if desired > current else "ScaledDownNodes"


@dataclass
class StaticNodes:
    cluster: Cluster
    region: str
    pool: NodePool

    def _names(self) -> list[str]:
        region = label_value(self.region)
        sel = f"{MANAGED_BY}={MANAGER},{LABEL_REGION}={region},{LABEL_POOL}={self.pool.name}"
        return [n["metadata"]["name"] for n in self.cluster.list("v1", "Node", label_selector=sel)]

    def observe(self) -> int:
        return len(self._names())

    def changes(self, nodes: int) -> list[Change]:
        names = self._names()
        cur = len(names)
        out: list[Change] = []
        where = f"{self.region}/{self.pool.name}"
        if nodes > cur:
            taken, i = set(names), 0
            while len(out) < nodes - cur:
                name = node_name(self.region, self.pool.name, i)
                if name not in taken:
                    obj = render_static_node(self.region, self.pool, i)
                    # a Node of that name without this pool's labels is someone else's
                    refuse_foreign(self.cluster.get("v1", "Node", name), obj)
                    out.append(
                        Change(
                            Phase.NODES_UP,
                            self.cluster.server,
                            "Node",
                            "v1",
                            name,
                            None,
                            "apply",
                            f"{where}: nodes {cur + len(out)} -> {cur + len(out) + 1} "
                            f"(add Node {name})",
                            "ScaledUpNodes",
                            obj=obj,
                            status=render_static_node_status(name, self.pool.gpus_per_node),
                            region=self.region,
                        )
                    )
                i += 1
        elif nodes < cur:

            def index(n: str) -> tuple[int, str]:
                m = re.search(r"-(\d+)$", n)
                return (int(m.group(1)) if m else -1, n)

            for k, name in enumerate(sorted(names, key=index, reverse=True)[: cur - nodes]):
                out.append(
                    Change(
                        Phase.NODES_DOWN,
                        self.cluster.server,
                        "Node",
                        "v1",
                        name,
                        None,
                        "delete",
                        f"{where}: nodes {cur - k} -> {cur - k - 1} (delete Node {name})",
                        "ScaledDownNodes",
                        region=self.region,
                    )
                )
        return out


@dataclass
class ClusterAPI:
    cluster: Cluster
    region: str
    pool: NodePool
    namespace: str
    """Namespace of the MachineDeployment when its ref names none."""

    def _get(self) -> dict[str, Any]:
        ref = self.pool.provider.machine_deployment_ref
        if ref is None:
            raise KubeError(f"pool {self.region}/{self.pool.name}: no machineDeploymentRef")
        ns = ref.namespace or self.namespace
        md = self.cluster.get(CAPI_VERSION, "MachineDeployment", ref.name, ns)
        if md is None:
            raise KubeError(
                f"pool {self.region}/{self.pool.name}: MachineDeployment {ns}/{ref.name} "
                "(spec.pools[].provider.machineDeploymentRef) not found"
            )
        return md

    def observe(self) -> int:
        return int((self._get().get("spec") or {}).get("replicas") or 0)

    def changes(self, nodes: int) -> list[Change]:
        cur = self.observe()
        ref = self.pool.provider.machine_deployment_ref
        if cur == nodes or ref is None:
            return []
        obj = render_machine_deployment_replicas(ref, self.namespace, nodes)
        return [
            Change(
                _phase(cur, nodes),
                self.cluster.server,
                "MachineDeployment",
                CAPI_VERSION,
                ref.name,
                obj["metadata"]["namespace"],
                "apply",
                f"{self.region}/{self.pool.name}: nodes {cur} -> {nodes} "
                f"(MachineDeployment {ref.name} spec.replicas)",
                _reason(cur, nodes),
                obj=obj,
                region=self.region,
            )
        ]


def quantity(value: Any, where: str) -> Decimal:
    """A Kubernetes quantity (``16``, ``2Ki``, ``500m``, ``1.5``) as a Decimal; a
    :class:`KubeError` naming ``where`` when it is none."""
    try:
        return Decimal(parse_quantity(value))
    except ValueError as err:
        raise KubeError(f"{where}: {value!r} is not a Kubernetes quantity ({err})") from None


@dataclass
class Karpenter:
    cluster: Cluster
    region: str
    pool: NodePool

    def _get(self) -> dict[str, Any]:
        ref = self.pool.provider.node_pool_ref
        if ref is None:
            raise KubeError(f"pool {self.region}/{self.pool.name}: no nodePoolRef")
        np = self.cluster.get(KARPENTER_VERSION, "NodePool", ref.name)
        if np is None:
            raise KubeError(
                f"pool {self.region}/{self.pool.name}: Karpenter NodePool {ref.name} "
                "(spec.pools[].provider.nodePoolRef) not found"
            )
        return np

    def limit_nodes(self) -> int | None:
        """Nodes the NodePool's GPU limit allows now (None: no GPU limit)."""
        limits = (self._get().get("spec") or {}).get("limits") or {}
        if GPU_RESOURCE not in limits:
            return None
        ref = self.pool.provider.node_pool_ref
        where = (
            f"pool {self.region}/{self.pool.name}: Karpenter NodePool {ref.name if ref else ''} "
            f"spec.limits[{GPU_RESOURCE}]"
        )
        gpus = quantity(limits[GPU_RESOURCE], where)
        return int(gpus // self.pool.gpus_per_node)

    def observe(self) -> int:
        ref = self.pool.provider.node_pool_ref
        self._get()
        nodes = self.cluster.list(
            "v1", "Node", label_selector=f"karpenter.sh/nodepool={ref.name if ref else ''}"
        )
        return len(nodes)

    def changes(self, nodes: int) -> list[Change]:
        ref = self.pool.provider.node_pool_ref
        cur = self.limit_nodes()
        if ref is None or cur == nodes:
            return []
        before = 10**9 if cur is None else cur  # adding a limit removes capacity
        obj = render_karpenter_limits(ref, nodes, self.pool.gpus_per_node)
        return [
            Change(
                _phase(before, nodes),
                self.cluster.server,
                "NodePool",
                KARPENTER_VERSION,
                ref.name,
                None,
                "apply",
                f"{self.region}/{self.pool.name}: nodes {'unlimited' if cur is None else cur} "
                f"-> {nodes} (NodePool {ref.name} limits {GPU_RESOURCE}="
                f"{nodes * self.pool.gpus_per_node})",
                _reason(before, nodes),
                obj=obj,
                region=self.region,
            )
        ]


PROVIDERS: tuple[str, ...] = get_args(ProviderType)
"""The provider types :func:`provider_for` knows."""


class UnknownProvider(ValueError):
    """A pool names a provider type this operator has no provider for."""

    def __init__(self, region: str, pool: str, kind: str) -> None:
        super().__init__(
            f"Region {region}: pool {pool}: spec.pools[].provider.type {kind!r} is not a known "
            f"node pool provider (valid: {', '.join(PROVIDERS)}); the pool is not scaled"
        )
        self.region = region
        self.pool = pool
        self.kind = kind


def provider_for(cluster: Cluster, region: str, pool: NodePool, namespace: str) -> NodePoolProvider:
    """The provider the pool's ``spec.pools[].provider.type`` names; raises
    :class:`UnknownProvider` for any other type."""
    kind = pool.provider.type
    if kind == "clusterAPI":
        return ClusterAPI(cluster, region, pool, namespace)
    if kind == "karpenter":
        return Karpenter(cluster, region, pool)
    if kind == "static":
        return StaticNodes(cluster, region, pool)
    raise UnknownProvider(region, pool.name, str(kind))
