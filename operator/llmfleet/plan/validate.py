r"""Solver-independent validation of a :class:`Plan` against its instance.

The validator does not reuse the model's compile step (:mod:`llmfleet.plan.indexed`), its
constraint matrix or the plan's numeric :class:`~llmfleet.plan.solution.Solution`: every
check is recomputed from the :class:`PlanningInstance` and the plan's named tables
(``plan.steps[t].pools / .replicas / .routes / .batch / .backlog / .unmet / .reserves``),
so a bug in the compile step cannot pass both (it shares only the model's named
constants: penalty floor, terminal factor, tie-break, budget price, default token mix).
The capacity maths is the instance-level maths of :mod:`llmfleet.plan.capacity`, applied
here on its own (numbers refer to :mod:`llmfleet.plan.model`):

* (1) ``minNodes <= nodes <= maxNodes``; nodes and replicas integral on integral steps;
  (1b) replicas of every existing placement within its ``replica_bounds``.
* (2) packing per pool: ``sum gpusPerReplica(model profile) x replicas <= gpusPerNode x
  nodes``; replicas only on placements that exist (profile for the pool's GPU type,
  allowed region, a replica fits a node, ``maxNodes > 0``).
* (3) demand per interactive flow (model, origin, tier): ``sum_r route tokens/s + unmet
  = max(upper, point)`` prompt + output tokens/s of the forecast.
* latency: every route goes to an allowed region with a known RTT within the tier's TTFT;
  an interactive route only to a region where ``RTT/1000 + p L prefill_best <= TTFT``
  (``p`` prompt share, ``L`` tokens per request from the point forecast, ``prefill_best``
  the fastest prefill (1/P) of the model's profiles on the region's GPU types).
* (4) batch conservation per (model, deadline tier), in tokens/s over a step of ``S`` s:
  ``B[t] = B[t-1] + A[t] - W[t] - D[t]`` with ``B = backlog tokens / S``, ``B[-1]`` the
  queue now, ``A`` the point arrivals, ``W`` the batch work, ``D`` the dropped rows;
  (5) ``B[t] <= sum_{tau=t-L+2}^{t} A[tau]`` (+ the queue now while ``t <= L-2``),
  ``L = max(1, deadline // S)``.
* (6)-(8) capacity per (model, region, step), with the documented one-mix approximation
  recomputed from the profiles: ``cu = mu(p_m) (1 - spot loss)`` per replica and
  ``phi[m,k] = max_g mu_g(p_m) / throughput_g,k``; (6) ``sum_k phi load_k <= sum cu x``,
  (7) tier-``k`` load ``<=`` capacity on GPU types that meet tier ``k``, (8)
  ``sum_k (1 - sigma_k) phi load_k <=`` on-demand capacity; load is routed tokens/s,
  batch work and guarantee reserves.
* (11) min replicas per allowed region; (12) guarantees: served + batch + reserve +
  shortfall of (model, tier) ``>=`` the guaranteed tokens/s, reserves only where the
  tier's traffic may be served.
* the tables against themselves: one row per pool with the instance's GPU type, spot
  flag and maxNodes, ``gpus_used``, USD/h, route fractions, batch routes summing to the
  batch work, no duplicate rows, one step per planning step.
* (O) the objective, recomputed from the tables with the penalties, terminal values and
  scaling costs derived from the instance (same formulas as :mod:`llmfleet.plan.objective`):
  exact from above (omitted rows only lower it), within the omitted rows' penalty from
  below; and the LP bound not above it.

What a table-only validator cannot check: the tables omit rows under their display
thresholds (unmet and shortfall under 1 tok/s, routes and batch work under 1e-3 tok/s,
replicas under 1e-6), so balances hold to :data:`TOK` tokens/s and the objective to the
penalty of the omitted rows; the change budget (10) is soft, so it is not validated as a
limit — only its price (BUDGET_EXCESS_USD per change over the budget) inside the
recomputed objective; the split of a merged flow group's routing over its origins and of
batch work over origins is a reporting convention (checked for consistency only); the
explanations are not checked; and capacity is checked against the planner's documented
capacity model, not against measured serving latency.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from llmfleet.forecast.types import DemandRates
from llmfleet.plan.capacity import mix_throughput, replica_throughput, spot_loss
from llmfleet.plan.indexed import (
    CHANGE_TIE_BREAK,
    DEFAULT_PROMPT_SHARE,
    DEFAULT_TOKENS_PER_REQUEST,
    PENALTY_FLOOR_FACTOR,
    TERMINAL_FACTOR,
)
from llmfleet.plan.instance import (
    ModelSpec,
    PlanningInstance,
    PoolSpec,
    ProfileSpec,
    RegionSpec,
    TierSpec,
)
from llmfleet.plan.objective import BUDGET_EXCESS_USD
from llmfleet.plan.types import GUARANTEE_ORIGIN, Plan

TOL = 1e-6
"""Relative tolerance of every comparison."""
TOK = 1.0
"""Tokens/s: the resolution of the tables (unmet rows under 1 tok/s are omitted)."""
ABS = 1e-3
"""Tokens/s (and replicas, GPUs, nodes): the absolute slack of capacity-type checks."""
MAX_REPORTED = 5
"""Violations reported per check (the first ones)."""


@dataclass(frozen=True)
class Violation:
    check: str
    message: str


Key3 = tuple[str, str, str]


@dataclass(frozen=True)
class _Placement:
    """One (model, region, pool) a replica can run on, from the instance alone."""

    model: str
    region: str
    pool: str
    gpr: int
    spot: bool
    cu: float
    """Capacity units (tokens/s of the model's mix, spot-derated) of one replica."""
    usd_per_hour: float
    """Price of the GPUs one replica occupies."""
    load_seconds: float


@dataclass
class _Facts:
    """Everything the checks need, derived from the instance (no compiled arrays)."""

    inst: PlanningInstance
    T: int
    S: float
    pools: dict[tuple[str, str], PoolSpec]
    placements: dict[Key3, _Placement]
    tier: dict[str, TierSpec]
    mix: dict[tuple[str, str], tuple[float, float]]
    """(model, tier) -> (prompt share, tokens per request)."""
    phi: dict[tuple[str, str], float]
    """(model, tier) -> capacity units per token/s; inf when no GPU serves the tier."""
    tier_ok: dict[tuple[str, str, str], bool]
    """(model, gpu type, tier) -> the GPU can meet the tier's targets."""
    sigma: dict[str, float]
    model_regions: dict[str, set[str]]
    """Regions where the model has a placement."""
    upper: dict[Key3, np.ndarray]
    """(model, origin, interactive tier) -> (T,) tokens/s the plan must serve or leave unmet."""
    eligible: dict[Key3, set[str]]
    arrivals: dict[tuple[str, str], np.ndarray]
    """(model, deadline tier) -> (T,) point tokens/s arriving."""
    origins: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    guarantees: dict[tuple[str, str], float] = field(default_factory=dict)
    penalty: dict[tuple[str, str], float] = field(default_factory=dict)
    """USD per unmet token (sla_risk-weighted, floored at 10x the dearest serving cost)."""
    terminal: dict[tuple[str, str], float] = field(default_factory=dict)


def _rtt(inst: PlanningInstance, origin: str, region: str) -> float | None:
    """RTT origin -> region in ms from either side's table; 0 to itself; None if unknown."""
    if origin == region:
        return 0.0
    for a, b in ((region, origin), (origin, region)):
        for r in inst.regions:
            if r.name == a and b in r.rtt_ms:
                return r.rtt_ms[b]
    return None


def _tokens(rates: DemandRates, T: int) -> np.ndarray:
    """Prompt + output tokens/s of the first ``T`` steps."""
    p = np.asarray(rates.prompt_tokens_per_s, dtype=float)[:T]
    o = np.asarray(rates.output_tokens_per_s, dtype=float)[:T]
    out: np.ndarray = p + o
    return out


def _facts(inst: PlanningInstance) -> _Facts:
    s = inst.settings
    T = s.steps
    tier = {t.name: t for t in inst.tiers}
    pools = {(p.region, p.name): p for r in inst.regions for p in r.pools}
    # token mix per (model, tier) from the whole point forecast, per model the mean
    acc: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for d in inst.demand:
        a = acc[(d.key.model, d.key.tier)]
        a[0] += sum(d.point.prompt_tokens_per_s)
        a[1] += sum(d.point.output_tokens_per_s)
        a[2] += sum(d.point.requests_per_s)
    mix_mk: dict[tuple[str, str], tuple[float, float]] = {}
    for key, (pr, ou, rq) in acc.items():
        tot = pr + ou
        mix_mk[key] = (
            pr / tot if tot > 0 else DEFAULT_PROMPT_SHARE,
            tot / rq if rq > 0 else DEFAULT_TOKENS_PER_REQUEST,
        )
    model_share: dict[str, float] = {}
    for m in inst.models:
        shares = [v[0] for (mm, _), v in mix_mk.items() if mm == m.name]
        model_share[m.name] = float(np.mean(shares)) if shares else DEFAULT_PROMPT_SHARE
    mix: dict[tuple[str, str], tuple[float, float]] = {}
    phi: dict[tuple[str, str], float] = {}
    tier_ok: dict[tuple[str, str, str], bool] = {}
    for m in inst.models:
        default_tpr = [v[1] for (mm, _), v in mix_mk.items() if mm == m.name]
        for t in inst.tiers:
            share, tpr = mix_mk.get(
                (m.name, t.name),
                (
                    model_share[m.name],
                    float(np.mean(default_tpr)) if default_tpr else DEFAULT_TOKENS_PER_REQUEST,
                ),
            )
            mix[(m.name, t.name)] = (share, tpr)
            worst = 0.0
            for prof in m.profiles:
                thr = replica_throughput(prof, t, share, tpr)
                tier_ok[(m.name, prof.gpu_type, t.name)] = thr > 0
                if thr > 0:
                    worst = max(worst, mix_throughput(prof, model_share[m.name]) / thr)
            phi[(m.name, t.name)] = worst if worst > 0 else np.inf
    placements: dict[Key3, _Placement] = {}
    model_regions: dict[str, set[str]] = {m.name: set() for m in inst.models}
    for m in inst.models:
        allowed = set(m.allowed_regions) if m.allowed_regions else {r.name for r in inst.regions}
        for p in pools.values():
            found = m.profile(p.gpu_type)
            if found is None or p.region not in allowed or p.max_nodes == 0:
                continue
            prof = found
            if prof.gpus_per_replica > p.gpus_per_node:
                continue
            loss = (
                spot_loss(p.interruption_rate_per_hour, p.provisioning_seconds + prof.load_seconds)
                if p.spot
                else 0.0
            )
            placements[(m.name, p.region, p.name)] = _Placement(
                m.name,
                p.region,
                p.name,
                prof.gpus_per_replica,
                p.spot,
                mix_throughput(prof, model_share[m.name]) * (1.0 - loss),
                prof.gpus_per_replica * p.price_per_node_hour / p.gpus_per_node,
                prof.load_seconds,
            )
            model_regions[m.name].add(p.region)
    sigma = {
        t.name: (
            (
                min(t.max_spot_fraction, s.max_interactive_spot_fraction)
                if t.kind == "interactive"
                else t.max_spot_fraction
            )
            if t.spot_allowed
            else 0.0
        )
        for t in inst.tiers
    }
    upper: dict[Key3, np.ndarray] = {}
    eligible: dict[Key3, set[str]] = {}
    arrivals: dict[tuple[str, str], np.ndarray] = {}
    origins: dict[tuple[str, str], set[str]] = defaultdict(set)
    for d in inst.demand:
        mn, o, k = d.key.model, d.key.origin, d.key.tier
        origins[(mn, k)].add(o)
        point = _tokens(d.point, T)
        if tier[k].kind == "deadline":
            arrivals[(mn, k)] = arrivals.get((mn, k), np.zeros(T)) + point
            continue
        upper[(mn, o, k)] = np.maximum(_tokens(d.upper, T), point)
        eligible[(mn, o, k)] = _eligible(
            inst, mn, o, tier[k], mix[(mn, k)], phi[(mn, k)], model_regions[mn]
        )
    f = _Facts(
        inst=inst,
        T=T,
        S=float(s.step_seconds),
        pools=pools,
        placements=placements,
        tier=tier,
        mix=mix,
        phi=phi,
        tier_ok=tier_ok,
        sigma=sigma,
        model_regions=model_regions,
        upper=upper,
        eligible=eligible,
        arrivals=arrivals,
        origins=dict(origins),
    )
    f.guarantees = _guarantees(inst, f)
    f.penalty, f.terminal = _penalties(inst, f)
    return f


def _eligible(
    inst: PlanningInstance,
    model: str,
    origin: str,
    tier: TierSpec,
    mix: tuple[float, float],
    phi: float,
    regions: set[str],
) -> set[str]:
    """Regions an interactive flow may be served in: RTT + best prefill within the TTFT."""
    if not np.isfinite(phi):
        return set()
    spec = inst.model(model)
    share, tpr = mix
    out = set()
    for r in inst.regions:
        if r.name not in regions:
            continue
        rtt = _rtt(inst, origin, r.name)
        if rtt is None:
            continue
        gpus = {p.gpu_type for p in r.pools if p.max_nodes > 0}
        pre = [1.0 / p.prefill_tokens_per_s for p in spec.profiles if p.gpu_type in gpus]
        if not pre:
            continue
        if tier.ttft_s is None or rtt / 1000.0 + share * tpr * min(pre) <= tier.ttft_s:
            out.add(r.name)
    return out


def _guarantees(inst: PlanningInstance, f: _Facts) -> dict[tuple[str, str], float]:
    """(model, tier) -> guaranteed tokens/s: each tenant's budget split evenly over the
    models it may call; (model, tier) pairs no GPU serves or without placements drop out."""
    names = [m.name for m in inst.models]
    acc: dict[tuple[str, str], float] = defaultdict(float)
    for g in inst.guarantees:
        if g.tier not in f.tier:
            continue
        ms = [x for x in (g.models or tuple(names)) if x in names]
        for m in ms:
            acc[(m, g.tier)] += g.tokens_per_s / len(ms)
    return {
        key: tok for key, tok in acc.items() if np.isfinite(f.phi[key]) and f.model_regions[key[0]]
    }


def _penalties(
    inst: PlanningInstance, f: _Facts
) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], float]]:
    """USD per unmet token and per token left queued at the horizon end, per (model, tier).

    ``unit`` = a placement's GPU USD/h / (3600 x its capacity tokens/s): USD per token of
    capacity. penalty = max(sla_risk x penaltyPerRequest / tokens per request,
    PENALTY_FLOOR_FACTOR x max unit x phi x gpu weight); terminal = TERMINAL_FACTOR x min
    unit x phi x gpu weight (phi taken as 1 where no GPU serves the tier)."""
    w = inst.settings.weights
    pen: dict[tuple[str, str], float] = {}
    term: dict[tuple[str, str], float] = {}
    for m in inst.models:
        units = [
            p.usd_per_hour / (3600.0 * p.cu) for p in f.placements.values() if p.model == m.name
        ] or [1e-6]
        for t in inst.tiers:
            ph = f.phi[(m.name, t.name)]
            ph = ph if np.isfinite(ph) else 1.0
            per_tok = t.penalty_per_request / max(f.mix[(m.name, t.name)][1], 1.0)
            floor = PENALTY_FLOOR_FACTOR * max(units) * ph * max(w.gpu_cost, 1e-9)
            pen[(m.name, t.name)] = max(w.sla_risk * per_tok, floor)
            term[(m.name, t.name)] = TERMINAL_FACTOR * min(units) * ph * w.gpu_cost
    return pen, term


