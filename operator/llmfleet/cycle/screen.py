"""Isolation: an object that cannot be planned is left out of the cycle, never the fleet.

The apiserver checks each object against its schema, and the validator checks references;
neither sees whether the planner can use an object. :func:`screen` does, object by object:

* every name the plan record and the generated objects carry (Region and pool names,
  LLMModel names) is a DNS-1123 label of at most 63 characters, as FleetPlan's fields
  require (an LLMModel named ``evil.model`` passes the apiserver -- it is a valid object
  name -- but no plan can name it);
* the object alone forms a planning instance (``plan.instance.from_snapshot`` accepts it:
  an interactive tier needs a TTFT, a pool's minNodes <= maxNodes, ...);
* an LLMModel can run on some pool of its allowed Regions, and on one in each Region its
  ``allowedRegions`` lists when it must keep ``minReplicasPerRegion`` replicas there (else
  the whole plan is infeasible; with no list, a Region with no pool for it hosts none);
* a TenantQuota's tier is one that is planned (not unknown, not itself left out).

What is left out is returned as :class:`Excluded` values naming the object, the field and
the fix; the controller reports them (``ObjectsExcluded`` on the policy, ``Valid=False`` and
a Warning Event on the object) and plans the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from llmfleet.api.base import DNS_LABEL
from llmfleet.api.conditions import Reason
from llmfleet.api.model import LLMModel
from llmfleet.api.policy import FleetPolicy
from llmfleet.api.references import FleetSnapshot, ObjectKey
from llmfleet.api.region import Region
from llmfleet.api.resource import Resource
from llmfleet.api.tier import SLATier
from llmfleet.plan.instance import CurrentState, InstanceError, from_snapshot

_LABEL = re.compile(DNS_LABEL)
R = TypeVar("R", bound=Resource)


@dataclass(frozen=True)
class Excluded:
    """One object the cycle left out, and why."""

    key: ObjectKey
    field: str
    """The field at fault, e.g. ``metadata.name`` or ``spec.pools[0].name``."""
    message: str
    """A sentence naming the object, the field and the fix."""
    reason: str = Reason.CANNOT_BE_PLANNED

    def __str__(self) -> str:
        return f"{self.key}: {self.field}: {self.message}"


def _label_problem(value: str, what: str) -> str | None:
    if len(value) > 63 or not _LABEL.fullmatch(value):
        return (
            f"{what} {value!r} is not a DNS-1123 label (lower-case letters, digits and '-', "
            "at most 63 characters, starting and ending with a letter or digit): the plan "
            "names it in FleetPlans and generated object names; rename the object"
        )
    return None


def _alone(policy: FleetPolicy, snap: FleetSnapshot) -> str | None:
    """Why ``snap`` (one object) cannot form a planning instance, or None."""
    try:
        from_snapshot(snap, [], CurrentState(), policy)
    except (InstanceError, ValueError, TypeError, KeyError, AttributeError) as err:
        return f"{type(err).__name__}: {err}" if not isinstance(err, InstanceError) else str(err)
    return None


def _region(r: Region, policy: FleetPolicy) -> tuple[str, str] | None:
    bad = _label_problem(r.name, "Region name")
    if bad:
        return "metadata.name", bad
    for i, p in enumerate(r.spec.pools):
        bad = _label_problem(p.name, "pool name")
        if bad:
            return f"spec.pools[{i}].name", bad
    why = _alone(policy, FleetSnapshot(regions=[r]))
    return ("spec", f"cannot be planned: {why}") if why else None


def _model(m: LLMModel, policy: FleetPolicy) -> tuple[str, str] | None:
    bad = _label_problem(m.name, "LLMModel name")
    if bad:
        return "metadata.name", bad
    why = _alone(policy, FleetSnapshot(models=[m]))
    return ("spec", f"cannot be planned: {why}") if why else None


def _placeable(m: LLMModel, regions: Sequence[Region]) -> tuple[str, str] | None:
    """A model no pool can run (in its allowed regions) cannot be planned; one that must keep
    ``minReplicasPerRegion`` replicas in an allowed region where no pool fits it would make
    the whole fleet's plan infeasible."""
    fits = {
        r.name
        for r in regions
        if any(
            p.gpu_type == prof.gpu_type and prof.gpus_per_replica <= p.gpus_per_node
            for p in r.spec.pools
            for prof in m.spec.profiles
        )
    }
    allowed = m.spec.allowed_regions or [r.name for r in regions]
    known = [r for r in allowed if r in {x.name for x in regions}]
    if known and not fits & set(known):
        return (
            "spec.profiles",
            "no pool of any allowed Region runs this model (GPU type and GPUs per replica); "
            "add a profile for a GPU type the Regions offer",
        )
    if m.spec.min_replicas_per_region > 0 and m.spec.allowed_regions:
        lacking = sorted(set(known) - fits)
        if lacking:
            return (
                "spec.minReplicasPerRegion",
                f"minReplicasPerRegion={m.spec.min_replicas_per_region} in every region of "
                f"spec.allowedRegions, but no pool of {', '.join(lacking)} runs it; list only "
                "regions that can, or set minReplicasPerRegion to 0",
            )
    return None


def _tier(t: SLATier, policy: FleetPolicy) -> tuple[str, str] | None:
    why = _alone(policy, FleetSnapshot(tiers=[t]))
    return ("spec", f"cannot be planned: {why}") if why else None


def object_problem(obj: Resource) -> tuple[str, str] | None:
    """(field, message) when ``obj`` alone cannot be planned, else None (the validator's
    view of :func:`screen`, under a default FleetPolicy)."""
    policy = FleetPolicy.model_validate(
        {"apiVersion": "llmfleet.dev/v1alpha1", "kind": "FleetPolicy",
         "metadata": {"name": "screen", "namespace": obj.namespace or "default"}, "spec": {}}
    )  # fmt: skip
    if isinstance(obj, Region):
        return _region(obj, policy)
    if isinstance(obj, LLMModel):
        return _model(obj, policy)
    if isinstance(obj, SLATier):
        return _tier(obj, policy)
    return None


def screen(
    snapshot: FleetSnapshot, policy: FleetPolicy
) -> tuple[FleetSnapshot, tuple[Excluded, ...]]:
    """The objects that can be planned, and those left out (module docstring)."""
    out: list[Excluded] = []

    def keep(objs: Sequence[R], check: Callable[[R, FleetPolicy], tuple[str, str] | None]) -> list[R]:
        kept: list[R] = []
        for o in objs:
            bad = check(o, policy)
            if bad is None:
                kept.append(o)
            else:
                out.append(Excluded(ObjectKey.of(o), bad[0], bad[1]))
        return kept

    regions = keep(snapshot.regions, _region)
    models = keep(snapshot.models, _model)
    models = keep(models, lambda m, _p: _placeable(m, regions))
    tiers = keep(snapshot.tiers, _tier)
    planned_tiers = {t.name for t in tiers}
    tenants = []
    for q in snapshot.tenants:
        if q.spec.tier in planned_tiers:
            tenants.append(q)
        else:
            out.append(
                Excluded(
                    ObjectKey.of(q),
                    "spec.tier",
                    f"tier {q.spec.tier!r} is not an SLATier the policy plans (unknown, or "
                    "itself left out); name an existing SLATier",
                )
            )
    clean = replace(snapshot, regions=regions, models=models, tiers=tiers, tenants=tenants)
    return clean, tuple(out)
