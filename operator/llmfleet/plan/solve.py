"""Plan the fleet: LP relaxation -> integer rounding -> typed plan, always within the time limit.

Pipeline (each stage's contribution is measured in :mod:`llmfleet.plan.bench`):

1. **Diagnose** hard limits no plan can meet (an allowed region with no pool for a model
   that needs min replicas there; min replicas or replica floors that do not fit maxNodes;
   replica caps under min replicas) -> :class:`Infeasible` before any solve.
2. **LP** relaxation of the full joint model (:mod:`llmfleet.plan.model`, all integers
   relaxed), solved by HiGHS under a watchdog. Its optimum is the bound every plan is
   measured against, and its solution is the guide for rounding.
3. **Round** the executed step (step 0) to integers with the constructive packing
   heuristic (:mod:`llmfleet.plan.heuristic`); the rest of the horizon stays LP (rolling
   horizon: only step 0 is executed, later steps shape it). ``integer_tail=True`` rounds
   every step instead.
3b. **Step-0 MIP** (on by default, ``SolveOptions.step0_mip``): the executed step's nodes
   and replicas as integers, its routing continuous (load consolidates across latency-
   eligible regions and pools, which per-cell rounding cannot do), every later-step column
   fixed at the LP solution and folded into the row bounds, the step-0 slacks capped at the
   rounded plan's, hinted with the rounded plan; solved by HiGHS under the watchdog, first
   on the LP's support, then whole (:func:`_step0_mip`), for up to
   ``max(max_mip_seconds, mip_lp_share x LP time)`` of the time left. Kept only if it sheds no load, costs less and the plan passes
   :func:`~llmfleet.plan.validate.validate`; otherwise the rounding stands (the reason is
   in ``SolverInfo.message``).
4. **Fallbacks**: LP not solved in time -> the previous plan shifted by one step (warm
   start) or the greedy routing heuristic, rounded the same way. If the result violates a
   hard limit the solver could not rule out, the outcome is :class:`NoSolutionInTime`;
   if the LP proves the hard limits contradictory, :class:`Infeasible`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from llmfleet.plan import runner
from llmfleet.plan.constraints.deadline import window_work
from llmfleet.plan.explain import pool_explanations
from llmfleet.plan.heuristic import EPS, cell_loads, greedy_loads, integerise, repair
from llmfleet.plan.indexed import UNIT, Compiled, compile_instance
from llmfleet.plan.instance import PlanningInstance
from llmfleet.plan.model import FleetModel, build
from llmfleet.plan.objective import budget_excess, evaluate
from llmfleet.plan.solution import SOLUTION_FIELDS, Solution, extract, to_columns
from llmfleet.plan.terms import Cells
from llmfleet.plan.types import (
    GUARANTEE_ORIGIN,
    Backlog,
    BatchWork,
    Infeasible,
    NoSolutionInTime,
    Plan,
    PlanOutcome,
    PlanStatus,
    PoolStep,
    ReplicaStep,
    Reserve,
    Route,
    SolverInfo,
    StepPlan,
    Unmet,
)
from llmfleet.plan.validate import validate
from llmfleet.plan.variables import PlanVariables


@dataclass(frozen=True)
class SolveOptions:
    time_limit: float | None = None
    """Seconds; the instance's FleetPolicy setting when None."""
    integer_tail: bool = False
    """Round every step (True) or only the executed step 0 (False, rolling horizon)."""
    barrier: bool = False
    """Solve the LP with HiGHS's interior point (no crossover) instead of dual simplex."""
    reserve_seconds: float = 0.5
    """Time kept back for rounding and assembling the plan."""
    step0_mip: bool = True
    """Improve the executed step with a HiGHS MIP over step 0 only (stage 3b; the rest of
    the horizon fixed at the LP solution), hinted with the rounded plan, in the time left;
    kept only if it is cheaper, sheds no load and validates (see :mod:`bench` for figures)."""
    min_mip_seconds: float = 1.0
    """Skip the step-0 MIP when less time than this is left."""
    max_mip_seconds: float = 6.5
    """Most time the step-0 MIP may take on a small fleet: most of its gain comes early
    (50x6x4x24: step 0 2102 USD/h after 6.5 s as after 8 s; gap 1.92% after 10 s, 1.85%
    after 60 s), and the 50x6x4x24 target is a plan in 10 s (LP ~1.6-2.2 s)."""
    mip_lp_share: float = 0.5
    """On a large fleet the step-0 MIP may take up to this share of the LP's time instead
    (within the time limit): HiGHS's presolve alone grows with the model (200x12x6x24:
    LP 33 s; the MIP finds its first improvement after ~5-8 s)."""
    node_tail: bool = False
    """Keep node-addition costs after step 0 in the LP (exact full joint LP, but HiGHS's
    dual simplex stalls on it); False solves the relaxation without them (valid bound,
    ~50x faster); the plan's objective always charges them."""


