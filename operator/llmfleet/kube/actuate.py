"""Actuation: make the fleet match a :class:`~llmfleet.api.plan.FleetPlanSpec`.

Entry points (the controller's planning loop calls these)::

    with RegionClusters(local, kubeconfig_namespaces=[...]) as clusters:   # one per cycle
        observe(clusters, snapshot, namespace) -> Observation
        actuate(clusters, snapshot, plan, policy, namespace, dry_run=False)
            -> ActuationResult
    remove_region(clusters, region, namespace, *, others, dry_run=False) -> ActuationResult

``clusters`` is a ``Mapping[str, Cluster]`` (region name -> Cluster) or a
:class:`RegionClusters` resolver (mode ``local``: the controller's cluster; mode
``kubeconfig``: a Cluster built from the kubeconfig in the region's Secret, read from the
local cluster, only from the namespaces the operator allows). ``namespace`` is where the
fleet's Deployments, Services, HTTPRoutes and the routing ConfigMap live in every region's
cluster. The plan alone says what to do, so
re-applying an older FleetPlan's spec reverts to it.

How (one cycle):

1. Compute every change without writing: node pools through their provider
   (:mod:`llmfleet.kube.providers`); per (model, region, pool) a Deployment rendered from the
   LLMModel with the plan's replicas (managed Deployments the plan no longer lists go to 0, or
   are deleted when their LLMModel is gone); a Service per (model, region); HTTPRoutes per
   model and cluster (when the policy has parentRefs) and the routing ConfigMap in every
   cluster; when an SLATier has ``spec.routing``, the router service's ConfigMap
   (:data:`~llmfleet.kube.router_config.ROUTER_CONFIG_MAP`, key ``router.json``) in every
   cluster and, with parentRefs, the router's HTTPRoutes (``x-ai-eg-model`` matches, see
   :mod:`llmfleet.kube.router_config`). An object changes only when a server-side dry-run apply of it differs from the
   stored object in labels, spec or data, so re-running the same plan makes 0 changes.
2. Order: nodes up, workloads up (new Deployments, more replicas, template edits, Services),
   routing, workloads down, nodes down. Capacity is added before routing moves to it and
   removed only after routing left it.
   Managed Services no (model, region) of the plan serves any more are deleted with the
   removals, and so are managed Deployments under a name this version no longer gives their
   (model, region, pool) (named by an older version; their replacement is created first).
3. Execute in that order, one object = one change, until the budget (the policy's
   ``maxChangesPerCycle``, the one door every knob of a FleetPolicy comes through) is spent; the rest is reported as ``pending``. When a
   capacity change fails, or a pool of a reachable cluster cannot be read or checked, routing
   and removals are not attempted this cycle (they are reported as pending, ``blocked``).

Ownership: managed objects are found by their labels (see :mod:`llmfleet.kube.render`),
never by name. Before an object of a generated name is written, the stored object of that
name (if any) must carry the same identity labels; otherwise it is someone else's (or
llmfleet's for another model/region/pool) and it is not written: the refusal is an error
naming the object and what its labels say it is (target of its kind).

The router's ConfigMap: only ``router.json`` is llmfleet's (server-side apply leaves the
keys of other field managers, such as ``shares.json`` and the fitted routers' ``.npz``
artefacts a calibration job adds, as they are); a tier's calibration found in the stored
``router.json`` is kept while it fits the tier (:func:`~llmfleet.kube.router_config.
stored_calibrations`). A routed tier that cannot be rendered (a candidate without an LLMModel
or a ``routingCost``) is left out of it, and reported as an error like any other. Once no
tier routes, a router ConfigMap llmfleet made is published with no tiers (the router sends
every request on unchanged), not deleted (its other keys are not llmfleet's).
:func:`read_router_shares` reads its ``shares.json`` for the planning loop.

A region whose cluster does not answer (or whose kubeconfig Secret is missing or unusable)
is *unreachable*: it is skipped after its first failed request, named in
``ActuationResult.unreachable`` and in the errors, and the other regions are still actuated
(nothing is written to it, so nothing of it is scaled down).

``actuate`` does not read the policy's ``spec.mode``: the caller decides (for ``plan-only``,
call it with ``dry_run=True`` to get the diff without writing).

Every executed change gives a Normal Event value, every failure a Warning; the controller
posts them. Errors are typed values (:class:`~llmfleet.kube.errors.ActuationError`: region,
target, name, message; ``str(err)`` is the message) in ``ActuationResult.errors``, never
exceptions.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import yaml

from llmfleet.api.conditions import (  # re-exported: llmfleet.kube.actuate's names before
    ROUTER_SHARES_READ,
    SharesReason,
)
from llmfleet.api.model import LLMModel
from llmfleet.api.plan import FleetPlanSpec
from llmfleet.api.policy import FleetPolicy
from llmfleet.api.references import FleetSnapshot
from llmfleet.api.region import NodePool, Region
from llmfleet.kube.client import ApiNotServed, Cluster, ClusterUnreachable, KubeError
from llmfleet.kube.errors import (
    ActuationError,
    ForeignObject,
    Target,
    check_owned,
    refuse_foreign,
    target_of,
)
from llmfleet.kube.providers import Change, Phase, UnknownProvider, provider_for
from llmfleet.kube.render import (
    GATEWAY_VERSION,
    LABEL_COMPONENT,
    LABEL_MODEL,
    LABEL_POOL,
    LABEL_REGION,
    MANAGED_BY,
    MANAGER,
    deployment_name,
    label_value,
    render_config_map,
    render_deployment,
    render_httproutes,
    render_service,
    route_name,
)
from llmfleet.kube.router_config import (
    ROUTER_COMPONENT,
    ROUTER_CONFIG_MAP,
    SHARES_KEY,
    TierCalibration,
    render_router_config_map,
    render_router_httproutes,
    router_config_document,
    router_route_entries,
    shares_from_config_map,
    stored_calibrations,
)
from llmfleet.routing import routing_document, routing_json, routing_table
from llmfleet.routing.models.serving import ConfigError, RouterShares
from llmfleet.routing.table import RouteEntry, RoutingTable

__all__ = [
    "ROUTER_SHARES_READ",
    "ActuationError",
    "ActuationEvent",
    "ActuationResult",
    "Observation",
    "RegionClusters",
    "SharesReason",
    "actuate",
    "observe",
    "read_router_shares",
    "remove_region",
]

ROUTING_KEY = "routing.json"
MANAGED_MODEL = f"{MANAGED_BY}={MANAGER},{LABEL_MODEL}"
"""Selector of the model objects llmfleet made (Deployments, Services)."""
MANAGED_ROUTING = f"{MANAGED_BY}={MANAGER},{LABEL_COMPONENT}=routing"
"""Selector of the routing objects llmfleet made (HTTPRoutes, routing ConfigMaps)."""


@dataclass(frozen=True)
class ActuationEvent:
    """An Event for the controller to post."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    kind: str
    name: str
    namespace: str | None = None
    cluster: str = ""


