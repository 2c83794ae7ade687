"""(3) Interactive demand is served in its step, in latency-eligible regions, or is unmet.

    sum_{r in E(g)} served[g, r, t] + unmet[g, t] = demand_upper[g, t]    for all g, t

``E(g)`` (built in :mod:`llmfleet.plan.latency`) only holds regions whose RTT from the
origin plus prefill time meets the tier's TTFT, so no served variable exists elsewhere.
"""

from __future__ import annotations

import numpy as np

from llmfleet.plan.constraints import block_rows
from llmfleet.plan.indexed import Compiled
from llmfleet.plan.lp import LinearProgram
from llmfleet.plan.variables import PlanVariables


def add(lp: LinearProgram, v: PlanVariables, c: Compiled) -> None:
    first = lp.n_rows
    G, T = v.unmet.shape
    rows = block_rows(lp, G, T, lb=c.fg_demand, ub=c.fg_demand)  # (3)
    lp.add_terms(rows, v.unmet, np.ones((G, T)))
    lp.add_terms(rows[v.se_g], v.served, np.ones(v.served.shape))
    lp.family("demand", first)
