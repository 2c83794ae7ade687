"""(12) Tenant guarantees: each tier holds capacity for the guaranteed budgets of its tenants.

For every (model, tier) with guarantees ``G`` (tokens/s, tenants' guaranteedTokensPerMinute
/ 60 split evenly over the models they may call):

    sum_{g: (m,k)} sum_r served[g,r,t] + sum_{b: (m,k)} sum_r batch[b,r,t]
      + sum_r reserve[u,r,t] + shortfall[u,t] >= G[u]                      for all u, t

``reserve`` is idle capacity (it enters (6)) in regions eligible for the tier's traffic;
``shortfall`` is penalised like unmet demand, so the model never becomes infeasible.
"""

from __future__ import annotations

import numpy as np

from llmfleet.plan.constraints import block_rows
from llmfleet.plan.indexed import Compiled
from llmfleet.plan.lp import LinearProgram
from llmfleet.plan.variables import PlanVariables


def add(lp: LinearProgram, v: PlanVariables, c: Compiled) -> None:
    first = lp.n_rows
    U = len(c.gu_m)
    T = c.T
    if U:
        rows = block_rows(lp, U, T, lb=c.gu_tokens[:, None] * np.ones((1, T)))  # (12)
        lp.add_terms(rows, v.shortfall, np.ones((U, T)))
        lp.add_terms(rows[v.re_u], v.reserve, np.ones(v.reserve.shape))
        key = {(int(m), int(k)): u for u, (m, k) in enumerate(zip(c.gu_m, c.gu_k, strict=True))}
        gu_of_g = np.array(
            [key.get((int(m), int(k)), -1) for m, k in zip(c.fg_m, c.fg_k, strict=True)],
            dtype=np.int64,
        )
        if len(v.se_g):
            sel = gu_of_g[v.se_g] >= 0
            lp.add_terms(rows[gu_of_g[v.se_g[sel]]], v.served[sel], np.ones((int(sel.sum()), T)))
        gu_of_b = np.array(
            [key.get((int(m), int(k)), -1) for m, k in zip(c.bf_m, c.bf_k, strict=True)],
            dtype=np.int64,
        )
        if len(v.be_b):
            sel = gu_of_b[v.be_b] >= 0
            lp.add_terms(rows[gu_of_b[v.be_b[sel]]], v.batch[sel], np.ones((int(sel.sum()), T)))
    lp.family("guarantees", first)
