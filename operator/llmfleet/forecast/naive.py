"""Naive last-value forecast: every future step repeats the last observed coarse step.

yhat[n + h] = y[n - 1]   (the most recent finite value; 0 if none),  h = 0..H-1
"""

from __future__ import annotations

import numpy as np

from llmfleet.forecast.series import FloatArray, SeriesView, last_observed


def predict(view: SeriesView, horizon: int) -> FloatArray:
    """Point forecast of ``horizon`` coarse steps."""
    return np.full(horizon, last_observed(view.coarse), dtype=np.float64)