@dataclass
class ActuationResult:
    """What one actuation did."""

    changes: int = 0
    """Objects written (or, with dry_run, that would be)."""
    events: list[ActuationEvent] = field(default_factory=list)
    errors: tuple[ActuationError, ...] = ()
    """Typed failures (region, target, name, message); ``str(e)`` is the message."""
    budget_exhausted: bool = False
    diff: list[str] = field(default_factory=list)
    """One line per executed change, e.g. ``us-east/h100-od: nodes 2 -> 3 (add Node ...)``."""
    pending: list[str] = field(default_factory=list)
    """Changes left for a later cycle (budget, or blocked by a failed capacity change)."""
    dry_run: bool = False
    unreachable: dict[str, str] = field(default_factory=dict)
    """Region -> why its cluster could not be reached (nothing was written there)."""

    @property
    def complete(self) -> bool:
        """Every change of the plan reached the fleet."""
        return not self.errors and not self.pending


@dataclass
class Observation:
    """The fleet now, for the planner's CurrentState."""

    nodes: dict[tuple[str, str], int] = field(default_factory=dict)
    """(region, pool) -> nodes."""
    replicas: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """(model, region, pool) -> replicas asked for (Deployment spec.replicas; summed over the
    managed Deployments of that identity, e.g. one named by an older version)."""
    ready_replicas: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """(model, region, pool) -> ready replicas."""
    errors: tuple[ActuationError, ...] = ()
    unreachable: dict[str, str] = field(default_factory=dict)
    """Region -> why its cluster could not be reached (its figures are missing, not 0)."""


class RegionClusters:
    """Region -> Cluster for one planning cycle: ``local`` is the controller's cluster;
    ``kubeconfig`` reads the region's Secret from the local cluster (one client per Secret
    version, cached for this object's life).

    Build one per cycle and use it for both :func:`observe` and :func:`actuate`, as a
    context manager (it closes the clients it built)::

        with RegionClusters(local, kubeconfig_namespaces=["llmfleet"]) as clusters:
            obs = observe(clusters, snapshot, namespace)
            ...
            res = actuate(clusters, snapshot, plan, policy, namespace)

    Trust boundary: a Region is cluster-scoped, so whoever may write one could name any
    Secret of the cluster. A kubeconfig Secret is read only from ``kubeconfig_namespaces``
    (the operator's own namespace by default, see ``llmfleet operator
    --kubeconfig-secret-namespaces``); a Region naming a Secret elsewhere is unreachable,
    with a message naming the field and the allowed namespaces, and that Secret is never
    read. Nothing of a Secret (the server URL of its kubeconfig included) reaches a message:
    its cluster is "the cluster in Secret ns/name".

    ``create_namespaces`` is given to every cluster returned: whether actuation may create
    the fleet namespace where it is missing (else that is an error naming it).

    A Region found unreachable by one call (its apiserver did not answer, or its Secret is
    unusable) is remembered in :attr:`unreachable` and not tried again by the next call on
    the same object, so a dead region costs one timeout per cycle, not two.
    """

    def __init__(
        self,
        local: Cluster,
        timeout: float | None = None,
        *,
        kubeconfig_namespaces: Iterable[str],
        create_namespaces: bool = False,
    ) -> None:
        self.local = local
        self.timeout = timeout or local.timeout
        self.kubeconfig_namespaces = tuple(sorted(set(kubeconfig_namespaces)))
        """Namespaces kubeconfig Secrets may be read from (empty: none)."""
        self.create_namespaces = create_namespaces
        self._local_view: Cluster | None = None
        self._cache: dict[tuple[str, str, str, str], Cluster] = {}
        self.unreachable: dict[str, str] = {}
        """Region -> why it could not be reached, found by an earlier call this cycle."""

    def __enter__(self) -> RegionClusters:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _allowed(self) -> str:
        if not self.kubeconfig_namespaces:
            return (
                "no namespace is allowed (llmfleet operator --kubeconfig-secret-namespaces, "
                "chart value operator.kubeconfigSecretNamespaces)"
            )
        return (
            f"allowed: {', '.join(self.kubeconfig_namespaces)} (llmfleet operator "
            "--kubeconfig-secret-namespaces, chart value operator.kubeconfigSecretNamespaces)"
        )

    def cluster_for(self, region: Region) -> Cluster:
        access = region.spec.cluster
        ref = access.kubeconfig_secret_ref
        if access.mode == "local" or ref is None:
            if self._local_view is None:
                self._local_view = self.local.with_namespace_creation(self.create_namespaces)
            return self._local_view
        field_ = f"Region {region.name}: spec.cluster.kubeconfigSecretRef"
        where = f"{field_} {ref.namespace}/{ref.name}"
        if ref.namespace not in self.kubeconfig_namespaces:
            # checked before any request: a Secret outside the allow-list is never read
            raise KubeError(
                f"{field_}.namespace {ref.namespace!r}: kubeconfig Secrets are read only from "
                f"the operator's allowed namespaces; {self._allowed()}"
            )
        secret = self.local.get("v1", "Secret", ref.name, ref.namespace)
        if secret is None:
            raise KubeError(f"{where}: Secret not found")
        data = (secret.get("data") or {}).get(ref.key)
        if not data:
            raise KubeError(f"{where}: Secret has no key {ref.key!r}")
        version = str((secret.get("metadata") or {}).get("resourceVersion", ""))
        key = (ref.namespace, ref.name, ref.key, version)
        if key not in self._cache:
            for old in [k for k in self._cache if k[:3] == key[:3]]:
                self._cache.pop(old).close()  # the Secret changed: drop the stale client
            try:
                doc = yaml.safe_load(base64.b64decode(data))
            except (ValueError, TypeError) as err:
                raise KubeError(
                    f"{where}: key {ref.key!r} is not a usable kubeconfig: not base64 "
                    f"({type(err).__name__})"
                ) from None
            except yaml.YAMLError as err:
                # the error's snippet would quote the Secret: say only where it is
                mark = getattr(err, "problem_mark", None)
                at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
                raise KubeError(
                    f"{where}: key {ref.key!r} is not a usable kubeconfig: not YAML{at}"
                ) from None
            try:
                self._cache[key] = Cluster.from_kubeconfig_dict(
                    doc,
                    name=f"Region {region.name} (the cluster in Secret {ref.namespace}/{ref.name})",
                    timeout=self.timeout,
                    show_server=False,
                    create_namespaces=self.create_namespaces,
                )
            except (ValueError, TypeError) as err:
                raise KubeError(
                    f"{where}: key {ref.key!r} is not a usable kubeconfig: {err}"
                ) from None
        return self._cache[key]

    def close(self) -> None:
        for c in self._cache.values():
            c.close()
        self._cache.clear()