def _off(a: float, b: float, abs_tol: float) -> bool:
    """``a`` and ``b`` differ by more than the tolerances."""
    return abs(a - b) > abs_tol + TOL * max(abs(a), abs(b))


def _over(a: float, limit: float, abs_tol: float = ABS) -> bool:
    """``a`` exceeds ``limit`` by more than the tolerances."""
    return a > limit + abs_tol + TOL * abs(limit)


@dataclass
class _Steps:
    """The plan's tables as arrays over steps, keyed by API names."""

    nodes: dict[tuple[str, str], np.ndarray]
    replicas: dict[Key3, np.ndarray]
    routes: dict[tuple[str, str, str, str], np.ndarray]
    """(model, tier, origin, region) -> tokens/s."""
    fractions: dict[tuple[str, str, str, str], np.ndarray]
    batch: dict[tuple[str, str, str], np.ndarray]
    """(model, tier, region) -> tokens/s."""
    backlog: dict[tuple[str, str], np.ndarray]
    unmet: dict[Key3, np.ndarray]
    """(model, origin, tier) -> tokens/s (origin GUARANTEE_ORIGIN: guarantee shortfall)."""
    reserve: dict[tuple[str, str, str], np.ndarray]
    """(model, tier, region) -> tokens/s."""


K = TypeVar("K", bound=tuple[str, ...])
G = TypeVar("G")


