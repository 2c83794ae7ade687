"""(7) Latency per GPU type: a tier's load only counts on GPUs that meet its targets.

Routing is already latency-filtered (served variables exist only for regions in E(g):
RTT(origin, region) + prefill time <= TTFT). When some GPU type of a region cannot meet a
tier's targets at all (capacity model returns 0), that tier's load must fit on the others:

    sum_{load of tier k in (m, r)} phi * load <= sum_{pl in (m,r), GPU ok for k} cu * replicas
"""

from __future__ import annotations

import numpy as np

from llmfleet.plan.constraints import block_rows
from llmfleet.plan.indexed import Compiled
from llmfleet.plan.lp import LinearProgram
from llmfleet.plan.terms import Cells, Loads
from llmfleet.plan.variables import PlanVariables


def add(lp: LinearProgram, v: PlanVariables, c: Compiled, cl: Cells, ld: Loads) -> None:
    first = lp.n_rows
    T = c.T
    for k in range(len(c.tiers)):
        bad = ~c.pl_tier_ok[:, k]
        if not bad.any():
            continue
        bad_cells = np.unique(cl.of_pl[bad])
        sel = (ld.tier == k) & np.isin(ld.mr, bad_cells)
        if not sel.any():
            continue
        used = np.unique(ld.mr[sel])
        pos = np.full(len(cl.keys), -1, dtype=np.int64)
        pos[used] = np.arange(len(used))
        rows = block_rows(lp, len(used), T, ub=0.0)  # (7)
        lp.add_terms(rows[pos[ld.mr[sel]]], ld.cols[sel], ld.phi[sel, None] * np.ones((1, T)))
        okp = c.pl_tier_ok[:, k] & (pos[cl.of_pl] >= 0)
        lp.add_terms(rows[pos[cl.of_pl[okp]]], v.replicas[okp], -c.cu[okp, None] * np.ones((1, T)))
    lp.family("latency", first)
