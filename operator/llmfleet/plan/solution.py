"""A numeric solution: one value array per variable block (see :mod:`llmfleet.plan.variables`)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

from llmfleet.plan.variables import PlanVariables

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Solution:
    nodes: FloatArray
    replicas: FloatArray
    served: FloatArray
    batch: FloatArray
    backlog: FloatArray
    dropped: FloatArray
    unmet: FloatArray
    reserve: FloatArray
    shortfall: FloatArray

    def with_(self, **kw: FloatArray) -> Solution:
        d = dict(self.__dict__)
        d.update(kw)
        return Solution(**d)


#: The decision blocks a Solution holds, named as the PlanVariables column blocks.
SOLUTION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Solution))


def extract(x: FloatArray, v: PlanVariables) -> Solution:
    """Values of the decision blocks from a solver's column vector (clipped at 0)."""

    def val(ids: NDArray[np.int64]) -> FloatArray:
        return np.maximum(x[ids], 0.0) if ids.size else np.zeros(ids.shape)

    return Solution(**{name: val(getattr(v, name)) for name in SOLUTION_FIELDS})


def step0_changes(sol: Solution, now_nodes: FloatArray, now_reps: FloatArray) -> float:
    """Node and replica changes the executed step makes (what (10) counts)."""
    if not sol.nodes.size:
        return 0.0
    return float(
        np.abs(sol.nodes[:, 0] - now_nodes).sum()
        + (np.abs(sol.replicas[:, 0] - now_reps).sum() if sol.replicas.size else 0.0)
    )


def to_columns(
    sol: Solution,
    v: PlanVariables,
    n_cols: int,
    now_nodes: FloatArray,
    now_reps: FloatArray,
    budget: float = np.inf,
) -> FloatArray:
    """A full column vector for ``sol`` (scaling and budget columns derived), e.g. as a
    solver hint."""
    x = np.zeros(n_cols)
    for name in SOLUTION_FIELDS:
        ids = getattr(v, name)
        if ids.size:
            x[ids] = getattr(sol, name)
    for vals, now, up, dn in (
        (sol.nodes, now_nodes, v.nodes_up, v.nodes_down),
        (sol.replicas, now_reps, v.replicas_up, v.replicas_down),
    ):
        if vals.size:
            d = np.diff(np.concatenate([now[:, None], vals], axis=1), axis=1)
            x[up] = np.maximum(d, 0)
            x[dn] = np.maximum(-d, 0)
    x[v.budget_excess] = max(0.0, step0_changes(sol, now_nodes, now_reps) - budget)
    return x
