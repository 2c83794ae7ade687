"""(O) The objective: USD over the horizon.

    minimise  sum_t S_h * w_gpu * sum_q price[q] * nodes[q,t]                   node-hours
            + w_scale * sum_t ( sum_q node_add[q] * nodes_up[q,t]
                              + sum_pl replica_add[pl] * replicas_up[pl,t] )   scaling overhead
            + eps * (all additions + step-0 removals)                             tie-break
            + sum_t 3600 S_h * ( sum_g pen[g] * unmet[g,t] + sum_u pen[u] * shortfall[u,t] )
            + sum_t pen[b] * dropped[b,t]                                         SLA penalty
            + sum_b terminal[b] * backlog[b,T-1]                     work left past the horizon
            + BUDGET_EXCESS_USD * budget_excess                 changes over the budget (10)

``S_h`` is the step in hours; ``node_add`` = price x provisioning time, ``replica_add`` =
the replica's GPU price x its load time (GPU time wasted while scaling). ``pen`` is USD per
token: sla_risk x the tier's penaltyPerViolation / tokens per request, but at least
10x the dearest way to serve the token (:mod:`llmfleet.plan.indexed`), so demand is only
left unmet when no capacity can carry it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmfleet.plan.indexed import CHANGE_TIE_BREAK, UNIT, Compiled
from llmfleet.plan.lp import LinearProgram
from llmfleet.plan.solution import Solution, step0_changes
from llmfleet.plan.variables import PlanVariables

BUDGET_EXCESS_USD = 1000.0
"""Price of one step-0 change beyond maxChangesPerCycle: far above what any change saves
in an hour, so the budget gives way only to hard limits (min replicas, min nodes)."""


@dataclass(frozen=True)
class Breakdown:
    """Objective terms, USD over the horizon."""

    node_cost: float
    scaling_cost: float
    sla_penalty: float
    terminal_cost: float
    tie_break: float
    budget_cost: float = 0.0
    """BUDGET_EXCESS_USD per step-0 change beyond maxChangesPerCycle."""

    @property
    def total(self) -> float:
        return (
            self.node_cost
            + self.scaling_cost
            + self.sla_penalty
            + self.terminal_cost
            + self.tie_break
            + self.budget_cost
        )


def set_costs(lp: LinearProgram, v: PlanVariables, c: Compiled) -> None:
    """Write (O) into the column costs."""
    cost = np.zeros(lp.n_cols)
    sh = c.step_hours
    cost[v.nodes] = sh * c.weights_gpu * c.price[:, None]
    cost[v.nodes_up] = c.weights_scaling * c.node_add_cost[:, None] + CHANGE_TIE_BREAK
    cost[v.nodes_down] = CHANGE_TIE_BREAK
    cost[v.replicas_up] = c.weights_scaling * c.replica_add_cost[:, None] + CHANGE_TIE_BREAK
    cost[v.replicas_down] = CHANGE_TIE_BREAK
    tok = 3600 * sh * UNIT  # tokens in one UNIT over one step
    cost[v.unmet] = tok * c.penalty[c.fg_m, c.fg_k][:, None]
    cost[v.shortfall] = tok * c.penalty[c.gu_m, c.gu_k][:, None]
    cost[v.dropped] = tok * c.penalty[c.bf_m, c.bf_k][:, None]
    if v.backlog.size:
        cost[v.backlog[:, -1]] = tok * c.terminal_cost[c.bf_m, c.bf_k]
    cost[v.budget_excess] = BUDGET_EXCESS_USD
    lp.set_objective(cost)


def evaluate(sol: Solution, c: Compiled) -> Breakdown:
    """(O) recomputed from the values alone (scaling derived from the current state)."""
    sh = c.step_hours
    node_cost = float(sh * c.weights_gpu * (c.price[:, None] * sol.nodes).sum())
    dn = np.diff(np.concatenate([c.cur_nodes[:, None].astype(float), sol.nodes], axis=1), axis=1)
    dr = np.diff(
        np.concatenate([c.cur_replicas[:, None].astype(float), sol.replicas], axis=1), axis=1
    )
    scaling = float(
        c.weights_scaling
        * (
            (c.node_add_cost[:, None] * np.maximum(dn, 0)).sum()
            + (c.replica_add_cost[:, None] * np.maximum(dr, 0)).sum()
        )
    )
    tie = float(
        CHANGE_TIE_BREAK
        * (
            np.maximum(dn, 0).sum()
            + np.maximum(dr, 0).sum()
            + np.maximum(-dn[:, 0], 0).sum()
            + np.maximum(-dr[:, 0], 0).sum()
        )
    )
    tok = 3600 * sh * UNIT
    sla = float(
        tok * (c.penalty[c.fg_m, c.fg_k][:, None] * sol.unmet).sum()
        + tok * (c.penalty[c.gu_m, c.gu_k][:, None] * sol.shortfall).sum()
        + tok * (c.penalty[c.bf_m, c.bf_k][:, None] * sol.dropped).sum()
    )
    term = (
        float(tok * (c.terminal_cost[c.bf_m, c.bf_k] * sol.backlog[:, -1]).sum())
        if sol.backlog.size
        else 0.0
    )
    return Breakdown(node_cost, scaling, sla, term, tie, BUDGET_EXCESS_USD * budget_excess(sol, c))


def budget_excess(sol: Solution, c: Compiled) -> float:
    """Step-0 changes beyond maxChangesPerCycle (0 within the budget)."""
    changes = step0_changes(sol, c.cur_nodes.astype(float), c.cur_replicas.astype(float))
    return max(0.0, changes - c.inst.settings.max_changes_per_cycle)
