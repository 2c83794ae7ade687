"""The terms constraint families share: (model, region) cells and the load terms in them.

A *cell* is a (model m, region r) pair with at least one placement, keyed ``m * R + r``;
capacity (6), GPU-type latency (7), spot (8) and availability (11) are written per cell,
and the heuristics round per cell. A *load term* is one block of load columns (interactive
``served``, batch ``batch`` or guarantee ``reserve``) with its cell, tier and ``phi[m,k]``
(capacity units per token/s). Kept apart from the families so that they stay independent
of each other (``.importlinter``: constraint families).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from llmfleet.plan.indexed import Compiled
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