def _sum_by(
    rows: Mapping[K, np.ndarray], group: Callable[[K], G | None], T: int
) -> dict[G, np.ndarray]:
    """Rows summed per ``group(key)`` (rows whose group is None are left out)."""
    out: dict[G, np.ndarray] = defaultdict(lambda: np.zeros(T))
    for key, v in rows.items():
        g = group(key)
        if g is not None:
            out[g] = out[g] + v
    return out


def _put(
    bad: _Bad,
    seen: set[tuple[str, tuple[str, ...]]],
    table: str,
    where: dict[K, np.ndarray],
    key: K,
    t: int,
    value: float,
) -> None:
    """Add one table row's value at step ``t``; a second row with the same key is flagged."""
    if (table, key) in seen:
        bad("tables", f"step {t}: two {table} rows for {key}")
    seen.add((table, key))
    where[key][t] += value


def _collect(plan: Plan, f: _Facts, bad: _Bad) -> _Steps:
    """The tables as (T,) arrays per key (0 where a step has no row)."""
    T = f.T

    def z() -> np.ndarray:
        return np.zeros(T)

    out = _Steps(
        nodes=defaultdict(z),
        replicas=defaultdict(z),
        routes=defaultdict(z),
        fractions=defaultdict(z),
        batch=defaultdict(z),
        backlog=defaultdict(z),
        unmet=defaultdict(z),
        reserve=defaultdict(z),
    )
    for t, st in enumerate(plan.steps[:T]):
        seen: set[tuple[str, tuple[str, ...]]] = set()
        for p in st.pools:
            _put(bad, seen, "pool", out.nodes, (p.region, p.pool), t, p.nodes)
        for r in st.replicas:
            _put(bad, seen, "replica", out.replicas, (r.model, r.region, r.pool), t, r.replicas)
        for rt in st.routes:
            key = (rt.model, rt.tier, rt.origin, rt.region)
            _put(bad, seen, "route", out.routes, key, t, rt.tokens_per_s)
            out.fractions[key][t] = rt.fraction
        for b in st.batch:
            _put(bad, seen, "batch", out.batch, (b.model, b.tier, b.region), t, b.tokens_per_s)
        for bl in st.backlog:
            _put(bad, seen, "backlog", out.backlog, (bl.model, bl.tier), t, bl.tokens)
        for u in st.unmet:
            _put(bad, seen, "unmet", out.unmet, (u.model, u.origin, u.tier), t, u.tokens_per_s)
        for rs in st.reserves:
            key3 = (rs.model, rs.tier, rs.region)
            _put(bad, seen, "reserve", out.reserve, key3, t, rs.tokens_per_s)
    return out