Clusters = Mapping[str, Cluster] | RegionClusters


def _unreachable_error(region: str, why: str) -> ActuationError:
    return ActuationError(region, "other", region, why)


def _resolve(
    clusters: Clusters,
    regions: list[Region],
    errors: list[ActuationError],
    unreachable: dict[str, str],
) -> dict[str, Cluster]:
    out: dict[str, Cluster] = {}
    for r in regions:
        try:
            if isinstance(clusters, RegionClusters):
                if r.name in clusters.unreachable:
                    unreachable[r.name] = clusters.unreachable[r.name]
                else:
                    out[r.name] = clusters.cluster_for(r)
            elif r.name in clusters:
                out[r.name] = clusters[r.name]
            else:
                unreachable[r.name] = f"Region {r.name}: no cluster given for it"
        except KubeError as err:
            unreachable[r.name] = str(err)
    errors += [_unreachable_error(r, unreachable[r]) for r in sorted(unreachable)]
    return out


def _remember(clusters: Clusters, unreachable: Mapping[str, str]) -> None:
    if isinstance(clusters, RegionClusters):
        for region, why in unreachable.items():
            clusters.unreachable.setdefault(region, why)


def _unreachable_regions(
    by_region: dict[str, Cluster], down: dict[str, str], unreachable: dict[str, str]
) -> None:
    """Move the regions of the clusters in ``down`` (server -> why) into ``unreachable``."""
    for region, cluster in sorted(by_region.items()):
        if cluster.server in down:
            unreachable.setdefault(region, down[cluster.server])
            del by_region[region]


def _region_of_cluster(by_region: Mapping[str, Cluster], cluster: Cluster) -> str:
    """The one Region ``cluster`` serves ("" when it serves several)."""
    regions = sorted(r for r, c in by_region.items() if c.server == cluster.server)
    return regions[0] if len(regions) == 1 else ""


def _comparable(obj: dict[str, Any] | None) -> dict[str, Any]:
    if obj is None:
        return {}
    meta = obj.get("metadata") or {}
    return {
        "labels": meta.get("labels") or {},
        "spec": obj.get("spec"),
        "data": obj.get("data"),
    }


def _apply_change(
    cluster: Cluster,
    obj: dict[str, Any],
    phase_up: Phase,
    phase_down: Phase | None,
    line: str,
    reason: str,
    region: str,
) -> Change | None:
    """A change when ``obj`` differs from what is stored (dry-run apply), else None; raises
    :class:`ForeignObject` when the stored object of that name is not llmfleet's for
    ``obj``'s identity."""
    meta = obj["metadata"]
    current = cluster.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
    refuse_foreign(current, obj)
    if current is not None:
        after = cluster.apply(obj, dry_run=True)
        if _comparable(after) == _comparable(current):
            return None
    phase = phase_up
    if phase_down is not None and current is not None:
        before = int((current.get("spec") or {}).get("replicas") or 0)
        if int(obj["spec"].get("replicas") or 0) < before:
            phase = phase_down
    return Change(
        phase,
        cluster.server,
        obj["kind"],
        obj["apiVersion"],
        meta["name"],
        meta.get("namespace"),
        "apply",
        line,
        reason,
        obj=obj,
        region=region,
    )


def _delete(
    phase: Phase,
    cluster: Cluster,
    kind: str,
    api_version: str,
    name: str,
    namespace: str | None,
    line: str,
    reason: str,
    region: str,
) -> Change:
    return Change(
        phase,
        cluster.server,
        kind,
        api_version,
        name,
        namespace,
        "delete",
        line,
        reason,
        region=region,
    )


