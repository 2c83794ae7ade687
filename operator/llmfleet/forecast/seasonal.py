"""Seasonal-naive forecast with a level correction (daily and weekly seasonality).

Let ``y`` be the coarse series (n steps), P the steps per day and W = 7 P. The season used
depends on how much history there is (robust for short histories):

* n >= W + P (more than 8 days): weekly season, period S = W, averaging K = 2 weeks —
  captures both the daily shape and the weekday/weekend difference;
* P <= n < W + P: daily season, S = P, averaging K = 3 days;
* n < P: no season can be seen; the forecast is the level of the last hour (or of all the
  history when shorter).

Seasonal base for a target step j (future or past): the mean of the K most recent observed
same-phase values,

    b(j) = mean{ y[j - m S] : m = m0(j), ..., m0(j) + K - 1,  0 <= j - m S < n,  finite },
    m0(j) = max(1, ceil((j - n + 1) / S))

(m0 > 1 only when the horizon is longer than a season: the lag must reach into history).

Level/trend correction: the last L = min(P, n) steps are compared with what the seasonal
base predicted for them, and the future base is scaled by that ratio, clipped so that one
odd day cannot run away with the forecast:

    r = clip( sum_{j in last L} y[j] / sum_{j in last L} b(j), 1/2, 2 ),
    yhat[n + h] = r * b(n + h).

When the base has no history for a target (gaps), the level of the last day stands in.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from llmfleet.forecast.series import FloatArray, SeriesView, level

WEEKS_AVERAGED = 2
DAYS_AVERAGED = 3
RATIO_CLIP = (0.5, 2.0)


def seasonal_base(y: FloatArray, targets: npt.NDArray[np.int64], period: int, k: int) -> FloatArray:
    """``b(j)`` for every target index ``j`` (NaN where no same-phase value was observed)."""
    n = y.size
    m0 = np.maximum(1, -((-(targets - n + 1)) // period))  # ceil division
    lags = (m0[:, None] + np.arange(k)[None, :]) * period
    idx = targets[:, None] - lags
    valid = (idx >= 0) & (idx < n)
    vals = (
        np.where(valid, y[np.clip(idx, 0, max(n - 1, 0))], np.nan)
        if n
        else np.full(idx.shape, np.nan)
    )
    ok = np.isfinite(vals)
    counts = ok.sum(axis=1)
    sums = np.where(ok, vals, 0.0).sum(axis=1)
    out: FloatArray = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out


def season_of(n: int, day: int) -> tuple[int, int] | None:
    """(period S, seasons averaged K) for a history of ``n`` steps, or None if too short."""
    if n >= 8 * day:
        return 7 * day, WEEKS_AVERAGED
    if n >= day:
        return day, DAYS_AVERAGED
    return None


def predict(view: SeriesView, horizon: int) -> FloatArray:
    """Point forecast of ``horizon`` coarse steps."""
    y = view.coarse
    n = y.size
    hour = max(1, view.day // 24)
    fallback = level(y, view.day)
    season = season_of(n, view.day)
    if season is None:
        return np.full(horizon, level(y, hour), dtype=np.float64)
    period, k = season
    future = seasonal_base(y, np.arange(n, n + horizon, dtype=np.int64), period, k)
    span = min(view.day, n)
    recent = np.arange(n - span, n, dtype=np.int64)
    past = seasonal_base(y, recent, period, k)
    both = np.isfinite(past) & np.isfinite(y[recent])
    denom = float(past[both].sum())
    ratio = 1.0
    if denom > 0:
        ratio = float(np.clip(y[recent][both].sum() / denom, *RATIO_CLIP))
    out: FloatArray = np.where(np.isfinite(future), future * ratio, fallback)
    return np.maximum(out, 0.0)