class _Bad:
    """Collects violations, at most MAX_REPORTED per check."""

    def __init__(self) -> None:
        self.out: list[Violation] = []
        self.count: dict[str, int] = defaultdict(int)

    def __call__(self, check: str, message: str) -> None:
        self.count[check] += 1
        if self.count[check] <= MAX_REPORTED:
            self.out.append(Violation(check, message))


def validate(plan: Plan, inst: PlanningInstance) -> list[Violation]:
    """Every violation of the planning model's hard limits by ``plan`` (empty when none)."""
    f = _facts(inst)
    bad = _Bad()
    if len(plan.steps) != f.T:
        return [Violation("shape", f"plan has {len(plan.steps)} steps, the instance {f.T}")]
    if plan.step_seconds != inst.settings.step_seconds:
        bad("shape", f"plan step {plan.step_seconds}s, instance step {inst.settings.step_seconds}s")
    tb = _collect(plan, f, bad)
    _check_tables(plan, f, tb, bad)
    _check_pools(plan, f, tb, bad)
    _check_demand(f, tb, bad)
    for v in _check_routes(plan, inst):
        bad(v.check, v.message)
    _check_eligibility(f, tb, bad)
    _check_batch(f, tb, bad)
    _check_capacity(f, tb, bad)
    _check_min_replicas(f, tb, bad)
    _check_guarantees(f, tb, bad)
    _check_objective(plan, f, tb, bad)
    return bad.out