def _placement(c: Compiled, pl: int) -> str:
    """``(model, region, pool)`` of placement ``pl``, as replica_bounds keys name it."""
    return f"({c.models[c.pl_m[pl]]}, {c.regions[c.pl_r[pl]]}, {c.pool_name[c.pl_q[pl]]})"


def diagnose(c: Compiled) -> list[str]:
    """Hard limits no plan can meet, in words (empty when none is found).

    Necessary conditions, each checked on its own:

    * min replicas (11) in a region the model's ``allowedRegions`` lists but where no pool
      runs it, or whose placements' replica caps sum to less:
      ``sum_{pl in (m,r)} hi[pl] < minReplicasPerRegion[m]``;
    * replica floors (1b) that do not fit a pool:
      ``sum_{pl in q} gpr[pl] lo[pl] > maxNodes[q] gpn[q]``;
    * per region, the GPUs floors and min replicas need at least,
      ``sum_pl gpr lo + sum_m max(0, minRep[m] - sum_{pl in (m,r)} lo) min_{pl: lo < hi} gpr``,
      against ``sum_q maxNodes[q] gpn[q]``.
    """
    out = []
    R = len(c.regions)
    for m, name in enumerate(c.models):
        if c.min_replicas[m] <= 0:
            continue
        explicit = bool(c.inst.model(name).allowed_regions)
        for r in c.model_allowed[m]:
            if r not in c.model_regions[m]:
                if not explicit:
                    continue  # every region is allowed: one with no pool for it just hosts none
                out.append(
                    f"model {name} needs minReplicasPerRegion={c.min_replicas[m]} in region "
                    f"{c.regions[r]} but no pool there has a GPU type it has a profile for"
                )
                continue
            pls = np.flatnonzero((c.pl_m == m) & (c.pl_r == r))
            room = float(c.rep_hi[pls].sum())
            if room < c.min_replicas[m]:
                caps = ", ".join(f"{_placement(c, int(pl))} <= {c.rep_hi[pl]:g}" for pl in pls)
                out.append(
                    f"model {name} needs minReplicasPerRegion={c.min_replicas[m]} in region "
                    f"{c.regions[r]} but replica_bounds cap it there at {room:g} ({caps})"
                )
    for q in range(len(c.price)):
        pls = np.flatnonzero((c.pl_q == q) & (c.rep_lo > 0))
        need = int((c.gpr[pls] * c.rep_lo[pls]).sum())
        cap = int(c.nmax[q] * c.gpn[q])
        if need > cap:
            floors = ", ".join(f"{_placement(c, int(pl))} >= {c.rep_lo[pl]}" for pl in pls)
            out.append(
                f"pool {c.regions[c.pool_region[q]]}/{c.pool_name[q]}: replica floors "
                f"{floors} need {need} GPUs but maxNodes={c.nmax[q]} x {c.gpn[q]} GPUs hold {cap}"
            )
    for r in range(R):
        qs = np.flatnonzero(c.pool_region == r)
        gpus_max = int((c.nmax[qs] * c.gpn[qs]).sum())
        in_r = c.pl_r == r
        floors_gpus = int((c.gpr[in_r] * c.rep_lo[in_r]).sum())
        need = floors_gpus
        for m in range(len(c.models)):
            sel = (c.pl_m == m) & in_r
            if sel.any() and c.min_replicas[m] > 0:
                more = int(c.min_replicas[m]) - int(c.rep_lo[sel].sum())
                room = sel & (c.rep_lo < c.rep_hi)
                if more > 0 and room.any():
                    need += more * int(c.gpr[room].min())
        if need > gpus_max:
            what = "min replicas and replica floors" if floors_gpus else "min replicas"
            out.append(
                f"region {c.regions[r]}: {what} need {need} GPUs but its pools hold at most {gpus_max}"
            )
    return out


