"""The executed step's integer decision: step-0 MIP over the rounded plan."""

import numpy as np

from llmfleet.plan import runner
from llmfleet.plan.indexed import compile_instance
from llmfleet.plan.lp import LinearProgram
from llmfleet.plan.model import build
from llmfleet.plan.solution import extract
from llmfleet.plan.solve import SolveOptions, plan_fleet
from llmfleet.plan.types import Plan
from llmfleet.plan.validate import validate
from support.instances import generate


def test_step0_mip_is_on_by_default_and_beats_rounding() -> None:
    inst = generate(10, 3, 2, 6, seed=0)
    rounded = plan_fleet(inst, SolveOptions(time_limit=20.0, step0_mip=False))
    mip = plan_fleet(inst, SolveOptions(time_limit=20.0))
    assert isinstance(rounded, Plan) and isinstance(mip, Plan)
    assert validate(rounded, inst) == [] and validate(mip, inst) == []
    assert rounded.solver.method == "lp+round"
    assert mip.solver.method == "lp+round+mip(step 0)"
    assert mip.objective < rounded.objective
    assert mip.first().usd_per_hour < rounded.first().usd_per_hour
    # the MIP buys the same service cheaper: it never leaves more step-0 demand unmet
    shed = sum(u.tokens_per_s for u in mip.first().unmet)
    assert shed <= sum(u.tokens_per_s for u in rounded.first().unmet) + 1e-6
    assert mip.integral_steps == 1
    assert all(float(p.nodes).is_integer() for p in mip.first().pools)
    assert mip.solver.bound is not None and mip.solver.bound <= mip.objective


def test_no_time_for_the_mip_keeps_the_rounding() -> None:
    inst = generate(10, 3, 2, 6, seed=0)
    out = plan_fleet(inst, SolveOptions(time_limit=20.0, min_mip_seconds=1e6))
    assert isinstance(out, Plan)
    assert out.solver.method == "lp+round"
    assert "no time for the step-0 MIP" in out.solver.message


def test_restricted_model_equals_the_full_model_with_columns_fixed() -> None:
    # min x0 + 2 x1 + 3 x2  s.t.  x0 + x1 + x2 >= 4,  x1 - x2 <= 1,  x2 + x0 <= 3.5, x integer
    lp = LinearProgram()
    x = lp.add_vars(3, ub=10.0, cost=np.array([1.0, 2.0, 3.0]), integer=True)
    r = lp.add_rows(1, lb=4.0)
    lp.add_terms(np.repeat(r, 3), x, 1.0)
    r = lp.add_rows(1, ub=1.0)
    lp.add_terms(np.repeat(r, 2), x[1:], np.array([1.0, -1.0]))
    r = lp.add_rows(1, ub=3.5)
    lp.add_terms(np.repeat(r, 2), x[[0, 2]], 1.0)
    fixed = np.array([0.0, 0.0, 1.0])  # x2 = 1
    free = np.array([True, True, False])
    proto, cols = lp.restricted_proto(free, fixed, np.ones(3, dtype=bool))
    assert cols.tolist() == [0, 1]
    assert len(proto.linear_constraints.ids) == 3
    run = runner.solve(proto, 5.0)
    assert run.status == "optimal" and run.x is not None
    # x2 = 1 -> x0 <= 2.5 -> x0 = 2, x1 = 1 (x1 <= 2): cost 2 + 2 = 4 (+ constant 3)
    assert run.x.tolist() == [2.0, 1.0]
    assert run.objective == 4.0
    lb, ub, _, _ = lp.column_arrays()
    lb[2] = ub[2] = 1.0
    full = runner.solve(lp.to_proto(bounds=(lb, ub)), 5.0)
    assert full.objective == run.objective + 3.0


def test_executed_step_is_the_exact_integer_optimum_on_a_small_fleet() -> None:
    # x0_loss (step-0 USD/h over the LP's) is integrality, not a weak search, here: the
    # exact MIP (integer step 0, the horizon as LP, no more load shed than the plan's)
    # buys the same step 0. Measured 10x3x2x24: 570.4 USD/h both (LP 399).
    inst = generate(10, 3, 2, 2, seed=0)
    plan = plan_fleet(inst, SolveOptions(time_limit=20.0))
    assert isinstance(plan, Plan) and validate(plan, inst) == []
    c = compile_instance(inst)
    fm = build(c, integer_steps=1, node_tail=True)
    proto = fm.lp.to_proto(integer=True)
    v = fm.vars
    for ids in (v.unmet, v.dropped, v.shortfall):
        for i in ids[:, 0].tolist():
            proto.variables.upper_bounds[i] = 1e-7  # the plan sheds nothing at step 0
    run = runner.solve(proto, 60.0, rel_gap=1e-6)
    assert run.status == "optimal" and run.x is not None and run.objective is not None
    exact_usd_h = float((c.price * extract(run.x, v).nodes[:, 0]).sum())
    assert not plan.first().unmet
    assert plan.first().usd_per_hour <= exact_usd_h * 1.001
    # the plan's horizon tail is the LP's (not re-optimised around step 0): within 2 %
    assert plan.objective <= run.objective * 1.02