def _check_tables(plan: Plan, f: _Facts, tb: _Steps, bad: _Bad) -> None:
    """Step numbering, integral flags, pool rows, USD/h and gpus_used against the rows."""
    gpus_of = _sum_by(
        {k: f.placements[k].gpr * x for k, x in tb.replicas.items() if k in f.placements},
        lambda k: (k[1], k[2]),
        f.T,
    )
    for t, st in enumerate(plan.steps):
        if st.step != t:
            bad("tables", f"step {t} is labelled {st.step}")
        if st.integral != (t < plan.integral_steps):
            bad(
                "tables",
                f"step {t}: integral={st.integral} but the plan has {plan.integral_steps} integral step(s)",
            )
        rows = {(p.region, p.pool): p for p in st.pools}
        for key, spec in f.pools.items():
            row = rows.get(key)
            if row is None:
                bad("tables", f"step {t}: no row for pool {key[0]}/{key[1]}")
                continue
            if (row.gpu_type, row.spot, row.max_nodes) != (
                spec.gpu_type,
                spec.spot,
                spec.max_nodes,
            ):
                bad(
                    "tables",
                    f"step {t}: pool {key[0]}/{key[1]} row disagrees with the instance (GPU type, spot or maxNodes)",
                )
            gpus = float(gpus_of[key][t]) if key in gpus_of else 0.0
            if _off(row.gpus_used, gpus, ABS):
                bad(
                    "tables",
                    f"step {t}: pool {key[0]}/{key[1]} says {row.gpus_used:g} GPUs used, its replicas use {gpus:g}",
                )
            if not 0.0 <= row.utilisation <= 1.0 + TOL:
                bad(
                    "tables",
                    f"step {t}: pool {key[0]}/{key[1]} utilisation {row.utilisation:g} outside 0..1",
                )
        for key in rows:
            if key not in f.pools:
                bad(
                    "tables",
                    f"step {t}: row for pool {key[0]}/{key[1]}, which the instance does not have",
                )
        usd = sum(f.pools[k].price_per_node_hour * float(tb.nodes[k][t]) for k in f.pools)
        if _off(st.usd_per_hour, usd, 1e-9):
            bad(
                "tables",
                f"step {t}: USD/h {st.usd_per_hour:.6f} but the pools' nodes cost {usd:.6f}",
            )


def _check_pools(plan: Plan, f: _Facts, tb: _Steps, bad: _Bad) -> None:
    """(1) node bounds, integrality, (1b) replica bounds, (2) packing, placements exist."""
    T = f.T
    k = plan.integral_steps
    for (region, name), p in f.pools.items():
        n = tb.nodes[(region, name)]
        for t in range(T):
            if n[t] < p.min_nodes - TOL or n[t] > p.max_nodes + TOL:
                bad(
                    "bounds",
                    f"{region}/{name} has {n[t]:g} nodes at step {t}, limits {p.min_nodes}..{p.max_nodes}",
                )
        if (np.abs(n[:k] - np.round(n[:k])) > 1e-6).any():
            bad("integrality", f"{region}/{name}: nodes not integral on an executed step")
    used: dict[tuple[str, str], np.ndarray] = defaultdict(lambda: np.zeros(T))
    for key, x in tb.replicas.items():
        pl = f.placements.get(key)
        if pl is None:
            if (x > TOL).any():
                bad(
                    "placement",
                    f"({', '.join(key)}): replicas where the model cannot run (no profile for the pool's GPU type, region not allowed, replica larger than a node, or no such pool)",
                )
            continue
        if (x < -TOL).any():
            bad("bounds", f"({', '.join(key)}): negative replicas")
        if (np.abs(x[:k] - np.round(x[:k])) > 1e-6).any():
            bad("integrality", f"({', '.join(key)}): replicas not integral on an executed step")
        used[(key[1], key[2])] += pl.gpr * x
    for key, (lo, hi) in f.inst.replica_bounds.items():
        if key not in f.placements:
            continue  # bounds on placements that do not exist are ignored
        x = tb.replicas[key] if key in tb.replicas else np.zeros(T)
        for t in range(T):
            if x[t] < lo - 1e-6 or (hi is not None and x[t] > hi + 1e-6):
                bad(
                    "replica-bounds",
                    f"({', '.join(key)}) step {t}: {x[t]:g} replicas outside [{lo}, {'inf' if hi is None else hi}]",
                )
    for (region, name), p in f.pools.items():
        cap = p.gpus_per_node * tb.nodes[(region, name)]
        for t in np.flatnonzero(used[(region, name)] > cap + 1e-6).tolist():
            bad(
                "packing",
                f"{region}/{name} step {t}: {used[(region, name)][t]:g} GPUs on {tb.nodes[(region, name)][t]:g} nodes x {p.gpus_per_node}",
            )


