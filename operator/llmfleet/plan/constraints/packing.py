"""(2) Packing: replicas fit on the pool's nodes, GPU by GPU.

sum_{pl in q} gpr[pl] * replicas[pl, t] <= gpn[q] * nodes[q, t]      for all q, t
"""

from __future__ import annotations

import numpy as np

from llmfleet.plan.constraints import block_rows
from llmfleet.plan.indexed import Compiled
from llmfleet.plan.lp import LinearProgram
from llmfleet.plan.variables import PlanVariables


def add(lp: LinearProgram, v: PlanVariables, c: Compiled) -> None:
    first = lp.n_rows
    Q, T = v.nodes.shape
    rows = block_rows(lp, Q, T, ub=0.0)  # (2)
    lp.add_terms(rows, v.nodes, -c.gpn[:, None] * np.ones((1, T)))
    lp.add_terms(rows[c.pl_q], v.replicas, c.gpr[:, None] * np.ones((1, T)))
    lp.family("packing", first)
