"""The ``blend`` router kind end to end: its trees, compiled to arrays and walked by hand,
predict what scikit-learn's ``HistGradientBoostingRegressor.predict`` does; a blend tier
decides the same before and after its artefact's arrays (and the router service's config)
round trip; an SLATier asks for it; ``fit_tier`` fits and calibrates it."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import celpy
import numpy as np
import pytest
import scipy.sparse as sp
from celpy import celtypes
from sklearn.ensemble import HistGradientBoostingRegressor

from llmfleet.api.crdgen import crd_for
from llmfleet.api.tier import SLATier
from llmfleet.gateway.config import load_config, save_artefact
from llmfleet.routing.models import HashingFeaturiser, RoutingSet
from llmfleet.routing.models.features import DIFFICULTY_FEATURES, DifficultyFeaturiser
from llmfleet.routing.models.routers import BlendRouter
from llmfleet.routing.models.serving import (
    KINDS,
    BlendMember,
    Candidate,
    FastHashing,
    FittedTier,
    TierRouter,
    compile_members,
    fit_tier,
    make_serving_router,
    members_from_arrays,
    members_to_arrays,
    parse_config,
)
from support.builders import sample

BITS = 12
WORDS = ["apples", "each", "total", "percent", "train", "left", "share", "more", "than", "the"]


def _features(prompts: list[str]) -> sp.csr_matrix:
    """What a blend router is fitted on: the hashed text, then the difficulty features (as
    ``llmfleet bench routing`` stacks them)."""
    x = HashingFeaturiser(BITS).transform(prompts)
    d = sp.csr_matrix(DifficultyFeaturiser().transform(prompts))
    return sp.hstack([x, d]).tocsr()


def _prompts(n: int, seed: int) -> list[str]:
    """Word problems of varied length, numbers, money, percents, formulas and options: every
    difficulty feature moves."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        parts = [str(rng.choice(WORDS)) for _ in range(int(rng.integers(1, 40)))]
        for _ in range(int(rng.integers(0, 8))):
            v = float(rng.integers(0, 10 ** int(rng.integers(1, 7))))
            fmt = str(rng.choice(["{:.0f}", "{:.2f}", "${:,.0f}", "{:.0f}%"]))
            parts.insert(int(rng.integers(0, len(parts) + 1)), fmt.format(v))
        text = " ".join(parts) + str(rng.choice([".", "?", " = x + 1.", ""]))
        if rng.random() < 0.3:
            text += "\nA. one\nB. two options here\nC. three\nD. four"
        out.append(text)
    return out


def _hard_set(n: int, seed: int) -> RoutingSet:
    """The small model is right less often the more numbers a prompt holds (what only the
    difficulty features see); the large one 90% of the time. Costs 1 and 20."""
    prompts = _prompts(n, seed)
    rng = np.random.default_rng(seed + 1)
    numbers = DifficultyFeaturiser().transform(prompts)[:, DIFFICULTY_FEATURES.index("numbers")]
    p_small = np.clip(0.97 - 0.12 * numbers, 0.05, 1.0)
    quality = np.column_stack([rng.random(n) < p_small, rng.random(n) < 0.9]).astype(np.float64)
    return RoutingSet.build(
        prompts, ["small", "large"], quality.tolist(), np.tile([1.0, 20.0], (n, 1))
    )


# --------------------------------------------------------------------------- the trees


def _compiled(data: RoutingSet) -> tuple[BlendRouter, BlendMember]:
    router = make_serving_router("blend", 0, text_columns=2**BITS)
    assert isinstance(router, BlendRouter)
    router.fit(_features(list(data.prompts)), data.quality, data.cost)
    (member,) = compile_members([router], 2**BITS)
    assert isinstance(member, BlendMember)
    return router, member


@functools.cache
def _fitted_blend() -> tuple[BlendRouter, BlendMember]:
    return _compiled(_hard_set(800, seed=3))


def test_the_compiled_trees_predict_as_scikit_learn():
    router, member = _fitted_blend()
    z = DifficultyFeaturiser().transform(_prompts(400, seed=11))
    # a few rows with a missing value: scikit-learn sends NaN where the split learnt to
    z = np.vstack([z, z[:8]])
    z[-8:, [0, 3, 5, 12]] = np.nan
    models = router._trees._models
    assert all(isinstance(m, HistGradientBoostingRegressor) for m in models)
    expected = np.column_stack([m.predict(z) for m in models])  # type: ignore[union-attr]
    got = np.array([member.trees.predict(row) for row in z])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert np.ptp(expected[:, 0]) > 0.1, "the small model's trees split"


