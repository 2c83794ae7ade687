"""(6) Capacity: load served by a model in a region fits its replicas' capacity units.

    sum_{g,k: m} phi[m,k] * served[g,r,t] + sum_{b: m} phi[m,k] * batch[b,r,t]
      + sum_{u: m} phi[m,k] * reserve[u,r,t]
        <= sum_{pl in (m, r)} cu[pl] * replicas[pl, t]                  for all (m, r), t

``cu`` is the replica's mix throughput derated by spot loss and ``phi[m,k]`` the capacity
units one token/s of tier k needs (1 / target utilisation, more when the tier's latency
limits concurrency), see :mod:`llmfleet.plan.capacity`. The interactive demand in (3) is
the forecast's upper quantile, so headroom for forecast error is included.
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
    rows = block_rows(lp, len(cl.keys), T, ub=0.0)  # (6)
    lp.add_terms(rows[ld.mr], ld.cols, ld.phi[:, None] * np.ones((1, T)))
    lp.add_terms(rows[cl.of_pl], v.replicas, -c.cu[:, None] * np.ones((1, T)))
    lp.family("capacity", first)
