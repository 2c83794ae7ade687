"""(11) Availability: every allowed region keeps the model's minimum replicas.

    sum_{pl in (m, r)} replicas[pl, t] >= minReplicasPerRegion[m]     for r in allowed(m), t

Placement is restricted to allowed regions by construction (no replica variable exists
elsewhere). An allowed region without any pool that fits the model makes (11) impossible;
:func:`llmfleet.plan.solve.diagnose` reports that as infeasible before solving.
"""

from __future__ import annotations

import numpy as np

from llmfleet.plan.constraints import block_rows
from llmfleet.plan.indexed import Compiled
from llmfleet.plan.lp import LinearProgram
from llmfleet.plan.terms import Cells
from llmfleet.plan.variables import PlanVariables


def add(lp: LinearProgram, v: PlanVariables, c: Compiled, cl: Cells) -> None:
    first = lp.n_rows
    T = c.T
    R = len(c.regions)
    need = c.min_replicas[cl.keys // R].astype(float)
    sel = need > 0
    if sel.any():
        idx = np.full(len(cl.keys), -1, dtype=np.int64)
        idx[sel] = np.arange(int(sel.sum()))
        rows = block_rows(lp, int(sel.sum()), T, lb=need[sel][:, None])  # (11)
        plsel = idx[cl.of_pl] >= 0
        lp.add_terms(rows[idx[cl.of_pl[plsel]]], v.replicas[plsel], np.ones((int(plsel.sum()), T)))
    lp.family("availability", first)
