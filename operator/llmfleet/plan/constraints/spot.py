"""(8) Spot risk: at most sigma_k of tier k's load may sit on spot capacity.

Spot replicas already count at ``1 - loss`` in ``cu`` (expected interruption downtime).
sigma_k is 0 when the tier forbids spot, else its maxSpotFraction (interactive tiers also
capped by the policy's maxInteractiveSpotFraction). Per (model, region, step):

    sum_loads (1 - sigma_k) * phi * load <= sum_{pl in (m,r), on-demand} cu * replicas

With (6) this is exactly the condition for splitting every tier's load between spot and
on-demand replicas within its cap. Batch tiers (sigma = 1) add nothing here, so they
prefer the cheaper spot pools through the objective.
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
    w = 1.0 - c.sigma[ld.tier]
    sel = w > 0
    if sel.any():
        used = np.unique(ld.mr[sel])
        pos = np.full(len(cl.keys), -1, dtype=np.int64)
        pos[used] = np.arange(len(used))
        rows = block_rows(lp, len(used), T, ub=0.0)  # (8)
        lp.add_terms(
            rows[pos[ld.mr[sel]]], ld.cols[sel], (w[sel] * ld.phi[sel])[:, None] * np.ones((1, T))
        )
        od = ~c.pool_spot[c.pl_q] & (pos[cl.of_pl] >= 0)
        lp.add_terms(rows[pos[cl.of_pl[od]]], v.replicas[od], -c.cu[od, None] * np.ones((1, T)))
    lp.family("spot", first)
