"""Solver-independent validation of a :class:`Plan` against its instance.

Every check recomputes a constraint of :mod:`llmfleet.plan.model` directly from the
plan's numbers and the instance (never from the solver's matrix): bounds and integrality
(1), packing (2), demand balance (3), latency eligibility of every route (RTT + prefill
<= TTFT, recomputed from the instance), batch work conservation and deadlines (4)-(5),
capacity (6), GPU-type latency (7), spot cap (8), change budget (10), min replicas (11),
guarantees (12), the tables against the numbers, and the objective (O).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmfleet.plan.capacity import replica_throughput
from llmfleet.plan.indexed import UNIT, Compiled, _rtt, compile_instance
from llmfleet.plan.instance import PlanningInstance
from llmfleet.plan.objective import evaluate
from llmfleet.plan.types import Plan
from llmfleet.plan.variables import pairs

TOL = 1e-6


@dataclass(frozen=True)
class Violation:
    check: str
    message: str


def _rel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.abs(a - b) > TOL * (1.0 + np.abs(b)) + 1e-6
    return out


def validate(plan: Plan, inst: PlanningInstance) -> list[Violation]:
    c = compile_instance(inst)
    s = plan.solution
    out: list[Violation] = []

    def bad(check: str, msg: str) -> None:
        out.append(Violation(check, msg))

    T, Q, PL = c.T, len(c.price), len(c.pl_m)
    if s.nodes.shape != (Q, T) or s.replicas.shape != (PL, T):
        return [Violation("shape", "plan does not match the instance (pools, placements or steps)")]
    # (1) bounds and integrality
    if (s.nodes < c.nmin[:, None] - TOL).any() or (s.nodes > c.nmax[:, None] + TOL).any():
        q, t = np.argwhere((s.nodes < c.nmin[:, None] - TOL) | (s.nodes > c.nmax[:, None] + TOL))[0]
        bad(
            "bounds",
            f"{c.regions[c.pool_region[q]]}/{c.pool_name[q]} has {s.nodes[q, t]} nodes at step {t}, limits {c.nmin[q]}..{c.nmax[q]}",
        )
    k = plan.integral_steps
    for name, arr in (("nodes", s.nodes[:, :k]), ("replicas", s.replicas[:, :k])):
        if (np.abs(arr - np.round(arr)) > 1e-6).any():
            bad("integrality", f"{name} not integral on an executed step")
    # (2) packing
    used = np.zeros((Q, T))
    np.add.at(used, c.pl_q, c.gpr[:, None] * s.replicas)
    over = used > c.gpn[:, None] * s.nodes + 1e-6
    for q, t in np.argwhere(over)[:5]:
        bad(
            "packing",
            f"{c.regions[c.pool_region[q]]}/{c.pool_name[q]} step {t}: {used[q, t]} GPUs on {s.nodes[q, t]} nodes x {c.gpn[q]}",
        )
    # (3) demand
    se_g, se_r = pairs(c.fg_regions)
    served_g = np.zeros(c.fg_demand.shape)
    if len(se_g):
        np.add.at(served_g, se_g, s.served)
    for g, t in np.argwhere(_rel(served_g + s.unmet, c.fg_demand))[:5]:
        bad(
            "demand",
            f"flow {c.models[c.fg_m[g]]}/{c.tiers[c.fg_k[g]]} step {t}: served+unmet {served_g[g, t] + s.unmet[g, t]:.3f} != demand {c.fg_demand[g, t]:.3f}",
        )
    # latency eligibility of every route, recomputed from the instance
    out += _check_routes(plan, inst)
    # (4)-(5) batch
    be_b, be_r = pairs(c.bf_regions)
    done = np.zeros(c.bf_demand.shape)
    if len(be_b):
        np.add.at(done, be_b, s.batch)
    prev = (
        np.concatenate([c.bf_backlog0[:, None], s.backlog[:, :-1]], axis=1)
        if s.backlog.size
        else s.backlog
    )
    if s.backlog.size:
        expect = prev + (c.bf_demand - done) - s.dropped
        for b, t in np.argwhere(_rel(s.backlog, expect))[:5]:
            bad(
                "work-conservation",
                f"batch {c.models[c.bf_m[b]]}/{c.tiers[c.bf_k[b]]} step {t}: backlog {s.backlog[b, t]:.1f} != {expect[b, t]:.1f}",
            )
        cum = np.concatenate([np.zeros((len(c.bf_m), 1)), np.cumsum(c.bf_demand, axis=1)], axis=1)
        for b in range(len(c.bf_m)):
            L = int(c.bf_window[b])
            for t in range(T):
                lim = (cum[b, t + 1] - cum[b, max(0, t - L + 2)]) if L >= 2 else 0.0
                lim += c.bf_backlog0[b] if t <= L - 2 else 0.0
                if s.backlog[b, t] > lim + 1e-6 * (1 + lim):
                    bad(
                        "deadline",
                        f"batch {c.models[c.bf_m[b]]}/{c.tiers[c.bf_k[b]]} step {t}: {s.backlog[b, t]:.0f} tokens queued, older work would miss the deadline",
                    )
    # (6)-(8) capacity per (model, region, step)
    re_u, re_r = pairs(c.gu_regions)
    out += _check_capacity(c, s, se_g, se_r, be_b, be_r, re_u, re_r)
    # (10) the change budget is soft: changes beyond it are priced in the objective
    # (BUDGET_EXCESS_USD each), which is recomputed below from the values alone
    # (11) min replicas in allowed regions
    for m in range(len(c.models)):
        if c.min_replicas[m] > 0:
            for r in c.model_allowed[m]:
                sel = (c.pl_m == m) & (c.pl_r == r)
                have = s.replicas[sel].sum(axis=0) if sel.any() else np.zeros(T)
                if (have < c.min_replicas[m] - 1e-6).any():
                    bad(
                        "min-replicas",
                        f"{c.models[m]} in {c.regions[r]}: {have.min():g} < {c.min_replicas[m]}",
                    )
    # (1b) replica bounds of existing placements
    low = s.replicas < c.rep_lo[:, None] - 1e-6
    high = s.replicas > c.rep_hi[:, None] + 1e-6
    for pl, t in np.argwhere(low | high)[:5]:
        bad(
            "replica-bounds",
            f"({c.models[c.pl_m[pl]]}, {c.regions[c.pl_r[pl]]}, {c.pool_name[c.pl_q[pl]]}) "
            f"step {t}: {s.replicas[pl, t]:g} replicas outside [{c.rep_lo[pl]}, {c.rep_hi[pl]:g}]",
        )
    # (12) guarantees
    for u in range(len(c.gu_m)):
        got = s.reserve[re_u == u].sum(axis=0) + s.shortfall[u]
        for g in np.flatnonzero((c.fg_m == c.gu_m[u]) & (c.fg_k == c.gu_k[u])):
            got = got + served_g[g]
        for b in np.flatnonzero((c.bf_m == c.gu_m[u]) & (c.bf_k == c.gu_k[u])):
            got = got + done[b]
        if (got < c.gu_tokens[u] - 1e-6 * (1 + c.gu_tokens[u])).any():
            bad(
                "guarantee",
                f"{c.models[c.gu_m[u]]}/{c.tiers[c.gu_k[u]]}: guarantee {UNIT * c.gu_tokens[u]:.0f} tok/s not held",
            )
    # tables agree with the numbers
    for t, st in enumerate(plan.steps):
        if abs(st.usd_per_hour - float((c.price * s.nodes[:, t]).sum())) > 1e-6 * (
            1 + st.usd_per_hour
        ):
            bad("tables", f"step {t}: USD/h does not match the nodes")
        if abs(sum(r.replicas for r in st.replicas) - s.replicas[:, t].sum()) > 1e-6 * (
            1 + s.replicas[:, t].sum()
        ):
            bad("tables", f"step {t}: replica table does not match the numbers")
        if any(p.nodes > p.max_nodes + 1e-9 for p in st.pools):
            bad("bounds", f"step {t}: a pool table row exceeds maxNodes")
    # (O) objective
    obj = evaluate(s, c).total
    if abs(obj - plan.objective) > 1e-6 * (1 + abs(obj)):
        bad("objective", f"plan says {plan.objective:.6f} USD, recomputed {obj:.6f}")
    if plan.solver.bound is not None and plan.solver.bound > obj + 1e-6 * (1 + abs(obj)):
        bad("bound", f"LP bound {plan.solver.bound:.4f} exceeds the plan's objective {obj:.4f}")
    return out


def _check_capacity(
    c: Compiled,
    s: object,
    se_g: np.ndarray,
    se_r: np.ndarray,
    be_b: np.ndarray,
    be_r: np.ndarray,
    re_u: np.ndarray,
    re_r: np.ndarray,
) -> list[Violation]:
    from llmfleet.plan.solution import Solution

    assert isinstance(s, Solution)
    R, K, T = len(c.regions), len(c.tiers), c.T
    M = len(c.models)
    load = np.zeros((M, R, K, T))
    for m_, k_, r_, vals in (
        (c.fg_m[se_g], c.fg_k[se_g], se_r, s.served),
        (c.bf_m[be_b], c.bf_k[be_b], be_r, s.batch),
        (c.gu_m[re_u], c.gu_k[re_u], re_r, s.reserve),
    ):
        if len(m_):
            np.add.at(load, (m_, r_, k_), c.phi[m_, k_][:, None] * vals)
    cap = np.zeros((M, R, T))
    cap_od = np.zeros((M, R, T))
    cap_k = np.zeros((M, R, K, T))
    units = c.cu[:, None] * s.replicas
    np.add.at(cap, (c.pl_m, c.pl_r), units)
    od = ~c.pool_spot[c.pl_q]
    np.add.at(cap_od, (c.pl_m[od], c.pl_r[od]), units[od])
    for k in range(K):
        ok = c.pl_tier_ok[:, k]
        np.add.at(cap_k[:, :, k], (c.pl_m[ok], c.pl_r[ok]), units[ok])
    out = []
    tol = 1e-6
    tot = load.sum(axis=2)
    for m, r, t in np.argwhere(tot > cap * (1 + tol) + tol)[:5]:
        out.append(
            Violation(
                "capacity",
                f"{c.models[m]} in {c.regions[r]} step {t}: load {tot[m, r, t]:.1f} > capacity {cap[m, r, t]:.1f} units",
            )
        )
    need_od = (load * (1 - c.sigma)[None, None, :, None]).sum(axis=2)
    for m, r, t in np.argwhere(need_od > cap_od * (1 + tol) + tol)[:5]:
        out.append(
            Violation(
                "spot-cap",
                f"{c.models[m]} in {c.regions[r]} step {t}: on-demand need {need_od[m, r, t]:.1f} > {cap_od[m, r, t]:.1f}",
            )
        )
    for m, r, k, t in np.argwhere(load > cap_k * (1 + tol) + tol)[:5]:
        out.append(
            Violation(
                "latency-gpu",
                f"{c.models[m]} in {c.regions[r]} tier {c.tiers[k]} step {t}: load on GPUs that miss the tier's targets",
            )
        )
    return out


def _check_routes(plan: Plan, inst: PlanningInstance) -> list[Violation]:
    out = []
    tiers = {t.name: t for t in inst.tiers}
    models = {m.name: m for m in inst.models}
    share: dict[tuple[str, str], tuple[float, float]] = {}
    for d in inst.demand:
        pr, ou, rq = (
            sum(d.point.prompt_tokens_per_s),
            sum(d.point.output_tokens_per_s),
            sum(d.point.requests_per_s),
        )
        prev = share.get((d.key.model, d.key.tier), (0.0, 0.0))
        share[(d.key.model, d.key.tier)] = (prev[0] + pr, prev[1] + pr + ou)
        del rq
    seen: set[tuple[str, str, str, str]] = set()
    for st in plan.steps[:1]:
        for rt in st.routes:
            key = (rt.model, rt.tier, rt.origin, rt.region)
            if key in seen:
                continue
            seen.add(key)
            tier, model = tiers[rt.tier], models[rt.model]
            if model.allowed_regions and rt.region not in model.allowed_regions:
                out.append(
                    Violation(
                        "allowed-regions",
                        f"{rt.model} routed to {rt.region}, not an allowed region",
                    )
                )
            if tier.kind != "interactive" or tier.ttft_s is None:
                continue
            rtt = _rtt(inst, rt.origin, rt.region)
            region = inst.region(rt.region)
            gpus = {p.gpu_type for p in region.pools if p.max_nodes > 0}
            pr, tot = share.get((rt.model, rt.tier), (0.0, 0.0))
            p_share = pr / tot if tot > 0 else 0.8
            ok_prof = [
                p
                for p in model.profiles
                if p.gpu_type in gpus and replica_throughput(p, tier, p_share, 1.0) >= 0
            ]
            if rtt is None or not ok_prof:
                out.append(
                    Violation(
                        "latency",
                        f"{rt.model}/{rt.tier} from {rt.origin} routed to unreachable {rt.region}",
                    )
                )
                continue
            if rtt / 1000.0 > tier.ttft_s:
                out.append(
                    Violation(
                        "latency",
                        f"{rt.model}/{rt.tier} from {rt.origin} to {rt.region}: RTT {rtt} ms exceeds TTFT {tier.ttft_s}s",
                    )
                )
    return out
