"""The short-term correction between plans: pure, run by the controller and the twin alike.

A plan sizes the fleet for a step (an hour by default) from a forecast; inside the step a
burst can need more than the forecast's upper band. Every ``spec.correction.intervalSeconds``,
and right after each new plan, :func:`correct` adds replicas on top of the plan where one of
two rules says the fleet is short, per *cell* (model, serving region):

* **demand**: the last ``windowSeconds`` of demand of each interactive flow (model, origin,
  tier: the gateway's series at ``$window`` = the window), routed along the plan's fractions,
  needs

      n(cell) = sum_flows  f(flow, region) * tokens_per_s(flow) / c(pool, tier, flow)

  replicas, with ``c`` the planner's own tokens/s per replica for the tier at the flow's
  prompt share and request size (:func:`llmfleet.plan.capacity.replica_throughput`) on the
  cell's serving pool (the pool with most replicas of the model wanted there, else, for a
  model scaled to zero there, the cheapest per replica that can run it; a tier that forbids
  spot counts only on-demand pools). With ``have`` the replicas ready or loading (at
  least those wanted; replicas on spot count only up to the need of the tiers that allow
  spot, and replicas other cells spilled into this one in the same run not at all),
  ``ceil(n - have)`` are added when ``n > have (1 + demandMargin)``:
  a burst is met at once, before slots fill (at real replica size TTFT goes long while
  slots are still free). Deadline tiers never trigger it: their work queues and the plan
  sizes it for its deadline.
* **load**: vLLM's running plus waiting requests over the sequence slots of the cell's
  ready replicas,

      u(cell) = (running + waiting) / sum_pools ready(pool) * slots(pool),

  above ``utilisation`` with nothing loading adds ``max(ceil(ready u / utilisation) - ready,
  1)`` (up to ``ready + that``, counting what is wanted already). It waits right after a new
  plan (``after_plan``): the plan's own new replicas are not in the slots yet.

Placement (:meth:`_Placer.place`): in the cell's serving pool while it has room (``maxNodes``
of its pool, beside everything wanted there), then in the region's other pools that can run
the model, cheapest per replica first, then in the nearest regions within ``spillRttMs``
(where the ingress spills the burst), spot pools only for tiers that allow spot. What finds
no room anywhere is reported (:attr:`Correction.unplaced`) and left to the next plan.

The correction never runs fewer replicas than the plan; it only ever adds, and the next plan
starts again from its own replicas (plus what the last window's demand still needs). Its
output is a value: the replicas wanted per (model, region, pool), and each addition with the
rule and the figures behind it. :func:`corrected_spec` turns it into the FleetPlanSpec the
controller actuates (the plan with those replicas and enough nodes to pack them); the twin
executes the replicas directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from llmfleet.api.plan import FleetPlanSpec, ModelReplicas, PoolNodes
from llmfleet.api.policy import CorrectionSettings
from llmfleet.api.references import FleetSnapshot
from llmfleet.forecast.types import FlowKey
from llmfleet.plan.capacity import replica_throughput
from llmfleet.plan.instance import ProfileSpec, TierSpec, profile_spec, tier_spec

ReplicaKey = tuple[str, str, str]
"""(model, region, pool)."""
Cell = tuple[str, str]
"""(model, serving region)."""
RouteKey = tuple[str, str, str]
"""(model, tier, origin)."""
RecentDemand = Mapping[FlowKey, tuple[float, float, float]]
"""Per flow: (requests, prompt tokens, output tokens) per second over the last window."""
Rule = Literal["demand", "load"]


@dataclass(frozen=True)
class CellLoad:
    """One (model, serving region) now."""

    ready: int
    """Replicas serving."""
    loading: int
    """Replicas started (or asked for) but not ready yet."""
    running: float = 0.0
    """Requests being served (vLLM ``num_requests_running``, summed over the replicas)."""
    waiting: float = 0.0
    """Requests queued (vLLM ``num_requests_waiting``)."""
    slots: int = 0
    """Sequence slots of the ready replicas (per pool: ready x the profile's
    ``maxConcurrentSequences``)."""


@dataclass(frozen=True)
class Addition:
    """Replicas the correction added to one (model, region, pool), and why."""

    model: str
    region: str
    pool: str
    replicas: int
    rule: Rule
    detail: str

    def __str__(self) -> str:
        return f"+{self.replicas} {self.model} in {self.region}/{self.pool} ({self.rule}: {self.detail})"


@dataclass(frozen=True)
class Correction:
    """What :func:`correct` decided."""

    replicas: Mapping[ReplicaKey, int]
    """Replicas wanted per (model, region, pool) now (the plan's, or more)."""
    additions: tuple[Addition, ...] = ()
    """What this run added over what was wanted before it."""
    unplaced: tuple[tuple[Cell, int], ...] = ()
    """Replicas a rule asked for that found no room in any pool within reach."""

    @property
    def changed(self) -> bool:
        return bool(self.additions)

    def above(self, plan: Mapping[ReplicaKey, int]) -> int:
        """Replicas wanted beyond ``plan``."""
        return sum(max(v - plan.get(k, 0), 0) for k, v in self.replicas.items())

    def summary(self) -> str:
        parts = [str(a) for a in self.additions]
        parts += [f"{n} {m} in {r} found no room" for (m, r), n in self.unplaced]
        return "; ".join(parts) if parts else "nothing to add"


@dataclass(frozen=True)
class CorrectionFleet:
    """What the correction needs to know of the fleet, read once from the snapshot."""

    profiles: Mapping[ReplicaKey, ProfileSpec]
    """The replica profile per (model, region, pool) it can run on."""
    tiers: Mapping[str, TierSpec]
    spot_pools: frozenset[tuple[str, str]]
    pool_gpus: Mapping[tuple[str, str], int]
    """(region, pool) -> GPUs at ``maxNodes``."""
    gpus_per_node: Mapping[tuple[str, str], int]
    replica_price: Mapping[ReplicaKey, float]
    """USD per hour of one replica's GPUs."""
    rtt_ms: Mapping[str, Mapping[str, float]]

    @classmethod
    def of(cls, snap: FleetSnapshot) -> CorrectionFleet:
        profiles: dict[ReplicaKey, ProfileSpec] = {}
        for r in snap.regions:
            for p in r.spec.pools:
                for m in snap.models:
                    allowed = m.spec.allowed_regions
                    if allowed and r.metadata.name not in allowed:
                        continue
                    for prof in m.spec.profiles:
                        if prof.gpu_type == p.gpu_type and prof.gpus_per_replica <= p.gpus_per_node:
                            profiles[(m.metadata.name, r.metadata.name, p.name)] = profile_spec(prof)
        price = {(r.metadata.name, p.name): p.price_per_node_hour / p.gpus_per_node
                 for r in snap.regions for p in r.spec.pools}
        return cls(
            profiles=profiles,
            tiers={t.metadata.name: tier_spec(t) for t in snap.tiers},
            spot_pools=frozenset((r.metadata.name, p.name) for r in snap.regions
                                 for p in r.spec.pools if p.capacity_type == "spot"),
            pool_gpus={(r.metadata.name, p.name): p.max_nodes * p.gpus_per_node
                       for r in snap.regions for p in r.spec.pools},
            gpus_per_node={(r.metadata.name, p.name): p.gpus_per_node
                           for r in snap.regions for p in r.spec.pools},
            replica_price={k: price[k[1:]] * prof.gpus_per_replica for k, prof in profiles.items()},
            rtt_ms={r.metadata.name: {lat.region: lat.rtt_ms for lat in r.spec.latencies}
                    for r in snap.regions},
        )

    def slots(self, key: ReplicaKey) -> int:
        prof = self.profiles.get(key)
        return prof.max_concurrency if prof else 0


@dataclass(frozen=True)
class CorrectionInputs:
    """Everything one correction reads."""

    settings: CorrectionSettings
    fleet: CorrectionFleet
    plan: Mapping[ReplicaKey, int]
    """The replicas of the plan in force (the floor)."""
    routes: Mapping[RouteKey, Mapping[str, float]]
    """The plan's routing: (model, tier, origin) -> {serving region: fraction}."""
    wanted: Mapping[ReplicaKey, int]
    """Replicas asked for now (the plan plus earlier corrections)."""
    cells: Mapping[Cell, CellLoad] = field(default_factory=dict)
    """The load of each (model, serving region); a cell without an entry is not loaded."""
    recent: RecentDemand = field(default_factory=dict)
    after_plan: bool = False
    """Right after a new plan: the load rule waits (module doc)."""


def plan_replicas(spec: FleetPlanSpec) -> dict[ReplicaKey, int]:
    """A plan's replicas per (model, region, pool), zeros left out."""
    out: dict[ReplicaKey, int] = {}
    for r in spec.replicas:
        if r.replicas > 0:
            out[(r.model, r.region, r.pool)] = out.get((r.model, r.region, r.pool), 0) + r.replicas
    return out


def plan_routes(spec: FleetPlanSpec) -> dict[RouteKey, dict[str, float]]:
    """A plan's routing fractions per (model, tier, origin), zeros left out."""
    routes: dict[RouteKey, dict[str, float]] = {}
    for rule in spec.routing:
        for w in rule.weights:
            if w.fraction > 0:
                routes.setdefault((rule.model, rule.tier, rule.origin), {})[w.region] = w.fraction
    return routes


class _Placer:
    """Adds replicas to ``want`` in place (module doc, placement)."""

    def __init__(self, fleet: CorrectionFleet, settings: CorrectionSettings,
                 want: dict[ReplicaKey, int]) -> None:
        self.fleet = fleet
        self.settings = settings
        self.want = want

    def room(self, key: ReplicaKey) -> int:
        """Replicas of ``key``'s model that still fit in its pool's ``maxNodes`` beside what
        is wanted of the pool already."""
        f = self.fleet
        _, region, pool = key
        used = sum(v * f.profiles[k].gpus_per_replica for k, v in self.want.items()
                   if k[1:] == (region, pool) and k in f.profiles)
        return max(0, (f.pool_gpus[(region, pool)] - used) // f.profiles[key].gpus_per_replica)

    def serving_pool(self, model: str, region: str, spot_ok: bool) -> ReplicaKey | None:
        """The pool of ``region`` with the most replicas of ``model`` wanted now, else (a
        model scaled to zero there) the cheapest per replica that can run it; spot pools only
        when ``spot_ok``; None where no pool of the region can run the model."""
        f = self.fleet
        keys = [k for k, v in self.want.items() if k[:2] == (model, region) and v > 0
                and k in f.profiles and (spot_ok or k[1:] not in f.spot_pools)]
        if keys:
            return max(keys, key=lambda k: (self.want[k], k))
        able = [k for k in f.profiles if k[:2] == (model, region)
                and (spot_ok or k[1:] not in f.spot_pools)]
        return min(able, key=lambda k: (f.replica_price[k], k)) if able else None

    def place(self, first: ReplicaKey, count: int, spot_ok: bool) -> tuple[list[tuple[ReplicaKey, int]], int]:
        """Add ``count`` replicas of ``first``'s model: where they went, and how many found
        no room."""
        f = self.fleet
        model, region, _ = first
        rtt = f.rtt_ms.get(region, {})
        near = sorted((r for r in f.rtt_ms if r != region
                       and rtt.get(r, math.inf) <= self.settings.spill_rtt_ms),
                      key=lambda r: (rtt[r], r))
        placed: list[tuple[ReplicaKey, int]] = []
        for reg in (region, *near):
            keys = sorted(
                (k for k in f.profiles if k[:2] == (model, reg)
                 and (spot_ok or k[1:] not in f.spot_pools)),
                key=lambda k: (k != first, f.replica_price[k], k))
            for key in keys:
                if count <= 0:
                    return placed, 0
                free = self.room(key)
                if free > 0:
                    take = min(free, count)
                    self.want[key] = self.want.get(key, 0) + take
                    placed.append((key, take))
                    count -= take
        return placed, max(count, 0)


def _demand_need(inputs: CorrectionInputs, placer: _Placer) -> tuple[dict[Cell, float], dict[Cell, float], dict[Cell, ReplicaKey], dict[Cell, bool]]:
    """Replicas the window's interactive demand needs per cell (module doc, demand rule),
    the part of it from tiers that allow spot, each cell's serving pool, and whether every
    tier it serves allows spot."""
    f = inputs.fleet
    need: dict[Cell, float] = {}
    spot_need: dict[Cell, float] = {}
    pool_of: dict[Cell, ReplicaKey] = {}
    spot_ok: dict[Cell, bool] = {}
    for fk, (rps, prompt, output) in sorted(
            inputs.recent.items(), key=lambda kv: (kv[0].model, kv[0].origin, kv[0].tier)):
        tps = prompt + output
        tier = f.tiers.get(fk.tier)
        if tps <= 0 or rps <= 0 or tier is None or tier.kind == "deadline":
            continue
        routes = inputs.routes.get((fk.model, fk.tier, fk.origin)) or {fk.origin: 1.0}
        total = sum(routes.values())
        if total <= 0:
            continue
        for region, frac in sorted(routes.items()):
            key = placer.serving_pool(fk.model, region, tier.spot_allowed)
            if key is None:
                continue
            cap = replica_throughput(f.profiles[key], tier, prompt / tps, tps / rps)
            if cap > 0:
                cell = (fk.model, region)
                n = (frac / total) * tps / cap
                need[cell] = need.get(cell, 0.0) + n
                if tier.spot_allowed:
                    spot_need[cell] = spot_need.get(cell, 0.0) + n
                pool_of.setdefault(cell, key)
                spot_ok[cell] = spot_ok.get(cell, True) and tier.spot_allowed
    return need, spot_need, pool_of, spot_ok


def correct(inputs: CorrectionInputs) -> Correction:
    """The replicas wanted now: the plan's, or more where the fleet is short (module doc)."""
    f, s = inputs.fleet, inputs.settings
    want: dict[ReplicaKey, int] = {}
    for k in set(inputs.plan) | set(inputs.wanted):
        v = max(inputs.plan.get(k, 0), inputs.wanted.get(k, 0))
        if v > 0:
            want[k] = v
    if not s.enabled:
        return Correction(replicas=want)
    placer = _Placer(f, s, want)
    added: list[Addition] = []
    unplaced: list[tuple[Cell, int]] = []

    need, spot_need, pool_of, spot_ok = _demand_need(inputs, placer)
    before = dict(want)  # a cell's own replicas, not what other cells spill into it
    for cell, n in sorted(need.items()):
        load = inputs.cells.get(cell)
        started = (load.ready + load.loading) if load else 0
        have = max(started, sum(v for k, v in before.items() if k[:2] == cell))
        on_spot = sum(v for k, v in before.items() if k[:2] == cell and k[1:] in f.spot_pools)
        # spot replicas serve only the tiers that allow spot
        have -= max(on_spot - math.ceil(spot_need.get(cell, 0.0)), 0)
        if n > have * (1.0 + s.demand_margin):
            count = math.ceil(n - have)
            placed, left = placer.place(pool_of[cell], count, spot_ok[cell])
            detail = f"the last {s.window_seconds}s need {n:.1f} replicas, {have} ready or loading"
            added += [Addition(*k, c, "demand", detail) for k, c in placed]
            if left:
                unplaced.append((cell, left))

    if not inputs.after_plan:
        for cell, load in sorted(inputs.cells.items()):
            if load.ready <= 0 or load.loading > 0 or load.slots <= 0:
                continue
            cur = sum(v for k, v in want.items() if k[:2] == cell)
            u = (load.running + load.waiting) / load.slots
            if cur <= 0 or u <= s.utilisation:
                continue
            target = load.ready + max(math.ceil(load.ready * u / s.utilisation) - load.ready, 1)
            first = placer.serving_pool(cell[0], cell[1], spot_ok=True)
            if target <= cur or first is None:
                continue
            placed, left = placer.place(first, target - cur, spot_ok=first[1:] in f.spot_pools)
            detail = f"slots plus queue at {u:.0%} of {load.slots} with {load.ready} ready"
            added += [Addition(*k, c, "load", detail) for k, c in placed]
            if left:
                unplaced.append((cell, left))

    return Correction(replicas=want, additions=_merge(added), unplaced=tuple(unplaced))


def cell_loads(
    fleet: CorrectionFleet,
    ready: Mapping[ReplicaKey, int],
    started: Mapping[ReplicaKey, int],
    running: Mapping[Cell, float],
    waiting: Mapping[Cell, float],
) -> dict[Cell, CellLoad]:
    """Per (model, serving region): replicas ``ready`` and ``started`` (ready or loading)
    per pool summed, the slots of the ready ones, and the requests running and waiting."""
    cells: dict[Cell, CellLoad] = {}
    for key in sorted(set(ready) | set(started)):
        cell = key[:2]
        r = ready.get(key, 0)
        prev = cells.get(cell, CellLoad(ready=0, loading=0))
        cells[cell] = CellLoad(
            ready=prev.ready + r,
            loading=prev.loading + max(started.get(key, 0) - r, 0),
            slots=prev.slots + r * fleet.slots(key),
        )
    return {c: CellLoad(ready=v.ready, loading=v.loading, slots=v.slots,
                        running=running.get(c, 0.0), waiting=waiting.get(c, 0.0))
            for c, v in cells.items()}


def _merge(added: list[Addition]) -> tuple[Addition, ...]:
    """One addition per (model, region, pool, rule)."""
    out: dict[tuple[str, str, str, Rule], Addition] = {}
    for a in added:
        key = (a.model, a.region, a.pool, a.rule)
        prev = out.get(key)
        out[key] = a if prev is None else Addition(*key[:3], prev.replicas + a.replicas, a.rule, a.detail)
    return tuple(out.values())


def corrected_spec(spec: FleetPlanSpec, correction: Correction, fleet: CorrectionFleet,
                   max_nodes: Mapping[tuple[str, str], int]) -> FleetPlanSpec:
    """``spec`` with the correction's replicas, and each pool's nodes raised to pack them
    (first fit decreasing on the replicas' GPUs, at most ``max_nodes``); routing, limits
    and the rest as the plan has them."""
    replicas: list[ModelReplicas] = []
    seen: set[ReplicaKey] = set()
    for r in spec.replicas:
        key = (r.model, r.region, r.pool)
        seen.add(key)
        replicas.append(r.model_copy(update={"replicas": correction.replicas.get(key, 0)}))
    for key in sorted(set(correction.replicas) - seen):
        model, region, pool = key
        replicas.append(ModelReplicas(model=model, region=region, pool=pool,
                                      replicas=correction.replicas[key]))
    need = _nodes_to_pack(correction.replicas, fleet)
    nodes: list[PoolNodes] = []
    for n in spec.nodes:
        pk = (n.region, n.pool)
        want = min(max(n.nodes, need.get(pk, 0)), max_nodes.get(pk, n.nodes))
        nodes.append(n.model_copy(update={"nodes": max(want, n.nodes)}))
    return spec.model_copy(update={"replicas": replicas, "nodes": nodes})


def _nodes_to_pack(replicas: Mapping[ReplicaKey, int], fleet: CorrectionFleet) -> dict[tuple[str, str], int]:
    """Nodes each pool needs to hold ``replicas`` (first fit decreasing by GPUs)."""
    sizes: dict[tuple[str, str], list[int]] = {}
    for key, n in replicas.items():
        prof = fleet.profiles.get(key)
        if prof is not None and n > 0:
            sizes.setdefault(key[1:], []).extend([prof.gpus_per_replica] * n)
    out: dict[tuple[str, str], int] = {}
    for pk, items in sizes.items():
        per_node = fleet.gpus_per_node[pk]
        free: list[int] = []
        for g in sorted(items, reverse=True):
            for i, room in enumerate(free):
                if room >= g:
                    free[i] -= g
                    break
            else:
                free.append(per_node - g)
        out[pk] = len(free)
    return out