@dataclass
class _Planner:
    """Collects the changes of one actuation (reads only)."""

    snapshot: FleetSnapshot
    plan: FleetPlanSpec
    policy: FleetPolicy
    namespace: str
    by_region: dict[str, Cluster]
    errors: list[ActuationError]
    changes: list[Change] = field(default_factory=list)
    down: dict[str, str] = field(default_factory=dict)
    """Cluster server -> why it did not answer (skipped from then on)."""

    def __post_init__(self) -> None:
        self.models = {m.name: m for m in self.snapshot.models}
        self.model_by_label = {label_value(m.name): m.name for m in self.snapshot.models}
        self.region_by_label = {label_value(r.name): r.name for r in self.snapshot.regions}

    def error(self, region: str, target: Target, name: str, message: str) -> None:
        self.errors.append(ActuationError(region, target, name, message))

    def failed(
        self,
        cluster: Cluster,
        err: KubeError,
        *,
        region: str,
        target: Target,
        name: str,
        where: str = "",
    ) -> None:
        """Record ``err``: an unreachable cluster is skipped, anything else is an error."""
        if isinstance(err, ClusterUnreachable):
            self.down.setdefault(cluster.server, str(err))
        elif isinstance(err, ForeignObject):
            self.error(region, target_of(err.kind), err.name, str(err))
        else:
            self.error(region, target, name, f"{where}: {err}" if where else str(err))

    def reachable(self, cluster: Cluster) -> bool:
        return cluster.server not in self.down

    def region_of(self, cluster: Cluster) -> str:
        return _region_of_cluster(self.by_region, cluster)

    def _diff(
        self,
        cluster: Cluster,
        obj: dict[str, Any],
        phase_up: Phase,
        phase_down: Phase | None,
        line: str,
        reason: str,
        region: str,
    ) -> Change | None:
        if not self.reachable(cluster):
            return None
        try:
            return _apply_change(cluster, obj, phase_up, phase_down, line, reason, region)
        except KubeError as err:
            target = target_of(obj["kind"])
            self.failed(
                cluster,
                err,
                region=region,
                target=target,
                name=obj["metadata"]["name"],
                where=line,
            )
            return None

    def _pool(self, region: str, pool: str) -> NodePool | None:
        r = next((x for x in self.snapshot.regions if x.name == region), None)
        return next((p for p in r.spec.pools if p.name == pool), None) if r else None

    def _identity(self, labels: Mapping[str, str]) -> tuple[LLMModel | None, str, NodePool | None]:
        """(LLMModel, region name, pool) a managed object's labels name (None: gone)."""
        model = self.models.get(self.model_by_label.get(labels.get(LABEL_MODEL, ""), ""))
        region = self.region_by_label.get(labels.get(LABEL_REGION, ""), "")
        return model, region, self._pool(region, labels.get(LABEL_POOL, ""))

    def nodes(self) -> None:
        for pn in sorted(self.plan.nodes, key=lambda p: (p.region, p.pool)):
            where = f"plan nodes[{pn.region}/{pn.pool}]"
            pool = self._pool(pn.region, pn.pool)
            cluster = self.by_region.get(pn.region)
            if pool is None:
                self.error(
                    pn.region,
                    "nodepool",
                    pn.pool,
                    f"{where}: Region {pn.region} has no pool {pn.pool}",
                )
                continue
            if cluster is None or not self.reachable(cluster):
                continue
            if not pool.min_nodes <= pn.nodes <= pool.max_nodes:
                self.error(
                    pn.region,
                    "nodepool",
                    pn.pool,
                    f"{where}: {pn.nodes} nodes is outside the pool's minNodes..maxNodes "
                    f"{pool.min_nodes}..{pool.max_nodes}; not applied",
                )
                continue
            try:
                provider = provider_for(cluster, pn.region, pool, self.namespace)
                self.changes += provider.changes(pn.nodes)
            except UnknownProvider as err:
                self.error(pn.region, "nodepool", pn.pool, f"{where}: {err}")
            except KubeError as err:
                self.failed(
                    cluster, err, region=pn.region, target="nodepool", name=pn.pool, where=where
                )

    def workloads(self) -> None:
        desired: dict[tuple[str, str], dict[str, Any]] = {}
        services: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        for mr in sorted(self.plan.replicas, key=lambda r: (r.model, r.region, r.pool)):
            where = f"plan replicas[{mr.model}/{mr.region}/{mr.pool}]"
            name = deployment_name(mr.model, mr.region, mr.pool)
            model, pool = self.models.get(mr.model), self._pool(mr.region, mr.pool)
            cluster = self.by_region.get(mr.region)
            if model is None or pool is None:
                what = f"LLMModel {mr.model}" if model is None else f"pool {mr.region}/{mr.pool}"
                self.error(mr.region, "deployment", name, f"{where}: {what} does not exist")
                continue
            if cluster is None:
                continue
            try:
                dep = render_deployment(model, mr.region, pool, mr.replicas, self.namespace)
            except ValueError as err:
                self.error(mr.region, "deployment", name, f"{where}: {err}")
                continue
            desired[(cluster.server, dep["metadata"]["name"])] = dep
            if mr.replicas > 0:
                svc = render_service(model, mr.region, self.namespace)
                services[(cluster.server, svc["metadata"]["name"])] = (svc, mr.region)
        clusters = {c.server: c for c in self.by_region.values()}
        for _server, cluster in sorted(clusters.items()):
            if not self.reachable(cluster):
                continue
            try:
                self._workloads_in(cluster, desired, services)
            except KubeError as err:
                self.failed(
                    cluster, err, region=self.region_of(cluster), target="deployment", name=""
                )

    def _workloads_in(
        self,
        cluster: Cluster,
        desired: dict[tuple[str, str], dict[str, Any]],
        services: dict[tuple[str, str], tuple[dict[str, Any], str]],
    ) -> None:
        existing = {
            d["metadata"]["name"]: d
            for d in cluster.list(
                "apps/v1", "Deployment", self.namespace, label_selector=MANAGED_MODEL
            )
        }
        mine = {name: d for (srv, name), d in desired.items() if srv == cluster.server}
        for name in sorted(set(existing) - set(mine)):
            labels = existing[name]["metadata"].get("labels") or {}
            model, region, pool = self._identity(labels)
            if model is None or pool is None:
                self._delete_deployment(cluster, name, region, "its LLMModel or pool is gone")
                continue
            canonical = deployment_name(model.name, region, pool.name)
            if name != canonical:
                # named by an older version: its replacement (if the plan wants replicas)
                # is created with the workloads up, this one goes with the removals
                self._delete_deployment(cluster, name, region, f"renamed to {canonical}")
                continue
            try:
                mine[name] = render_deployment(model, region, pool, 0, self.namespace)
            except ValueError:
                self._delete_deployment(cluster, name, region, "no profile for its pool's GPU type")
        for name, dep in sorted(mine.items()):
            cur = existing.get(name)
            before = int((cur or {}).get("spec", {}).get("replicas") or 0) if cur else None
            want = dep["spec"]["replicas"]
            if cur is None and want == 0:
                continue
            labels = dep["metadata"]["labels"]
            _model, region, _pool = self._identity(labels)
            where = f"{labels[LABEL_MODEL]}@{labels[LABEL_REGION]}/{labels[LABEL_POOL]}"
            if before is None:
                line = f"{where}: replicas 0 -> {want} (create Deployment {name})"
            elif before == want:
                line = f"{where}: Deployment {name} template updated"
            else:
                line = f"{where}: replicas {before} -> {want}"
            reason = (
                "ScaledDownReplicas"
                if before is not None and want < before
                else ("ScaledUpReplicas" if before is None or want > before else "UpdatedReplicas")
            )
            ch = self._diff(
                cluster, dep, Phase.WORKLOADS_UP, Phase.WORKLOADS_DOWN, line, reason, region
            )
            if ch is not None:
                self.changes.append(ch)
        for (srv, name), (svc, region) in sorted(services.items()):
            if srv != cluster.server:
                continue
            ch = self._diff(
                cluster,
                svc,
                Phase.WORKLOADS_UP,
                None,
                f"Service {name} applied",
                "AppliedService",
                region,
            )
            if ch is not None:
                self.changes.append(ch)
        wanted = {name for (srv, name) in services if srv == cluster.server}
        stale = {
            s["metadata"]["name"]: s
            for s in cluster.list("v1", "Service", self.namespace, label_selector=MANAGED_MODEL)
        }
        for name in sorted(set(stale) - wanted):
            _model, region, _pool = self._identity(stale[name]["metadata"].get("labels") or {})
            self.changes.append(
                _delete(
                    Phase.WORKLOADS_DOWN,
                    cluster,
                    "Service",
                    "v1",
                    name,
                    self.namespace,
                    f"Service {name}: deleted (no replicas of its model in its region)",
                    "DeletedService",
                    region,
                )
            )

    def _delete_deployment(self, cluster: Cluster, name: str, region: str, why: str) -> None:
        """Queue the deletion of a managed Deployment no plan can scale any more."""
        self.changes.append(
            _delete(
                Phase.WORKLOADS_DOWN,
                cluster,
                "Deployment",
                "apps/v1",
                name,
                self.namespace,
                f"Deployment {name}: deleted ({why})",
                "DeletedReplicas",
                region,
            )
        )

    def routing(self) -> None:
        ingress = self.policy.spec.ingress
        table = routing_table(self.plan, self.snapshot.tenants)
        doc = routing_document(
            table,
            policy=self.policy.name,
            tier_header=ingress.tier_header,
            tenant_header=ingress.tenant_header,
            served_names={m.name: m.spec.served_model_name for m in self.snapshot.models},
        )
        text = routing_json(doc)
        regions_of: dict[str, set[str]] = defaultdict(set)
        for region, c in self.by_region.items():
            regions_of[c.server].add(region)
        clusters = {c.server: c for c in self.by_region.values()}
        for e in table.entries:
            if e.model not in self.models:
                self.error(
                    e.origin,
                    "httproute",
                    route_name(e.model),
                    f"plan routing[{e.model}/{e.tier}/{e.origin}]: no LLMModel",
                )
        router_entries = self._router_entries(table)
        for server, cluster in sorted(clusters.items()):
            if not self.reachable(cluster):
                continue
            region = self.region_of(cluster)
            cm = render_config_map(
                ingress.routing_config_map,
                self.namespace,
                {ROUTING_KEY: text},
                component="routing",
            )
            ch = self._diff(
                cluster,
                cm,
                Phase.ROUTING,
                None,
                f"ConfigMap {cm['metadata']['name']}: routing policy updated",
                "UpdatedRouting",
                region,
            )
            if ch is not None:
                self.changes.append(ch)
            self._router_config_in(cluster, region)
            if ingress.parent_refs:
                try:
                    self._routes_in(cluster, regions_of[server], table, router_entries)
                except KubeError as err:
                    self.failed(cluster, err, region=region, target="httproute", name="")

    # ------------------------------------------------------------ the router service

    def _routed_tiers(self) -> list[Any]:
        """The SLATiers that route, among the models of the fleet: a tier whose reference or
        a candidate is not an LLMModel of the fleet (deleted, or never made) does not route
        (the SLATier's status says why, from the validation) and is no actuation error, so
        the rest of the plan is still applied."""
        models = {m.name for m in self.snapshot.models}
        return sorted(
            (t for t in self.snapshot.tiers if t.spec.routing is not None
             and {t.spec.routing.reference_model, *t.spec.routing.candidates} <= models),
            key=lambda t: t.name,
        )

    def _router_entries(self, table: RoutingTable) -> list[RouteEntry]:
        """The route entries the router's HTTPRoutes follow (none when no tier routes); a
        candidate served nowhere is an error (its requests would find no backend)."""
        tiers = self._routed_tiers()
        if not tiers:
            return []
        serving: dict[str, set[str]] = defaultdict(set)
        for mr in self.plan.replicas:
            if mr.replicas > 0:
                serving[mr.model].add(mr.region)
        entries, problems = router_route_entries(
            table, tiers, {m: sorted(r) for m, r in serving.items()}, total=table.total
        )
        for msg in problems:
            self._once("", "httproute", "", msg)
        return entries

    def _once(self, region: str, target: Target, name: str, message: str) -> None:
        """An error that concerns the fleet, not one cluster: reported once."""
        if message not in self.errors:
            self.error(region, target, name, message)

    def _router_document(self, calibrations: Mapping[str, TierCalibration]) -> dict[str, Any]:
        """``router.json`` for the routed tiers: a tier that cannot be rendered is left out
        (an error); a stored calibration that no longer fits its tier is dropped (an error:
        the tier is published uncalibrated, every request to its reference)."""
        ingress = self.policy.spec.ingress
        kw = {"tier_header": ingress.tier_header, "tenant_header": ingress.tenant_header}
        snap = self.snapshot
        doc = router_config_document([], snap.models, snap.tenants, {}, **kw)
        where = f"ConfigMap {ROUTER_CONFIG_MAP}"
        for tier in self._routed_tiers():
            cal = {tier.name: calibrations[tier.name]} if tier.name in calibrations else {}
            try:
                one = router_config_document([tier], snap.models, snap.tenants, cal, **kw)
            except ValueError as err:
                if not cal:
                    self._once("", "configmap", ROUTER_CONFIG_MAP,
                               f"{where}: tier {tier.name} left out: {err}")  # fmt: skip
                    continue
                self._once("", "configmap", ROUTER_CONFIG_MAP,
                           f"{where}: the stored calibration of tier {tier.name} is not used "
                           f"(every request to its reference until recalibrated): {err}")  # fmt: skip
                try:
                    one = router_config_document([tier], snap.models, snap.tenants, {}, **kw)
                except ValueError as err2:
                    self._once("", "configmap", ROUTER_CONFIG_MAP,
                               f"{where}: tier {tier.name} left out: {err2}")  # fmt: skip
                    continue
            doc["tiers"].update(one["tiers"])
        return doc

    def _router_config_in(self, cluster: Cluster, region: str) -> None:
        """The router's ConfigMap in ``cluster`` when a tier routes (or to empty an earlier
        one llmfleet made once none does)."""
        if not self.reachable(cluster):
            return
        name = ROUTER_CONFIG_MAP
        try:
            stored = cluster.get("v1", "ConfigMap", name, self.namespace)
        except KubeError as err:
            self.failed(cluster, err, region=region, target="configmap", name=name,
                        where=f"ConfigMap {name}")  # fmt: skip
            return
        labels = ((stored or {}).get("metadata") or {}).get("labels") or {}
        ours = labels.get(MANAGED_BY) == MANAGER and labels.get(LABEL_COMPONENT) == ROUTER_COMPONENT
        if not self._routed_tiers() and not ours:
            return
        doc = self._router_document(stored_calibrations(stored))
        cm = render_router_config_map(doc, name, self.namespace)
        tiers = ", ".join(sorted(doc["tiers"])) or "none"
        ch = self._diff(
            cluster,
            cm,
            Phase.ROUTING,
            None,
            f"ConfigMap {name}: model router config updated (routed tiers: {tiers})",
            "UpdatedRouting",
            region,
        )
        if ch is not None:
            self.changes.append(ch)

    def _routes_in(
        self,
        cluster: Cluster,
        local: set[str],
        table: RoutingTable,
        router_entries: list[RouteEntry] | None = None,
    ) -> None:
        ingress = self.policy.spec.ingress
        region = self.region_of(cluster)
        wanted: dict[str, dict[str, Any]] = {}
        # the model router's routes (matching the header it sets), then the plan's own
        groups = [(render_router_httproutes, m,
                   [e for e in router_entries or () if e.model == m])
                  for m in sorted({e.model for e in router_entries or ()})]
        groups += [(render_httproutes, m, list(table.for_model(m))) for m in table.models()]
        for render, model_name, all_entries in groups:
            model = self.models.get(model_name)
            entries = [e for e in all_entries if e.origin in local]
            if model is None or not entries:
                continue
            for route in render(
                model,
                entries,
                namespace=self.namespace,
                parent_refs=ingress.parent_refs,
                policy_namespace=self.policy.namespace or self.namespace,
                tier_header=ingress.tier_header,
                tenant_header=ingress.tenant_header,
                local_regions=frozenset(local),
                match_origin=len(local) > 1,
                total=table.total,
            ):
                wanted[route["metadata"]["name"]] = route
        existing = {
            r["metadata"]["name"]
            for r in cluster.list(
                GATEWAY_VERSION, "HTTPRoute", self.namespace, label_selector=MANAGED_ROUTING
            )
        }
        for name, route in sorted(wanted.items()):
            weights = "; ".join(
                ",".join(f"{b['name']}={b['weight']}" for b in rule["backendRefs"])
                for rule in route["spec"]["rules"]
            )
            ch = self._diff(
                cluster,
                route,
                Phase.ROUTING,
                None,
                f"HTTPRoute {name}: {weights}",
                "UpdatedRouting",
                region,
            )
            if ch is not None:
                self.changes.append(ch)
        for name in sorted(existing - set(wanted)):
            self.changes.append(
                _delete(
                    Phase.ROUTING,
                    cluster,
                    "HTTPRoute",
                    GATEWAY_VERSION,
                    name,
                    self.namespace,
                    f"HTTPRoute {name}: deleted (no routes)",
                    "UpdatedRouting",
                    region,
                )
            )