def _window_ok(c: Compiled, sol: Solution) -> bool:
    return (
        bool((sol.backlog <= window_work(c) + 1e-6 * (1 + window_work(c))).all())
        if sol.backlog.size
        else True
    )


def hard_violations(c: Compiled, sol: Solution, integral_steps: int) -> list[str]:
    """Hard limits a rounded plan may break (the rest is repaired by slacks)."""
    out = []
    for m in range(len(c.models)):
        if c.min_replicas[m] <= 0:
            continue
        for r in c.model_regions[m]:
            sel = (c.pl_m == m) & (c.pl_r == r)
            if (sol.replicas[sel, :integral_steps].sum(axis=0) < c.min_replicas[m] - 1e-6).any():
                out.append(f"model {c.models[m]} below min replicas in {c.regions[r]}")
    outside = (sol.replicas < c.rep_lo[:, None] - 1e-6) | (sol.replicas > c.rep_hi[:, None] + 1e-6)
    for pl in np.flatnonzero(outside.any(axis=1)):
        out.append(
            f"replicas of {_placement(c, int(pl))} outside replica_bounds "
            f"[{c.rep_lo[pl]}, {c.rep_hi[pl]:g}]"
        )
    if (sol.nodes > c.nmax[:, None] + 1e-6).any():
        out.append("a pool above maxNodes")
    return out


def plan_fleet(
    inst: PlanningInstance, options: SolveOptions | None = None, previous: Plan | None = None
) -> PlanOutcome:
    """Make a plan; never exceeds the time limit by more than the watchdog's grace."""
    opt = options or SolveOptions()
    start = time.perf_counter()
    limit = opt.time_limit if opt.time_limit is not None else inst.settings.time_limit_seconds
    c = compile_instance(inst)
    problems = diagnose(c)
    if problems:
        return Infeasible(tuple(problems), time.perf_counter() - start)
    fm = build(c, integer_steps=0, node_tail=opt.node_tail)
    v, cl = fm.vars, fm.cells
    budget = limit - (time.perf_counter() - start) - opt.reserve_seconds
    run = None
    if budget > 0.05:
        run = runner.solve(fm.lp.to_proto(integer=False), budget, barrier=opt.barrier, grace=0.5)
    lp_done = time.perf_counter()
    if run is not None and run.status == "infeasible":
        return Infeasible(
            (
                "the LP relaxation is infeasible: minReplicasPerRegion, replica_bounds and "
                "the pools' minNodes/maxNodes contradict each other",
            ),
            time.perf_counter() - start,
        )
    bound = run.objective if run is not None and run.status == "optimal" else None
    if run is not None and run.x is not None:
        guide = _within_bounds(extract(run.x, v), c)
        method = "lp+round" if bound is not None else "lp(unfinished)+round"
    elif previous is not None and previous.solution.replicas.shape == v.replicas.shape:
        guide = _shift(previous.solution, c, v)
        method = "warm-start(previous plan)+round"
    else:
        guide = greedy_loads(c, v)
        method = "greedy"
    if run is None:
        note = f"LP not solved: no time left of the {limit:.2f}s limit; plan from {method}"
    elif run.x is None:
        note = f"LP not solved within {budget:.1f}s ({run.status}); plan from {method}"
    else:
        note = run.message
    whole = opt.integer_tail or run is None or run.x is None
    sol = integerise(c, v, cl, guide, range(c.T) if whole else range(1))
    integral = c.T if whole else 1
    rounded_at = time.perf_counter()
    mip: Solution | None = None
    mip_note = ""
    if run is not None and run.x is not None and opt.step0_mip and not whole:
        # keep back what assembling and validating two plans costs (~ the rounding's time)
        post = opt.reserve_seconds + 3.0 * (rounded_at - lp_done)
        left = limit - (rounded_at - start) - post
        if left >= opt.min_mip_seconds:
            cap = max(opt.max_mip_seconds, opt.mip_lp_share * (lp_done - start))
            mip = _step0_mip(c, fm, run.x, sol, min(left - 1.5, cap), inst.settings.relative_gap)
            if mip is None:
                mip_note = "; step-0 MIP found no solution in time (kept rounding)"
            elif _shed(mip) > _shed(sol) + 1e-6:
                mip, mip_note = None, "; step-0 MIP shed load (kept rounding)"
            elif evaluate(mip, c).total >= evaluate(sol, c).total - 1e-6:
                mip, mip_note = None, "; step-0 MIP not cheaper (kept rounding)"
        else:
            mip_note = f"; no time for the step-0 MIP ({left:.1f}s left)"
    bad = hard_violations(c, sol, integral)
    if bad:
        return NoSolutionInTime(limit, time.perf_counter() - start, "; ".join(bad))
    plan = _finish(c, v, cl, sol, inst, method, bound, note + mip_note, start, integral)
    if mip is not None and not hard_violations(c, mip, integral):
        better = _finish(c, v, cl, mip, inst, method + "+mip(step 0)", bound, note, start, integral)
        problems_mip = validate(better, inst)
        if not problems_mip:
            return better
        why = f"; step-0 MIP plan failed validation ({problems_mip[0].message})"
        return replace(plan, solver=replace(plan.solver, message=plan.solver.message + why))
    return plan


