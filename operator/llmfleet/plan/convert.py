"""Plan -> the API's :class:`~llmfleet.api.plan.FleetPlanSpec` (what the controller records)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime

from pydantic import BaseModel

from llmfleet.api.plan import (
    Explanation,
    FleetPlanSpec,
    ModelReplicas,
    PoolNodes,
    RegionWeight,
    RoutingRule,
    SolverResult,
    UnmetDemand,
)
from llmfleet.plan.instance import PlanningInstance
from llmfleet.plan.types import Plan


def _canonical(x: object) -> object:
    """``x`` as plain data with every mapping sorted by key: equal inputs, equal text
    (whatever the mapping type or insertion order)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: _canonical(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, BaseModel):
        return _canonical(x.model_dump())
    if isinstance(x, Mapping):
        return [[_canonical(k), _canonical(v)] for k, v in sorted(x.items(), key=lambda kv: repr(kv[0]))]
    if isinstance(x, list | tuple):
        return [_canonical(v) for v in x]
    if isinstance(x, float) and x.is_integer():
        return int(x)  # 30 and 30.0 are the same input
    if isinstance(x, float | int | str | bool) or x is None:
        return x
    return repr(x)


def instance_digest(inst: PlanningInstance) -> str:
    """sha256 of every input, so identical inputs give identical digests."""
    text = json.dumps(_canonical(inst), separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def to_fleet_plan_spec(plan: Plan, inst: PlanningInstance, made_at: datetime) -> FleetPlanSpec:
    st = plan.first()
    cur = inst.current
    pools = {(p.region, p.name): p for r in inst.regions for p in r.pools}
    nodes = [
        PoolNodes(
            region=p.region,
            pool=p.pool,
            gpu_type=p.gpu_type,
            capacity_type="spot" if p.spot else "on-demand",
            nodes=round(p.nodes),
            current_nodes=cur.nodes.get((p.region, p.pool), 0),
        )
        for p in st.pools
        if (p.region, p.pool) in pools
    ]
    replicas = [
        ModelReplicas(
            model=r.model,
            region=r.region,
            pool=r.pool,
            replicas=round(r.replicas),
            current_replicas=cur.replicas.get((r.model, r.region, r.pool), 0),
        )
        for r in st.replicas
    ]
    weights: dict[tuple[str, str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for rt in st.routes:
        weights[(rt.model, rt.tier, rt.origin)][rt.region] += rt.fraction
    routing = [
        RoutingRule(
            model=m,
            tier=k,
            origin=o,
            weights=[
                RegionWeight(region=r, fraction=min(1.0, max(0.0, f))) for r, f in sorted(w.items())
            ],
        )
        for (m, k, o), w in sorted(weights.items())
    ]
    unmet = [
        UnmetDemand(
            model=u.model,
            origin=u.origin,
            tier=u.tier,
            tokens_per_second=u.tokens_per_s,
            reason=u.reason[:1024],
        )
        for u in st.unmet
    ]
    s = plan.solver
    return FleetPlanSpec(
        policy=plan.policy,
        inputs_digest=instance_digest(inst)[:128],
        made_at=made_at,
        step_seconds=plan.step_seconds,
        steps=len(plan.steps),
        solver=SolverResult(
            status=s.status,
            objective=s.objective,
            bound=s.bound,
            gap=s.gap,
            solve_seconds=s.seconds,
            message=f"{s.method}: {s.message}"[:4096],
        ),
        cost_per_hour=st.usd_per_hour,
        nodes=nodes,
        replicas=replicas,
        routing=routing,
        unmet=unmet,
        explanation=[
            Explanation(region=e.region, pool=e.pool, reason=e.reason, message=e.message[:4096])
            for e in plan.explanations
        ],
    )
