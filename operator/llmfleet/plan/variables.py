"""The decision variables, by domain name (one container, cpsat-primer style).

Every field is an array of column ids of the :class:`~llmfleet.plan.lp.LinearProgram`,
shaped ``(items, T)``; the ``*_g``/``*_r``/``*_b``/``*_u`` arrays say which flow group,
region, batch flow or guarantee each row of the matching variable block belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from llmfleet.plan.indexed import Compiled
from llmfleet.plan.lp import LinearProgram

IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class PlanVariables:
    nodes: IntArray
    """(Q, T) nodes of pool q at step t (integer on integer steps)."""
    nodes_up: IntArray
    nodes_down: IntArray
    replicas: IntArray
    """(PL, T) replicas of placement pl = (model, pool) (integer on integer steps), within
    ``[rep_lo[pl], rep_hi[pl]]`` at every step (the instance's ``replica_bounds``)."""
    replicas_up: IntArray
    replicas_down: IntArray
    served: IntArray
    """(SE, T) interactive tokens/s of flow group se_g served in region se_r."""
    se_g: IntArray
    se_r: IntArray
    batch: IntArray
    """(BE, T) batch tokens/s of batch flow be_b processed in region be_r."""
    be_b: IntArray
    be_r: IntArray
    backlog: IntArray
    """(B, T) batch tokens still queued at the end of step t."""
    dropped: IntArray
    """(B, T) batch tokens given up in step t (missed deadline; penalised)."""
    unmet: IntArray
    """(G, T) interactive tokens/s not served (penalised)."""
    reserve: IntArray
    """(RE, T) tokens/s of capacity held for guarantee re_u in region re_r."""
    re_u: IntArray
    re_r: IntArray
    shortfall: IntArray
    """(U, T) guaranteed tokens/s that cannot be reserved (penalised)."""
    budget_excess: IntArray
    """(1,) step-0 changes beyond maxChangesPerCycle (priced at BUDGET_EXCESS_USD each)."""


def pairs(regions: tuple[tuple[int, ...], ...]) -> tuple[IntArray, IntArray]:
    """Flatten per-item region lists to (item, region) arrays."""
    items = [i for i, rs in enumerate(regions) for _ in rs]
    regs = [r for rs in regions for r in rs]
    return np.array(items, dtype=np.int64), np.array(regs, dtype=np.int64)


def create_variables(lp: LinearProgram, c: Compiled, integer_steps: int) -> PlanVariables:
    """Columns with their bounds; costs are set in :mod:`llmfleet.plan.objective`."""
    T = c.T
    Q, PL = len(c.price), len(c.pl_m)
    is_int = np.zeros(T, dtype=bool)
    is_int[: max(0, integer_steps)] = True
    nodes = lp.add_vars(
        (Q, T), lb=c.nmin[:, None], ub=c.nmax[:, None], integer=is_int[None, :]
    )  # (1)
    replicas = lp.add_vars(
        (PL, T), lb=c.rep_lo[:, None], ub=c.rep_hi[:, None], integer=is_int[None, :]
    )  # (1b) replica_bounds
    se_g, se_r = pairs(c.fg_regions)
    be_b, be_r = pairs(c.bf_regions)
    re_u, re_r = pairs(c.gu_regions)
    B, G, U = len(c.bf_m), len(c.fg_m), len(c.gu_m)
    return PlanVariables(
        nodes=nodes,
        nodes_up=lp.add_vars((Q, T)),
        nodes_down=lp.add_vars((Q, T), ub=np.where(np.arange(T) == 0, np.inf, 0.0)[None, :]),
        replicas=replicas,
        replicas_up=lp.add_vars((PL, T)),
        replicas_down=lp.add_vars((PL, T), ub=np.where(np.arange(T) == 0, np.inf, 0.0)[None, :]),
        served=lp.add_vars((len(se_g), T)),
        se_g=se_g,
        se_r=se_r,
        batch=lp.add_vars((len(be_b), T)),
        be_b=be_b,
        be_r=be_r,
        backlog=lp.add_vars((B, T)),
        dropped=lp.add_vars((B, T)),
        unmet=lp.add_vars((G, T)),
        reserve=lp.add_vars((len(re_u), T)),
        re_u=re_u,
        re_r=re_r,
        shortfall=lp.add_vars((U, T)),
        budget_excess=lp.add_vars((1,)),
    )