def _check_demand(f: _Facts, tb: _Steps, bad: _Bad) -> None:
    """(3) served + unmet = upper demand per interactive flow; route fractions agree."""
    served: dict[Key3, np.ndarray] = defaultdict(lambda: np.zeros(f.T))
    for (m, k, o, r), tok in tb.routes.items():
        if f.tier.get(k) is None:
            bad("tables", f"route of unknown tier {k}")
            continue
        if f.tier[k].kind != "interactive":
            continue
        if (m, o, k) not in f.upper:
            if (tok > ABS).any():
                bad("demand", f"{m}/{k} from {o} routed to {r} but the instance has no such demand")
            continue
        served[(m, o, k)] += tok
        up = f.upper[(m, o, k)]
        frac = tb.fractions[(m, k, o, r)]
        for t in range(f.T):
            if up[t] > ABS and _off(frac[t] * up[t], tok[t], TOK):
                bad(
                    "tables",
                    f"{m}/{k} from {o} to {r} step {t}: fraction {frac[t]:.6f} of {up[t]:.1f} tok/s is not the route's {tok[t]:.1f} tok/s",
                )
    for key, up in f.upper.items():
        m, o, k = key
        got = served[key] + tb.unmet[key]
        for t in range(f.T):
            if _off(got[t], up[t], TOK):
                bad(
                    "demand",
                    f"flow {m}/{k} from {o} step {t}: served {served[key][t]:.1f} + unmet {tb.unmet[key][t]:.1f} != demand {up[t]:.1f} tok/s",
                )


def _check_eligibility(f: _Facts, tb: _Steps, bad: _Bad) -> None:
    """Interactive routes only to E(flow); batch work and reserves only where the model runs."""
    for (m, k, o, r), tok in tb.routes.items():
        interactive = k in f.tier and f.tier[k].kind == "interactive"
        used = (tok > ABS).any()
        if interactive and used and r not in f.eligible.get((m, o, k), {r}):
            bad(
                "latency",
                f"{m}/{k} from {o} routed to {r}: RTT + prefill exceeds the tier's TTFT there (or no pool there fits the model)",
            )
    for (m, k, r), tok in tb.batch.items():
        if (tok > ABS).any() and r not in f.model_regions.get(m, set()):
            bad("placement", f"batch {m}/{k} processed in {r}, where the model has no placement")
    serve_in: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (mm, _, kk), regs in f.eligible.items():
        serve_in[(mm, kk)] |= regs
    for (m, k, r), tok in tb.reserve.items():
        if not (tok > ABS).any():
            continue
        where = serve_in.get((m, k), set())
        if (m, k) not in f.guarantees:
            bad("guarantee", f"capacity reserved for {m}/{k} in {r}, which has no guarantee")
        elif r not in (where or f.model_regions[m]):
            bad(
                "guarantee",
                f"capacity reserved for {m}/{k} in {r}, where its traffic may not be served",
            )