def _finish(
    c: Compiled,
    v: PlanVariables,
    cl: Cells,
    sol: Solution,
    inst: PlanningInstance,
    method: str,
    bound: float | None,
    note: str,
    start: float,
    integral: int,
) -> Plan:
    br = evaluate(sol, c)
    obj = br.total
    excess = budget_excess(sol, c)
    if excess > 0.5:
        budget = inst.settings.max_changes_per_cycle
        over = (
            f"step 0 makes {budget + excess:.0f} changes, {excess:.0f} over "
            f"maxChangesPerCycle={budget}: the actuator adds capacity first and spreads the "
            "rest over the next cycles"
        )
        note = f"{note}; {over}" if note else over
    gap = max(0.0, (obj - bound) / obj) if bound is not None and obj > 0 else None
    status: PlanStatus = (
        "Optimal" if gap is not None and gap <= inst.settings.relative_gap else "Feasible"
    )
    info = SolverInfo(
        status=status,
        method=method,
        objective=obj,
        bound=bound,
        gap=gap,
        seconds=time.perf_counter() - start,
        message=note,
    )
    return assemble(c, v, cl, sol, info, br, integral)


def _shed(sol: Solution) -> float:
    """Load left unserved at step 0 (unmet + dropped + guarantee shortfall)."""
    return float(sol.unmet[:, 0].sum() + sol.dropped[:, 0].sum() + sol.shortfall[:, 0].sum())


