import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plan_builders import FAST, NORMAL, SMALL, flow, pool, two_regions

from llmfleet.plan.instance import PlanningInstance, RegionSpec, Settings
from llmfleet.plan.solve import SolveOptions, plan_fleet
from llmfleet.plan.types import Plan
from llmfleet.plan.validate import validate

PROPS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def plan_of(inst: PlanningInstance) -> Plan:
    out = plan_fleet(inst, SolveOptions(time_limit=20))
    assert isinstance(out, Plan)
    assert validate(out, inst) == []
    return out


def one_pool(load: float, price: float = 55.0) -> PlanningInstance:
    regions = (RegionSpec("east", (pool("east", "h100-od", price=price, max_nodes=50),)),)
    return PlanningInstance(
        regions,
        (SMALL,),
        (FAST,),
        (flow("small", "east", "fast", [load, load * 0.7]),),
        Settings(steps=2),
    )


def capacity_units(plan: Plan) -> float:
    return sum(r.replicas for r in plan.first().replicas)


@PROPS
@given(load=st.floats(1000, 200000), factor=st.floats(1.0, 3.0))
def test_more_demand_never_yields_less_capacity(load: float, factor: float) -> None:
    assert capacity_units(plan_of(one_pool(load * factor))) >= capacity_units(
        plan_of(one_pool(load))
    )


@PROPS
@given(load=st.floats(5000, 100000), cheap=st.floats(10, 50), extra=st.floats(1, 40))
def test_with_equal_capability_the_cheaper_pool_wins(
    load: float, cheap: float, extra: float
) -> None:
    regions = (
        RegionSpec(
            "east",
            (
                pool("east", "dear", price=cheap + extra, max_nodes=50),
                pool("east", "cheap", price=cheap, max_nodes=50),
            ),
        ),
    )
    inst = PlanningInstance(
        regions,
        (SMALL,),
        (NORMAL,),
        (flow("small", "east", "normal", [load, load]),),
        Settings(steps=2),
    )
    nodes = {p.pool: p.nodes for p in plan_of(inst).first().pools}
    assert nodes["dear"] == 0 and nodes["cheap"] > 0


@PROPS
@given(scale=st.floats(0.2, 3.0), which=st.sampled_from(["east", "west"]))
def test_removing_a_region_never_lowers_cost(scale: float, which: str) -> None:
    inst = two_regions(demand_scale=scale, steps=3, min_replicas=0)
    inst = dataclasses.replace(
        inst,
        models=tuple(
            dataclasses.replace(m, allowed_regions=()) if m.name == "small" else m
            for m in inst.models
        ),
    )
    full, fewer = plan_of(inst), plan_of(inst.without_region(which))
    assert full.solver.bound is not None and fewer.solver.bound is not None
    assert fewer.solver.bound >= full.solver.bound * (1 - 1e-6)


@PROPS
@given(scale=st.floats(0.5, 60.0), max_nodes=st.integers(0, 4))
def test_a_plan_never_exceeds_pool_max(scale: float, max_nodes: int) -> None:
    inst = two_regions(demand_scale=scale, steps=2, min_replicas=0)
    regions = tuple(
        dataclasses.replace(
            r, pools=tuple(dataclasses.replace(p, max_nodes=max_nodes) for p in r.pools)
        )
        for r in inst.regions
    )
    inst = dataclasses.replace(inst, regions=regions)
    plan = plan_of(inst)
    for stp in plan.steps:
        assert all(p.nodes <= p.max_nodes + 1e-9 for p in stp.pools)
