"""One module per constraint family; numbers match the maths in :mod:`llmfleet.plan.model`."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from llmfleet.plan.lp import LinearProgram

IntArray = NDArray[np.int64]


def block_rows(
    lp: LinearProgram, n: int, T: int, lb: ArrayLike = -np.inf, ub: ArrayLike = np.inf
) -> IntArray:
    """``n x T`` new rows (one per item and step); bounds broadcast to ``(n, T)``."""
    lbs = np.broadcast_to(np.asarray(lb, dtype=float), (n, T)).ravel()
    ubs = np.broadcast_to(np.asarray(ub, dtype=float), (n, T)).ravel()
    return lp.add_rows(n * T, lbs, ubs).reshape(n, T)
