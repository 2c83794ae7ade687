"""The fleet objects one policy plans: cluster-scoped objects plus the namespaced ones of the
policy's namespace."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmfleet.api.references import FleetSnapshot
from llmfleet.api.resource import Resource


def policy_snapshot(objects: Sequence[Resource], namespace: str | None) -> FleetSnapshot:
    """Cluster-scoped objects plus the namespaced ones of ``namespace`` (no plans, no
    policies), sorted by kind, namespace and name."""
    snap = FleetSnapshot()
    buckets: dict[str, list[Any]] = {
        "Region": snap.regions,
        "LLMModel": snap.models,
        "SLATier": snap.tiers,
        "TenantQuota": snap.tenants,
    }
    for o in sorted(objects, key=lambda o: (o.info.kind, o.namespace or "", o.name)):
        bucket = buckets.get(o.info.kind)
        if bucket is None:
            continue
        if o.info.scope == "Namespaced" and o.namespace != namespace:
            continue
        bucket.append(o)
    return snap
