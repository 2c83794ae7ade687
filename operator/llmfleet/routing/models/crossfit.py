r"""Cross-fitting: out-of-fold utilities for calibration, and a fold ensemble for new queries.

A threshold calibrated on the predictions of a router for the very prompts it was fitted on
is optimistic (the router has seen their labels). Holding out a calibration split avoids
that but spends data twice. Cross-fitting (as in CV+ / cross-conformal prediction) spends
it once: the development set is cut into ``K`` folds; the router fitted on the other
``K - 1`` folds predicts each fold, so every development prompt has an *out-of-fold*
utility ``U_oof`` to calibrate on, and a new query's utility is the mean of the ``K`` fold
routers' utilities, ``U(x) = (1/K) sum_k U_k(x)`` (each fitted on ``(K-1)/K`` of the data,
like the ones calibrated on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from llmfleet.routing.models.data import FloatArray, kfold
from llmfleet.routing.models.features import FeatureMatrix
from llmfleet.routing.models.routers import Router


@dataclass(frozen=True, eq=False)
class CrossFit:
    """Out-of-fold utilities of the development prompts, and the fitted fold routers."""

    oof: FloatArray
    routers: tuple[Router, ...]

    def utility(self, x: FeatureMatrix) -> FloatArray:
        """Mean utility of the fold routers on new queries (``-inf`` stays ``-inf``)."""
        return np.asarray(np.mean([r.utility(x) for r in self.routers], axis=0), dtype=np.float64)


def cross_fit(
    make: Callable[[], Router],
    x: FeatureMatrix,
    quality: FloatArray,
    cost: FloatArray,
    folds: int = 5,
    seed: int = 0,
) -> CrossFit:
    """Fit ``folds`` routers from ``make()``, each on all folds but one (module docstring)."""
    n = quality.shape[0]
    parts = kfold(n, folds, seed)
    oof = np.zeros_like(quality, dtype=np.float64)
    routers: list[Router] = []
    everything = np.arange(n, dtype=np.int64)
    for part in parts:
        train = np.setdiff1d(everything, part)
        router = make().fit(x[train], quality[train], cost[train])
        oof[part] = router.utility(x[part])
        routers.append(router)
    return CrossFit(oof=oof, routers=tuple(routers))
