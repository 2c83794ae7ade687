"""The planner's router shares: counted from a calibration's decisions, validated, as JSON."""

from __future__ import annotations

import numpy as np
import pytest

from llmfleet.routing.models.serving import (
    ConfigError,
    RouterShares,
    RouteShare,
    TierShares,
    calibrated_shares,
    fit_tier_shares,
    parse_shares,
    shares_document,
    shares_of_choices,
    split_option,
)
from unit.routing.test_model_router import synthetic


def test_shares_of_choices_partition_requests_and_prompt_tokens():
    choice = np.array([0, 0, 1, 1, 1])
    prompt = np.array([10.0, 10.0, 20.0, 30.0, 30.0])
    out = np.array([[5.0, 10.0]] * 5)  # the small model answers half as long
    s = shares_of_choices("t", ["small", "large"], 1, choice, prompt, out, {"small": "llama-8b"})
    by = {o.model: o for o in s.options}
    assert s.reference == "large"
    assert by["llama-8b"].requests == pytest.approx(0.4)
    assert by["llama-8b"].prompt_tokens == pytest.approx(20 / 100)
    assert by["llama-8b"].output_tokens == pytest.approx(10 / 50)  # 2 x 5 over 5 x 10
    assert by["large"].output_tokens == pytest.approx(30 / 50)
    assert sum(o.requests for o in s.options) == pytest.approx(1.0)


def test_best_of_n_option_names_carry_the_samples():
    assert split_option("llama@4") == ("llama", 4)
    assert split_option("a@b@2") == ("a@b", 2)
    assert split_option("plain") == ("plain", 1)
    s = shares_of_choices(
        "t", ["small@1", "small@4", "large@1"], 2, np.array([1, 1, 2, 0]), np.ones(4)
    )
    assert {(o.model, o.samples): o.requests for o in s.options} == {
        ("small", 1): 0.25,
        ("small", 4): 0.5,
        ("large", 1): 0.25,
    }
    # output x n, prompt once; requests are client requests
    rq, pr, ou = s.multipliers()["small"]
    assert (rq, pr, ou) == pytest.approx((0.75, 0.75, 0.25 + 4 * 0.5))
    many = TierShares("t", "large", s.options, prefill_per_sample=True)
    assert many.multipliers()["small"][1] == pytest.approx(0.25 + 4 * 0.5)


def test_shares_are_validated():
    with pytest.raises(ValueError, match="sum to"):
        TierShares("t", "l", (RouteShare("l", 0.5, 1.0, 1.0),))
    with pytest.raises(ValueError, match="samples"):
        RouteShare("s", 0.5, 0.5, 0.5, samples=0)
    with pytest.raises(ValueError, match="twice"):
        RouterShares((TierShares("t", "l", (RouteShare("l", 1, 1, 1),)),) * 2)


def test_shares_round_trip_as_json_and_bad_documents_name_the_key():
    shares = RouterShares(
        (
            TierShares(
                "t",
                "large",
                (RouteShare("large", 0.3, 0.4, 0.3), RouteShare("small", 0.7, 0.6, 0.7, 2)),
            ),
        )
    )
    assert parse_shares(shares_document(shares)) == shares
    doc = shares_document(shares)
    doc["tiers"]["t"]["options"][0]["requests"] = 0.9
    with pytest.raises(ConfigError, match=r"tiers\.t: .*requests shares sum"):
        parse_shares(doc)
    with pytest.raises(ConfigError, match="apiVersion"):
        parse_shares({"tiers": {}})


def test_calibrated_shares_send_the_easy_half_to_the_small_model():
    data = synthetic(1200, seed=1)
    fitted, shares = fit_tier_shares(data, "t", 1.0, bits=12, folds=3, names={"small": "s8b"})
    assert fitted.oof_choice is not None and fitted.lam is not None
    small = shares.share("s8b")
    # half the prompts are easy (the small model as good as the large one); the bound of a
    # 1-point drop keeps the router from sending many hard ones
    assert 0.3 <= small <= 0.6
    assert small == pytest.approx(float(np.mean(fitted.oof_choice == 0)))
    assert "s8b" not in shares.note and "small" in shares.note and "1-point" in shares.note
    with pytest.raises(ValueError, match="out-of-fold"):
        calibrated_shares(fitted, synthetic(10, seed=3), "t")
