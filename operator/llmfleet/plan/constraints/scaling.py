"""(9)-(10) Scaling from the current state, and the per-cycle change budget.

    (9)  nodes[q,0] - now[q] = nodes_up[q,0] - nodes_down[q,0]
         nodes_up[q,t] >= nodes[q,t] - nodes[q,t-1]                 t >= 1
         (the same for replicas[pl,t]; nodes_down is 0 for t >= 1)

Only additions cost (9) is written with the equality at step 0, where (10) counts every
change, and as the inequality later: the equality form makes the LP degenerate (HiGHS's
dual simplex stalled on it at 50x6x4x24 — >120 s instead of ~2 s).
    (10) sum_q (nodes_up + nodes_down)[q,0] + sum_pl (replicas_up + replicas_down)[pl,0]
           - budget_excess <= maxChangesPerCycle

The budget is soft: ``budget_excess`` costs BUDGET_EXCESS_USD per change (objective), far
above what a change can save, so it is non-zero only when hard limits force more changes
than the budget allows (a cold start whose min replicas and min nodes need more). The
model stays feasible, the plan says by how much it is over, and the actuator spreads the
changes over cycles (capacity first).

Additions cost their provisioning / load time at the GPU price (objective), every change
a small tie-break, so among equal plans the one with fewer changes wins.
"""

from __future__ import annotations

import numpy as np

from llmfleet.plan.constraints import block_rows
from llmfleet.plan.indexed import Compiled
from llmfleet.plan.lp import LinearProgram
from llmfleet.plan.variables import PlanVariables


def _link(
    lp: LinearProgram, x: np.ndarray, up: np.ndarray, dn: np.ndarray, now: np.ndarray
) -> None:
    N, T = x.shape
    rows0 = block_rows(lp, N, 1, lb=now[:, None], ub=now[:, None])  # (9) step 0
    lp.add_terms(rows0, x[:, :1], np.ones((N, 1)))
    lp.add_terms(rows0, up[:, :1], -np.ones((N, 1)))
    lp.add_terms(rows0, dn[:, :1], np.ones((N, 1)))
    if T > 1:
        rows = block_rows(lp, N, T - 1, ub=0.0)  # (9) later steps
        lp.add_terms(rows, x[:, 1:], np.ones((N, T - 1)))
        lp.add_terms(rows, x[:, :-1], -np.ones((N, T - 1)))
        lp.add_terms(rows, up[:, 1:], -np.ones((N, T - 1)))


def add(lp: LinearProgram, v: PlanVariables, c: Compiled, node_tail: bool = True) -> None:
    """``node_tail=False`` leaves node additions after step 0 out (a relaxation: their
    cost is >= 0), which HiGHS's dual simplex solves ~50x faster."""
    first = lp.n_rows
    _link(
        lp,
        v.nodes if node_tail else v.nodes[:, :1],
        v.nodes_up,
        v.nodes_down,
        c.cur_nodes.astype(float),
    )
    _link(lp, v.replicas, v.replicas_up, v.replicas_down, c.cur_replicas.astype(float))
    lp.family("scaling", first)
    first = lp.n_rows
    row = lp.add_rows(1, ub=float(c.inst.settings.max_changes_per_cycle))  # (10)
    for block in (v.nodes_up, v.nodes_down, v.replicas_up, v.replicas_down):
        lp.add_terms(np.full(block.shape[0], row[0]), block[:, 0], 1.0)
    lp.add_terms(row, v.budget_excess, -1.0)
    lp.family("change-budget", first)
