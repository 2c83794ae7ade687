r"""The fleet planning MILP (built with numpy blocks, solved with MathOpt + HiGHS).

Sets: pools q (region r(q), GPU type, on-demand or spot), models m, tiers k (interactive
or deadline), steps t = 0..T-1 of ``S`` seconds (``S_h`` hours). A *placement*
pl = (m, q) exists when m has a profile for q's GPU type, q's region is allowed for m and
a replica fits on a node. Interactive flows (m, origin, k) with the same eligible regions
form a flow group g; batch flows are per (m, k) b; guarantees per (m, k) u.

Variables (:class:`~llmfleet.plan.variables.PlanVariables`):
``nodes[q,t]`` (int), ``replicas[pl,t]`` (int), ``served[g,r,t]`` >= 0 (r in E(g) only),
``batch[b,r,t]`` >= 0, ``backlog[b,t]`` >= 0, ``dropped[b,t]`` >= 0, ``unmet[g,t]`` >= 0,
``reserve[u,r,t]`` >= 0, ``shortfall[u,t]`` >= 0, and the scaling parts
``nodes_up/down``, ``replicas_up/down`` >= 0.

Constraints (one module of :mod:`llmfleet.plan.constraints` per family):

 (1)  minNodes[q] <= nodes[q,t] <= maxNodes[q]                                 variables
 (1b) lo[pl] <= replicas[pl,t] <= hi[pl]   (replica_bounds; 0 and inf by default)  variables
 (2)  sum_{pl in q} gpr[pl] replicas[pl,t] <= gpn[q] nodes[q,t]                 packing
 (3)  sum_{r in E(g)} served[g,r,t] + unmet[g,t] = demand_upper[g,t]           demand
      E(g) = allowed regions with RTT(origin, r) + prefill <= TTFT              (latency)
 (4)  backlog[b,t] = backlog[b,t-1] + S (A[b,t] - sum_r batch[b,r,t]) - dropped[b,t]
 (5)  backlog[b,t] <= S sum_{tau=t-L_b+2}^{t} A[b,tau]                          deadline
 (6)  sum phi[m,k] load[m,r,k,t] <= sum_{pl in (m,r)} cu[pl] replicas[pl,t]    capacity
 (7)  tier-k load <= capacity of GPU types meeting tier k's targets            latency
 (8)  sum (1 - sigma_k) phi load <= on-demand capacity of (m, r)               spot
 (9)  x[t] - x[t-1] = x_up[t] - x_down[t] for nodes and replicas, x[-1] = now  scaling
 (10) sum of step-0 changes <= maxChangesPerCycle                               scaling
 (11) sum_{pl in (m,r)} replicas[pl,t] >= minReplicasPerRegion[m], r allowed   availability
 (12) served + reserve + shortfall of (m,k) >= guaranteed tokens/s of (m,k)    guarantees
 (O)  min node USD + scaling USD + SLA penalty + terminal backlog + tie-break  objective

where load[m,r,k,t] sums ``served``, ``batch`` and ``reserve`` of model m and tier k in
region r, ``cu`` is a replica's capacity (spot-derated) and ``phi`` the capacity one
token/s of a tier needs (:mod:`llmfleet.plan.capacity`). The model is never infeasible
through demand: ``unmet``, ``dropped`` and ``shortfall`` are priced slacks. It can be
infeasible only through hard placement limits: (11) or (1b) against (1)-(2).

``integer_steps`` chooses which steps keep integer ``nodes``/``replicas``: 0 gives the LP
relaxation of the full joint model (the bound every plan is measured against), 1 the
rolling-horizon model (only the executed step is integer, the rest of the horizon is LP).
"""

from __future__ import annotations

from dataclasses import dataclass

from llmfleet.plan import objective, terms
from llmfleet.plan.constraints import (
    availability,
    capacity,
    deadline,
    demand,
    guarantees,
    latency,
    packing,
    scaling,
    spot,
)
from llmfleet.plan.indexed import Compiled
from llmfleet.plan.lp import LinearProgram
from llmfleet.plan.variables import PlanVariables, create_variables


@dataclass(frozen=True)
class FleetModel:
    lp: LinearProgram
    vars: PlanVariables
    cells: terms.Cells


def build(c: Compiled, integer_steps: int = 1, node_tail: bool = True) -> FleetModel:
    lp = LinearProgram()
    v = create_variables(lp, c, integer_steps)  # (1)
    cl = terms.cells(c)
    ld = terms.loads(c, v, cl)
    packing.add(lp, v, c)  # (2)
    demand.add(lp, v, c)  # (3)
    deadline.add(lp, v, c)  # (4), (5)
    capacity.add(lp, v, c, cl, ld)  # (6)
    latency.add(lp, v, c, cl, ld)  # (7)
    spot.add(lp, v, c, cl, ld)  # (8)
    scaling.add(lp, v, c, node_tail)  # (9), (10)
    availability.add(lp, v, c, cl)  # (11)
    guarantees.add(lp, v, c)  # (12)
    objective.set_costs(lp, v, c)  # (O)
    return FleetModel(lp=lp, vars=v, cells=cl)