def _check_batch(f: _Facts, tb: _Steps, bad: _Bad) -> None:
    """(4) conservation and (5) deadlines per batch flow; batch routes sum to the work."""
    S, T = f.S, f.T
    work_of = _sum_by(tb.batch, lambda key: (key[0], key[1]), T)
    dropped_of = _sum_by(
        tb.unmet, lambda key: (key[0], key[2]) if key[1] != GUARANTEE_ORIGIN else None, T
    )
    routed_to = _sum_by(tb.routes, lambda key: (key[0], key[1], key[3]), T)
    fraction_of = _sum_by(tb.fractions, lambda key: (key[0], key[1], key[2]), T)
    for (m, k), arr in f.arrivals.items():
        work = work_of[(m, k)] if (m, k) in work_of else np.zeros(T)
        dropped = dropped_of[(m, k)] if (m, k) in dropped_of else np.zeros(T)
        b = tb.backlog[(m, k)] / S if (m, k) in tb.backlog else np.zeros(T)
        b0 = f.inst.current.backlog_tokens.get((m, k), 0.0) / S
        prev = np.concatenate([[b0], b[:-1]])
        expect = prev + arr - work - dropped
        for t in range(T):
            if _off(b[t], expect[t], TOK):
                bad(
                    "work-conservation",
                    f"batch {m}/{k} step {t}: backlog {b[t] * S:.0f} tokens, conservation gives {expect[t] * S:.0f}",
                )
        L = max(1, int((f.tier[k].deadline_s or S) // S))
        cum = np.concatenate([[0.0], np.cumsum(arr)])
        for t in range(T):
            lim = float(cum[t + 1] - cum[max(0, t - L + 2)]) if L >= 2 else 0.0
            lim += b0 if t <= L - 2 else 0.0
            if _over(b[t], lim, 1e-6):
                bad(
                    "deadline",
                    f"batch {m}/{k} step {t}: {b[t] * S:.0f} tokens queued, older work would miss the {f.tier[k].deadline_s:g}s deadline",
                )
        # batch routes: per origin the fractions sum to 1 and per region to the work
        for (mm, kk, r), w in tb.batch.items():
            if (mm, kk) != (m, k):
                continue
            per_region = routed_to.get((m, k, r), np.zeros(T))
            for t in range(T):
                if _off(per_region[t], w[t], ABS):
                    bad(
                        "tables",
                        f"batch {m}/{k} in {r} step {t}: routes carry {per_region[t]:.1f} tok/s, the batch table {w[t]:.1f}",
                    )
        for o in f.origins.get((m, k), set()):
            frac = fraction_of.get((m, k, o), np.zeros(T))
            for t in np.flatnonzero(work > ABS).tolist():
                if _off(frac[t], 1.0, 1e-6):
                    bad(
                        "tables",
                        f"batch {m}/{k} from {o} step {t}: route fractions sum to {frac[t]:.6f}",
                    )
    for (m, k), bl in tb.backlog.items():
        if (m, k) not in f.arrivals and (bl > ABS).any():
            bad("work-conservation", f"backlog of {m}/{k}, which has no batch demand")


def _check_capacity(f: _Facts, tb: _Steps, bad: _Bad) -> None:
    """(6) capacity, (7) GPU types per tier, (8) spot cap per (model, region, step)."""
    T = f.T
    load: dict[tuple[str, str, str], np.ndarray] = defaultdict(lambda: np.zeros(T))
    for (m, k, _, r), tok in tb.routes.items():
        if k in f.tier and f.tier[k].kind == "interactive":
            load[(m, r, k)] += tok
    for (m, k, r), tok in tb.batch.items():
        load[(m, r, k)] += tok
    for (m, k, r), tok in tb.reserve.items():
        load[(m, r, k)] += tok
    tiers_of: dict[tuple[str, str], list[str]] = defaultdict(list)
    for m, r, k in load:
        tiers_of[(m, r)].append(k)
    placed: dict[tuple[str, str], list[tuple[Key3, _Placement]]] = defaultdict(list)
    for key, p in f.placements.items():
        placed[(p.model, p.region)].append((key, p))
    for m, r in sorted(tiers_of):
        pls = placed.get((m, r), [])
        gpu = {key: f.pools[(key[1], key[2])].gpu_type for key, _ in pls}

        def units(keep: Iterable[tuple[Key3, _Placement]]) -> np.ndarray:
            out = np.zeros(T)
            for key, p in keep:
                if key in tb.replicas:
                    out = out + p.cu * tb.replicas[key]
            return out

        cap = units(pls)
        cap_od = units((key, p) for key, p in pls if not p.spot)
        need = np.zeros(T)
        need_od = np.zeros(T)
        for k in tiers_of[(m, r)]:
            ph = f.phi.get((m, k), np.inf)
            lk = load[(m, r, k)]
            if not np.isfinite(ph):
                if (lk > ABS).any():
                    bad(
                        "latency-gpu",
                        f"{m} in {r} carries tier {k}, which no GPU type of the model can serve",
                    )
                continue
            need = need + ph * lk
            need_od = need_od + (1.0 - f.sigma[k]) * ph * lk
            ok = units((key, p) for key, p in pls if f.tier_ok.get((m, gpu[key], k), False))
            for t in range(T):
                if _over(ph * lk[t], ok[t]):
                    bad(
                        "latency-gpu",
                        f"{m} in {r} tier {k} step {t}: load on GPUs that miss the tier's targets ({ph * lk[t]:.1f} > {ok[t]:.1f} units)",
                    )
        for t in range(T):
            if _over(need[t], cap[t]):
                bad(
                    "capacity",
                    f"{m} in {r} step {t}: load {need[t]:.1f} > capacity {cap[t]:.1f} units (tok/s of the model's mix)",
                )
            if _over(need_od[t], cap_od[t]):
                bad(
                    "spot-cap",
                    f"{m} in {r} step {t}: on-demand need {need_od[t]:.1f} > {cap_od[t]:.1f} units",
                )


def _check_min_replicas(f: _Facts, tb: _Steps, bad: _Bad) -> None:
    """(11) minReplicasPerRegion at every step in every region the model is held in: each
    region its ``allowedRegions`` lists, or (none listed) each region with a pool that runs it."""
    names = {r.name for r in f.inst.regions}
    per_cell = _sum_by(tb.replicas, lambda key: (key[0], key[1]), f.T)
    for m in f.inst.models:
        if m.min_replicas_per_region <= 0:
            continue
        allowed = (
            set(m.allowed_regions) & names
            if m.allowed_regions
            else {r.name for r in f.inst.regions if _runs_in(m, r)}
        )
        for r in sorted(allowed):
            have = per_cell.get((m.name, r), np.zeros(f.T))
            if (have < m.min_replicas_per_region - 1e-6).any():
                bad(
                    "min-replicas", f"{m.name} in {r}: {have.min():g} < {m.min_replicas_per_region}"
                )


def _runs_in(m: ModelSpec, r: RegionSpec) -> bool:
    """Some pool of ``r`` has a GPU type ``m`` has a profile for, and room for a replica."""
    return any(
        p.gpu_type == prof.gpu_type and prof.gpus_per_replica <= p.gpus_per_node
        for p in r.pools
        for prof in m.profiles
    )


def _check_guarantees(f: _Facts, tb: _Steps, bad: _Bad) -> None:
    """(12) served + batch + reserve + shortfall of (model, tier) >= its guarantee."""
    T = f.T
    served = _sum_by(tb.routes, lambda key: (key[0], key[1]), T)
    worked = _sum_by(tb.batch, lambda key: (key[0], key[1]), T)
    reserved = _sum_by(tb.reserve, lambda key: (key[0], key[1]), T)
    for (m, k), tok in f.guarantees.items():
        # batch routes restate the batch table by origin: count batch work once
        carried = served if f.tier[k].kind == "interactive" else worked
        got = carried.get((m, k), np.zeros(T)) + reserved.get((m, k), np.zeros(T))
        got = got + tb.unmet[(m, GUARANTEE_ORIGIN, k)]
        for t in range(f.T):
            if _over(tok, got[t], TOK):
                bad(
                    "guarantee",
                    f"{m}/{k} step {t}: guarantee {tok:.0f} tok/s not held (served, reserved and shortfall {got[t]:.0f})",
                )


def _check_objective(plan: Plan, f: _Facts, tb: _Steps, bad: _Bad) -> None:
    """(O) recomputed from the tables; the LP bound is not above it.

    Every term of (O) is non-negative, so rows the tables omit only lower the total:
    the tables' objective may not exceed the plan's (tolerance 1e-4 USD for replicas
    under 1e-6), and the plan's may exceed the tables' by at most what the omitted rows
    can hide (``TOK x S x penalty`` per (model, tier) origin and step, and per guarantee).
    """
    inst, T, S = f.inst, f.T, f.S
    sh = S / 3600.0
    w = inst.settings.weights
    cur = inst.current
    node_cost = scaling = tie = 0.0
    changes = 0.0
    for key, p in f.pools.items():
        n = tb.nodes[key]
        node_cost += sh * w.gpu_cost * p.price_per_node_hour * float(n.sum())
        d = np.diff(np.concatenate([[float(cur.nodes.get(key, 0))], n]))
        scaling += (
            w.scaling_overhead
            * p.price_per_node_hour
            * p.provisioning_seconds
            / 3600.0
            * float(np.maximum(d, 0).sum())
        )
        tie += CHANGE_TIE_BREAK * (float(np.maximum(d, 0).sum()) + max(-float(d[0]), 0.0))
        changes += abs(float(d[0]))
    for pkey, pl in f.placements.items():
        x = tb.replicas[pkey] if pkey in tb.replicas else np.zeros(T)
        d = np.diff(np.concatenate([[float(cur.replicas.get(pkey, 0))], x]))
        scaling += (
            w.scaling_overhead
            * pl.usd_per_hour
            * pl.load_seconds
            / 3600.0
            * float(np.maximum(d, 0).sum())
        )
        tie += CHANGE_TIE_BREAK * (float(np.maximum(d, 0).sum()) + max(-float(d[0]), 0.0))
        changes += abs(float(d[0]))
    sla = 0.0
    slack = 0.0
    for (m, _, k), v in tb.unmet.items():
        sla += S * f.penalty[(m, k)] * float(v.sum())
    for (m, k), orig in f.origins.items():
        slack += T * S * TOK * f.penalty[(m, k)] * (len(orig) + 1)
    for m, k in f.guarantees:
        slack += T * S * TOK * f.penalty[(m, k)]
    term = sum(f.terminal[key] * float(v[-1]) for key, v in tb.backlog.items() if key in f.terminal)
    excess = max(0.0, changes - inst.settings.max_changes_per_cycle)
    obj = node_cost + scaling + sla + term + tie + BUDGET_EXCESS_USD * excess
    # omitted rows only lower the tables' total (their terms are >= 0): exact from above,
    # within what the omitted rows can hide from below
    if _over(obj, plan.objective, 1e-4) or _over(plan.objective, obj, slack + 1e-4):
        bad("objective", f"plan says {plan.objective:.6f} USD, the tables give {obj:.6f}")
    if plan.solver.bound is not None and _over(plan.solver.bound, plan.objective, 1e-6):
        bad(
            "bound",
            f"LP bound {plan.solver.bound:.4f} exceeds the plan's objective {plan.objective:.4f}",
        )


def _check_routes(plan: Plan, inst: PlanningInstance) -> list[Violation]:
    """Every route goes to an allowed region with a known RTT within the tier's TTFT."""
    out = []
    tiers = {t.name: t for t in inst.tiers}
    models = {m.name: m for m in inst.models}
    share: dict[tuple[str, str], tuple[float, float]] = {}
    for d in inst.demand:
        pr, ou = sum(d.point.prompt_tokens_per_s), sum(d.point.output_tokens_per_s)
        prev = share.get((d.key.model, d.key.tier), (0.0, 0.0))
        share[(d.key.model, d.key.tier)] = (prev[0] + pr, prev[1] + pr + ou)
    seen: set[tuple[str, str, str, str]] = set()
    for st in plan.steps:
        for rt in st.routes:
            key = (rt.model, rt.tier, rt.origin, rt.region)
            if key in seen:
                continue
            seen.add(key)
            if rt.tier not in tiers or rt.model not in models:
                out.append(
                    Violation("tables", f"route of unknown model or tier {rt.model}/{rt.tier}")
                )
                continue
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
            region = next((r for r in inst.regions if r.name == rt.region), None)
            gpus = {p.gpu_type for p in region.pools if p.max_nodes > 0} if region else set()
            pr, tot = share.get((rt.model, rt.tier), (0.0, 0.0))
            p_share = pr / tot if tot > 0 else DEFAULT_PROMPT_SHARE
            ok_prof = [
                p for p in model.profiles if p.gpu_type in gpus and _serves(p, tier, p_share)
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


def _serves(profile: ProfileSpec, tier: TierSpec, prompt_share: float) -> bool:
    """The profile is a candidate for the tier (the capacity checks judge how much)."""
    return replica_throughput(profile, tier, prompt_share, 1.0) >= 0
