"""SageServe's published long-term ILP (arXiv 2502.14617), as a policy to compare against.

Per model i, region j and VM type k (here: a pool; an *instance* is one replica), with
N_ijk instances now and T_ik tokens/s one instance sustains at the target utilisation:

    minimise   sum_ijk  C_k * x_ijk + S_ik * x+_ijk                    (VM cost of the net
                                                                       change + startup cost)
    subject to x_ijk = x+_ijk - x-_ijk,  x+, x- >= 0 integer, x_ijk >= -N_ijk
               sum_k (N_ijk + x_ijk) * T_ik >= D_ij                   for every (i, j)

D_ij is the forecast provisioned for: SageServe takes the maximum prediction over the
coming window (here the horizon steps ``window``) of region j's own traffic (requests are
served in their origin region; an origin where the model is not allowed is sent to the
cheapest allowed region), interactive tiers at their upper quantile and batch at its
point forecast. ``T`` is in llmfleet's capacity units (``cu / phi``) so both planners use
the same capacity model. No packing, spot caps, latency routing or deadlines: that is the
point of the comparison. Solved with HiGHS under the same watchdog as the main planner.

``same_limits=True`` adds llmfleet's hard policy limits, so that both planners buy the
same service and the comparison measures only what the joint model adds (cross-region
routing, deferral of batch work, horizon): with ``D_ijt`` tier t's share of ``D_ij``,

    sum_{k on-demand} (N_ijk + x_ijk) T_ik >= sum_t (1 - sigma_t) D_ijt      spot cap (8)
    sum_{k meets t}   (N_ijk + x_ijk) T_ik >= D_ijt        tier GPU types (7), where some
                                                           GPU type of (i, j) cannot serve t
    sum_k (N_ijk + x_ijk) >= minReplicasPerRegion_i                      availability (11)

Without them the published ILP puts interactive load on spot pools that llmfleet's
tiers forbid (``maxSpotFraction`` 0 / ``maxInteractiveSpotFraction``) and keeps no
replica where a model has no traffic, so its cost is not that of the same service
(bench 10x3x2x24: 334 USD/h published vs 399 USD/h for llmfleet's LP value of step 0;
relaxing llmfleet's spot caps and min replicas instead brings that LP value to 158).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from llmfleet.plan import runner
from llmfleet.plan.indexed import Compiled, compile_instance
from llmfleet.plan.instance import PlanningInstance
from llmfleet.plan.lp import LinearProgram


@dataclass(frozen=True)
class SageServePlan:
    replicas: dict[tuple[str, str, str], int]
    """(model, region, pool) -> instances after the change."""
    nodes: dict[tuple[str, str], int]
    """(region, pool) -> nodes to hold them (ceil of GPUs / GPUs per node)."""
    usd_per_hour: float
    objective: float
    status: str
    seconds: float


def demand_by_tier(c: Compiled, window: range) -> np.ndarray:
    """(M, R, K, W) capacity units of each tier at each step of the window, every origin's
    traffic in its own region (or the model's cheapest allowed region)."""
    M, R, K = len(c.models), len(c.regions), len(c.tiers)
    rix = {n: i for i, n in enumerate(c.regions)}
    unit_mr = np.full((M, R), np.inf)
    for pl in range(len(c.pl_m)):
        unit_mr[c.pl_m[pl], c.pl_r[pl]] = min(
            unit_mr[c.pl_m[pl], c.pl_r[pl]], c.pl_price[pl] / c.cu[pl]
        )
    load = np.zeros((M, R, K, c.T))

    def target(m: int, origin: str) -> int | None:
        r = rix.get(origin)
        if r is not None and np.isfinite(unit_mr[m, r]):
            return r
        if np.isfinite(unit_mr[m]).any():
            return int(np.argmin(unit_mr[m]))
        return None

    for g in range(len(c.fg_m)):
        m, k = int(c.fg_m[g]), int(c.fg_k[g])
        for o, origin in enumerate(c.fg_origins[g]):
            r = target(m, origin)
            if r is not None and np.isfinite(c.phi[m, k]):
                load[m, r, k] += c.phi[m, k] * c.fg_origin_demand[g][o]
    for b in range(len(c.bf_m)):
        m, k = int(c.bf_m[b]), int(c.bf_k[b])
        for o, origin in enumerate(c.bf_origins[b]):
            r = target(m, origin)
            if r is not None and np.isfinite(c.phi[m, k]):
                load[m, r, k] += c.phi[m, k] * c.bf_demand[b] * float(c.bf_origin_share[b][o])
    steps = [t for t in window if t < c.T] or [0]
    return np.asarray(load[:, :, :, steps])


def demand_by_region(c: Compiled, window: range) -> np.ndarray:
    """(M, R) capacity units to provision: max over the window of each region's traffic."""
    return np.asarray(demand_by_tier(c, window).sum(axis=2).max(axis=2))


def solve_sageserve(
    inst: PlanningInstance,
    window: range = range(1),
    time_limit: float = 30.0,
    same_limits: bool = False,
) -> SageServePlan:
    """SageServe's ILP; ``same_limits`` adds llmfleet's spot caps, tier GPU types and min
    replicas (module docstring)."""
    start = time.perf_counter()
    c = compile_instance(inst)
    DK = demand_by_tier(c, window)
    D = DK.sum(axis=2).max(axis=2)
    lp = LinearProgram()
    PL = len(c.pl_m)
    N = c.cur_replicas.astype(float)
    xp = lp.add_vars(PL, cost=c.pl_price + c.replica_add_cost, integer=True)  # C x+ + S x+
    xn = lp.add_vars(PL, ub=N, cost=-c.pl_price, integer=True)  # -C x-  (x >= -N)
    cells = sorted({(int(m), int(r)) for m, r in zip(c.pl_m, c.pl_r, strict=True)})

    def at_least(need: float, sel: np.ndarray, weight: np.ndarray) -> None:
        """sum_{pl in sel} weight (N + x+ - x-) >= need."""
        if not sel.any():
            return
        row = lp.add_rows(1, lb=need - float((N * weight)[sel].sum()))
        idx = np.flatnonzero(sel)
        lp.add_terms(np.full(len(idx), row[0]), xp[idx], weight[idx])
        lp.add_terms(np.full(len(idx), row[0]), xn[idx], -weight[idx])

    od = ~c.pool_spot[c.pl_q]
    for m, r in cells:
        sel = (c.pl_m == m) & (c.pl_r == r)
        at_least(float(D[m, r]), sel, c.cu)  # capacity
        if not same_limits:
            continue
        at_least(float(((1.0 - c.sigma)[None, :] * DK[m, r].T).sum(axis=1).max()), sel & od, c.cu)
        for k in range(len(c.tiers)):
            if DK[m, r, k].max() > 0 and not c.pl_tier_ok[sel, k].all():
                at_least(float(DK[m, r, k].max()), sel & c.pl_tier_ok[:, k], c.cu)
        if c.min_replicas[m] > 0:
            at_least(float(c.min_replicas[m]), sel, np.ones(PL))
    run = runner.solve(lp.to_proto(integer=True), time_limit, rel_gap=1e-4)
    if run.x is None:
        return SageServePlan({}, {}, 0.0, float("nan"), run.status, time.perf_counter() - start)
    x = N + np.round(run.x[xp]) - np.round(run.x[xn])
    gpus = np.zeros(len(c.price))
    np.add.at(gpus, c.pl_q, c.gpr * x)
    nodes = np.maximum(c.nmin, np.ceil(gpus / c.gpn - 1e-9)).astype(int)
    return SageServePlan(
        replicas={
            (c.models[c.pl_m[i]], c.regions[c.pl_r[i]], c.pool_name[c.pl_q[i]]): int(x[i])
            for i in range(PL)
            if x[i] > 0
        },
        nodes={
            (c.regions[c.pool_region[q]], c.pool_name[q]): int(nodes[q])
            for q in range(len(c.price))
        },
        usd_per_hour=float((c.price * nodes).sum()),
        objective=float(run.objective or 0.0),
        status=run.status,
        seconds=time.perf_counter() - start,
    )
