"""The router service's decision path equals the scikit-learn routers it was compiled from:
the same features, the same utilities, the same model for every prompt."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import scipy.sparse as sp

from llmfleet.routing.models import HashingFeaturiser, cross_fit
from llmfleet.routing.models.features import DifficultyFeaturiser
from llmfleet.routing.models.policy import LengthCost, route
from llmfleet.routing.models.serving import (
    Candidate,
    ConfigError,
    FastHashing,
    TierRouter,
    compile_members,
    fit_tier,
    make_serving_router,
    members_from_arrays,
    members_to_arrays,
    parse_config,
)
from unit.routing.test_model_router import synthetic

TEXTS = [
    "What is the capital of France?",
    "",
    "a",
    "Prove the theorem: for all n >= 1, sum_{k<n} k = n(n-1)/2 -- the the the!",
    "Ünïcödé wörds, émojis 🙂 and 数学 问题 mixed with CODE_blocks x_1 x_2",
    "repeat repeat repeat repeat bigram bigram",
]


@pytest.mark.parametrize("bits", [10, 16, 18])
def test_fast_hashing_equals_sklearns(bits):
    ref = HashingFeaturiser(bits).transform(TEXTS)
    fast = FastHashing(bits)
    for i, text in enumerate(TEXTS):
        idx, val = fast.features(text)
        row = ref[i]
        order = np.argsort(row.indices)
        assert idx.tolist() == row.indices[order].tolist()
        np.testing.assert_allclose(val, row.data[order], rtol=0, atol=1e-15)


@functools.cache
def _features(kind: str, bits: int, prompts):
    """What fit_tier fits ``kind`` on: the hashed text (then the difficulty features)."""
    x = HashingFeaturiser(bits).transform(prompts)
    if kind == "blend":
        x = sp.hstack([x, sp.csr_matrix(DifficultyFeaturiser().transform(prompts))]).tocsr()
    return x


def _decisions(kind: str, bits: int = 12):
    data = synthetic(500, seed=2)
    test = synthetic(300, seed=9)
    x = _features(kind, bits, data.prompts)
    cf = cross_fit(lambda: make_serving_router(kind, 0, text_columns=2**bits), x, data.quality,
                   data.cost, 3, 0)  # fmt: skip
    members = compile_members(cf.routers, 2**bits)
    lengths = np.array([len(p) for p in data.prompts], dtype=np.float64)
    cost = LengthCost.fit(lengths, data.cost)
    cands = tuple(
        Candidate(m, m, float(cost.intercept[j]), float(cost.slope[j]))
        for j, m in enumerate(data.models)
    )
    lam, scale = 0.35, float(cost.predict(lengths).max(axis=1).mean())
    tier = TierRouter("t", kind, cands, 1, lam, scale, bits, members)
    seen = cost.predict(np.array([len(p) for p in test.prompts], dtype=np.float64))
    u_ref = cf.utility(_features(kind, bits, test.prompts))
    expected = route(u_ref, seen, lam, scale)
    fast = FastHashing(bits)
    got = [tier.decide(p, fast).index for p in test.prompts]
    u_fast = np.array([tier.utility(p, fast) for p in test.prompts])
    return expected, np.array(got), u_ref, u_fast, members


@pytest.mark.parametrize("kind", ["quality", "good-enough", "cluster", "blend"])
def test_compiled_router_decides_as_sklearn(kind):
    expected, got, u_ref, u_fast, _ = _decisions(kind)
    np.testing.assert_allclose(u_fast, u_ref, rtol=1e-9, atol=1e-12)
    assert got.tolist() == expected.tolist()
    assert 0 < got.sum() < len(got), "both models chosen"


@pytest.mark.parametrize("kind", ["quality", "good-enough", "cluster", "random", "blend"])
def test_artefact_arrays_round_trip(kind):
    _, _, _, _, members = _decisions(kind)
    back = members_from_arrays(members_to_arrays(members))
    fast = FastHashing(12)
    for text in TEXTS:
        idx, val = fast.features(text)
        for a, b in zip(members, back, strict=True):
            np.testing.assert_array_equal(a.utility(idx, val, text), b.utility(idx, val, text))


def test_random_router_is_a_stable_share():
    _, got, _, _, _ = _decisions("random")
    assert 0 < got.sum() < len(got)
    _, _, _, _, members = _decisions("random")
    fast = FastHashing(12)
    idx, val = fast.features("same prompt")
    first = members[0].utility(idx, val, "same prompt")
    assert first.tolist() == members[0].utility(idx, val, "same prompt").tolist()


def test_fit_tier_calibrates_within_the_drop_and_saves():
    fitted = fit_tier(synthetic(1200, seed=4), "quality", target_drop_points=2.0, bits=12, folds=3)
    assert fitted.lam is not None and fitted.ucb_drop_points <= 2.0
    assert fitted.saving > 0.2 and len(fitted.members) == 3


def _config(**tier):
    base = {
        "kind": "quality",
        "reference": "large",
        "lambda": None,
        "candidates": [
            {"model": "small", "servedName": "org/small", "costIntercept": 1, "costPerChar": 0},
            {"model": "large", "servedName": "org/large", "costIntercept": 20, "costPerChar": 0},
        ],
    }
    return {"apiVersion": "llmfleet.dev/router/v1", "tiers": {"fast": {**base, **tier}}}


def test_config_without_a_knob_sends_everything_to_the_reference():
    cfg = parse_config(_config())
    tier = cfg.tiers["fast"]
    assert tier.decide("anything", FastHashing(16)).candidate.served_name == "org/large"
    assert tier.routes(None) and tier.routes("org/large") and not tier.routes("org/small")
    assert cfg.model_header == "x-ai-eg-model" and cfg.tier_header == "x-tier"


def test_inline_members_and_tenant_restriction():
    _, _, _, _, members = _decisions("quality")
    arrays = {k: v.tolist() for k, v in members_to_arrays(members).items()}
    cfg = parse_config(
        json.loads(json.dumps(_config(bits=12, members=arrays, **{"lambda": 5.0, "costScale": 20.0},
                                      tenants={"only-large": ["large"]})))
    )  # fmt: skip
    tier = cfg.tiers["fast"]
    fast = FastHashing(12)
    assert tier.decide("what is the capital of france", fast).candidate.model == "small"
    pinned = tier.decide("what is the capital of france", fast, tenant="only-large")
    assert pinned.candidate.model == "large" and pinned.reason == "only-reference"


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"apiVersion": "v0", "tiers": {}}, "apiVersion"),
        (_config(kind="llm"), "tiers.fast.kind"),
        (_config(reference="gpt-9"), "tiers.fast.reference"),
        (_config(**{"lambda": -1}), "tiers.fast.lambda"),
        (_config(**{"lambda": 0.5}), "needs a fitted router"),
        (_config(artefact="fast.npz"), "tiers.fast.artefact"),
        (_config(candidates=[{"model": "large", "servedName": "x"}]), "costIntercept"),
        (_config(costScale=0), "costScale"),
    ],
    ids=["api-version", "kind", "reference", "negative-lambda", "lambda-without-router",
         "artefact-not-loaded", "candidate-cost", "zero-scale"],
)  # fmt: skip
def test_bad_configs_name_the_key(doc, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        parse_config(doc)
