"""Replica bounds (``PlanningInstance.replica_bounds``): floors and holds inside the solve."""

import dataclasses

import pytest
from plan_builders import NORMAL, SMALL, flow, pool

from llmfleet.plan.instance import (
    InstanceError,
    ModelSpec,
    PlanningInstance,
    ProfileSpec,
    RegionSpec,
    Settings,
)
from llmfleet.plan.solve import SolveOptions, plan_fleet
from llmfleet.plan.types import Infeasible, Plan
from llmfleet.plan.validate import validate

KEY = ("small", "east", "h100-od")
PRICE = 55.0
#: 1 s is too short for the LP (greedy rounding); 20 s runs the LP, rounding and step-0 MIP
LIMITS = [0.01, 20.0]


def one_pool(load: float, max_nodes: int = 10, **kw: object) -> PlanningInstance:
    """One region, one 8-GPU H100 pool, SMALL (1 GPU per replica, no min replicas)."""
    model = dataclasses.replace(SMALL, min_replicas_per_region=0)
    return PlanningInstance(
        (RegionSpec("east", (pool("east", "h100-od", price=PRICE, max_nodes=max_nodes),)),),
        (model,),
        (NORMAL,),
        (flow("small", "east", "normal", [load] * 3),),
        Settings(steps=3, max_changes_per_cycle=10_000),
        **kw,  # type: ignore[arg-type]
    )


def plan_of(inst: PlanningInstance, time_limit: float = 20.0) -> Plan:
    out = plan_fleet(inst, SolveOptions(time_limit=time_limit))
    assert isinstance(out, Plan), getattr(out, "message", out)
    assert validate(out, inst) == []
    return out


def replicas(plan: Plan, t: int, key: tuple[str, str, str] = KEY) -> float:
    return sum(r.replicas for r in plan.steps[t].replicas if (r.model, r.region, r.pool) == key)


def nodes(plan: Plan, t: int) -> float:
    return sum(p.nodes for p in plan.steps[t].pools)


@pytest.mark.parametrize("time_limit", LIMITS)
def test_a_floor_raises_replicas_and_nodes_follow(time_limit: float) -> None:
    free = plan_of(one_pool(5000.0), time_limit)
    assert 1 <= replicas(free, 0) < 12 and nodes(free, 0) == 1
    floored = plan_of(one_pool(5000.0, replica_bounds={KEY: (12, None)}), time_limit)
    for t in range(3):
        assert replicas(floored, t) >= 12 - 1e-9
        assert nodes(floored, t) * 8 >= replicas(floored, t) - 1e-9  # packing
    assert replicas(floored, 0) == 12  # the floor, not more: demand needs fewer
    assert nodes(floored, 0) == 2  # 12 GPUs on 8-GPU nodes
    assert floored.first().usd_per_hour == pytest.approx(2 * PRICE)
    assert floored.objective > free.objective


@pytest.mark.parametrize("time_limit", LIMITS)
@pytest.mark.parametrize("load", [0.0, 400_000.0])
def test_a_hold_keeps_the_count_exactly(time_limit: float, load: float) -> None:
    plan = plan_of(one_pool(load, replica_bounds={KEY: (3, 3)}), time_limit)
    assert [replicas(plan, t) for t in range(3)] == pytest.approx([3, 3, 3])
    assert nodes(plan, 0) == 1 and plan.first().usd_per_hour == pytest.approx(PRICE)
    if load:  # far more demand than 3 replicas carry: the rest is unmet, not more replicas
        assert sum(u.tokens_per_s for u in plan.first().unmet) > 0.5 * 1.2 * load
    else:
        assert not plan.first().unmet


def test_a_cap_bounds_the_count_from_above() -> None:
    plan = plan_of(one_pool(400_000.0, replica_bounds={KEY: (0, 5)}))
    assert all(replicas(plan, t) <= 5 + 1e-9 for t in range(3))
    assert replicas(plan, 0) == 5


def test_a_warm_start_from_a_plan_without_floors_keeps_them() -> None:
    inst = one_pool(5000.0)
    before = plan_of(inst)
    floored = dataclasses.replace(inst, replica_bounds={KEY: (12, None)})
    warm = plan_fleet(floored, SolveOptions(time_limit=0.01), previous=before)
    assert isinstance(warm, Plan) and validate(warm, floored) == []
    assert all(replicas(warm, t) >= 12 for t in range(3))


def test_a_floor_that_does_not_fit_max_nodes_is_infeasible() -> None:
    out = plan_fleet(one_pool(5000.0, max_nodes=2, replica_bounds={KEY: (17, None)}))
    assert isinstance(out, Infeasible)
    assert "(small, east, h100-od) >= 17" in out.message
    assert "maxNodes=2" in out.message and "17 GPUs" in out.message


def test_a_cap_under_min_replicas_is_infeasible() -> None:
    inst = one_pool(5000.0, replica_bounds={KEY: (0, 1)})
    inst = dataclasses.replace(
        inst, models=(dataclasses.replace(inst.models[0], min_replicas_per_region=2),)
    )
    out = plan_fleet(inst)
    assert isinstance(out, Infeasible)
    assert "minReplicasPerRegion=2" in out.message and "(small, east, h100-od) <= 1" in out.message


def test_bounds_on_placements_that_do_not_exist_are_ignored() -> None:
    tpu = ModelSpec("tpu-only", (ProfileSpec("TPU", 1, 1000, 100),))
    base = one_pool(5000.0)
    base = dataclasses.replace(base, models=(*base.models, tpu))
    ghosts = {
        ("gone", "east", "h100-od"): (50, 50),  # no such model
        ("small", "east", "no-such-pool"): (50, None),  # no such pool
        ("small", "west", "h100-od"): (50, None),  # no such region
        ("tpu-only", "east", "h100-od"): (50, 50),  # the model cannot run on that pool
    }
    plain = plan_of(base)
    ghosted = plan_of(dataclasses.replace(base, replica_bounds=ghosts))
    assert ghosted.first().replicas == plain.first().replicas
    assert ghosted.first().usd_per_hour == plain.first().usd_per_hour


def test_bounds_are_checked_and_kept() -> None:
    with pytest.raises(
        InstanceError, match=r"replica_bounds \('small', 'east', 'h100-od'\).*lo=-1"
    ):
        one_pool(1.0, replica_bounds={KEY: (-1, None)})
    with pytest.raises(
        InstanceError, match=r"replica_bounds \('small', 'east', 'h100-od'\).*hi=2 < lo=3"
    ):
        one_pool(1.0, replica_bounds={KEY: (3, 2)})
    inst = one_pool(1.0, replica_bounds={KEY: (3, 3)})
    assert inst.without_region("west").replica_bounds == {KEY: (3, 3)}


def test_the_validator_flags_a_plan_that_breaks_a_floor() -> None:
    inst = one_pool(5000.0)
    plan = plan_of(inst)
    floored = dataclasses.replace(inst, replica_bounds={KEY: (12, None)})
    problems = validate(plan, floored)
    assert any(
        p.check == "replica-bounds" and "(small, east, h100-od)" in p.message for p in problems
    )
    held = dataclasses.replace(inst, replica_bounds={KEY: (0, 0)})
    assert any(p.check == "replica-bounds" for p in validate(plan, held))