def _execute(cluster: Cluster, ch: Change, namespace: str, ensured: set[str]) -> bool:
    """Write one change; False when a deletion found the object already gone."""
    if ch.verb == "delete":
        return cluster.delete(ch.api_version, ch.kind, ch.name, ch.namespace)
    assert ch.obj is not None
    if ch.namespace == namespace and cluster.server not in ensured:
        cluster.ensure_namespace(namespace)
        ensured.add(cluster.server)
    check_owned(cluster, ch.obj)  # again: it may have appeared since the changes were computed
    cluster.apply(ch.obj)
    if ch.status is not None:
        cluster.apply(ch.status, subresource="status")
    return True


def _execution_error(ch: Change, err: KubeError) -> ActuationError:
    msg = str(err) if isinstance(err, ForeignObject) else f"{ch.line}: {err}"
    return ActuationError(ch.region, target_of(ch.kind), ch.name, msg)


def actuate(
    clusters: Clusters,
    snapshot: FleetSnapshot,
    plan: FleetPlanSpec,
    policy: FleetPolicy,
    namespace: str,
    dry_run: bool = False,
) -> ActuationResult:
    """Make the fleet match ``plan`` (see the module docstring)."""
    result = ActuationResult(dry_run=dry_run)
    errors: list[ActuationError] = []
    regions = sorted(snapshot.regions, key=lambda r: r.name)
    by_region = _resolve(clusters, regions, errors, result.unreachable)
    unresolved = len(errors)
    planner = _Planner(snapshot, plan, policy, namespace, by_region, errors)
    try:
        planner.nodes()
        planner.workloads()
    except KubeError as err:
        errors.append(ActuationError("", "other", "", str(err)))
    # capacity of a reachable cluster that cannot be read or checked: neither move routing
    # nor remove anything (an unreachable region is held as it is: it does not block)
    blocked = len(errors) > unresolved
    try:
        planner.routing()
    except KubeError as err:
        errors.append(ActuationError("", "other", "", str(err)))
    if planner.down:
        before = set(result.unreachable)
        _unreachable_regions(by_region, planner.down, result.unreachable)
        errors += [
            _unreachable_error(r, result.unreachable[r])
            for r in sorted(set(result.unreachable) - before)
        ]
        planner.changes = [c for c in planner.changes if c.cluster not in planner.down]
    for msg in errors:
        result.events.append(
            ActuationEvent(
                "Warning", "ActuationFailed", msg, "FleetPolicy", policy.name, policy.namespace
            )
        )
    budget = policy.spec.max_changes_per_cycle
    by_server = {c.server: c for c in by_region.values()}
    ensured: set[str] = set()
    todo = sorted(planner.changes, key=lambda c: c.phase)
    for i, ch in enumerate(todo):
        if blocked and ch.phase >= Phase.ROUTING:
            result.pending += [f"{c.line} (blocked: a capacity change failed)" for c in todo[i:]]
            break
        if result.changes >= budget:
            result.budget_exhausted = True
            result.pending += [c.line for c in todo[i:]]
            result.events.append(
                ActuationEvent(
                    "Warning",
                    "ChangeBudgetExhausted",
                    f"maxChangesPerCycle {budget} reached; {len(todo) - i} changes left for "
                    "the next cycle",
                    "FleetPolicy",
                    policy.name,
                    policy.namespace,
                )
            )
            break
        if ch.cluster in planner.down:
            result.pending.append(f"{ch.line} (cluster unreachable)")
            continue
        try:
            if not dry_run:
                _execute(by_server[ch.cluster], ch, namespace, ensured)
        except KubeError as err:
            if isinstance(err, ClusterUnreachable):
                planner.down.setdefault(ch.cluster, str(err))
                _unreachable_regions(by_region, planner.down, result.unreachable)
            error = _execution_error(ch, err)
            errors.append(error)
            result.events.append(
                ActuationEvent(
                    "Warning", "ActuationFailed", error, ch.kind, ch.name, ch.namespace, ch.cluster
                )
            )
            if ch.phase < Phase.ROUTING:
                blocked = True
            continue
        result.changes += 1
        result.diff.append(ch.line)
        result.events.append(
            ActuationEvent("Normal", ch.reason, ch.line, ch.kind, ch.name, ch.namespace, ch.cluster)
        )
    result.errors = tuple(errors)
    _remember(clusters, result.unreachable)
    return result


