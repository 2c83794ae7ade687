"""Constructive heuristics: integer replicas and nodes that carry a given load.

* :func:`greedy_loads` routes every flow to its cheapest eligible region (no solver) —
  the plan of last resort when even the LP does not finish in time.
* :func:`round_step` turns one step of a fractional (LP) solution into integers:
  keep ``floor`` of every replica count (clipped to the placement's replica bounds
  ``[lo, hi]``), then add replicas (never above ``hi``), cheapest capacity unit first
  (a GPU slot on an already-paid node is free), until every capacity requirement of the
  (model, region) cell holds — on-demand share (8), tier GPU types (7), total (6) and
  min replicas (11) — within the pools' free GPUs; then drop replicas not needed (never
  under ``lo``) and size nodes to ``ceil(GPUs / gpusPerNode)``, so nodes fit the floors too.
* :func:`repair` scales a cell's load down to its capacity where a pool at maxNodes left
  it short; the excess becomes unmet demand (interactive), dropped work (batch) or
  guarantee shortfall, so the result always satisfies every constraint of the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from llmfleet.plan.indexed import Compiled
from llmfleet.plan.solution import Solution
from llmfleet.plan.terms import Cells
from llmfleet.plan.variables import PlanVariables

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
EPS = 1e-6


@dataclass(frozen=True)
class Requirement:
    """Capacity units a subset of a cell's placements must provide at one step."""

    placements: IntArray
    need: float


def cell_loads(
    c: Compiled, v: PlanVariables, cl: Cells, sol: Solution, t: int
) -> dict[str, FloatArray]:
    """Per cell: total phi-load, on-demand share and per-tier phi-load at step t."""
    K = len(c.tiers)
    n = len(cl.keys)
    tot = np.zeros(n)
    od = np.zeros(n)
    tier = np.zeros((n, K))
    for mr_src, k, vals in _terms(c, v, cl, sol, t):
        ph = c.phi[mr_src[1], k] * vals
        np.add.at(tot, mr_src[0], ph)
        np.add.at(od, mr_src[0], (1.0 - c.sigma[k]) * ph)
        np.add.at(tier, (mr_src[0], k), ph)
    return {"total": tot, "od": od, "tier": tier}


def _terms(
    c: Compiled, v: PlanVariables, cl: Cells, sol: Solution, t: int
) -> list[tuple[tuple[IntArray, IntArray], IntArray, FloatArray]]:
    R = len(c.regions)
    out = []
    if len(v.se_g):
        m = c.fg_m[v.se_g]
        out.append(((cl.lookup[m * R + v.se_r], m), c.fg_k[v.se_g], sol.served[:, t]))
    if len(v.be_b):
        m = c.bf_m[v.be_b]
        out.append(((cl.lookup[m * R + v.be_r], m), c.bf_k[v.be_b], sol.batch[:, t]))
    if len(v.re_u):
        m = c.gu_m[v.re_u]
        out.append(((cl.lookup[m * R + v.re_r], m), c.gu_k[v.re_u], sol.reserve[:, t]))
    return out


def requirements(
    c: Compiled, cl: Cells, loads: dict[str, FloatArray], cell: int, pls: IntArray
) -> list[Requirement]:
    """Most restrictive first: tier GPU types (7), on-demand (8), total (6)."""
    reqs = []
    for k in range(len(c.tiers)):
        need = float(loads["tier"][cell, k])
        if need > EPS and not c.pl_tier_ok[pls, k].all():
            reqs.append(Requirement(pls[c.pl_tier_ok[pls, k]], need))
    if loads["od"][cell] > EPS:
        reqs.append(Requirement(pls[~c.pool_spot[c.pl_q[pls]]], float(loads["od"][cell])))
    if loads["total"][cell] > EPS:
        reqs.append(Requirement(pls, float(loads["total"][cell])))
    return reqs


