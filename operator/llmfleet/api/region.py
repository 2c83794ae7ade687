"""``Region``: a serving location with its GPU node pools (cluster-scoped)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from llmfleet.api.base import (
    CONFIG_KEY,
    DNS_LABEL,
    ApiModel,
    LabelNamedMeta,
    NamespaceName,
    ObjectName,
    Rule,
    StatusBase,
    cel_or_default,
    map_list,
)
from llmfleet.api.resource import AGE_COLUMN, VALID_COLUMN, KindInfo, PrinterColumn, Resource

CapacityType = Literal["on-demand", "spot"]
ProviderType = Literal["clusterAPI", "karpenter", "static"]
GPU_TYPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


class SecretKeyRef(ApiModel):
    """A key of a Secret."""

    name: ObjectName
    """Name of the Secret (an RFC 1123 subdomain)."""
    namespace: NamespaceName
    """Namespace of the Secret (an RFC 1123 label)."""
    key: str = Field(default="kubeconfig", min_length=1, max_length=253, pattern=CONFIG_KEY)
    """Key inside the Secret's data holding the value (letters, digits, ``-``, ``_``, ``.``)."""


class ClusterAccess(ApiModel):
    """How the controller reaches the Kubernetes cluster that runs this region's fleet."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=f"{cel_or_default('self.mode', 'local')} != 'kubeconfig' || "
            "has(self.kubeconfigSecretRef)",
            message="mode kubeconfig needs kubeconfigSecretRef",
            check=lambda s: s.mode != "kubeconfig" or s.kubeconfig_secret_ref is not None,
            field_path=".kubeconfigSecretRef",
        ),
    )

    mode: Literal["local", "kubeconfig"] = "local"
    """``local``: the cluster the controller runs in. ``kubeconfig``: a remote regional
    cluster reached with the kubeconfig in ``kubeconfigSecretRef``."""
    kubeconfig_secret_ref: SecretKeyRef | None = None
    """The Secret holding the remote cluster's kubeconfig (mode ``kubeconfig`` only)."""


class ObjectRef(ApiModel):
    """A reference to a named object, optionally in a namespace."""

    name: ObjectName
    """Name of the object (an RFC 1123 subdomain)."""
    namespace: NamespaceName | None = None
    """Namespace of the object (namespaced kinds only; an RFC 1123 label)."""


class PoolProvider(ApiModel):
    """What scales the pool's nodes."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=f"{cel_or_default('self.type', 'static')} != 'clusterAPI' || "
            "has(self.machineDeploymentRef)",
            message="provider clusterAPI needs machineDeploymentRef",
            check=lambda s: s.type != "clusterAPI" or s.machine_deployment_ref is not None,
            field_path=".machineDeploymentRef",
        ),
        Rule(
            cel=f"{cel_or_default('self.type', 'static')} != 'karpenter' || has(self.nodePoolRef)",
            message="provider karpenter needs nodePoolRef",
            check=lambda s: s.type != "karpenter" or s.node_pool_ref is not None,
            field_path=".nodePoolRef",
        ),
    )

    type: ProviderType = "static"
    """``clusterAPI``: sets ``spec.replicas`` of a Cluster API MachineDeployment.
    ``karpenter``: sets the GPU limit of a Karpenter NodePool.
    ``static``: creates and deletes Node objects directly (local clusters and tests)."""
    machine_deployment_ref: ObjectRef | None = None
    """The Cluster API MachineDeployment of this pool (type ``clusterAPI``)."""
    node_pool_ref: ObjectRef | None = None
    """The Karpenter NodePool of this pool (type ``karpenter``)."""


class NodePool(ApiModel):
    """A homogeneous group of GPU nodes with one price and one capacity type."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=f"{cel_or_default('self.minNodes', 0)} <= self.maxNodes",
            message="minNodes must be <= maxNodes",
            check=lambda s: s.min_nodes <= s.max_nodes,
            field_path=".minNodes",
        ),
        Rule(
            cel=f"{cel_or_default('self.capacityType', 'on-demand')} != 'spot' || "
            "has(self.spotInterruptionRatePerHour)",
            message="a spot pool needs spotInterruptionRatePerHour",
            check=lambda s: (
                s.capacity_type != "spot" or s.spot_interruption_rate_per_hour is not None
            ),
            field_path=".spotInterruptionRatePerHour",
        ),
    )

    name: str = Field(max_length=63, pattern=DNS_LABEL)
    """Pool name, unique within the region, e.g. ``h100-spot``."""
    gpu_type: str = Field(max_length=63, pattern=GPU_TYPE_PATTERN)
    """GPU SKU of every node, e.g. ``H100-80GB``, ``A100-80GB``, ``L4``. LLMModel profiles
    refer to this name."""
    gpus_per_node: int = Field(ge=1, le=16)
    """GPUs on each node."""
    capacity_type: CapacityType = "on-demand"
    """``on-demand`` or ``spot`` (pre-emptible, cheaper, interrupted at
    ``spotInterruptionRatePerHour``)."""
    price_per_node_hour: float = Field(ge=0, le=1000)
    """Price of one node, in USD per hour."""
    min_nodes: int = Field(default=0, ge=0, le=10000)
    """Fewest nodes the pool may have."""
    max_nodes: int = Field(ge=0, le=10000)
    """Most nodes the pool may have."""
    spot_interruption_rate_per_hour: float | None = Field(default=None, ge=0, le=1)
    """Expected interruptions per node per hour (spot pools; required for them)."""
    provisioning_seconds: int = Field(default=300, ge=0, le=7200)
    """Seconds from asking for a node until it is ready to run pods."""
    provider: PoolProvider = Field(default_factory=PoolProvider)
    """What scales this pool."""


