"""SageServe as a baseline: the comparison must be of the same service.

The bench printed llmfleet's step 0 as 71-171 % dearer than SageServe's ILP. Measured on
10x3x2x24 (step-0 USD/h of llmfleet's LP / plan vs SageServe): base 399 / 570 vs 334;
without llmfleet's tier spot caps 228 / 281; without them and min replicas 158 / 222.
The published ILP buys interactive capacity on spot, which llmfleet's tiers forbid, and
keeps no replica where a model has no traffic. These tests pin the fair comparison.
"""

import numpy as np

from llmfleet.plan import runner
from llmfleet.plan.indexed import Compiled, compile_instance
from llmfleet.plan.model import build
from llmfleet.plan.sageserve import SageServePlan, demand_by_tier, solve_sageserve
from llmfleet.plan.solution import extract
from support.instances import generate


def _capacity(c: Compiled, plan: SageServePlan, on_demand: bool) -> np.ndarray:
    cap = np.zeros((len(c.models), len(c.regions)))
    mix = {n: i for i, n in enumerate(c.models)}
    rix = {n: i for i, n in enumerate(c.regions)}
    for pl in range(len(c.pl_m)):
        key = (c.models[c.pl_m[pl]], c.regions[c.pl_r[pl]], c.pool_name[c.pl_q[pl]])
        if on_demand and c.pool_spot[c.pl_q[pl]]:
            continue
        cap[mix[key[0]], rix[key[1]]] += c.cu[pl] * plan.replicas.get(key, 0)
    return cap


def test_same_limits_meet_llmfleets_spot_caps_and_min_replicas() -> None:
    inst = generate(10, 3, 2, 2, seed=0)
    c = compile_instance(inst)
    DK = demand_by_tier(c, range(1))[..., 0]  # (M, R, K)
    need_od = (DK * (1.0 - c.sigma)[None, None, :]).sum(axis=2)
    same = solve_sageserve(inst, same_limits=True)
    assert same.status == "optimal"
    assert (_capacity(c, same, True) >= need_od - 1e-6).all()
    assert (_capacity(c, same, False) >= DK.sum(axis=2) - 1e-6).all()
    for m, regions in enumerate(c.model_regions):
        for r in regions:
            n = sum(
                v
                for (mm, rr, _), v in same.replicas.items()
                if mm == c.models[m] and rr == c.regions[r]
            )
            assert n >= c.min_replicas[m]
    # the published ILP puts interactive load on spot: it does not buy the same service
    published = solve_sageserve(inst)
    assert (_capacity(c, published, True) < need_od - 1e-6).any()
    assert published.usd_per_hour < same.usd_per_hour


def test_joint_lp_of_step0_is_below_sageserve_for_the_same_service() -> None:
    # llmfleet's LP relaxes SageServe's plan (route to origin, batch on arrival): its
    # value of step 0 can never be above SageServe's integer cost under the same limits.
    # With the published ILP this fails (572 vs 389 USD/h here; 399 vs 334 on 10x3x2x24).
    inst = generate(10, 3, 2, 2, seed=0)
    c = compile_instance(inst)
    fm = build(c, integer_steps=0, node_tail=True)
    run = runner.solve(fm.lp.to_proto(integer=False), 30.0)
    assert run.status == "optimal" and run.x is not None
    lp_usd_h = float((c.price * extract(run.x, fm.vars).nodes[:, 0]).sum())
    same = solve_sageserve(inst, same_limits=True)
    assert lp_usd_h <= same.usd_per_hour + 1e-6