def test_a_constant_candidate_compiles_to_its_value():
    data = _hard_set(300, seed=5)
    quality = data.quality.copy()
    quality[:, 1] = 1.0  # the large model always right: a constant, no trees
    router, member = _compiled(RoutingSet.build(data.prompts, data.models, quality, data.cost))
    assert isinstance(router._trees._models[1], float)
    z = DifficultyFeaturiser().transform(_prompts(200, seed=6))
    got = np.array([member.trees.predict(row) for row in z])
    np.testing.assert_allclose(got, router._trees.utility(z), rtol=0, atol=1e-9)
    assert np.all(got[:, 1] == 1.0)
    fast, prompts = FastHashing(BITS), _prompts(50, seed=7)
    served = []
    for p in prompts:
        idx, val = fast.features(p)
        served.append(member.utility(idx, val, p))
    np.testing.assert_allclose(served, router.utility(_features(prompts)), rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- serving


@functools.cache
def _fitted_tier() -> FittedTier:
    return fit_tier(_hard_set(1200, seed=4), "blend", target_drop_points=2.0, bits=BITS, folds=3)


def _tier_router(fitted: FittedTier, members: tuple[object, ...] | None = None) -> TierRouter:
    cands = tuple(
        Candidate(m, f"org/{m}", float(fitted.cost.intercept[j]), float(fitted.cost.slope[j]))
        for j, m in enumerate(fitted.models)
    )
    return TierRouter("t", "blend", cands, fitted.reference, fitted.lam, fitted.scale,
                      fitted.bits, fitted.members if members is None else members)  # type: ignore[arg-type]  # fmt: skip


def test_fit_tier_calibrates_a_blend_router():
    fitted = _fitted_tier()
    assert "blend" in KINDS and fitted.kind == "blend"
    assert len(fitted.members) == 3 and all(isinstance(m, BlendMember) for m in fitted.members)
    assert fitted.lam is not None and fitted.ucb_drop_points <= 2.0
    assert fitted.saving > 0.2, fitted.saving
    assert fitted.oof_choice is not None and fitted.oof_choice.shape == (1200,)
    assert 0 < int((fitted.oof_choice == 0).sum()) < 1200, "both models chosen"


def test_the_served_blend_utility_is_the_fold_routers_mean():
    fitted = _fitted_tier()
    prompts = _prompts(200, seed=21)
    x = _features(prompts)
    expected = np.mean([r.utility(x) for r in fitted.routers], axis=0)
    tier, fast = _tier_router(fitted), FastHashing(BITS)
    got = np.array([tier.utility(p, fast) for p in prompts])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_a_blend_tier_decides_the_same_after_the_arrays_round_trip(tmp_path: Path):
    fitted = _fitted_tier()
    prompts = _prompts(300, seed=22)
    before = _tier_router(fitted)
    after = _tier_router(fitted, members_from_arrays(members_to_arrays(fitted.members)))
    fast = FastHashing(BITS)
    # the artefact the router service loads, and the config naming it
    save_artefact(tmp_path / "t.npz", fitted.members)
    doc = {"apiVersion": "llmfleet.dev/router/v1", "tiers": {"t": {
        "kind": "blend", "reference": fitted.models[fitted.reference], "lambda": fitted.lam,
        "costScale": fitted.scale, "bits": BITS, "artefact": "t.npz",
        "candidates": [{"model": c.model, "servedName": c.served_name,
                        "costIntercept": c.cost_intercept, "costPerChar": c.cost_per_char}
                       for c in before.candidates]}}}  # fmt: skip
    (tmp_path / "router.json").write_text(json.dumps(doc))
    loaded = load_config(tmp_path / "router.json").tiers["t"]
    # inline members (JSON lists) too
    inline = copy.deepcopy(doc)
    del inline["tiers"]["t"]["artefact"]
    inline["tiers"]["t"]["members"] = {
        k: v.tolist() for k, v in members_to_arrays(fitted.members).items()
    }
    parsed = parse_config(json.loads(json.dumps(inline))).tiers["t"]
    decisions = {name: [] for name in ("before", "after", "loaded", "parsed")}
    for p in prompts:
        u = before.utility(p, fast)
        for tier in (after, loaded, parsed):
            np.testing.assert_array_equal(tier.utility(p, fast), u)
        for name, tier in (("before", before), ("after", after), ("loaded", loaded),
                           ("parsed", parsed)):  # fmt: skip
            decisions[name].append(tier.decide(p, fast).index)
    assert decisions["after"] == decisions["before"]
    assert decisions["loaded"] == decisions["before"]
    assert decisions["parsed"] == decisions["before"]
    assert 0 < sum(d == 0 for d in decisions["before"]) < len(prompts), "both models chosen"


def test_a_config_whose_blend_member_scores_other_models_is_refused():
    fitted = _fitted_tier()
    arrays = {k: v.tolist() for k, v in members_to_arrays(fitted.members).items()}
    doc = {"apiVersion": "llmfleet.dev/router/v1", "tiers": {"t": {
        "kind": "blend", "reference": "c", "lambda": 0.1, "members": arrays,
        "candidates": [{"model": m, "servedName": m, "costIntercept": 1, "costPerChar": 0}
                       for m in ("a", "b", "c")]}}}  # fmt: skip
    with pytest.raises(ValueError, match=r"tiers\.t: the router scores 2 models"):
        parse_config(doc)


# --------------------------------------------------------------------------- the API


def _routing_rules(value: dict[str, object]) -> dict[str, bool]:
    root = crd_for(SLATier)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    node = root["properties"]["spec"]["properties"]["routing"]
    env = celpy.Environment()
    out = {}
    for rule in node["x-kubernetes-validations"]:
        result = env.program(env.compile(rule["rule"])).evaluate({"self": celpy.json_to_cel(value)})
        assert isinstance(result, celtypes.BoolType)
        out[rule["message"]] = bool(result)
    assert "blend" in node["properties"]["router"]["properties"]["kind"]["enum"]
    return out


@pytest.mark.parametrize(
    "candidates",
    [["llama-3-1-8b", "llama-3-3-70b"], ["llama-3-1-8b", "llama-3-3-70b", "llama-3-1-405b"]],
    ids=["two", "three"],
)
def test_an_slatier_with_a_blend_router_parses(candidates: list[str]):
    doc = sample("SLATier", "interactive-normal")
    routing = {
        "referenceModel": "llama-3-3-70b",
        "candidates": candidates,
        "maxQualityDrop": 1.0,
        "router": {"kind": "blend", "confidence": 0.9},
    }
    doc["spec"]["routing"] = routing
    tier = SLATier.from_wire(doc)
    assert tier.spec.routing is not None and tier.spec.routing.router.kind == "blend"
    assert all(_routing_rules(routing).values())