def observe(clusters: Clusters, snapshot: FleetSnapshot, namespace: str) -> Observation:
    """Nodes per (region, pool) and replicas per (model, region, pool) now."""
    obs = Observation()
    errors: list[ActuationError] = []
    regions = sorted(snapshot.regions, key=lambda r: r.name)
    by_region = _resolve(clusters, regions, errors, obs.unreachable)
    down: dict[str, str] = {}
    for r in regions:
        cluster = by_region.get(r.name)
        if cluster is None:
            continue
        for pool in r.spec.pools:
            if cluster.server in down:
                break
            try:
                obs.nodes[(r.name, pool.name)] = provider_for(
                    cluster, r.name, pool, namespace
                ).observe()
            except UnknownProvider as err:
                errors.append(ActuationError(r.name, "nodepool", pool.name, str(err)))
            except ClusterUnreachable as err:
                down[cluster.server] = str(err)
            except KubeError as err:
                errors.append(
                    ActuationError(
                        r.name, "nodepool", pool.name, f"pool {r.name}/{pool.name}: {err}"
                    )
                )
    model_by_label = {label_value(m.name): m.name for m in snapshot.models}
    region_by_label = {label_value(r.name): r.name for r in regions}
    for server, cluster in sorted({c.server: c for c in by_region.values()}.items()):
        if server in down:
            continue
        try:
            deps = cluster.list("apps/v1", "Deployment", namespace, label_selector=MANAGED_MODEL)
        except ClusterUnreachable as err:
            down[server] = str(err)
            continue
        except KubeError as err:
            region = _region_of_cluster(by_region, cluster)
            errors.append(ActuationError(region, "deployment", "", str(err)))
            continue
        for d in deps:
            labels = d["metadata"].get("labels") or {}
            model = labels.get(LABEL_MODEL, "")
            region = region_by_label.get(labels.get(LABEL_REGION, ""), "")
            key = (model_by_label.get(model, model), region, labels.get(LABEL_POOL, ""))
            if region not in by_region or by_region[region].server != server:
                continue
            obs.replicas[key] = obs.replicas.get(key, 0) + int(
                (d.get("spec") or {}).get("replicas") or 0
            )
            obs.ready_replicas[key] = obs.ready_replicas.get(key, 0) + int(
                (d.get("status") or {}).get("readyReplicas") or 0
            )
    if down:
        before = set(obs.unreachable)
        _unreachable_regions(by_region, down, obs.unreachable)
        errors += [
            _unreachable_error(r, obs.unreachable[r]) for r in sorted(set(obs.unreachable) - before)
        ]
        gone = set(obs.unreachable)
        obs.nodes = {k: v for k, v in obs.nodes.items() if k[0] not in gone}
        obs.replicas = {k: v for k, v in obs.replicas.items() if k[1] not in gone}
        obs.ready_replicas = {k: v for k, v in obs.ready_replicas.items() if k[1] not in gone}
    obs.errors = tuple(errors)
    _remember(clusters, obs.unreachable)
    return obs


