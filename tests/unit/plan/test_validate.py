"""The table-only validator catches corrupted plans (it shares no code with the compile step)."""

import dataclasses

from plan_builders import FAST, NORMAL, SMALL, flow, pool

from llmfleet.plan.instance import Guarantee, PlanningInstance, RegionSpec, Settings
from llmfleet.plan.solve import SolveOptions, plan_fleet
from llmfleet.plan.types import Plan, ReplicaStep, StepPlan
from llmfleet.plan.validate import validate


def plan_of(inst: PlanningInstance) -> Plan:
    out = plan_fleet(inst, SolveOptions(time_limit=20.0))
    assert isinstance(out, Plan), getattr(out, "message", out)
    assert validate(out, inst) == []
    return out


def with_step0(plan: Plan, **changes: object) -> Plan:
    first = dataclasses.replace(plan.steps[0], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(plan, steps=(first, *plan.steps[1:]))


def checks(plan: Plan, inst: PlanningInstance) -> set[str]:
    return {v.check for v in validate(plan, inst)}


def busy_pool() -> PlanningInstance:
    """One region, one pool, enough interactive load for several replicas."""
    return PlanningInstance(
        (RegionSpec("east", (pool("east", "h100-od", max_nodes=10),)),),
        (dataclasses.replace(SMALL, min_replicas_per_region=0),),
        (NORMAL,),
        (flow("small", "east", "normal", [60_000.0, 50_000.0]),),
        Settings(steps=2),
    )


def far_apart() -> PlanningInstance:
    """Two regions 5 s apart: the fast tier (TTFT 1 s) is served only where it originates."""
    return PlanningInstance(
        (
            RegionSpec("east", (pool("east", "h100-od"),), {"west": 5000.0}),
            RegionSpec("west", (pool("west", "h100-od"),), {"east": 5000.0}),
        ),
        (dataclasses.replace(SMALL, min_replicas_per_region=0),),
        (FAST,),
        (
            flow("small", "east", "fast", [30_000.0, 30_000.0]),
            flow("small", "west", "fast", [20_000.0, 20_000.0]),
        ),
        Settings(steps=2),
    )


def test_one_replica_removed_breaks_capacity() -> None:
    inst = busy_pool()
    plan = plan_of(inst)
    (row,) = plan.first().replicas
    assert row.replicas >= 2
    pools = tuple(dataclasses.replace(p, gpus_used=p.gpus_used - 1) for p in plan.first().pools)
    short = with_step0(
        plan, replicas=(dataclasses.replace(row, replicas=row.replicas - 1),), pools=pools
    )
    assert "capacity" in checks(short, inst)
    # the same cut without fixing the pool row is also a table inconsistency
    assert {"capacity", "tables"} <= checks(
        with_step0(plan, replicas=(dataclasses.replace(row, replicas=row.replicas - 1),)), inst
    )


def test_a_route_to_an_ineligible_region_is_caught() -> None:
    inst = far_apart()
    plan = plan_of(inst)
    first = plan.first()
    assert {(r.origin, r.region) for r in first.routes} == {("east", "east"), ("west", "west")}
    moved = tuple(
        dataclasses.replace(r, region="west") if r.origin == "east" else r for r in first.routes
    )
    found = validate(with_step0(plan, routes=moved), inst)
    assert any(v.check == "latency" and "from east" in v.message for v in found)


def test_dropped_unmet_rows_break_the_demand_balance() -> None:
    squeezed = dataclasses.replace(
        busy_pool(),
        regions=(RegionSpec("east", (pool("east", "h100-od", max_nodes=1),)),),
        demand=(flow("small", "east", "normal", [300_000.0, 300_000.0]),),
    )
    plan = plan_of(squeezed)
    assert plan.first().unmet
    assert "demand" in checks(with_step0(plan, unmet=()), squeezed)


def test_tampered_numbers_are_caught() -> None:
    inst = busy_pool()
    plan = plan_of(inst)
    first = plan.first()
    # fewer nodes than the replicas need (USD/h made to agree): packing
    pools = tuple(dataclasses.replace(p, nodes=p.nodes - 1) for p in first.pools)
    usd = first.usd_per_hour - sum(55.0 for _ in first.pools)
    assert "packing" in checks(with_step0(plan, pools=pools, usd_per_hour=usd), inst)
    # a replica on a pool the instance does not have
    ghost = ReplicaStep("small", "east", "no-such-pool", 1.0)
    assert "placement" in checks(with_step0(plan, replicas=(*first.replicas, ghost)), inst)
    # the objective the solver reported, off by a dollar
    off = dataclasses.replace(
        plan, solver=dataclasses.replace(plan.solver, objective=plan.objective + 1.0)
    )
    assert "objective" in checks(off, inst)
    # a step missing
    short = dataclasses.replace(plan, steps=plan.steps[:1])
    assert "shape" in checks(short, inst)


def test_reserves_are_validated_for_guarantees() -> None:
    """A guarantee with no traffic is held as reserved capacity; without it, it is broken."""
    inst = dataclasses.replace(
        busy_pool(),
        demand=(flow("small", "east", "normal", [0.0, 0.0]),),
        guarantees=(Guarantee("tenant-a", "normal", 20_000.0),),
    )
    plan = plan_of(inst)
    assert all(st.reserves for st in plan.steps)
    assert sum(r.tokens_per_s for r in plan.first().reserves) >= 20_000.0 - 1.0
    broken = with_step0(plan, reserves=())
    assert "guarantee" in checks(broken, inst)
    # reserved, but on too few replicas: capacity
    emptied: StepPlan = dataclasses.replace(plan.first(), replicas=())
    assert "capacity" in checks(dataclasses.replace(plan, steps=(emptied, *plan.steps[1:])), inst)
