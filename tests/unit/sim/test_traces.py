"""Trace readers on the real files in ../shared/traces (counts as stated in its README)."""

from __future__ import annotations

import ast
import json

import numpy as np
import pytest

from llmfleet.sim.traces import (
    TracesNotFoundError,
    parse_length_literal,
    read_azure,
    read_servegen,
    servegen_flows,
    servegen_history,
)

# The traces ship beside every clone (../shared/traces); their absence is a failure, not a skip.


@pytest.fixture(scope="module")
def small():
    return read_servegen("m-small")


@pytest.fixture(scope="module")
def mid():
    return read_servegen("m-mid")


@pytest.mark.parametrize(("service", "rows"), [("code", 8_819), ("conv", 19_366)])
def test_azure_row_counts_and_columns(service, rows):
    t = read_azure(service)
    assert len(t) == rows
    assert t.prompt_tokens.size == t.output_tokens.size == rows
    assert t.arrival_s[0] == 0 and np.all(np.diff(t.arrival_s) >= 0)
    assert 3000 < t.arrival_s[-1] < 3700  # about one hour
    assert (t.prompt_tokens > 0).all() and (t.output_tokens >= 0).all()


def test_servegen_client_counts_windows_and_absent_length_files(small, mid):
    assert len(small.clients) == 43 and len(mid.clients) == 109
    assert sum(c.dataset_file is None for c in small.clients) == 5
    assert sum(c.dataset_file is None for c in mid.clients) == 35
    for c in (*small.clients, *mid.clients):
        assert c.rate.size == c.cv.size == c.dist.size == c.p1.size == c.p2.size == 2016
        assert c.window_start_s[0] == 0 and np.all(np.diff(c.window_start_s) == 600)
        assert set(c.dist[c.rate > 0]) <= {"Gamma", "Weibull", "Exponential"}
        assert (c.dist[c.rate == 0] == "").all()


def test_fast_length_parse_equals_literal_eval(small):
    c = next(c for c in small.clients if c.dataset_file is not None)
    raw = json.loads(c.dataset_file.read_text())
    text = next(v["input_tokens"] for v in raw.values() if v["input_tokens"] != "{}")
    ref = ast.literal_eval(text)
    d = parse_length_literal(text)
    assert d.lengths.tolist() == sorted(ref)
    total = sum(ref.values())
    assert d.probs == pytest.approx([ref[k] / total for k in sorted(ref)])
    assert parse_length_literal("{}").empty


def test_client_without_file_uses_the_pool_wide_distribution(small):
    absent = next(c for c in small.clients if c.dataset_file is None)
    own = next(c for c in small.clients if c.dataset_file is not None)
    assert small.lengths(absent).source == "pool"
    assert small.lengths(own).source == "client"
    assert len(small.pool_lengths.input) == 56  # 14 days of 6-hour blocks
    mean_in, mean_out = small.pool_lengths.means()
    assert np.nanmin(mean_in) > 1 and np.nanmin(mean_out) > 1


@pytest.mark.parametrize(("step", "steps"), [(300, 4032), (600, 2016), (3600, 336)])
def test_servegen_history_is_rate_times_mean_tokens(small, step, steps):
    c = max(small.clients, key=lambda c: c.requests)
    h = servegen_history(small, c, step)
    assert len(h.rates) == steps and h.step_seconds == step
    req = np.array(h.rates.requests_per_s)
    assert req.mean() == pytest.approx(c.rate.mean())
    tokens = np.array(h.rates.prompt_tokens_per_s)
    assert ((tokens > 0) == (req > 0)).all()


def test_flows_sum_their_clients(small):
    flows = servegen_flows([small], 600)
    assert {f.key.origin for f in flows} == {"us-east", "eu-west", "ap-northeast"}
    total = sum(np.sum(f.rates.requests_per_s) for f in flows)
    assert total == pytest.approx(sum(c.rate.sum() for c in small.clients))


def test_missing_traces_give_a_clear_error(tmp_path):
    with pytest.raises(TracesNotFoundError, match="shared/traces"):
        read_servegen("m-small", tmp_path)
    with pytest.raises(TracesNotFoundError, match="LLMFLEET_TRACES_DIR"):
        read_azure("code", tmp_path)