def remove_region(
    clusters: Clusters,
    region: Region,
    namespace: str,
    *,
    others: Iterable[Region],
    dry_run: bool = False,
) -> ActuationResult:
    """Delete everything llmfleet made for ``region`` (a Region being deleted) in its
    cluster, found by labels, never by name: first its routing, then its Deployments and
    Services of ``namespace``, then its static Nodes.

    Its routing is the managed HTTPRoutes and routing ConfigMap of ``namespace`` in its
    cluster; they are deleted only when no Region of ``others`` (the Regions that stay; the
    one removed is ignored there) is served by the same cluster, since they also route that
    Region's traffic (the next planning cycle re-renders them without ``region``). A Region
    of ``others`` whose cluster cannot be resolved is taken not to share it.

    Node pools of provider ``clusterAPI`` or ``karpenter`` belong to their owners and are
    left as they are (llmfleet only ever set their size); the Nodes of a ``static`` pool are
    llmfleet's and are deleted. Idempotent: once done, another call makes 0 changes. When
    the cluster cannot be reached nothing is deleted, the region is in ``unreachable`` and in
    ``errors`` (``complete`` is False: call again). No change budget applies.
    """
    result = ActuationResult(dry_run=dry_run)
    errors: list[ActuationError] = []
    by_region = _resolve(clusters, [region], errors, result.unreachable)
    cluster = by_region.get(region.name)
    changes: list[Change] = []
    if cluster is not None:
        stay = [o for o in others if o.name != region.name]
        elsewhere = _resolve(clusters, stay, [], {}) if stay else {}
        shared = sorted(o for o, c in elsewhere.items() if c.server == cluster.server)
        mine = f"{MANAGED_BY}={MANAGER},{LABEL_REGION}={label_value(region.name)}"
        why = f"Region {region.name} removed"
        try:
            if not shared:
                for kind, api in (("HTTPRoute", GATEWAY_VERSION), ("ConfigMap", "v1")):
                    try:
                        found = cluster.list(api, kind, namespace, label_selector=MANAGED_ROUTING)
                    except ApiNotServed:
                        found = []  # no Gateway API: llmfleet made no HTTPRoutes there
                    for o in found:
                        name = o["metadata"]["name"]
                        changes.append(
                            _delete(
                                Phase.ROUTING,
                                cluster,
                                kind,
                                api,
                                name,
                                namespace,
                                f"{kind} {name}: deleted ({why})",
                                "DeletedRouting",
                                region.name,
                            )
                        )
            for kind, api, ns, phase in (
                ("Deployment", "apps/v1", namespace, Phase.WORKLOADS_DOWN),
                ("Service", "v1", namespace, Phase.WORKLOADS_DOWN),
                ("Node", "v1", None, Phase.NODES_DOWN),
            ):
                for o in cluster.list(api, kind, ns, label_selector=mine):
                    name = o["metadata"]["name"]
                    changes.append(
                        _delete(
                            phase,
                            cluster,
                            kind,
                            api,
                            name,
                            ns,
                            f"{kind} {name}: deleted ({why})",
                            f"Deleted{kind}",
                            region.name,
                        )
                    )
        except ClusterUnreachable as err:
            result.unreachable[region.name] = str(err)
            errors.append(_unreachable_error(region.name, str(err)))
            changes = []
        except KubeError as err:
            errors.append(ActuationError(region.name, "other", region.name, f"{why}: {err}"))
            changes = []
    for ch in sorted(changes, key=lambda c: c.phase):
        try:
            if (
                not dry_run
                and cluster is not None
                and not cluster.delete(ch.api_version, ch.kind, ch.name, ch.namespace)
            ):
                continue  # already gone
        except KubeError as err:
            error = _execution_error(ch, err)
            errors.append(error)
            if isinstance(err, ClusterUnreachable):
                result.unreachable[region.name] = str(err)
                break
            continue
        result.changes += 1
        result.diff.append(ch.line)
        result.events.append(
            ActuationEvent("Normal", ch.reason, ch.line, ch.kind, ch.name, ch.namespace, ch.cluster)
        )
    for e in errors:
        result.events.append(
            ActuationEvent("Warning", "RegionCleanupFailed", e, "Region", region.name)
        )
    result.errors = tuple(errors)
    return result


