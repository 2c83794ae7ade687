"""Floors: what a plan may not go under, entered into the planning instance as bounds.

Two sources, merged to the higher of the two:

* a region whose cluster does not answer is *held* (``pinned``) at the last plan's figures:
  each of its pools at exactly the last plan's nodes, each of its placements at exactly the
  last plan's replicas (0 where the last plan had none) -- it is neither scaled down nor
  counted on for more;
* without demand data (the quotas' fallback) nothing is scaled down: every pool's nodes and
  every placement's replicas are at least what runs now.

:func:`bounded` writes them into the instance -- pool ``min_nodes``/``max_nodes`` and
``replica_bounds`` -- so the solver plans within them and the plan it returns (its cost,
gap and explanation) is the plan that is actuated; nothing patches the plan afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from llmfleet.api.plan import FleetPlanSpec
from llmfleet.plan.instance import PlanningInstance


@dataclass(frozen=True)
class Floors:
    """What a plan may not go under: ``nodes`` per (region, pool) and ``replicas`` per
    (model, region, pool). Regions in ``pinned`` (unreachable ones) are held exactly: their
    pools neither grow nor shrink and their replicas are the floors (0 where none)."""

    nodes: Mapping[tuple[str, str], int] = field(default_factory=dict)
    replicas: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    pinned: frozenset[str] = frozenset()
    why: str = ""

    def __bool__(self) -> bool:
        return bool(self.nodes or self.replicas or self.pinned)

    def merged(self, other: Floors) -> Floors:
        """Both floors (the higher of two); the pinned regions' own figures win."""
        nodes = {k: max(v, other.nodes.get(k, 0)) for k, v in self.nodes.items()}
        nodes |= {k: v for k, v in other.nodes.items() if k not in nodes}
        replicas = {k: max(v, other.replicas.get(k, 0)) for k, v in self.replicas.items()}
        replicas |= {k: v for k, v in other.replicas.items() if k not in replicas}
        pinned = self.pinned | other.pinned
        for src in (self, other):
            if src.pinned:
                nodes |= {k: v for k, v in src.nodes.items() if k[0] in src.pinned}
                replicas |= {k: v for k, v in src.replicas.items() if k[1] in src.pinned}
        return Floors(nodes, replicas, pinned, "; ".join(w for w in (self.why, other.why) if w))


def held_regions(last: FleetPlanSpec | None, regions: Mapping[str, str]) -> Floors:
    """Pin the unreachable ``regions`` (name -> why) at the last plan's figures."""
    if last is None or not regions:
        return Floors(why=_unreachable_note(regions, None) if regions else "")
    names = set(regions)
    return Floors(
        nodes={(n.region, n.pool): n.nodes for n in last.nodes if n.region in names},
        replicas={
            (r.model, r.region, r.pool): r.replicas for r in last.replicas if r.region in names
        },
        pinned=frozenset(names),
        why=_unreachable_note(regions, last),
    )


def _unreachable_note(regions: Mapping[str, str], last: FleetPlanSpec | None) -> str:
    names = ", ".join(sorted(regions))
    held = "held at the last plan's nodes and replicas" if last else "not changed (no plan yet)"
    return f"region(s) {names} unreachable: {held}"


def bounded(inst: PlanningInstance, floors: Floors) -> PlanningInstance:
    """``inst`` with the floors as bounds: every pool's minNodes raised to its floor (a
    pinned region's pools held at exactly it), every placement's replicas at least its floor
    (a pinned region's placements at exactly theirs, 0 where none)."""
    if not floors:
        return inst
    regions = []
    bounds: dict[tuple[str, str, str], tuple[int, int | None]] = dict(inst.replica_bounds)
    for r in inst.regions:
        pools = []
        pinned = r.name in floors.pinned
        for p in r.pools:
            lo = floors.nodes.get((r.name, p.name))
            if pinned and lo is not None:
                pools.append(replace(p, min_nodes=lo, max_nodes=lo))
            elif lo is not None and lo > p.min_nodes:
                pools.append(replace(p, min_nodes=lo, max_nodes=max(p.max_nodes, lo)))
            else:
                pools.append(p)
            if pinned:
                for m in inst.models:
                    key = (m.name, r.name, p.name)
                    n = floors.replicas.get(key, 0)
                    bounds[key] = (n, n)
        regions.append(replace(r, pools=tuple(pools)))
    for key, n in floors.replicas.items():
        if key[1] in floors.pinned or n <= 0:
            continue
        lo, hi = bounds.get(key, (0, None))
        bounds[key] = (max(lo, n), None if hi is None else max(hi, n))
    return replace(inst, regions=tuple(regions), replica_bounds=bounds)
