"""(4)-(5) Deferrable batch work: carried across steps, finished within its deadline.

Work of batch flow b in UNIT tokens/s x one step (``S`` seconds), arrivals ``A[b,t]``,
deadline window ``L_b`` steps (work arriving in step t is done by the end of t+L_b-1):

    (4) backlog[b,t] = backlog[b,t-1] + A[b,t] - sum_r batch[b,r,t] - dropped[b,t]
        with backlog[b,-1] = the queue now (treated as arriving in step 0)
    (5) backlog[b,t] <= sum_{tau = t-L_b+2}^{t} A[b,tau]   (+ queue now while t <= L_b-2)

(5) is FIFO work conservation: what is still queued at the end of t can only be work that
arrived in the last ``L_b - 1`` steps. Work still queued at the horizon end is valued at
the cheapest serving cost (objective), so the plan does not push work past the horizon.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from llmfleet.plan.constraints import block_rows
from llmfleet.plan.indexed import Compiled
from llmfleet.plan.lp import LinearProgram
from llmfleet.plan.variables import PlanVariables


def window_work(c: Compiled) -> NDArray[np.float64]:
    """(B, T) right-hand side of (5) (UNIT x step)."""
    B, T = c.bf_demand.shape
    out = np.zeros((B, T))
    cum = np.concatenate([np.zeros((B, 1)), np.cumsum(c.bf_demand, axis=1)], axis=1)
    for b in range(B):
        L = int(c.bf_window[b])
        for t in range(T):
            lo = max(0, t - L + 2)
            out[b, t] = (cum[b, t + 1] - cum[b, lo]) if L >= 2 else 0.0
            if t <= L - 2:
                out[b, t] += c.bf_backlog0[b]
    return out


def add(lp: LinearProgram, v: PlanVariables, c: Compiled) -> None:
    first = lp.n_rows
    B, T = v.backlog.shape
    rhs = c.bf_demand.copy()
    rhs[:, 0] += c.bf_backlog0
    rows = block_rows(lp, B, T, lb=rhs, ub=rhs)  # (4)
    lp.add_terms(rows, v.backlog, np.ones((B, T)))
    lp.add_terms(rows[:, 1:], v.backlog[:, :-1], -np.ones((B, T - 1)))
    lp.add_terms(rows, v.dropped, np.ones((B, T)))
    lp.add_terms(rows[v.be_b], v.batch, np.ones(v.batch.shape))
    lp.family("deadline-conservation", first)
    first = lp.n_rows
    rows5 = block_rows(lp, B, T, ub=window_work(c))  # (5)
    lp.add_terms(rows5, v.backlog, np.ones((B, T)))
    lp.family("deadline", first)
