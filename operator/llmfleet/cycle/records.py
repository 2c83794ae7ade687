"""The FleetPlan record and the planning schedule (pure: manifests and times, no I/O).

Scheduling. kopf timers have one fixed interval per handler, while each policy has its own
``spec.intervalSeconds``; so a short timer *tick* runs on every FleetPolicy and plans when

    1. now >= status.nextRunTime, or the policy has no nextRunTime yet, or
    2. the ``Planned`` condition's observedGeneration differs from metadata.generation
       (the spec changed: plan again at once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from llmfleet.api.base import API_VERSION, GROUP
from llmfleet.api.conditions import PLANNED
from llmfleet.api.plan import FleetPlanSpec

POLICY_LABEL = f"{GROUP}/policy"


def plan_name(policy: str, made_at: datetime) -> str:
    """``<policy>-<yyyymmddhhmmss>`` (UTC)."""
    return f"{policy}-{made_at.astimezone(UTC):%Y%m%d%H%M%S}"


def fleet_plan_object(
    spec: FleetPlanSpec, name: str, namespace: str, owner: Mapping[str, Any]
) -> dict[str, Any]:
    """The FleetPlan manifest, owned by the policy (deleted with it)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "FleetPlan",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {POLICY_LABEL: spec.policy},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "FleetPolicy",
                    "name": owner["name"],
                    "uid": owner["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": spec.to_wire(),
    }


def plans_to_delete(plans: Sequence[Mapping[str, Any]], keep: int) -> list[str]:
    """Names of the oldest plans beyond ``keep`` (by spec.madeAt, then name)."""
    ordered = sorted(
        plans,
        key=lambda p: (str((p.get("spec") or {}).get("madeAt", "")), p["metadata"]["name"]),
    )
    return [p["metadata"]["name"] for p in ordered[: max(0, len(ordered) - keep)]]


def plans_to_supersede(plans: Sequence[Mapping[str, Any]], newest: str) -> list[str]:
    """Names of the plans other than ``newest`` still ``Pending`` or ``Applying``: a newer
    plan replaced them before they were fully applied."""
    out = []
    for p in plans:
        name = p["metadata"]["name"]
        phase = (p.get("status") or {}).get("phase") or "Pending"
        if name != newest and phase in ("Pending", "Applying"):
            out.append(name)
    return sorted(out)


def is_due(status: Mapping[str, Any], generation: int | None, now: datetime) -> bool:
    """Rules 1-2 of the module docstring."""
    planned = next((c for c in status.get("conditions") or [] if c.get("type") == PLANNED), None)
    if planned is None or planned.get("observedGeneration") != generation:
        return True
    nxt = status.get("nextRunTime")
    if not nxt:
        return True
    try:
        when = datetime.fromisoformat(str(nxt).replace("Z", "+00:00"))
    except ValueError:
        return True
    return now >= when


def iso(t: datetime) -> str:
    """RFC 3339 in UTC, seconds precision (what status fields hold)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