def _step0_mip(
    c: Compiled,
    fm: FleetModel,
    x_lp: np.ndarray,
    rounded: Solution,
    seconds: float,
    gap: float,
    support_share: float = 1.0,
) -> Solution | None:
    """Step-0 MIP: integer step-0 nodes/replicas, every later-step column fixed at the LP.

    Free columns: every step-0 block (nodes, replicas, routing ``served``/``batch``/
    ``reserve``, slacks, scaling) and the step-1 additions that depend on step 0. Routing
    stays continuous, so load can consolidate across latency-eligible regions and pools —
    what per-cell rounding cannot do. The fixed columns are moved into the row bounds
    (:meth:`~llmfleet.plan.lp.LinearProgram.restricted_proto`), so HiGHS sees a model of
    one step, not of the horizon. Step-0 slacks (unmet, dropped, shortfall) are capped at
    the rounded plan's, so the MIP can only buy the same service cheaper, and the rounded
    plan is a feasible hint (its incumbent from the first node).

    Two phases (RINS-style): (A) the MIP on the LP's support — replicas and nodes that
    are 0 in both the LP and the rounding stay 0 — which HiGHS solves to optimality in
    a fraction of the time on mid-size fleets (50x6x4x24: 0.4 s, 860 -> 319 replica
    columns) and which finds the first improvements on large ones (200x12x6x24: step 0
    9198 -> 8844 USD/h, where the whole MIP found none within its time; 100x8x5x24:
    4590 -> 4054, the whole MIP from the rounding 4574-4586 in 8 s), in up to
    ``support_share`` of the time (default all: it usually proves its optimum early —
    25x4x4x24 4.1 s, then B 1202 USD/h; with half the time for A, 1240); (B) the whole
    step-0 MIP hinted with A's plan, in the time left. Both stop at ``gap / 10`` of the
    step-0 MIP's own objective (an absolute gap of ``gap / 10`` of the horizon's cost
    stopped 10x3x2x24's MIP before it proved its plan optimal).
    """
    t_start = time.perf_counter()
    lp, v = fm.lp, fm.vars
    free = np.zeros(lp.n_cols, dtype=bool)
    for name in (*SOLUTION_FIELDS, "nodes_up", "nodes_down", "replicas_up", "replicas_down"):
        ids = getattr(v, name)
        if ids.size:
            free[ids[:, 0]] = True
    free[v.budget_excess] = True
    for ids in (v.nodes_up, v.replicas_up):
        if ids.shape[1] > 1:
            free[ids[:, 1]] = True  # step-1 additions depend on step 0
    lb, ub, _, _ = lp.column_arrays()
    ub = ub.copy()
    for ids, vals in (
        (v.unmet, rounded.unmet),
        (v.dropped, rounded.dropped),
        (v.shortfall, rounded.shortfall),
    ):
        if ids.size:
            ub[ids[:, 0]] = vals[:, 0] + 1e-7 * (1.0 + vals[:, 0])
    hint = to_columns(
        rounded,
        v,
        lp.n_cols,
        c.cur_nodes.astype(float),
        c.cur_replicas.astype(float),
        float(c.inst.settings.max_changes_per_cycle),
    )
    integer = np.zeros(lp.n_cols, dtype=bool)
    integer[v.nodes[:, 0]] = True
    integer[v.replicas[:, 0]] = True
    rel_gap = max(gap / 10, 1e-4)
    # (A) the LP's support: what neither the LP nor the rounding uses stays at 0
    ub_a = ub.copy()
    for ids, vals in ((v.replicas, rounded.replicas), (v.nodes, rounded.nodes)):
        off = (x_lp[ids[:, 0]] < EPS) & (vals[:, 0] < 0.5)
        ub_a[ids[off, 0]] = np.maximum(lb[ids[off, 0]], 0.0)
    proto, cols = lp.restricted_proto(free, x_lp, integer, lb, ub_a)
    run = runner.solve(
        proto, max(support_share * seconds, 0.1), rel_gap=rel_gap, hint=hint[cols], grace=1.0
    )
    best = run.x
    left = seconds - (time.perf_counter() - t_start)
    if left >= 0.5:  # (B) the whole step-0 MIP from A's plan
        proto, cols_b = lp.restricted_proto(free, x_lp, integer, lb, ub)
        assert (cols_b == cols).all()
        start_x = best if best is not None else hint[cols]
        run_b = runner.solve(proto, left, rel_gap=rel_gap, hint=start_x, grace=1.0)
        if run_b.x is not None and (
            best is None or _restricted_cost(proto, run_b.x) < _restricted_cost(proto, best)
        ):
            best = run_b.x
    if best is None:
        return None
    x = x_lp.copy()
    x[cols] = best
    sol = extract(x, v)
    nodes, reps = rounded.nodes.copy(), rounded.replicas.copy()
    nodes[:, 0] = np.round(sol.nodes[:, 0])
    reps[:, 0] = np.round(sol.replicas[:, 0])
    return repair(c, v, fm.cells, sol.with_(nodes=nodes, replicas=reps), 0)


def _restricted_cost(proto: object, x: np.ndarray) -> float:
    """Objective of a restricted proto at ``x`` (its linear terms only)."""
    lin = proto.objective.linear_coefficients  # type: ignore[attr-defined]
    return float(np.dot(np.asarray(lin.values), x[np.asarray(lin.ids, dtype=np.int64)]))


def _within_bounds(sol: Solution, c: Compiled) -> Solution:
    """``sol`` with replicas clipped to the replica bounds and nodes to min/maxNodes (the
    LP meets them within its tolerance; a previous plan may predate them)."""
    return sol.with_(
        nodes=np.clip(sol.nodes, c.nmin[:, None], c.nmax[:, None]),
        replicas=np.clip(sol.replicas, c.rep_lo[:, None], c.rep_hi[:, None]),
    )


