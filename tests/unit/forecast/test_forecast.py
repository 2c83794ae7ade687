"""Forecasters: accuracy on a known seasonal series, calibrated upper quantile, robustness
(all-zero, short, gappy, empty histories), auto selection and the ARIMA estimator."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmfleet.forecast import DemandHistory, DemandRates, FlowKey, arima, forecast, forecast_all
from llmfleet.forecast.backtest import plan_folds

KEY = FlowKey(model="llama", origin="us-east", tier="interactive")
DAY = 86_400


def truth(n: int, step: int = 300, offset: int = 0) -> np.ndarray:
    """Requests/s: a daily sine (peak 1.6x, trough 0.4x) and quieter weekends (0.6x)."""
    t = (np.arange(n) + offset) * step
    daily = 1 + 0.6 * np.sin(2 * np.pi * t / DAY)
    weekly = np.where((t // DAY) % 7 >= 5, 0.6, 1.0)
    return 10.0 * daily * weekly


def history(req: np.ndarray, step: int = 300, key: FlowKey = KEY) -> DemandHistory:
    req = np.asarray(req, dtype=float)
    return DemandHistory(
        key=key,
        start=0.0,
        step_seconds=step,
        rates=DemandRates(
            requests_per_s=tuple(req),
            prompt_tokens_per_s=tuple(req * 500),
            output_tokens_per_s=tuple(req * 200),
        ),
    )


def noisy(n: int, sd: float, seed: int = 0, step: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.maximum(truth(n, step) * (1 + sd * rng.normal(size=n)), 0.0)


def mape(actual: np.ndarray, pred: np.ndarray) -> float:
    return float(100 * np.mean(np.abs(actual - pred) / actual))


def test_seasonal_forecast_of_a_known_series_is_within_5_percent_mape():
    n = 14 * 288
    f = forecast(history(noisy(n, 0.05)), horizon_steps=288, step_seconds=300, method="seasonal")
    future = truth(n + 288)[n:]
    assert f.method == "seasonal"
    assert mape(future, np.array(f.point.requests_per_s)) < 5.0
    assert f.start == n * 300
    assert f.steps == 288


def test_hourly_planning_step_aggregates_the_history_and_keeps_the_daily_shape():
    n = 14 * 288
    f = forecast(history(noisy(n, 0.05)), horizon_steps=24, step_seconds=3600, method="seasonal")
    future = truth(n + 288)[n:].reshape(24, 12).mean(axis=1)
    assert f.step_seconds == 3600
    assert mape(future, np.array(f.point.requests_per_s)) < 5.0


def test_upper_quantile_covers_about_its_share_of_actuals():
    """Backtest coverage (cross-fitted) and out-of-sample coverage are both near 0.9."""
    n_hist, horizon = 14 * 288, 12
    series = noisy(n_hist + 20 * horizon, 0.15, seed=3)
    covered, total = 0, 0
    for i in range(20):
        end = n_hist + i * horizon
        f = forecast(history(series[:end]), horizon, method="seasonal", quantile=0.9, folds=10)
        err = f.error("seasonal", "requests")
        assert err is not None and err.coverage is not None
        assert 0.75 <= err.coverage <= 1.0
        actual = series[end : end + horizon]
        covered += int(np.sum(actual <= np.array(f.upper.requests_per_s)))
        total += horizon
    assert 0.8 <= covered / total <= 0.98


def test_auto_picks_seasonal_on_a_strongly_seasonal_series_and_reports_every_candidate():
    f = forecast(history(noisy(14 * 288, 0.05)), horizon_steps=36, method="auto")
    assert f.method == "seasonal"
    reported = {(e.method, e.series) for e in f.backtest}
    assert reported == {
        (m, s)
        for m in ("arima", "seasonal", "naive")
        for s in ("requests", "prompt_tokens", "output_tokens")
    }
    for e in f.backtest:
        assert e.folds == 4 and e.mape >= 0 and e.pinball >= 0
    best = f.error()
    assert best is not None and best.mape < f.error("naive").mape  # type: ignore[union-attr]


def test_all_zero_series_forecasts_zero_with_zero_error():
    f = forecast(history(np.zeros(3 * 288)), horizon_steps=12)
    assert set(f.point.requests_per_s) == {0.0}
    assert set(f.upper.prompt_tokens_per_s) == {0.0}
    assert all(e.mape == 0 and e.pinball == 0 for e in f.backtest)


def test_empty_history_forecasts_zero_demand():
    f = forecast(history(np.zeros(0)), horizon_steps=6)
    assert f.steps == 6 and set(f.point.output_tokens_per_s) == {0.0}
    assert f.backtest == ()


@pytest.mark.parametrize("n", [1, 3, 20, 100, 3 * 288])
@pytest.mark.parametrize("method", ["auto", "arima", "seasonal", "naive"])
def test_short_histories_give_a_finite_forecast(n, method):
    f = forecast(history(noisy(n, 0.1)), horizon_steps=24, method=method)
    assert f.steps == 24
    for rates in (f.point, f.upper):
        assert all(math.isfinite(v) and v >= 0 for v in rates.prompt_tokens_per_s)
    assert all(u >= p for u, p in zip(f.upper.requests_per_s, f.point.requests_per_s, strict=True))


def test_gaps_are_tolerated_and_not_scored():
    req = noisy(10 * 288, 0.05)
    req[100:400] = np.nan
    req[-5:-2] = np.nan
    f = forecast(history(req), horizon_steps=12, method="auto")
    assert all(math.isfinite(v) for v in f.point.requests_per_s)
    assert all(math.isfinite(e.mape) for e in f.backtest)


def test_short_history_shortens_the_backtest_instead_of_dropping_it():
    folds = plan_folds(n=30, horizon=288, folds=4, day=288)
    assert folds.horizon >= 1 and len(folds.origins) == 4
    assert min(folds.origins) >= 15


def test_planning_step_must_be_a_multiple_of_the_history_step():
    with pytest.raises(ValueError, match="whole multiple"):
        forecast(history(np.ones(100), step=300), horizon_steps=4, step_seconds=450)


def test_arima_provisions_for_the_max_fine_prediction_within_a_step():
    rising = np.linspace(0, 100, 200)  # per-minute history, steadily rising
    f = forecast(history(rising, step=60), horizon_steps=3, step_seconds=300, method="arima")
    fine = arima.forecast_fine(rising[-1440:], 15)
    assert f.point.requests_per_s == pytest.approx(tuple(fine.reshape(3, 5).max(axis=1)), rel=1e-6)


def psi_weights(phi: np.ndarray, theta: np.ndarray, n: int = 8) -> np.ndarray:
    """Impulse response of the ARMA (identified even when phi and theta are not)."""
    psi = np.zeros(n)
    for j in range(n):
        psi[j] = (1.0 if j == 0 else 0.0) + (theta[j - 1] if 1 <= j <= len(theta) else 0.0)
        psi[j] += sum(phi[i] * psi[j - i - 1] for i in range(len(phi)) if j - i - 1 >= 0)
    return psi


def test_arima_estimator_recovers_a_known_arma_process():
    rng = np.random.default_rng(7)
    phi, theta = np.array([0.5, -0.3, 0.1]), np.array([0.4, 0.2])
    e = rng.normal(size=5000)
    x = np.zeros(5000)
    for t in range(3, 5000):
        x[t] = phi @ x[t - 3 : t][::-1] + e[t] + theta @ e[t - 2 : t][::-1]
    got_phi, got_theta, resid = arima.fit(x[-1400:])
    assert psi_weights(got_phi, got_theta) == pytest.approx(psi_weights(phi, theta), abs=0.1)
    assert np.std(resid[-1000:]) == pytest.approx(1.0, rel=0.1)


def test_arima_forecast_is_close_to_statsmodels_maximum_likelihood():
    from statsmodels.tsa.arima import model

    y = noisy(2 * 288, 0.05, seed=11)[-288:]
    ours = arima.forecast_fine(y, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = model.ARIMA(y, order=(3, 1, 2)).fit().forecast(6)
    assert mape(np.asarray(ref), ours) < 10.0  # two-stage LS vs MLE: same model, close fit


def test_forecast_all_keys_by_flow_and_rejects_duplicates():
    keys = [FlowKey(model="m", origin=o, tier="t") for o in ("a", "b")]
    hs = [history(noisy(288, 0.1, seed=i), key=k) for i, k in enumerate(keys)]
    out = forecast_all(hs, horizon_steps=6)
    assert set(out) == set(keys)
    with pytest.raises(ValueError, match="twice"):
        forecast_all([hs[0], hs[0]], horizon_steps=6)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.one_of(st.floats(0, 1e6), st.just(float("nan"))), min_size=0, max_size=80),
    st.integers(1, 30),
    st.sampled_from(["auto", "arima", "seasonal", "naive"]),
)
def test_forecasts_are_finite_nonnegative_and_upper_at_least_point(values, horizon, method):
    f = forecast(history(np.array(values, dtype=float), step=3600), horizon, method=method)
    for p, u in zip(f.point.prompt_tokens_per_s, f.upper.prompt_tokens_per_s, strict=True):
        assert math.isfinite(p) and math.isfinite(u)
        assert 0 <= p <= u


def test_a_bursty_mostly_idle_flow_is_not_planned_far_above_its_peaks():
    # near idle, bursts of at most 920 tokens/s in 30% of hours, the last hour a burst (the
    # us-west 70B flow of issue 12): the scaled residuals are huge, the naive point is the burst
    rng = np.random.default_rng(3)
    steps = 14 * 24
    tok = np.full(steps, 2.0)
    bursts = rng.random(steps) < 0.3
    tok[bursts] = rng.uniform(100.0, 920.0, size=int(bursts.sum()))
    tok[-1] = 900.0
    h = DemandHistory(
        key=FlowKey(model="m", origin="us-west", tier="fast"),
        start=0.0,
        step_seconds=3600,
        rates=DemandRates(
            requests_per_s=tuple(tok / 1000.0),
            prompt_tokens_per_s=tuple(tok),
            output_tokens_per_s=tuple(tok / 4.0),
        ),
    )
    f = forecast(h, horizon_steps=24, quantile=0.9)
    up = np.array(f.upper.prompt_tokens_per_s)
    assert f.point.prompt_tokens_per_s[0] == pytest.approx(900.0)
    assert up.max() <= 2.0 * tok.max() + 1e-9  # unbounded, the band was 19,221 tokens/s
    assert np.all(up >= np.array(f.point.prompt_tokens_per_s) - 1e-12)


def test_the_peak_bound_never_cuts_the_point_forecast_of_a_growing_flow():
    from llmfleet.forecast.forecaster import plausible_upper

    point = np.array([900.0, 1000.0, 1100.0])
    upper = np.array([1500.0, 1600.0, 1700.0])
    history = np.array([400.0, 600.0, 800.0])
    out = plausible_upper(point, upper, history)
    assert out.tolist() == [1500.0, 1600.0, 1600.0]  # 2 x 800 = 1600 caps only the last
    low = plausible_upper(point, upper, history / 4)
    assert low.tolist() == [900.0, 1000.0, 1100.0]  # 2 x 200 = 400: never under the point
