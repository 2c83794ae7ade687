"""Why each replica and pool exists: binding reasons derived from the plan's numbers.

For a (model, region) cell at step 0 the replicas exist because of the tightest of:

* ``min-replicas`` — the cell carries no load (or less than one replica's worth) but the
  model's minReplicasPerRegion keeps them, or the instance's replica floors
  (``replica_bounds``) hold more replicas than the load needs;
* ``guarantee`` — capacity reserved for tenants' guaranteed budgets beyond served demand;
* ``latency`` — a tier's load may only run on some GPU types (7) and that requirement,
  not the total, sets the count;
* ``spot-cap`` — the on-demand share (8) sets the count (cheaper spot could carry it);
* ``deadline`` — batch work due within its deadline is a large share of the load;
* ``demand`` — otherwise: forecast demand (upper quantile for interactive tiers).

A pool's reason is the reason of most of its GPUs; ``packing`` when a sizeable part of its
nodes is idle because replicas need whole GPUs and nodes come whole.

**Routing.** When a quality-aware router splits a tier's requests between its reference
model and cheaper candidates, the planner plans for the split demand
(``llmfleet.cycle.routing``), and :func:`routed_replicas` says per (model, region) how many
replicas of step 0 exist because of routing. Re-solving without the split would say it
exactly but costs a second solve; instead the replicas are attributed in proportion to the
load: a cell's load (capacity units, ``phi`` x tokens/s, of the routes -- interactive and
deadline work per origin -- and the reserves placed there) is split into what routing sent
there and the rest, and

    routed replicas = replicas x routed load / load   (at most replicas - minReplicasPerRegion)
    saved replicas  = replicas x removed load / load  (at the reference: the load routing took
                                                       away from the flows served here)

Both assume a replica carries routed and other load alike (the same utilisation), so the
rounding to whole replicas is shared in proportion too (a cell of only routed load counts
all its replicas), and that the removed load would have been served where the rest of its
flow is; a flow routed away entirely has nothing left to say where (its removed load is
counted in ``RoutedShare.removed_load``, not attributed to a cell).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from llmfleet.forecast.types import FlowKey
from llmfleet.plan.heuristic import EPS, cell_loads, requirements
from llmfleet.plan.indexed import UNIT, Compiled
from llmfleet.plan.solution import Solution
from llmfleet.plan.terms import Cells
from llmfleet.plan.types import Plan, PoolExplanation, Reason
from llmfleet.plan.variables import PlanVariables


def cell_reason(
    c: Compiled, v: PlanVariables, cl: Cells, sol: Solution, cell: int, t: int = 0
) -> tuple[Reason, str]:
    R = len(c.regions)
    m = int(cl.keys[cell] // R)
    r = int(cl.keys[cell] % R)
    loads = cell_loads(c, v, cl, sol, t)
    pls = np.flatnonzero(cl.of_pl == cell)
    x = sol.replicas[pls, t]
    cap = float((c.cu[pls] * x).sum())
    total = float(loads["total"][cell])
    reserve = 0.0
    for i in np.flatnonzero((c.gu_m[v.re_u] == m) & (v.re_r == r)) if len(v.re_u) else []:
        reserve += float(sol.reserve[i, t] * c.phi[m, c.gu_k[v.re_u[i]]])
    per_replica = float(c.cu[pls].max()) if len(pls) else 1.0
    name = f"{c.models[m]} in {c.regions[r]}"
    if x.sum() > EPS and total <= per_replica * 0.5 and c.min_replicas[m] > 0:
        return "min-replicas", (
            f"{name}: minReplicasPerRegion={c.min_replicas[m]} keeps {x.sum():g} replica(s); "
            f"load needs {total / per_replica:.2f} replica(s)"
        )
    floor = int(c.rep_lo[pls].sum())
    if floor > 0 and x.sum() <= floor + EPS and np.ceil(total / per_replica - EPS) < floor:
        return "min-replicas", (
            f"{name}: replica floors (replica_bounds) keep {x.sum():g} replica(s); "
            f"load needs {total / per_replica:.2f} replica(s)"
        )
    if reserve > 0.5 * total and reserve > EPS:
        return (
            "guarantee",
            f"{name}: {reserve / max(total, EPS):.0%} of the capacity is reserved for tenant guarantees",
        )
    best: tuple[Reason, float] = ("demand", 0.0)
    for req in requirements(c, cl, loads, cell, pls):
        if len(req.placements) == len(pls):
            continue
        is_od = (
            bool((~c.pool_spot[c.pl_q[req.placements]]).all())
            and loads["od"][cell] > EPS
            and np.isclose(req.need, loads["od"][cell])
        )
        have = float((c.cu[req.placements] * sol.replicas[req.placements, t]).sum())
        tight = req.need / max(have, EPS)
        if tight > 0.97 and tight > best[1]:
            best = ("spot-cap" if is_od else "latency", tight)
    if best[0] != "demand":
        what = (
            "on-demand share of interactive load (spot cap)"
            if best[0] == "spot-cap"
            else "GPU types that meet the tier's latency"
        )
        return best[0], f"{name}: the {what} sets the replica count (uses {best[1]:.0%} of it)"
    batch_share = 0.0
    if len(v.be_b):
        sel = (c.bf_m[v.be_b] == m) & (v.be_r == r)
        batch_share = float((sol.batch[sel, t] * c.phi[m, c.bf_k[v.be_b[sel]]]).sum()) / max(
            total, EPS
        )
    if batch_share > 0.5:
        return (
            "deadline",
            f"{name}: {batch_share:.0%} of the load is batch work scheduled now to meet its deadline",
        )
    return "demand", (
        f"{name}: forecast demand needs {total / per_replica:.2f} replica-equivalents "
        f"(utilisation {total / max(cap, EPS):.0%} of {x.sum():g} replica(s))"
    )


def pool_explanations(
    c: Compiled, v: PlanVariables, cl: Cells, sol: Solution, t: int = 0
) -> tuple[PoolExplanation, ...]:
    out = []
    reasons = {cell: cell_reason(c, v, cl, sol, cell, t) for cell in range(len(cl.keys))}
    for q in range(len(c.price)):
        nodes = float(sol.nodes[q, t])
        region, pool = c.regions[c.pool_region[q]], c.pool_name[q]
        if nodes <= EPS:
            out.append(PoolExplanation(region, pool, "none", f"{region}/{pool}: no nodes needed"))
            continue
        pls = np.flatnonzero(c.pl_q == q)
        gpus = c.gpr[pls] * sol.replicas[pls, t]
        used = float(gpus.sum())
        idle = nodes * c.gpn[q] - used
        if used <= EPS:
            out.append(
                PoolExplanation(
                    region,
                    pool,
                    "none",
                    f"{region}/{pool}: held at minNodes={c.nmin[q]}, no replicas",
                )
            )
            continue
        weight: dict[Reason, float] = {}
        for pl, g in zip(pls, gpus, strict=True):
            if g > 0:
                why = reasons[int(cl.of_pl[pl])][0]
                weight[why] = weight.get(why, 0.0) + float(g)
        reason = max(weight, key=lambda k: weight[k])
        if idle >= 0.25 * nodes * c.gpn[q] and idle >= 1:
            msg = (
                f"{region}/{pool}: {nodes:g} node(s), {idle:g} of {nodes * c.gpn[q]:g} GPUs idle — "
                f"replicas need whole GPUs and nodes come whole (or minNodes={c.nmin[q]})"
            )
            out.append(PoolExplanation(region, pool, "packing", msg))
            continue
        cells = sorted(
            {
                int(cl.of_pl[pl])
                for pl, g in zip(pls, gpus, strict=True)
                if g > 0 and reasons[int(cl.of_pl[pl])][0] == reason
            }
        )
        detail = "; ".join(reasons[cell][1] for cell in cells[:3])
        more = f" (+{len(cells) - 3} more)" if len(cells) > 3 else ""
        out.append(
            PoolExplanation(
                region,
                pool,
                reason,
                f"{region}/{pool}: {nodes:g} node(s), {reason}: {detail}{more}",
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class RoutedShare:
    """What routing did to one demand flow (model, origin, tier) at step 0."""

    added: float = 0.0
    """Share (0..1) of the flow's load that routing sent to this model from the tier's
    reference model (1: all of it; the rest is requests naming this model)."""
    removed: float = 0.0
    """Load routing took from this flow to other candidates, as a multiple of the load the
    flow keeps (the reference's flows; 0 when it keeps none: see ``removed_load``)."""
    load: float = 0.0
    """The flow's load after routing, tokens/s (prompt + output; upper quantile for
    interactive tiers, point for deadline ones)."""
    removed_load: float = 0.0
    """The load routing took away, tokens/s."""


@dataclass(frozen=True)
class RoutedCell:
    """Replicas of one (model, region) at step 0, and how many of them routing accounts for
    (module docstring: proportional attribution)."""

    model: str
    region: str
    replicas: float
    routed_replicas: float
    """Replicas here because of the load routing sent to this model."""
    saved_replicas: float
    """Replicas the load routing took away from this model would need here."""
    routed_share: float
    """Share of the cell's load that routing sent here."""
    tiers: tuple[str, ...]
    """The routed tiers whose load moved here or away."""


def routed_replicas(
    plan: Plan, instance: object, routing: Mapping[FlowKey, RoutedShare]
) -> tuple[RoutedCell, ...]:
    """Per (model, region) with replicas at step 0 or routed load: the replicas routing
    accounts for (module docstring)."""
    from llmfleet.plan.indexed import compile_instance  # local: avoid a cycle at import
    from llmfleet.plan.instance import PlanningInstance

    if not isinstance(instance, PlanningInstance):
        raise TypeError("routed_replicas needs the PlanningInstance the plan was made from")
    if not routing:
        return ()
    c = compile_instance(instance)
    mix = {m: i for i, m in enumerate(c.models)}
    kix = {k: i for i, k in enumerate(c.tiers)}
    step = plan.first()

    def phi(model: str, tier: str) -> float:
        v = float(c.phi[mix[model], kix[tier]]) if model in mix and tier in kix else 1.0
        return v if np.isfinite(v) else 1.0

    load: dict[tuple[str, str], list[float]] = {}
    tiers: dict[tuple[str, str], set[str]] = {}

    def add(model: str, region: str, tier: str, tok: float, added: float, removed: float) -> None:
        ph = phi(model, tier) * tok
        acc = load.setdefault((model, region), [0.0, 0.0, 0.0])
        acc[0] += ph
        acc[1] += ph * added
        acc[2] += ph * removed
        if added > 0 or removed > 0:
            tiers.setdefault((model, region), set()).add(tier)

    for r in step.routes:  # interactive and deadline work, per origin
        got = routing.get(FlowKey(model=r.model, origin=r.origin, tier=r.tier))
        add(r.model, r.region, r.tier, r.tokens_per_s,
            got.added if got else 0.0, got.removed if got else 0.0)  # fmt: skip
    for res in step.reserves:
        add(res.model, res.region, res.tier, res.tokens_per_s, 0.0, 0.0)
    replicas: dict[tuple[str, str], float] = {}
    for rep in step.replicas:
        replicas[(rep.model, rep.region)] = (
            replicas.get((rep.model, rep.region), 0.0) + rep.replicas
        )
    floor = {m.name: m.min_replicas_per_region for m in instance.models}
    out = []
    for cell in sorted(set(tiers)):
        total, added, removed = load.get(cell, [0.0, 0.0, 0.0])
        x = replicas.get(cell, 0.0)
        if total <= EPS:
            continue
        routed = min(x * added / total, max(0.0, x - floor.get(cell[0], 0)))
        out.append(
            RoutedCell(
                cell[0], cell[1], float(x), float(max(routed, 0.0)), float(x * removed / total),
                float(added / total), tuple(sorted(tiers[cell])),
            )
        )  # fmt: skip
    return tuple(out)


def routing_summary(cells: tuple[RoutedCell, ...]) -> str:
    """One line: replicas that exist because of routing, and those it saved."""
    if not cells:
        return "no replicas because of routing"
    routed: dict[str, float] = {}
    saved: dict[str, float] = {}
    for cell in cells:
        routed[cell.model] = routed.get(cell.model, 0.0) + cell.routed_replicas
        saved[cell.model] = saved.get(cell.model, 0.0) + cell.saved_replicas
    parts = [f"{v:.1f} replica(s) of {m}" for m, v in sorted(routed.items()) if v > 0.05]
    spared = [f"{v:.1f} of {m}" for m, v in sorted(saved.items()) if v > 0.05]
    text = ("; ".join(parts) or "no replicas") + " exist because of routing"
    if spared:
        text += f"; it spares about {', '.join(spared)} (proportional to the load moved)"
    return text


def _routing_lines(cells: tuple[RoutedCell, ...], model: str, region: str) -> list[str]:
    out = []
    for cell in cells:
        if cell.model != model or cell.region != region:
            continue
        tiers = ", ".join(cell.tiers)
        if cell.routed_replicas > 0.05:
            out.append(
                f"    routing: {cell.routed_replicas:.1f} of these replicas exist because of "
                f"routing ({cell.routed_share:.0%} of the load is tier {tiers}'s requests the "
                "router sends here)"
            )
        if cell.saved_replicas > 0.05:
            out.append(
                f"    routing: about {cell.saved_replicas:.1f} more replica(s) would be needed here "
                f"without routing (tier {tiers}'s requests the router sends to cheaper models)"
            )
    return out


def explain(
    plan: Plan,
    instance: object = None,
    model: str | None = None,
    region: str | None = None,
    routing: Mapping[FlowKey, RoutedShare] | None = None,
) -> str:
    """Text saying why each replica of step 0 exists (filter by model and/or region);
    ``routing``: what the router's shares did to the demand (``llmfleet.cycle.routing``),
    to say how many replicas exist because of routing."""
    from llmfleet.plan.indexed import compile_instance  # local: avoid a cycle at import
    from llmfleet.plan.instance import PlanningInstance
    from llmfleet.plan.model import build

    if not isinstance(instance, PlanningInstance):
        raise TypeError("explain needs the PlanningInstance the plan was made from")
    c = compile_instance(instance)
    fm = build(c, integer_steps=0)
    v, cl, sol = fm.vars, fm.cells, plan.solution
    lines = [
        f"plan of policy {plan.policy}: {plan.first().usd_per_hour:,.2f} USD/h at step 0, "
        f"objective {plan.objective:,.2f} USD over {len(plan.steps)} steps"
        + (f", gap {plan.solver.gap:.2%} to the LP bound" if plan.solver.gap is not None else "")
    ]
    routed = routed_replicas(plan, instance, routing) if routing else ()
    R = len(c.regions)
    for cell in range(len(cl.keys)):
        m, r = int(cl.keys[cell] // R), int(cl.keys[cell] % R)
        if (model and c.models[m] != model) or (region and c.regions[r] != region):
            continue
        pls = np.flatnonzero(cl.of_pl == cell)
        x = sol.replicas[pls, 0]
        if x.sum() <= EPS:
            continue
        reason, msg = cell_reason(c, v, cl, sol, cell, 0)
        where = ", ".join(
            f"{int(n)} on {c.pool_name[c.pl_q[pl]]}" for pl, n in zip(pls, x, strict=True) if n > 0
        )
        lines.append(
            f"- {c.models[m]} @ {c.regions[r]}: {int(x.sum())} replica(s) ({where}) because of {reason}: {msg}"
        )
        if len(v.se_g):
            for i in np.flatnonzero((c.fg_m[v.se_g] == m) & (v.se_r == r)):
                g = int(v.se_g[i])
                if sol.served[i, 0] > EPS:
                    origins = ", ".join(c.fg_origins[g])
                    lines.append(
                        f"    serves {UNIT * sol.served[i, 0]:,.0f} tok/s of tier {c.tiers[c.fg_k[g]]} from {origins}"
                    )
        lines.extend(_routing_lines(routed, c.models[m], c.regions[r]))
    for e in plan.explanations:
        if region and e.region != region:
            continue
        if e.reason != "none":
            lines.append(f"pool {e.region}/{e.pool}: {e.reason} — {e.message}")
    if len(lines) == 1:
        lines.append("no replicas match the filter at step 0")
    if routing:
        shown = tuple(
            x
            for x in routed
            if (not model or x.model == model) and (not region or x.region == region)
        )
        lines.append(f"routing: {routing_summary(shown)}")
    return "\n".join(lines)