class RegionLatency(ApiModel):
    """Network round-trip time from this region to another."""

    region: str = Field(max_length=63, pattern=DNS_LABEL)
    """Name of the other Region."""
    rtt_ms: float = Field(ge=0, le=10000)
    """Round-trip time in milliseconds."""


class RegionSpec(ApiModel):
    """Desired state of a Region."""

    __rules__: ClassVar[tuple[Rule, ...]] = ()

    location: str = Field(min_length=1, max_length=128)
    """Where the region is, e.g. ``us-east`` or ``Frankfurt, DE`` (informational)."""
    utc_offset_hours: float = Field(default=0, ge=-12, le=14)
    """Local time offset from UTC in hours; shifts the region's daily demand peak."""
    cluster: ClusterAccess = Field(default_factory=ClusterAccess)
    """How to reach the cluster that runs this region."""
    pools: list[NodePool] = map_list(max_items=32, min_length=1)
    """GPU node pools of the region (at least one)."""
    latencies: list[RegionLatency] = map_list(key="region", max_items=64)
    """Round-trip times to other regions; a region missing here is treated as unreachable
    for latency-bound tiers."""


class PoolStatus(ApiModel):
    """Observed state of one pool."""

    name: str = Field(max_length=63, pattern=DNS_LABEL)
    """Pool name."""
    nodes: int = Field(ge=0)
    """Nodes currently provisioned."""
    desired_nodes: int | None = Field(default=None, ge=0)
    """Nodes the last applied plan asks for."""


class RegionStatus(StatusBase):
    """Observed state of a Region."""

    pool_count: int | None = Field(default=None, ge=0)
    """Number of node pools."""
    gpus: int | None = Field(default=None, ge=0)
    """GPUs currently provisioned across all pools."""
    max_gpus: int | None = Field(default=None, ge=0)
    """GPUs available if every pool were at maxNodes."""
    usd_per_hour: float | None = Field(default=None, ge=0)
    """Current cost of the provisioned nodes, USD per hour."""
    pools: list[PoolStatus] = map_list(max_items=32)
    """Per-pool state."""


class Region(Resource):
    """A serving region: its cluster, GPU node pools and network distances."""

    info: ClassVar[KindInfo] = KindInfo(
        kind="Region",
        plural="regions",
        singular="region",
        scope="Cluster",
        short_names=("rg",),
        printer_columns=(
            PrinterColumn("Location", ".spec.location"),
            PrinterColumn("Pools", ".status.poolCount", "integer"),
            PrinterColumn("GPUs", ".status.gpus", "integer", "GPUs provisioned now"),
            PrinterColumn("Max-GPUs", ".status.maxGpus", "integer", "GPUs at maxNodes"),
            PrinterColumn("USD/h", ".status.usdPerHour", "number", "Cost of provisioned nodes"),
            VALID_COLUMN,
            AGE_COLUMN,
        ),
    )

    kind: Literal["Region"] = "Region"
    metadata: LabelNamedMeta
    spec: RegionSpec
    status: RegionStatus | None = None