def _shift(prev: Solution, c: Compiled, v: PlanVariables) -> Solution:
    """Warm start: the previous plan one step on (its last step repeated), its nodes and
    replicas clipped to this instance's bounds (the rounding then re-packs them)."""

    def sh(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a[:, 1:], a[:, -1:]], axis=1) if a.size else a

    g = greedy_loads(c, v)
    s = Solution(
        nodes=np.clip(sh(prev.nodes), c.nmin[:, None], c.nmax[:, None]),
        replicas=np.clip(sh(prev.replicas), c.rep_lo[:, None], c.rep_hi[:, None]),
        served=sh(prev.served),
        batch=sh(prev.batch),
        backlog=sh(prev.backlog),
        dropped=sh(prev.dropped),
        unmet=sh(prev.unmet),
        reserve=sh(prev.reserve),
        shortfall=sh(prev.shortfall),
    )
    # demand changed since: re-balance interactive flows by the greedy routing where
    # the shifted routing no longer adds up
    ok = np.isclose(_served_by_group(s, c, v) + s.unmet, c.fg_demand, rtol=1e-6, atol=1e-6).all()
    return s if ok and _window_ok(c, s) else g


def _served_by_group(s: Solution, c: Compiled, v: PlanVariables) -> np.ndarray:
    out = np.zeros(c.fg_demand.shape)
    if len(v.se_g):
        np.add.at(out, v.se_g, s.served)
    return out


def unmet_reason(c: Compiled, v: PlanVariables, sol: Solution, g: int, t: int) -> str:
    """Why flow group g has unmet demand at step t."""
    regs = c.fg_regions[g]
    tier = c.tiers[c.fg_k[g]]
    if not regs:
        return f"no allowed region meets tier {tier}'s TTFT from this origin (RTT + prefill) on any GPU type"
    capped = c.sigma[c.fg_k[g]] < 1.0
    full = []
    for r in regs:
        qs = [
            q
            for q in np.flatnonzero(c.pool_region == r).tolist()
            if ((c.pl_m == c.fg_m[g]) & (c.pl_q == q)).any() and not (capped and c.pool_spot[q])
        ]
        if qs and all(sol.nodes[q, t] >= c.nmax[q] - EPS for q in qs):
            full.append(c.regions[r])
    if len(full) == len(regs):
        which = "on-demand pool (spot is capped for the tier)" if capped else "pool"
        return f"every latency-eligible {which} that fits the model is at maxNodes: " + ", ".join(
            full
        )
    if t == 0:
        return "capacity within reach this cycle is short (maxChangesPerCycle, spot cap or GPU-type limits)"
    return "capacity short in the eligible regions (pool limits, spot cap or GPU-type limits)"


