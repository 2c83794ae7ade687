"""Rolling-origin backtest, error measures and the calibrated upper quantile.

Origins. With n coarse steps, horizon H, F requested folds and a minimum training length
n_min = max(4, min(P, n // 2)), each fold is scored on

    H_b = min(H, (n - n_min) // F)   steps   (at least 1),
    F_b = min(F, (n - n_min) // H_b) folds,   origins o_i = n - i H_b,  i = 1..F_b,

so short histories get shorter or fewer folds instead of none. Fold i trains on y[:o_i] and
is compared with y[o_i : o_i + H_b].

Scaled residuals. The spread of demand grows with its level, so residuals are scaled by the
forecast plus a floor delta = 0.1 x (mean of the training series' last day):

    r = (a - p) / (p + delta),   clipped to [-1, 20] (one burst on a near-idle series must
                                                      not set the width forever).

Upper quantile (empirical, hence calibrated on the backtest): with q_tau the tau-quantile of
the pooled scaled residuals,

    u = p + max(q_tau, 0) * (p + delta)      (never below the point forecast).

For the scored folds the quantile is cross-fitted: fold i uses the residuals of the other
folds only (its own when F_b = 1), so the reported pinball loss and coverage are honest.
Without any fold (a history of a few steps) the residuals of a one-step naive forecast on
the history stand in.

Errors (steps whose actual is missing are skipped):

    MAPE    = 100 * mean_{a > 0} |a - p| / a                         (0 if no a > 0)
    WAPE    = 100 * sum |a - p| / sum a                              (0 if sum a = 0)
    pinball = mean( max(tau (a - u), (tau - 1)(a - u)) )
    coverage = share of a <= u.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from llmfleet.forecast.series import FloatArray, SeriesView, level

Predictor = Callable[[SeriesView, int], FloatArray]

RESIDUAL_CLIP = (-1.0, 20.0)
FLOOR_SHARE = 0.1


@dataclass(frozen=True)
class Folds:
    """Where a series is cut for the backtest."""

    origins: tuple[int, ...]
    horizon: int
    """H_b: steps scored per fold."""


def plan_folds(n: int, horizon: int, folds: int, day: int) -> Folds:
    """The rolling origins for ``n`` coarse steps (see the module docstring)."""
    n_min = max(4, min(day, n // 2))
    room = n - n_min
    if room < 1 or folds < 1 or horizon < 1:
        return Folds((), 0)
    hb = max(1, min(horizon, room // folds))
    fb = min(folds, room // hb)
    return Folds(tuple(n - i * hb for i in range(1, fb + 1)), hb)


def floor_of(train: FloatArray, day: int) -> float:
    """delta: the scale floor from a training series."""
    return FLOOR_SHARE * level(train, day) + 1e-12


def scaled_residuals(actual: FloatArray, point: FloatArray, delta: float) -> FloatArray:
    """(a - p) / (p + delta), clipped; NaN where the actual is missing."""
    r: FloatArray = np.clip((actual - point) / (point + delta), *RESIDUAL_CLIP)
    return r


def upper_of(point: FloatArray, q: float, delta: float) -> FloatArray:
    """u = p + max(q, 0) (p + delta)."""
    u: FloatArray = point + max(q, 0.0) * (point + delta)
    return u


def quantile_of(residuals: FloatArray, tau: float) -> float:
    """Empirical tau-quantile of the finite residuals (0 when there are none)."""
    r = residuals[np.isfinite(residuals)]
    return float(np.quantile(r, tau)) if r.size else 0.0


def naive_residuals(y: FloatArray, day: int) -> FloatArray:
    """Stand-in residuals: scaled one-step changes of the history."""
    if y.size < 2:
        return np.zeros(0)
    return scaled_residuals(y[1:], y[:-1], floor_of(y, day))


@dataclass(frozen=True)
class Scores:
    """Backtest errors of one method on one series."""

    mape: float
    wape: float
    pinball: float
    coverage: float
    mean_actual: float
    folds: int
    horizon: int
    residuals: FloatArray
    """All scaled residuals (pooled over folds and steps), for the final quantile."""

    @property
    def relative_pinball(self) -> float:
        """Pinball loss divided by the mean actual (scale-free; 0 for an idle series)."""
        return self.pinball / self.mean_actual if self.mean_actual > 0 else self.pinball


def run(predict: Predictor, view: SeriesView, folds: Folds, tau: float) -> Scores:
    """Backtest ``predict`` on ``view`` at the given origins."""
    hb = folds.horizon
    actual_rows: list[FloatArray] = []
    point_rows: list[FloatArray] = []
    deltas: list[float] = []
    res_rows: list[FloatArray] = []
    y = view.coarse
    for o in folds.origins:
        train = view.prefix(o)
        p = predict(train, hb)
        a = y[o : o + hb]
        d = floor_of(train.coarse, view.day)
        actual_rows.append(a)
        point_rows.append(p)
        deltas.append(d)
        res_rows.append(scaled_residuals(a, p, d))
    fb = len(actual_rows)
    if fb == 0:
        empty = np.zeros(0)
        return Scores(0.0, 0.0, 0.0, 1.0, 0.0, 0, 0, empty)
    actual = np.stack(actual_rows)
    point = np.stack(point_rows)
    res = np.stack(res_rows)
    upper = np.empty_like(point)
    for i in range(fb):
        others = np.delete(res, i, axis=0) if fb > 1 else res
        upper[i] = upper_of(point[i], quantile_of(others.ravel(), tau), deltas[i])
    ok = np.isfinite(actual)
    a, p, u = actual[ok], point[ok], upper[ok]
    pos = a > 1e-9  # actual > 0 (denormal rates would overflow the ratio)
    mape = float(100 * np.mean(np.abs(a[pos] - p[pos]) / a[pos])) if pos.any() else 0.0
    total = float(a.sum())
    wape = float(100 * np.abs(a - p).sum() / total) if total > 1e-9 else 0.0
    diff = a - u
    pinball = float(np.mean(np.maximum(tau * diff, (tau - 1) * diff))) if a.size else 0.0
    coverage = float(np.mean(a <= u)) if a.size else 1.0
    mean_actual = total / a.size if a.size else 0.0
    return Scores(mape, wape, pinball, coverage, mean_actual, fb, hb, res.ravel())