@dataclass(frozen=True)
class SharesRead:
    """What :func:`read_router_shares` found: the shares (None: no routing split), the
    ``RouterSharesRead`` condition to set (``status``, ``reason``, ``message``), and whether
    to post the message as a Warning Event."""

    shares: RouterShares | None
    status: Literal["True", "False"]
    reason: str
    message: str
    warning: bool = False


def read_router_shares(
    cluster: Cluster, namespace: str, name: str = ROUTER_CONFIG_MAP
) -> SharesRead:
    """The router's calibrated shares, ``data["shares.json"]`` of ConfigMap
    ``namespace/name`` (format ``shares_document``), for one planning cycle. No ConfigMap or
    no key: no shares. A document that is not of the format, or a ConfigMap that cannot be
    read: no shares, a ``False`` condition and a warning naming the ConfigMap and key. Never
    raises: the cycle plans without a routing split."""
    where = f"ConfigMap {namespace}/{name}"
    nothing = "the cycle plans without router shares (no routing split)"
    try:
        cm = cluster.get("v1", "ConfigMap", name, namespace)
    except Exception as err:  # the reader's boundary: never stop the cycle
        text = str(err) if isinstance(err, KubeError) else f"{type(err).__name__}: {err}"
        msg = f"{where} key {SHARES_KEY}: cannot be read: {text}; {nothing}"
        return SharesRead(None, "False", SharesReason.UNREADABLE, msg, warning=True)
    try:
        shares = shares_from_config_map(cm)
    except (ConfigError, ValueError, TypeError) as err:
        msg = f"{where}: {err}; {nothing}"
        return SharesRead(None, "False", SharesReason.INVALID, msg, warning=True)
    if shares is None:
        why = "not found" if cm is None else f"has no key {SHARES_KEY}"
        return SharesRead(None, "False", SharesReason.NONE, f"{where} {why}: no routing split")
    tiers = ", ".join(t.tier for t in shares.tiers) or "none"
    msg = f"{where} key {SHARES_KEY}: shares of tier(s) {tiers}"
    return SharesRead(shares, "True", SharesReason.READ, msg)
