"""The instance compiled to numbers: index arrays the model, heuristic and validator share.

Exact aggregations done here (they shrink the model without changing its optimum):

* interactive flows of one (model, tier) whose origins have the same latency-eligible
  regions are merged into one *flow group* (routing fractions are the same for each
  origin of a group and are split back by origin demand);
* deadline (batch) flows of one (model, tier) are merged over origins: latency does not
  restrict where batch work runs, so the origin does not matter.

One approximation (documented in :mod:`llmfleet.plan.capacity` terms): each model has one
token mix per tier (demand-weighted over origins and steps), and a replica's capacity is
measured in *capacity units* ``cu = mu(p_m) * (1 - spot loss)``; tier-``k`` load of
``l`` tokens/s consumes ``phi[m,k] * l`` units with
``phi[m,k] = max_g mu_g / throughput_g,k`` over the GPU types that can serve the tier
(conservative when GPU types differ in how the tier's latency limits them).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from llmfleet.plan.capacity import mix_throughput, replica_throughput, spot_loss
from llmfleet.plan.instance import PlanningInstance

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

#: Unmet demand costs at least this many times the dearest way to serve it, so the plan
#: never sheds load that capacity could carry (the tier penalty still orders shedding).
PENALTY_FLOOR_FACTOR = 10.0
#: Batch work left at the horizon end costs this much more than the cheapest capacity, so
#: deferrable work is done inside the horizon when capacity is as cheap.
TERMINAL_FACTOR = 1.05
#: USD per node or replica change: breaks ties toward fewer changes.
CHANGE_TIE_BREAK = 1e-3
DEFAULT_PROMPT_SHARE = 0.8
#: The model's load unit: 1000 tokens/s (keeps the LP's coefficients near 1; batch work
#: is counted in UNIT x step seconds). Tables and reports are in tokens/s and tokens.
UNIT = 1000.0
DEFAULT_TOKENS_PER_REQUEST = 1500.0


@dataclass(frozen=True)
class Compiled:
    """Numeric view of a :class:`PlanningInstance` (index conventions in field docs)."""

    inst: PlanningInstance
    T: int
    step_hours: float
    regions: tuple[str, ...]
    models: tuple[str, ...]
    tiers: tuple[str, ...]
    tier_interactive: BoolArray
    # pools q
    pool_region: IntArray
    pool_name: tuple[str, ...]
    pool_gpu: tuple[str, ...]
    pool_spot: BoolArray
    gpn: IntArray
    price: FloatArray
    nmin: IntArray
    nmax: IntArray
    node_add_cost: FloatArray
    """USD per node added (provisioning time at the node price)."""
    # placements pl = (model, pool) the model can run on
    pl_m: IntArray
    pl_q: IntArray
    pl_r: IntArray
    gpr: IntArray
    cu: FloatArray
    """Capacity units of one replica (spot-derated), in UNIT tokens/s."""
    pl_price: FloatArray
    """USD per hour of the GPUs one replica occupies."""
    replica_add_cost: FloatArray
    """USD per replica added (load time of its GPUs)."""
    pl_tier_ok: BoolArray
    """(PL, K): the placement's GPU can meet tier k's latency targets."""
    # model x tier
    phi: FloatArray
    """(M, K) capacity units per token/s; inf when no GPU serves the tier."""
    sigma: FloatArray
    """(K,) share of a tier's load allowed on spot."""
    tokens_per_request: FloatArray
    """(M, K)."""
    penalty: FloatArray
    """(M, K) USD per unmet token (already weighted by sla_risk)."""
    terminal_cost: FloatArray
    """(M, K) USD per batch token still queued at the horizon end."""
    # interactive flow groups g
    fg_m: IntArray
    fg_k: IntArray
    fg_origins: tuple[tuple[str, ...], ...]
    fg_origin_demand: tuple[FloatArray, ...]
    """Per group: (origins, T) upper demand per origin, tokens/s."""
    fg_demand: FloatArray
    """(G, T) upper-quantile load in UNIT tokens/s (what interactive tiers are provisioned for)."""
    fg_requests: FloatArray
    """(G, T) upper requests/s."""
    fg_regions: tuple[tuple[int, ...], ...]
    """Latency-eligible serving regions of each group."""
    # batch flows b = (model, deadline tier)
    bf_m: IntArray
    bf_k: IntArray
    bf_origins: tuple[tuple[str, ...], ...]
    bf_origin_share: tuple[FloatArray, ...]
    bf_demand: FloatArray
    """(B, T) point load arriving, UNIT tokens/s."""
    bf_window: IntArray
    """Steps within which arriving work must be done (1 = same step)."""
    bf_backlog0: FloatArray
    bf_regions: tuple[tuple[int, ...], ...]
    # guarantees per (model, tier)
    gu_m: IntArray
    gu_k: IntArray
    gu_tokens: FloatArray
    gu_regions: tuple[tuple[int, ...], ...]
    # current state
    cur_nodes: IntArray
    cur_replicas: IntArray
    min_replicas: IntArray
    """(M,) replicas per allowed region."""
    rep_lo: IntArray
    """(PL,) replicas of the placement at every step are >= this (``replica_bounds``; 0)."""
    rep_hi: FloatArray
    """(PL,) replicas of the placement at every step are <= this (inf when unbounded)."""
    model_regions: tuple[tuple[int, ...], ...]
    """Allowed regions where the model has at least one placement."""
    model_allowed: tuple[tuple[int, ...], ...]
    """Allowed regions (whether or not a pool there fits the model)."""
    weights_gpu: float
    weights_scaling: float


