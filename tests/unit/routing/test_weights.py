"""Largest-remainder integer weights: sums, proportionality, no positive region dropped."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmfleet.routing.weights import integer_weights

fractions = st.dictionaries(
    st.sampled_from(["ap", "eu", "sa", "us", "af", "me", "au", "ca"]),
    st.floats(min_value=0, max_value=1, allow_nan=False, allow_infinity=False),
    max_size=8,
)


def test_exact_split():
    assert integer_weights({"us": 0.7, "eu": 0.3}) == {"eu": 300, "us": 700}


def test_thirds_give_the_remainder_to_the_first_name():
    assert integer_weights({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, total=100) == {
        "a": 34,
        "b": 33,
        "c": 33,
    }


def test_tiny_fraction_keeps_one_unit():
    w = integer_weights({"us": 0.9999, "eu": 0.0001}, total=100)
    assert w == {"eu": 1, "us": 99}


def test_zero_and_empty():
    assert integer_weights({}) == {}
    assert integer_weights({"us": 0.0}) == {}
    assert integer_weights({"us": 0.0, "eu": 0.5}) == {"eu": 1000}


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="'eu'"):
        integer_weights({"eu": -0.1})
    with pytest.raises(ValueError, match="smaller than"):
        integer_weights({"a": 0.5, "b": 0.5}, total=1)


@given(fractions, st.sampled_from([8, 100, 1000]))
def test_sum_and_support(fr, total):
    w = integer_weights(fr, total)
    positive = {r for r, f in fr.items() if f > 0}
    assert set(w) == positive
    if positive:
        assert sum(w.values()) == total
        assert all(v >= 1 for v in w.values())


@given(fractions, st.sampled_from([100, 1000]))
def test_proportional(fr, total):
    w = integer_weights(fr, total)
    mass = math.fsum(f for f in fr.values() if f > 0)
    if not w:
        return
    quota = {r: total * fr[r] / mass for r in w}
    bumped = sum(1 for r in w if math.floor(quota[r]) == 0)
    for r, v in w.items():
        assert abs(v - quota[r]) < 1 + bumped + 1e-9
    if all(q >= 1 for q in quota.values()):
        assert all(abs(w[r] - quota[r]) < 1 + 1e-9 for r in w)
        # order is kept: a larger fraction never gets a smaller weight
        for a in w:
            for b in w:
                if quota[a] > quota[b]:
                    assert w[a] >= w[b]


@given(fractions)
def test_scale_invariant(fr):
    doubled = {r: f / 2 for r, f in fr.items()}
    if all(f == 0 or f > 1e-300 for f in fr.values()):  # halving a subnormal rounds to 0
        assert integer_weights(fr) == integer_weights(doubled)