def assemble(
    c: Compiled,
    v: PlanVariables,
    cl: Cells,
    sol: Solution,
    info: SolverInfo,
    br: object,
    integral: int,
) -> Plan:
    from llmfleet.plan.objective import Breakdown

    assert isinstance(br, Breakdown)
    steps = []
    for t in range(c.T):
        loads = cell_loads(c, v, cl, sol, t)
        capu = np.zeros(len(cl.keys))
        np.add.at(capu, cl.of_pl, c.cu * sol.replicas[:, t])
        util_cell = loads["total"] / np.maximum(capu, EPS)
        pools = []
        for q in range(len(c.price)):
            sel = c.pl_q == q
            cap = (c.cu[sel] * sol.replicas[sel, t]).sum()
            used_cap = (util_cell[cl.of_pl[sel]] * c.cu[sel] * sol.replicas[sel, t]).sum()
            pools.append(
                PoolStep(
                    region=c.regions[c.pool_region[q]],
                    pool=c.pool_name[q],
                    gpu_type=c.pool_gpu[q],
                    spot=bool(c.pool_spot[q]),
                    nodes=float(sol.nodes[q, t]),
                    max_nodes=int(c.nmax[q]),
                    gpus_used=float((c.gpr[sel] * sol.replicas[sel, t]).sum()),
                    utilisation=float(min(1.0, used_cap / cap)) if cap > EPS else 0.0,
                )
            )
        reps = tuple(
            ReplicaStep(
                c.models[c.pl_m[pl]],
                c.regions[c.pl_r[pl]],
                c.pool_name[c.pl_q[pl]],
                float(sol.replicas[pl, t]),
            )
            for pl in np.flatnonzero(sol.replicas[:, t] > EPS)
        )
        routes = []
        for i in range(len(v.se_g)):
            tok = float(sol.served[i, t])
            if tok <= EPS:
                continue
            g = int(v.se_g[i])
            od = c.fg_origin_demand[g][:, t]
            tot = od.sum()
            for o, origin in enumerate(c.fg_origins[g]):
                share = od[o] / tot if tot > 0 else 0.0
                routes.append(
                    Route(
                        c.models[c.fg_m[g]],
                        c.tiers[c.fg_k[g]],
                        origin,
                        c.regions[v.se_r[i]],
                        tok / tot if tot > 0 else 0.0,
                        UNIT * tok * share,
                    )
                )
        batch = []
        for i in range(len(v.be_b)):
            tok = float(sol.batch[i, t])
            if tok <= EPS:
                continue
            b = int(v.be_b[i])
            batch.append(
                BatchWork(c.models[c.bf_m[b]], c.tiers[c.bf_k[b]], c.regions[v.be_r[i]], UNIT * tok)
            )
            tot_b = float(sol.batch[v.be_b == b, t].sum())
            for o, origin in enumerate(c.bf_origins[b]):
                routes.append(
                    Route(
                        c.models[c.bf_m[b]],
                        c.tiers[c.bf_k[b]],
                        origin,
                        c.regions[v.be_r[i]],
                        tok / tot_b,
                        UNIT * tok * float(c.bf_origin_share[b][o]),
                    )
                )
        backlog = tuple(
            Backlog(
                c.models[c.bf_m[b]],
                c.tiers[c.bf_k[b]],
                float(sol.backlog[b, t]) * UNIT * c.step_hours * 3600.0,
            )
            for b in range(len(c.bf_m))
            if sol.backlog[b, t] > EPS
        )
        unmet = []
        for g in range(len(c.fg_m)):
            u = float(sol.unmet[g, t])
            if u <= 1e-3:
                continue
            od = c.fg_origin_demand[g][:, t]
            why = unmet_reason(c, v, sol, g, t)
            for o, origin in enumerate(c.fg_origins[g]):
                share = od[o] / od.sum() if od.sum() > 0 else 0.0
                if share > 0:
                    unmet.append(
                        Unmet(
                            c.models[c.fg_m[g]], origin, c.tiers[c.fg_k[g]], UNIT * u * share, why
                        )
                    )
        for b in range(len(c.bf_m)):
            d = float(sol.dropped[b, t])
            if d > 1e-3:
                for o, origin in enumerate(c.bf_origins[b]):
                    unmet.append(
                        Unmet(
                            c.models[c.bf_m[b]],
                            origin,
                            c.tiers[c.bf_k[b]],
                            UNIT * d * float(c.bf_origin_share[b][o]),
                            "batch work cannot finish within its deadline: capacity short",
                        )
                    )
        for u_ in range(len(c.gu_m)):
            s_ = float(sol.shortfall[u_, t])
            if s_ > 1e-3:
                unmet.append(
                    Unmet(
                        c.models[c.gu_m[u_]],
                        GUARANTEE_ORIGIN,
                        c.tiers[c.gu_k[u_]],
                        UNIT * s_,
                        "guaranteed budget cannot be reserved: capacity short",
                    )
                )
        reserves = tuple(
            Reserve(
                c.models[c.gu_m[v.re_u[i]]],
                c.tiers[c.gu_k[v.re_u[i]]],
                c.regions[v.re_r[i]],
                UNIT * float(sol.reserve[i, t]),
            )
            for i in range(len(v.re_u))
            if sol.reserve[i, t] > EPS
        )
        steps.append(
            StepPlan(
                step=t,
                integral=t < integral,
                usd_per_hour=float((c.price * sol.nodes[:, t]).sum()),
                pools=tuple(pools),
                replicas=reps,
                routes=tuple(routes),
                batch=tuple(batch),
                backlog=backlog,
                unmet=tuple(unmet),
                reserves=reserves,
            )
        )
    return Plan(
        policy=c.inst.settings.policy,
        step_seconds=c.inst.settings.step_seconds,
        steps=tuple(steps),
        solver=info,
        breakdown=br,
        explanations=pool_explanations(c, v, cl, sol, 0),
        solution=sol,
        integral_steps=integral,
    )
