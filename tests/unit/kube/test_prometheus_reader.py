"""Prometheus query results -> DemandHistory (the pure part of the demand reader)."""

from __future__ import annotations

import math

import pytest

from llmfleet.forecast.types import FlowKey
from llmfleet.kube.prometheus import (
    BadQuery,
    MissingLabel,
    histories_from_results,
    newest_with_data,
    render,
)

START = 1_700_000_000 - 1_700_000_000 % 3600
STEP = 3600


def _series(model: str, region: str, tier: str, values: list[tuple[int, float]]) -> dict:
    return {
        "metric": {"model_name": model, "region": region, "tier": tier},
        "values": [[START + (i + 1) * STEP, str(v)] for i, v in values],
    }


def test_window_is_the_step():
    assert render("rate(x[$window])", 300) == "rate(x[300s])"


def test_flows_are_aligned_summed_and_gaps_are_nan():
    results = {
        "prompt_tokens": [
            _series("m", "eu", "fast", [(0, 100.0), (1, 110.0), (3, 90.0)]),
            _series("m", "eu", "fast", [(0, 1.0)]),  # same labels (another replica set): summed
            _series("m", "us", "batch", [(2, 5.0)]),
        ],
        "output_tokens": [_series("m", "eu", "fast", [(0, 10.0), (1, 11.0)])],
        "requests": [_series("m", "eu", "fast", [(0, 0.5)])],
    }
    hs = histories_from_results(results, START, STEP, 4)
    assert [h.key for h in hs] == [
        FlowKey(model="m", origin="eu", tier="fast"),
        FlowKey(model="m", origin="us", tier="batch"),
    ]
    eu = hs[0].rates
    assert eu.prompt_tokens_per_s[:2] == (101.0, 110.0)
    assert math.isnan(eu.prompt_tokens_per_s[2])  # no rate at all in step 2: a gap
    assert eu.prompt_tokens_per_s[3] == 90.0
    # a step with data keeps the missing rates at 0, not NaN
    assert eu.requests_per_s[1] == 0.0 and eu.output_tokens_per_s[3] == 0.0
    assert hs[0].start == START and hs[0].step_seconds == STEP
    us = hs[1].rates
    assert us.prompt_tokens_per_s[2] == 5.0 and us.requests_per_s[2] == 0.0
    assert math.isnan(us.prompt_tokens_per_s[0])
    assert newest_with_data(hs) == START + 4 * STEP


def test_samples_outside_the_range_and_negative_rates_are_dropped():
    results = {"prompt_tokens": [_series("m", "eu", "fast", [(-1, 5.0), (0, -3.0), (9, 7.0)])]}
    (h,) = histories_from_results(results, START, STEP, 2)
    assert h.rates.prompt_tokens_per_s[0] == 0.0
    assert math.isnan(h.rates.prompt_tokens_per_s[1])


def test_a_series_without_the_tier_label_is_a_bad_query():
    results = {"output_tokens": [{"metric": {"model_name": "m", "region": "eu"}, "values": []}]}
    with pytest.raises(MissingLabel) as err:
        histories_from_results(results, START, STEP, 2)
    assert isinstance(err.value, BadQuery)  # the cycle's permanent failure
    assert (err.value.template, err.value.label) == ("generationTokens", "tier")
    assert "metricsRequestHeaderAttributes" in err.value.provider  # the gateway's config


def test_no_results_no_flows():
    assert histories_from_results({"prompt_tokens": []}, START, STEP, 3) == []
    assert newest_with_data([]) is None


def test_a_garbled_sample_is_no_sample_and_never_a_crash():
    results = {
        "prompt_tokens": [
            {
                "metric": {"model_name": "m", "region": "r", "tier": "t"},
                "values": [["not-a-time", "5"], [7200, "garbage"], [3600, "2"], "junk"],
            }
        ]
    }
    (h,) = histories_from_results(results, 0.0, 3600, 2)
    assert h.rates.prompt_tokens_per_s[0] == 2.0
    assert math.isnan(h.rates.prompt_tokens_per_s[1])  # the garbled value at 7200 s is no data
