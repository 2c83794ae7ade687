"""SageServe's forecaster: ARIMA(3,1,2) at the history's resolution, provisioning for the
maximum prediction inside each planning step.

Model (no constant, as ``ARIMA(y, order=(3, 1, 2))`` in statsmodels, which SageServe uses on
per-minute prompt tokens): with x_t = y_t - y_{t-1},

    x_t = phi_1 x_{t-1} + phi_2 x_{t-2} + phi_3 x_{t-3} + e_t + theta_1 e_{t-1} + theta_2 e_{t-2}.

Estimation (Hannan-Rissanen, two least-squares stages instead of an iterative likelihood
fit — about 1000x faster than statsmodels' MLE and consistent for the same parameters):

1. fit a long AR(m), m = clip(n_x / 4, 5, 20), by least squares; its residuals estimate e_t;
2. regress x_t on x_{t-1..t-3} and the estimated e_{t-1..t-2}: the coefficients are phi,
   theta, and the residuals of this regression are the innovations used to start the forecast.

If the AR part is not stationary or the MA part not invertible (roots inside the unit circle)
the model degrades to AR(3) and then to the random walk ARIMA(0,1,0) (x_t = e_t).

The fit uses only the most recent day of fine steps (at most ``MAX_FIT_POINTS``): SageServe
refits hourly on recent traffic, and ARIMA without a seasonal part forgets the past within a
few steps anyway. Forecast: future innovations are zero, x-hat follows the recursion and
y-hat = y_n + cumsum(x-hat), clipped at 0. For a planning step of k fine steps the method
provisions for the largest fine prediction inside the step (SageServe provisions for the
maximum prediction over the coming window):

    yhat_coarse[h] = max_{i < k} yhat_fine[h k + i].
"""

from __future__ import annotations

import numpy as np

from llmfleet.forecast.series import DAY_SECONDS, FloatArray, SeriesView, fill_gaps, last_observed

P, Q = 3, 2
MIN_FIT_POINTS = 24
"""Below this many fine steps the random walk is used (too few to estimate 5 parameters)."""
MAX_FIT_POINTS = 1440
FIT_SECONDS = DAY_SECONDS


def _lagged(x: FloatArray, lags: int, start: int) -> FloatArray:
    """Matrix whose column i is x shifted by i + 1, for rows t = start..n-1."""
    n = x.size
    return np.column_stack([x[start - i - 1 : n - i - 1] for i in range(lags)])


def _stable(poly_coeffs: FloatArray) -> bool:
    """True when 1 - sum c_i z^i has all roots outside the unit circle."""
    if not np.any(poly_coeffs):
        return True
    # roots of z^p - c_1 z^(p-1) - ... - c_p inside the unit circle <=> the condition holds
    roots = np.roots(np.concatenate(([1.0], -poly_coeffs)))
    return bool(np.all(np.abs(roots) < 0.999))


def fit(x: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(phi, theta, innovations) of the ARMA(3,2) part fitted to the differenced series ``x``.

    ``innovations`` are aligned with the end of ``x`` (the last Q are what the forecast uses).
    """
    zeros_phi, zeros_theta = np.zeros(P), np.zeros(Q)
    n = x.size
    scale = float(np.std(x)) if n else 0.0
    if n < MIN_FIT_POINTS or scale <= 0 or not np.isfinite(scale):
        return zeros_phi, zeros_theta, x.copy()
    z = x / scale
    m = int(np.clip(n // 4, 5, 20))
    a1 = _lagged(z, m, m)
    coef1, *_ = np.linalg.lstsq(a1, z[m:], rcond=None)
    e = np.zeros(n)
    e[m:] = z[m:] - a1 @ coef1
    start = m + Q
    a2 = np.column_stack((_lagged(z, P, start), _lagged(e, Q, start)))
    coef2, *_ = np.linalg.lstsq(a2, z[start:], rcond=None)
    phi: FloatArray = coef2[:P].astype(np.float64)
    theta: FloatArray = coef2[P:].astype(np.float64)
    if not (_stable(phi) and _stable(-theta)):
        a3 = _lagged(z, P, P)
        coef3, *_ = np.linalg.lstsq(a3, z[P:], rcond=None)
        phi = coef3.astype(np.float64)
        theta = zeros_theta
        if not _stable(phi):
            return zeros_phi, zeros_theta, x.copy()
        resid = np.zeros(n)
        resid[P:] = z[P:] - a3 @ phi
        return phi, theta, resid * scale
    resid = np.zeros(n)
    resid[start:] = z[start:] - a2 @ coef2
    return phi, theta, resid * scale


def forecast_fine(y: FloatArray, steps: int) -> FloatArray:
    """ARIMA(3,1,2) forecast of ``steps`` fine steps after ``y`` (gaps interpolated)."""
    if y.size == 0:
        return np.zeros(steps)
    y = fill_gaps(y)
    x = np.diff(y)
    phi, theta, e = fit(x)
    hist_x = [float(v) for v in x[-P:]] if x.size >= P else [0.0] * (P - x.size) + list(x)
    hist_e = [float(v) for v in e[-Q:]] if e.size >= Q else [0.0] * (Q - e.size) + list(e)
    p1, p2, p3 = (float(c) for c in phi)
    t1, t2 = (float(c) for c in theta)
    x1, x2, x3 = hist_x[-1], hist_x[-2], hist_x[-3]
    e1, e2 = hist_e[-1], hist_e[-2]
    out = np.empty(steps)
    level = float(y[-1])
    for h in range(steps):
        xh = p1 * x1 + p2 * x2 + p3 * x3 + t1 * e1 + t2 * e2
        level += xh
        out[h] = level
        x1, x2, x3 = xh, x1, x2
        e1, e2 = 0.0, e1
    return np.maximum(out, 0.0)


def predict(view: SeriesView, horizon: int) -> FloatArray:
    """Point forecast of ``horizon`` coarse steps: max of the fine forecasts in each step."""
    window = int(np.clip(FIT_SECONDS // view.fine_step_seconds, MIN_FIT_POINTS, MAX_FIT_POINTS))
    y = view.fine[-window:]
    if not np.isfinite(y).any():
        return np.full(horizon, last_observed(view.coarse), dtype=np.float64)
    fine = forecast_fine(y, horizon * view.k)
    out: FloatArray = fine.reshape(horizon, view.k).max(axis=1)
    return out