def _mix(inst: PlanningInstance) -> dict[tuple[str, str], tuple[float, float]]:
    """(model, tier) -> (prompt share, tokens per request) from the point forecast."""
    acc: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for d in inst.demand:
        a = acc[(d.key.model, d.key.tier)]
        a[0] += sum(d.point.prompt_tokens_per_s)
        a[1] += sum(d.point.output_tokens_per_s)
        a[2] += sum(d.point.requests_per_s)
    out = {}
    for key, (pr, ou, rq) in acc.items():
        tot = pr + ou
        share = pr / tot if tot > 0 else DEFAULT_PROMPT_SHARE
        tpr = tot / rq if rq > 0 else DEFAULT_TOKENS_PER_REQUEST
        out[key] = (share, tpr)
    return out


def compile_instance(inst: PlanningInstance) -> Compiled:
    s = inst.settings
    T = s.steps
    step_hours = s.step_seconds / 3600.0
    regions = tuple(r.name for r in inst.regions)
    rix = {n: i for i, n in enumerate(regions)}
    models = tuple(m.name for m in inst.models)
    mix_ = {m: i for i, m in enumerate(models)}
    tiers = tuple(t.name for t in inst.tiers)
    kix = {n: i for i, n in enumerate(tiers)}
    M, K = len(models), len(tiers)
    tier_inter = np.array([t.kind == "interactive" for t in inst.tiers], dtype=bool)

    pools = [p for r in inst.regions for p in r.pools]
    pool_region = np.array([rix[p.region] for p in pools], dtype=np.int64)
    price = np.array([p.price_per_node_hour for p in pools], dtype=float)
    node_add_cost = np.array(
        [p.price_per_node_hour * p.provisioning_seconds / 3600.0 for p in pools], dtype=float
    )

    mixes = _mix(inst)
    model_mix: dict[str, tuple[float, float]] = {}
    for m in inst.models:
        keys = [(share, tpr) for (mm, _), (share, tpr) in mixes.items() if mm == m.name]
        model_mix[m.name] = (
            (float(np.mean([k[0] for k in keys])), float(np.mean([k[1] for k in keys])))
            if keys
            else (DEFAULT_PROMPT_SHARE, DEFAULT_TOKENS_PER_REQUEST)
        )

    # phi[m, k], tier eligibility per GPU type
    phi = np.full((M, K), np.inf)
    tpr_mk = np.full((M, K), DEFAULT_TOKENS_PER_REQUEST)
    ok_gpu: dict[tuple[int, str, int], bool] = {}
    for mi, m in enumerate(inst.models):
        share_m = model_mix[m.name][0]
        for ki, t in enumerate(inst.tiers):
            share, tpr = mixes.get((m.name, t.name), model_mix[m.name])
            tpr_mk[mi, ki] = tpr
            worst = 0.0
            for prof in m.profiles:
                thr = replica_throughput(prof, t, share, tpr)
                ok_gpu[(mi, prof.gpu_type, ki)] = thr > 0
                if thr > 0:
                    worst = max(worst, mix_throughput(prof, share_m) / thr)
            if worst > 0:
                phi[mi, ki] = worst

    # placements
    pl_m, pl_q, cu, gpr, pl_price, radd = [], [], [], [], [], []
    pl_ok = []
    model_regions: list[tuple[int, ...]] = []
    model_allowed: list[tuple[int, ...]] = []
    for mi, m in enumerate(inst.models):
        allowed = set(m.allowed_regions) if m.allowed_regions else set(regions)
        model_allowed.append(tuple(sorted(rix[a] for a in allowed if a in rix)))
        placed: set[int] = set()
        for qi, p in enumerate(pools):
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
            pl_m.append(mi)
            pl_q.append(qi)
            cu.append(mix_throughput(prof, model_mix[m.name][0]) * (1.0 - loss) / UNIT)
            gpr.append(prof.gpus_per_replica)
            gp = prof.gpus_per_replica * p.price_per_node_hour / p.gpus_per_node
            pl_price.append(gp)
            radd.append(gp * prof.load_seconds / 3600.0)
            pl_ok.append([ok_gpu.get((mi, p.gpu_type, ki), False) for ki in range(K)])
            placed.add(rix[p.region])
        model_regions.append(tuple(sorted(placed)))
    pl_m_a = np.array(pl_m, dtype=np.int64)
    pl_q_a = np.array(pl_q, dtype=np.int64)
    cu_a = np.array(cu, dtype=float)
    pl_price_a = np.array(pl_price, dtype=float)
    pl_ok_a = np.array(pl_ok, dtype=bool).reshape(len(pl_m), K)

    # cost per capacity unit, for penalties and terminal backlog value
    w = s.weights
    penalty = np.zeros((M, K))
    terminal = np.zeros((M, K))
    for mi in range(M):
        sel = pl_m_a == mi
        unit = pl_price_a[sel] / (3600.0 * UNIT * cu_a[sel]) if sel.any() else np.array([1e-6])
        for ki, t in enumerate(inst.tiers):
            ph = phi[mi, ki] if np.isfinite(phi[mi, ki]) else 1.0
            per_tok = t.penalty_per_request / max(tpr_mk[mi, ki], 1.0)
            floor = PENALTY_FLOOR_FACTOR * float(unit.max()) * ph * max(w.gpu_cost, 1e-9)
            penalty[mi, ki] = max(w.sla_risk * per_tok, floor)
            terminal[mi, ki] = TERMINAL_FACTOR * float(unit.min()) * ph * w.gpu_cost

    sigma = np.array(
        [
            (
                min(t.max_spot_fraction, s.max_interactive_spot_fraction)
                if t.kind == "interactive"
                else t.max_spot_fraction
            )
            if t.spot_allowed
            else 0.0
            for t in inst.tiers
        ],
        dtype=float,
    )

    # interactive flow groups
    best_prefill: dict[tuple[int, int], float] = {}
    for mi, m in enumerate(inst.models):
        for ri, r in enumerate(inst.regions):
            gtypes = {p.gpu_type for p in r.pools if p.max_nodes > 0}
            pre = [1.0 / p.prefill_tokens_per_s for p in m.profiles if p.gpu_type in gtypes]
            best_prefill[(mi, ri)] = min(pre) if pre else np.inf

    groups: dict[
        tuple[int, int, tuple[int, ...]], list[tuple[str, NDArray[np.float64], NDArray[np.float64]]]
    ] = defaultdict(list)
    batch: dict[tuple[int, int], list[tuple[str, NDArray[np.float64]]]] = defaultdict(list)
    for d in inst.demand:
        mi, ki = mix_[d.key.model], kix[d.key.tier]
        tier = inst.tiers[ki]
        pt = np.asarray(d.point.prompt_tokens_per_s[:T]) + np.asarray(
            d.point.output_tokens_per_s[:T]
        )
        if tier.kind == "deadline":
            batch[(mi, ki)].append((d.key.origin, pt))
            continue
        up = np.asarray(d.upper.prompt_tokens_per_s[:T]) + np.asarray(
            d.upper.output_tokens_per_s[:T]
        )
        up = np.maximum(up, pt)
        rq = np.maximum(
            np.asarray(d.upper.requests_per_s[:T]), np.asarray(d.point.requests_per_s[:T])
        )
        share, tpr = mixes.get((d.key.model, d.key.tier), model_mix[d.key.model])
        elig: list[int] = []
        if np.isfinite(phi[mi, ki]):
            for ri in model_regions[mi]:
                rtt = _rtt(inst, d.key.origin, regions[ri])
                if rtt is None:
                    continue
                ttft = rtt / 1000.0 + share * tpr * best_prefill[(mi, ri)]
                if tier.ttft_s is None or ttft <= tier.ttft_s:
                    elig.append(ri)
        groups[(mi, ki, tuple(elig))].append((d.key.origin, up, rq))

    fg_m: list[int] = []
    fg_k: list[int] = []
    fg_origins: list[tuple[str, ...]] = []
    fg_od: list[FloatArray] = []
    fg_dem: list[FloatArray] = []
    fg_req: list[FloatArray] = []
    fg_regions: list[tuple[int, ...]] = []
    for (mi, ki, eligible), items in sorted(groups.items(), key=lambda kv: kv[0]):
        fg_m.append(mi)
        fg_k.append(ki)
        fg_origins.append(tuple(o for o, _, _ in items))
        od = np.array([u for _, u, _ in items], dtype=float).reshape(len(items), T)
        od = od / UNIT
        fg_od.append(od)
        fg_dem.append(od.sum(axis=0))
        fg_req.append(np.array([r for _, _, r in items]).reshape(len(items), T).sum(axis=0))
        fg_regions.append(eligible)

    bf_m: list[int] = []
    bf_k: list[int] = []
    bf_origins: list[tuple[str, ...]] = []
    bf_share: list[FloatArray] = []
    bf_dem: list[FloatArray] = []
    bf_win: list[int] = []
    bf_b0: list[float] = []
    bf_regions: list[tuple[int, ...]] = []
    for (mi, ki), bitems in sorted(batch.items(), key=lambda kv: kv[0]):
        items2 = bitems
        tier = inst.tiers[ki]
        bf_m.append(mi)
        bf_k.append(ki)
        bf_origins.append(tuple(o for o, _ in items2))
        tot = np.array([float(v.sum()) for _, v in items2], dtype=float)
        bf_share.append(
            tot / tot.sum() if tot.sum() > 0 else np.full(len(items2), 1.0 / len(items2))
        )
        bf_dem.append(
            np.array([v for _, v in items2], dtype=float).reshape(len(items2), T).sum(axis=0) / UNIT
        )
        bf_win.append(max(1, int((tier.deadline_s or s.step_seconds) // s.step_seconds)))
        bf_b0.append(
            inst.current.backlog_tokens.get((models[mi], tiers[ki]), 0.0) / (UNIT * s.step_seconds)
        )
        bf_regions.append(model_regions[mi] if np.isfinite(phi[mi, ki]) else ())

    # guarantees per (model, tier)
    gacc: dict[tuple[int, int], float] = defaultdict(float)
    for g in inst.guarantees:
        if g.tier not in kix:
            continue
        ms = [x for x in (g.models or models) if x in mix_]
        for mname in ms:
            gacc[(mix_[mname], kix[g.tier])] += g.tokens_per_s / len(ms)
    gu_m, gu_k, gu_tok, gu_reg = [], [], [], []
    for (mi, ki), tok in sorted(gacc.items()):
        if not np.isfinite(phi[mi, ki]) or not model_regions[mi]:
            continue
        regs: set[int] = set()
        for gi in range(len(fg_m)):
            if fg_m[gi] == mi and fg_k[gi] == ki:
                regs.update(fg_regions[gi])
        gu_m.append(mi)
        gu_k.append(ki)
        gu_tok.append(tok / UNIT)
        gu_reg.append(tuple(sorted(regs)) if regs else model_regions[mi])

    cur = inst.current
    cur_nodes = np.array([cur.nodes.get((p.region, p.name), 0) for p in pools], dtype=np.int64)
    cur_rep = np.array(
        [
            cur.replicas.get((models[m], pools[q].region, pools[q].name), 0)
            for m, q in zip(pl_m, pl_q, strict=True)
        ],
        dtype=np.int64,
    )
    pl_index = {
        (models[m], pools[q].region, pools[q].name): i
        for i, (m, q) in enumerate(zip(pl_m, pl_q, strict=True))
    }
    rep_lo = np.zeros(len(pl_m), dtype=np.int64)
    rep_hi = np.full(len(pl_m), np.inf)
    for key, (lo, hi) in inst.replica_bounds.items():
        i = pl_index.get(key)
        if i is None:  # no such placement (model or pool gone, or it cannot run there)
            continue
        rep_lo[i] = lo
        rep_hi[i] = np.inf if hi is None else float(hi)
    return Compiled(
        inst=inst,
        T=T,
        step_hours=step_hours,
        regions=regions,
        models=models,
        tiers=tiers,
        tier_interactive=tier_inter,
        pool_region=pool_region,
        pool_name=tuple(p.name for p in pools),
        pool_gpu=tuple(p.gpu_type for p in pools),
        pool_spot=np.array([p.spot for p in pools], dtype=bool),
        gpn=np.array([p.gpus_per_node for p in pools], dtype=np.int64),
        price=price,
        nmin=np.array([p.min_nodes for p in pools], dtype=np.int64),
        nmax=np.array([p.max_nodes for p in pools], dtype=np.int64),
        node_add_cost=node_add_cost,
        pl_m=pl_m_a,
        pl_q=pl_q_a,
        pl_r=pool_region[pl_q_a] if pl_q else np.zeros(0, dtype=np.int64),
        gpr=np.array(gpr, dtype=np.int64),
        cu=cu_a,
        pl_price=pl_price_a,
        replica_add_cost=np.array(radd, dtype=float),
        pl_tier_ok=pl_ok_a,
        phi=phi,
        sigma=sigma,
        tokens_per_request=tpr_mk,
        penalty=penalty,
        terminal_cost=terminal,
        fg_m=np.array(fg_m, dtype=np.int64),
        fg_k=np.array(fg_k, dtype=np.int64),
        fg_origins=tuple(fg_origins),
        fg_origin_demand=tuple(fg_od),
        fg_demand=np.array(fg_dem, dtype=float).reshape(len(fg_m), T),
        fg_requests=np.array(fg_req, dtype=float).reshape(len(fg_m), T),
        fg_regions=tuple(fg_regions),
        bf_m=np.array(bf_m, dtype=np.int64),
        bf_k=np.array(bf_k, dtype=np.int64),
        bf_origins=tuple(bf_origins),
        bf_origin_share=tuple(bf_share),
        bf_demand=np.array(bf_dem, dtype=float).reshape(len(bf_m), T),
        bf_window=np.array(bf_win, dtype=np.int64),
        bf_backlog0=np.array(bf_b0, dtype=float),
        bf_regions=tuple(bf_regions),
        gu_m=np.array(gu_m, dtype=np.int64),
        gu_k=np.array(gu_k, dtype=np.int64),
        gu_tokens=np.array(gu_tok, dtype=float),
        gu_regions=tuple(gu_reg),
        cur_nodes=cur_nodes,
        cur_replicas=cur_rep,
        min_replicas=np.array([m.min_replicas_per_region for m in inst.models], dtype=np.int64),
        rep_lo=rep_lo,
        rep_hi=rep_hi,
        model_regions=tuple(model_regions),
        model_allowed=tuple(model_allowed),
        weights_gpu=w.gpu_cost,
        weights_scaling=w.scaling_overhead,
    )


def _rtt(inst: PlanningInstance, origin: str, region: str) -> float | None:
    """RTT origin -> region in ms, looked up from either side; None if unknown."""
    if origin == region:
        return 0.0
    for r in inst.regions:
        if r.name == region and origin in r.rtt_ms:
            return r.rtt_ms[origin]
    for r in inst.regions:
        if r.name == origin and region in r.rtt_ms:
            return r.rtt_ms[region]
    return None
