"""The burst reserve (issue 12): a flow's per-step peaks keep its upper band at the burst it
showed for ``burst_memory`` steps after it, and nothing else changes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmfleet.forecast.forecaster import burst_reserve, forecast
from llmfleet.forecast.types import DemandHistory, DemandRates, FlowKey

KEY = FlowKey(model="m", origin="r", tier="interactive-fast")
STEP = 3600


def _rates(tokens: list[float]) -> DemandRates:
    return DemandRates(
        requests_per_s=tuple(t / 100 for t in tokens),
        prompt_tokens_per_s=tuple(0.8 * t for t in tokens),
        output_tokens_per_s=tuple(0.2 * t for t in tokens),
    )


def _history(means: list[float], peaks: list[float] | None) -> DemandHistory:
    return DemandHistory(key=KEY, start=0.0, step_seconds=STEP, rates=_rates(means),
                         peaks=None if peaks is None else _rates(peaks))


def test_reserve_remembers_the_largest_peak_for_memory_steps_after_it() -> None:
    peaks = np.array([1.0, 1.0, 10.0, 1.0])
    # a burst two steps back is kept for the next two steps; the last step's 1 after that
    assert burst_reserve(peaks, 3, 5).tolist() == [10.0, 10.0, 1.0, 0.0, 0.0]
    assert burst_reserve(peaks, 0, 3).tolist() == [0.0, 0.0, 0.0]
    # unknown peaks (NaN) are no evidence; planning steps of k history steps
    assert burst_reserve(np.array([math.nan, 4.0, 9.0, 2.0]), 1, 2, k=2).tolist() == [9.0, 0.0]
    assert burst_reserve(np.array([math.nan, math.nan]), 2, 2).tolist() == [0.0, 0.0]


def test_a_recent_burst_lifts_the_upper_band_of_the_next_steps_only() -> None:
    days = 3
    means = [1000.0] * (24 * days)
    peaks = [1200.0] * (24 * days)
    peaks[-2] = 20_000.0  # a 10-minute burst inside the step before last
    plain = forecast(_history(means, peaks), 6, burst_memory=0)
    with_reserve = forecast(_history(means, peaks), 6, burst_memory=3)
    up = with_reserve.upper.prompt_tokens_per_s
    assert up[0] == pytest.approx(0.8 * 20_000) and up[1] == pytest.approx(0.8 * 20_000)
    assert up[2] == pytest.approx(0.8 * 1200)  # then the last step's own peak
    assert up[3:] == plain.upper.prompt_tokens_per_s[3:]  # and after 3 steps, the band alone
    assert with_reserve.point == plain.point  # the reserve never moves the point forecast
    assert with_reserve.upper.requests_per_s[0] == pytest.approx(200.0)
    # without peaks the history forecasts as before
    assert forecast(_history(means, None), 6, burst_memory=3).upper == plain.upper


def test_peaks_must_cover_the_same_steps_as_the_rates() -> None:
    with pytest.raises(ValueError, match="peaks cover 2 steps, rates 3"):
        _history([1.0, 2.0, 3.0], [1.0, 2.0])
