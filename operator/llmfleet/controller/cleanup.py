"""Deleting a Region removes what the operator made for it (a kopf finalizer).

kopf puts its finalizer on every Region; when a Region is deleted, :func:`remove_region`
(``kube.actuate``) deletes, in every namespace a FleetPolicy plans, the region's routing (if
no other Region shares its cluster), Deployments, Services and static Nodes, found by their
labels. A delete that fails on a reachable cluster is retried (``TemporaryError``); a
cluster that cannot be reached at all (its Secret gone, its apiserver dead) does not keep
the Region from being deleted for ever: what is left there is named in a Warning Event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf
from pydantic import ValidationError

from llmfleet.api.base import GROUP, VERSION
from llmfleet.api.policy import FleetPolicy
from llmfleet.api.region import Region
from llmfleet.api.resource import Resource
from llmfleet.controller.planning import PlanningLoop
from llmfleet.kube.actuate import RegionClusters, remove_region

RETRY_SECONDS = 30.0


def _objects(kwargs: Mapping[str, Any], plural: str) -> list[Resource]:
    idx = kwargs.get(f"idx_{plural}")
    return [o for values in (idx or {}).values() for o in values]


def region_deleted(
    loop: PlanningLoop, body: kopf.Body, logger: logging.Logger, **kwargs: Any
) -> None:
    """The finalizer's work for one deleted Region (module docstring)."""
    try:
        region = Region.from_wire(
            {"apiVersion": body.get("apiVersion"), "kind": "Region",
             "metadata": dict(body.metadata), "spec": dict(body.spec)}
        )  # fmt: skip
    except ValidationError as err:
        # a Region the operator could never read made nothing: let it go
        logger.warning("Region %s is unreadable, nothing to clean up: %s", body.metadata.name, err)
        return
    others = [o for o in _objects(kwargs, "regions") if isinstance(o, Region) and o.name != region.name]
    namespaces = sorted(
        {o.namespace or "default" for o in _objects(kwargs, "fleetpolicies") if isinstance(o, FleetPolicy)}
    )
    left: list[str] = []
    with RegionClusters(
        loop.cluster, kubeconfig_namespaces=loop.settings.kubeconfig_secret_namespaces
    ) as clusters:
        for ns in namespaces:
            res = remove_region(clusters, region, ns, others=others)
            for line in res.diff:
                logger.info("Region %s removed: %s", region.name, line)
            if res.unreachable:
                left += [f"{ns}: {why}" for why in res.unreachable.values()]
            elif not res.complete:
                raise kopf.TemporaryError(
                    f"Region {region.name}: cleanup in {ns} not complete: "
                    + "; ".join(str(e) for e in res.errors[:3]),
                    delay=RETRY_SECONDS,
                )
    if left:
        msg = (
            f"Region {region.name} deleted, but its cluster could not be reached: what llmfleet "
            f"made there is left behind ({'; '.join(left)})"
        )
        kopf.event(body, type="Warning", reason="CleanupIncomplete", message=msg)
        logger.warning("%s", msg)


def register(registry: kopf.OperatorRegistry, loop: PlanningLoop) -> None:
    """Add the Region finalizer to ``registry`` (only where the operator plans)."""
    if not loop.settings.enabled:
        return

    def on_delete(body: kopf.Body, logger: logging.Logger, **kwargs: Any) -> None:
        region_deleted(loop, body, logger, **kwargs)

    # kopf's handler protocols spell out every kwarg; ours names only what it uses
    handler: Any = on_delete
    kopf.on.delete(GROUP, VERSION, "regions", registry=registry, id="cleanup")(handler)
