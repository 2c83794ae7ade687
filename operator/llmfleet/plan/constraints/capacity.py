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

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from llmfleet.plan.constraints import block_rows
from llmfleet.plan.indexed import Compiled
from llmfleet.plan.lp import LinearProgram
from llmfleet.plan.variables import PlanVariables

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Loads:
    """Every load term: its (model, region) cell, tier, columns (N, T) and phi (N,)."""

    mr: IntArray
    tier: IntArray
    cols: IntArray
    phi: FloatArray


@dataclass(frozen=True)
class Cells:
    """The (model, region) cells that have placements."""

    keys: IntArray
    """m * R + r per cell."""
    of_pl: IntArray
    """Cell of each placement."""
    lookup: IntArray
    """(M * R,) cell index or -1."""


def cells(c: Compiled) -> Cells:
    R = len(c.regions)
    key = c.pl_m * R + c.pl_r
    keys, inv = np.unique(key, return_inverse=True)
    lookup = np.full(len(c.models) * R, -1, dtype=np.int64)
    lookup[keys] = np.arange(len(keys))
    return Cells(keys=keys, of_pl=inv.astype(np.int64), lookup=lookup)


def loads(c: Compiled, v: PlanVariables, cl: Cells) -> Loads:
    R = len(c.regions)
    parts = []
    if len(v.se_g):
        m, k = c.fg_m[v.se_g], c.fg_k[v.se_g]
        parts.append((cl.lookup[m * R + v.se_r], k, v.served, c.phi[m, k]))
    if len(v.be_b):
        m, k = c.bf_m[v.be_b], c.bf_k[v.be_b]
        parts.append((cl.lookup[m * R + v.be_r], k, v.batch, c.phi[m, k]))
    if len(v.re_u):
        m, k = c.gu_m[v.re_u], c.gu_k[v.re_u]
        parts.append((cl.lookup[m * R + v.re_r], k, v.reserve, c.phi[m, k]))
    T = c.T
    if not parts:
        z = np.zeros(0, dtype=np.int64)
        return Loads(z, z, np.zeros((0, T), dtype=np.int64), np.zeros(0))
    return Loads(
        mr=np.concatenate([p[0] for p in parts]),
        tier=np.concatenate([p[1] for p in parts]),
        cols=np.concatenate([p[2] for p in parts]),
        phi=np.concatenate([p[3] for p in parts]),
    )


def add(lp: LinearProgram, v: PlanVariables, c: Compiled, cl: Cells, ld: Loads) -> None:
    first = lp.n_rows
    T = c.T
    rows = block_rows(lp, len(cl.keys), T, ub=0.0)  # (6)
    lp.add_terms(rows[ld.mr], ld.cols, ld.phi[:, None] * np.ones((1, T)))
    lp.add_terms(rows[cl.of_pl], v.replicas, -c.cu[:, None] * np.ones((1, T)))
    lp.family("capacity", first)