def round_step(
    c: Compiled,
    v: PlanVariables,
    cl: Cells,
    sol: Solution,
    t: int,
    prefer: IntArray | None = None,
) -> tuple[IntArray, IntArray]:
    """Integer (nodes, replicas) for step ``t`` carrying the loads of ``sol`` at ``t``.

    ``prefer`` (e.g. the current replicas) breaks cost ties toward keeping them.
    """
    Q = len(c.price)
    R = len(c.regions)
    loads = cell_loads(c, v, cl, sol, t)
    lo, hi = c.rep_lo, c.rep_hi
    x = np.clip(np.floor(sol.replicas[:, t] + EPS), lo, hi).astype(np.int64)
    used = np.zeros(Q, dtype=np.int64)
    np.add.at(used, c.pl_q, c.gpr * x)
    over = used > c.nmax * c.gpn
    if over.any():  # should not happen for LP solutions; start from the floors there
        x = np.where(over[c.pl_q], lo, x)
        used = np.zeros(Q, dtype=np.int64)
        np.add.at(used, c.pl_q, c.gpr * x)
    cap_gpus = c.nmax * c.gpn
    unit = c.pl_price / np.maximum(c.cu, EPS)
    by_cell: list[list[int]] = [[] for _ in range(len(cl.keys))]
    for pl, cell in enumerate(cl.of_pl):
        by_cell[int(cell)].append(pl)
    # big replicas first: they are the hard ones to pack
    order = sorted(
        range(len(cl.keys)), key=lambda i: -int(c.gpr[by_cell[i]].max()) if by_cell[i] else 0
    )
    for cell in order:
        pls = np.array(by_cell[cell], dtype=np.int64)
        if not len(pls):
            continue
        reqs = requirements(c, cl, loads, cell, pls)
        m = int(cl.keys[cell] // R)
        minrep = int(c.min_replicas[m])
        for req in [*reqs, None]:
            while True:
                if req is None:
                    if x[pls].sum() >= minrep:
                        break
                    cand = pls
                else:
                    have = float((c.cu[req.placements] * x[req.placements]).sum())
                    if have >= req.need - EPS:
                        break
                    cand = req.placements
                free = cap_gpus[c.pl_q[cand]] - used[c.pl_q[cand]] >= c.gpr[cand]
                cand = cand[free & (x[cand] < hi[cand])]
                if not len(cand):
                    break
                q = c.pl_q[cand]
                slack = (-used[q]) % c.gpn[q]  # free GPUs on nodes already paid for
                marginal = np.where(slack >= c.gpr[cand], 0.0, unit[cand])
                keep = 0.0 if prefer is None else 1e-9 * (x[cand] < prefer[cand])
                pick = int(cand[np.argmin(marginal * 1e6 + unit[cand] - keep)])
                x[pick] += 1
                used[c.pl_q[pick]] += c.gpr[pick]
        # drop replicas the requirements do not need (dearest first), never under the floor
        for pl in sorted(pls.tolist(), key=lambda p: -unit[p]):
            while x[pl] > lo[pl]:
                x[pl] -= 1
                ok = x[pls].sum() >= minrep and all(
                    (c.cu[r.placements] * x[r.placements]).sum() >= r.need - EPS for r in reqs
                )
                if not ok:
                    x[pl] += 1
                    break
                used[c.pl_q[pl]] -= c.gpr[pl]
    nodes = np.maximum(c.nmin, -(-used // c.gpn)).astype(np.int64)
    return nodes, x


def repair(c: Compiled, v: PlanVariables, cl: Cells, sol: Solution, t: int) -> Solution:
    """Scale loads of step ``t`` down to the (integer) capacity in ``sol``; excess -> slack."""
    R = len(c.regions)
    loads = cell_loads(c, v, cl, sol, t)
    x = sol.replicas[:, t]
    alpha = np.ones(len(cl.keys))
    by_cell: list[list[int]] = [[] for _ in range(len(cl.keys))]
    for pl, cell in enumerate(cl.of_pl):
        by_cell[int(cell)].append(pl)
    for cell in range(len(cl.keys)):
        pls = np.array(by_cell[cell], dtype=np.int64)
        for req in requirements(c, cl, loads, cell, pls):
            have = float((c.cu[req.placements] * x[req.placements]).sum())
            if have < req.need - 1e-7:
                alpha[cell] = min(alpha[cell], max(0.0, have / req.need * (1 - 1e-9)))
    if (alpha >= 1).all():
        return sol
    served, batch, reserve = sol.served.copy(), sol.batch.copy(), sol.reserve.copy()
    unmet, dropped, short = sol.unmet.copy(), sol.dropped.copy(), sol.shortfall.copy()
    if len(v.se_g):
        a = alpha[cl.lookup[c.fg_m[v.se_g] * R + v.se_r]]
        cut = served[:, t] * (1 - a)
        served[:, t] -= cut
        np.add.at(unmet[:, t], v.se_g, cut)
    if len(v.be_b):
        a = alpha[cl.lookup[c.bf_m[v.be_b] * R + v.be_r]]
        cut = batch[:, t] * (1 - a)
        batch[:, t] -= cut
        np.add.at(dropped[:, t], v.be_b, cut)
    if len(v.re_u):
        a = alpha[cl.lookup[c.gu_m[v.re_u] * R + v.re_r]]
        cut = reserve[:, t] * (1 - a)
        reserve[:, t] -= cut
        np.add.at(short[:, t], v.re_u, cut)
    # load cut from a guaranteed (model, tier) no longer counts toward (12): top up shortfall
    for u in range(len(c.gu_m)):
        got = reserve[v.re_u == u, t].sum() + short[u, t]
        for g in np.flatnonzero((c.fg_m == c.gu_m[u]) & (c.fg_k == c.gu_k[u])):
            got += served[v.se_g == g, t].sum()
        for b in np.flatnonzero((c.bf_m == c.gu_m[u]) & (c.bf_k == c.gu_k[u])):
            got += batch[v.be_b == b, t].sum()
        short[u, t] += max(0.0, float(c.gu_tokens[u]) - got)
    return sol.with_(
        served=served, batch=batch, reserve=reserve, unmet=unmet, dropped=dropped, shortfall=short
    )


def integerise(
    c: Compiled,
    v: PlanVariables,
    cl: Cells,
    sol: Solution,
    steps: range,
    prefer_current: bool = True,
) -> Solution:
    """Round the given steps of ``sol`` to integers and repair capacity shortfalls."""
    nodes, reps = sol.nodes.copy(), sol.replicas.copy()
    for t in steps:
        prefer = c.cur_replicas if (t == 0 and prefer_current) else None
        n_t, x_t = round_step(c, v, cl, sol, t, prefer)
        nodes[:, t], reps[:, t] = n_t, x_t
    out = sol.with_(nodes=nodes, replicas=reps)
    for t in steps:
        out = repair(c, v, cl, out, t)
    return out


def greedy_loads(c: Compiled, v: PlanVariables) -> Solution:
    """Loads without a solver: each flow in its cheapest eligible region, batch on arrival.

    Replicas are the floors (``rep_lo``) and nodes 0: :func:`round_step` sizes both."""
    T = c.T
    unit_mr: dict[tuple[int, int], float] = {}
    for pl in range(len(c.pl_m)):
        key = (int(c.pl_m[pl]), int(c.pl_r[pl]))
        u = c.pl_price[pl] / max(c.cu[pl], EPS)
        unit_mr[key] = min(unit_mr.get(key, np.inf), u)
    served = np.zeros(v.served.shape)
    unmet = np.zeros(v.unmet.shape)
    for g in range(len(c.fg_m)):
        idx = np.flatnonzero(v.se_g == g)
        if not len(idx):
            unmet[g] = c.fg_demand[g]
            continue
        costs = [unit_mr.get((int(c.fg_m[g]), int(v.se_r[i])), np.inf) for i in idx]
        served[idx[int(np.argmin(costs))]] = c.fg_demand[g]
    batch = np.zeros(v.batch.shape)
    backlog = np.zeros(v.backlog.shape)
    dropped = np.zeros(v.dropped.shape)
    for b in range(len(c.bf_m)):
        idx = np.flatnonzero(v.be_b == b)
        if not len(idx):
            dropped[b] = c.bf_demand[b].copy()
            dropped[b, 0] += c.bf_backlog0[b]
            continue
        costs = [unit_mr.get((int(c.bf_m[b]), int(v.be_r[i])), np.inf) for i in idx]
        i = idx[int(np.argmin(costs))]
        batch[i] = c.bf_demand[b]
        batch[i, 0] += c.bf_backlog0[b]
    reserve = np.zeros(v.reserve.shape)
    short = np.zeros(v.shortfall.shape)
    for u in range(len(c.gu_m)):
        have = np.zeros(T)
        for gg in np.flatnonzero((c.fg_m == c.gu_m[u]) & (c.fg_k == c.gu_k[u])):
            have += served[v.se_g == gg].sum(axis=0)
        for bb in np.flatnonzero((c.bf_m == c.gu_m[u]) & (c.bf_k == c.gu_k[u])):
            have += batch[v.be_b == bb].sum(axis=0)
        idx = np.flatnonzero(v.re_u == u)
        if len(idx):
            costs = [unit_mr.get((int(c.gu_m[u]), int(v.re_r[i])), np.inf) for i in idx]
            reserve[idx[int(np.argmin(costs))]] = np.maximum(c.gu_tokens[u] - have, 0)
        else:
            short[u] = np.maximum(c.gu_tokens[u] - have, 0)
    zeros_n = np.zeros(v.nodes.shape)
    floors = np.broadcast_to(c.rep_lo[:, None].astype(float), v.replicas.shape).copy()
    return Solution(
        nodes=zeros_n,
        replicas=floors,
        served=served,
        batch=batch,
        backlog=backlog,
        dropped=dropped,
        unmet=unmet,
        reserve=reserve,
        shortfall=short,
    )
